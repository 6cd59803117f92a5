//! The HTTP endpoints' guard against DNS rebinding and cross-site requests, as the MCP
//! transport specification asks: a request's `Host` must name an allowed host (loopback,
//! or one the application lists), and a request that carries
//! an `Origin` (a browser's) must come from an allowed host too; otherwise 403. Requests
//! without `Origin` (command-line clients, SDKs) are served.
//!
//! An allowed entry `name` matches that host on any port; `name:port` matches that port
//! only (for `Host`; an `Origin`'s port is the page's, so only its host is compared).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The hosts the MCP endpoints accept.
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    entries: Arc<Vec<(String, Option<u16>)>>,
}

impl Allowed {
    pub(crate) fn new(hosts: &[String]) -> Allowed {
        Allowed {
            entries: Arc::new(hosts.iter().filter_map(|h| split(h)).collect()),
        }
    }

    fn host_ok(&self, host: &str, port: Option<u16>) -> bool {
        self.entries
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port))
    }

    fn origin_host_ok(&self, host: &str) -> bool {
        self.entries.iter().any(|(h, _)| *h == host)
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` into (lowercase host without brackets, port).
fn split(authority: &str) -> Option<(String, Option<u16>)> {
    let a = authority.trim();
    if a.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        // Nothing may follow the bracket but a port.
        if after.is_empty() {
            (h, None)
        } else {
            (h, Some(after.strip_prefix(':')?))
        }
    } else {
        match a.rsplit_once(':') {
            // A bare IPv6 address has several colons and no port.
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (a, None),
        }
    };
    let port = match port {
        // Digits only (`u16::from_str` would take `+80`).
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The host of an `Origin` value (`scheme://host[:port]`); `None` for `null` or garbage.
fn origin_host(origin: &str) -> Option<String> {
    let (_, rest) = origin.trim().split_once("://")?;
    split(rest.split('/').next()?).map(|(h, _)| h)
}

fn forbidden(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// The middleware: checks `Host` (one, allowed), the request target's authority when it
/// has one (`GET http://host/...`), and `Origin` (at most one, allowed), then passes the
/// request on.
pub(crate) async fn check(State(allowed): State<Allowed>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if headers.get_all(header::HOST).iter().count() > 1 {
        return forbidden("Forbidden: more than one Host");
    }
    if headers.get_all(header::ORIGIN).iter().count() > 1 {
        return forbidden("Forbidden: more than one Origin");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(split);
    match host {
        Some((h, p)) if allowed.host_ok(&h, p) => {}
        _ => return forbidden("Forbidden: Host is not allowed"),
    }
    if let Some(authority) = req.uri().authority() {
        match split(authority.as_str()) {
            Some((h, p)) if allowed.host_ok(&h, p) => {}
            _ => return forbidden("Forbidden: Host is not allowed"),
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(origin_host)
            .is_some_and(|h| allowed.origin_host_ok(&h));
        if !ok {
            return forbidden("Forbidden: Origin is not allowed");
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let a = Allowed::new(&[
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "pool.internal:3000".into(),
        ]);
        for (h, ok) in [
            ("localhost:3000", true),
            ("LOCALHOST", true),
            ("127.0.0.1:9", true),
            ("[::1]:3000", true),
            ("pool.internal:3000", true),
            ("pool.internal:3001", false),
            ("evil.example", false),
            ("", false),
            ("[::1]evil.example", false),
            ("[::1].evil.com:80", false),
            ("[::1]:", false),
            ("localhost:+80", false),
            ("localhost:", false),
        ] {
            let got = split(h).is_some_and(|(h, p)| a.host_ok(&h, p));
            assert_eq!(got, ok, "{h}");
        }
        for (o, ok) in [
            ("http://localhost:5173", true),
            ("http://127.0.0.1", true),
            ("http://[::1]:8080", true),
            ("https://pool.internal", true),
            ("http://evil.example", false),
            ("http://localhost.evil.example", false),
            ("http://[::1]evil.com", false),
            ("null", false),
        ] {
            let got = origin_host(o).is_some_and(|h| a.origin_host_ok(&h));
            assert_eq!(got, ok, "{o}");
        }
    }
}
