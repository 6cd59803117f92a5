//! The MCP server: the pool's health and statistics as resources, over streamable HTTP
//! (mounted at `/mcp` by [`crate::http`]) or stdio (`wirepool mcp`).
//!
//! | URI | MIME type | content |
//! |---|---|---|
//! | `health://connection-pool` | `application/json` | the health report (its JSON schema) |
//! | `statistics://connection-pool` | `application/json` | every statistic of the pool |
//!
//! Both are read from the pool's cached state: reading them sends nothing to the database.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Stdout};

use rmcp::model::{
    Implementation, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResult, Resource, ResourceContents, ServerCapabilities, ServerInfo,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use wirepool::Pool;

/// The health resource's URI, as the monitoring guide names it.
pub(crate) const HEALTH_URI: &str = "health://connection-pool";
/// The statistics resource's URI.
pub(crate) const STATISTICS_URI: &str = "statistics://connection-pool";

/// Serves the pool's resources.
#[derive(Debug, Clone)]
pub(crate) struct PoolResources {
    pool: Pool,
}

impl PoolResources {
    pub(crate) fn new(pool: Pool) -> Self {
        PoolResources { pool }
    }

    fn resources() -> Vec<Resource> {
        vec![
            Resource::new(HEALTH_URI, "connection-pool-health")
                .with_title("Connection pool health")
                .with_description(
                    "Health of the PostgreSQL connection pool: status (healthy, degraded, \
                     unhealthy), pool counts (total, idle, active, waiting), database latency, \
                     last error and uptime. From cached state; no database query.",
                )
                .with_mime_type("application/json"),
            Resource::new(STATISTICS_URI, "connection-pool-statistics")
                .with_title("Connection pool statistics")
                .with_description(
                    "Every statistic of the pool: counts, acquisition times and quantiles, \
                     peaks, acquisitions and releases, closes by reason, errors by type, \
                     leaks detected, reconnect attempts.",
                )
                .with_mime_type("application/json"),
        ]
    }
}

impl ServerHandler for PoolResources {
    fn get_info(&self) -> ServerInfo {
        let mut info = ServerInfo::new(ServerCapabilities::builder().enable_resources().build());
        info.server_info = Implementation::new("wirepool", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(format!(
            "Read {HEALTH_URI} for the connection pool's health and {STATISTICS_URI} for its \
             statistics."
        ));
        info
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult {
            meta: None,
            next_cursor: None,
            resources: Self::resources(),
        })
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        let text = match request.uri.as_str() {
            HEALTH_URI => self.pool.health().to_json(),
            STATISTICS_URI => self.pool.statistics().to_json(),
            other => {
                return Err(ErrorData::resource_not_found(
                    format!(
                        "no resource {other:?}; this server has {HEALTH_URI} and {STATISTICS_URI}"
                    ),
                    None,
                ))
            }
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text,
            request.uri,
        )
        .with_mime_type("application/json")]))
    }
}

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
