//! Where a test server listens: a loopback port free on both of its addresses.

use std::net::TcpListener;

use crate::cluster_error::{err, ClusterError};

/// A port free on `127.0.0.1` and on `::1` at the moment of the call (a server listens on
/// both).
pub(crate) fn free_port() -> Result<u16, ClusterError> {
    let mut last = None;
    for _ in 0..20 {
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| err(format!("finding a free port: {e}")))?;
        let port = l
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| err(format!("finding a free port: {e}")))?;
        match TcpListener::bind(("::1", port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(err(format!(
        "finding a port free on both 127.0.0.1 and ::1: {}",
        last.map_or_else(String::new, |e| e.to_string())
    )))
}
