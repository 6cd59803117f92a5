//! `wirepool mcp`: the pool's MCP resources ([`wirepool::mcp::PoolResources`]) over
//! stdin and stdout.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Stdout};

/// Stdin and stdout for an MCP session, past any request a client sends before
/// `initialize`.
///
/// Clients of the newer protocol generation probe with `server/discover` first and fall back
/// to the `initialize` handshake when the server answers with an error; the SDK's stdio
/// server would instead end the session. So requests before `initialize` get a JSON-RPC
/// "method not found" here, notifications are dropped, and `initialize` and everything
/// after it go to the SDK untouched. `None` when stdin ends first.
pub(crate) async fn stdio_after_probes() -> std::io::Result<Option<(impl AsyncRead + Unpin, Stdout)>>
{
    let mut input = BufReader::new(tokio::io::stdin());
    let mut out = tokio::io::stdout();
    loop {
        let mut line = String::new();
        if input.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let msg: serde_json::Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            // Not ours to judge: let the SDK report it.
            Err(_) => {
                return Ok(Some((
                    std::io::Cursor::new(line.into_bytes()).chain(input),
                    out,
                )))
            }
        };
        let method = msg.get("method").and_then(|m| m.as_str()).unwrap_or("");
        if method == "initialize" || msg.get("method").is_none() {
            return Ok(Some((
                std::io::Cursor::new(line.into_bytes()).chain(input),
                out,
            )));
        }
        if let Some(id) = msg.get("id") {
            let reply = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": -32601,
                    "message": format!("method not found: {method} (this server starts with initialize)"),
                },
            });
            let mut bytes = reply.to_string().into_bytes();
            bytes.push(b'\n');
            out.write_all(&bytes).await?;
            out.flush().await?;
        }
    }
}
