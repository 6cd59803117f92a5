//! `wirepool health`: the exec probe. Reads `/health` of a running `wirepool serve`,
//! prints the JSON, and says with its exit code whether the pool can serve:
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | 200: the pool can serve (healthy or degraded; a saturated pool too, whose callers wait their turn) |
//! | 1 | 503: it cannot (no connection and the database unreachable, or shutting down) |
//! | 2 | no server answered in time, or the answer is not a health report |
//!
//! Plain HTTP/1.1 over TCP, as Kubernetes' own probes speak it; no TLS.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The outcome of a probe: the exit code and what to print.
pub(crate) struct Probe {
    pub(crate) code: u8,
    pub(crate) out: String,
    pub(crate) err: String,
}

/// `http://host:port[/path]` into (host:port, path); `/health` when no path is given.
fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url: `{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("--url: `{url}` has no host"));
    }
    // Without a port (`host`, `[v6]`), HTTP's.
    let authority = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    let path = if path.is_empty() || path == "/" {
        "/health".to_string()
    } else {
        path.to_string()
    };
    Ok((authority, path))
}

/// Reads the health report at `url` within `timeout`.
pub(crate) async fn run(url: &str, timeout: Duration) -> Probe {
    let fail = |err: String| Probe {
        code: 2,
        out: String::new(),
        err,
    };
    let (authority, path) = match parse_url(url) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let exchange = async {
        let mut s = TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("cannot reach {authority}: {e}"))?;
        let host = authority.clone();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("writing to {authority}: {e}"))?;
        let mut raw = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("reading from {authority}: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => return fail(e),
        Err(_) => {
            return fail(format!(
                "no answer from {authority} within {:.1} s",
                timeout.as_secs_f64()
            ))
        }
    };
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return fail(format!("{authority} did not answer HTTP"));
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    let report: Option<serde_json::Value> = serde_json::from_str(body.trim()).ok();
    let is_report = report
        .as_ref()
        .is_some_and(|v| v.get("status").and_then(|s| s.as_str()).is_some());
    match (status, is_report) {
        (Some(200), true) => Probe {
            code: 0,
            out: body.trim().to_string(),
            err: String::new(),
        },
        (Some(503), true) => Probe {
            code: 1,
            out: body.trim().to_string(),
            err: "the pool cannot serve (503)".into(),
        },
        (Some(code), _) => fail(format!(
            "{authority}{path} answered {code}, not a health report"
        )),
        (None, _) => fail(format!("{authority} did not answer HTTP")),
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:3000").unwrap(),
            ("127.0.0.1:3000".into(), "/health".into())
        );
        assert_eq!(
            parse_url("http://localhost/healthz").unwrap(),
            ("localhost:80".into(), "/healthz".into())
        );
        assert_eq!(
            parse_url("http://[::1]:3000/").unwrap(),
            ("[::1]:3000".into(), "/health".into())
        );
        assert!(parse_url("https://x").is_err());
        assert!(parse_url("http:///health").is_err());
    }
}
