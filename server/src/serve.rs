//! `wirepool serve` and `wirepool mcp`: a pool from the environment, its health and
//! metrics over HTTP (and MCP), a graceful drain on SIGTERM or SIGINT.
//!
//! Shutdown order: on the signal the pool starts draining (its state becomes SHUTTING_DOWN,
//! so `/health` answers 503 and a load balancer stops sending work), checked-out
//! connections get up to `drain_timeout` (30 s) to come back, then the HTTP listeners stop
//! and the process exits 0.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wirepool::{ConnectConfig, Pool, PoolConfig};

use crate::http;
use crate::settings::chain;
use wirepool::mcp::PoolResources;

/// How long in-flight HTTP requests get after the pool is closed.
const HTTP_GRACE: Duration = Duration::from_secs(5);

/// Where to listen.
#[derive(Debug, Clone)]
pub(crate) struct Listen {
    pub(crate) bind: SocketAddr,
    pub(crate) metrics_bind: Option<SocketAddr>,
    pub(crate) mcp: bool,
    /// Extra Host header values `/mcp` and the status page accept.
    pub(crate) mcp_allowed_hosts: Vec<String>,
}

/// Running HTTP listeners.
pub(crate) struct Http {
    pub(crate) addr: SocketAddr,
    pub(crate) metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Http {
    /// Binds and starts serving `pool`.
    pub(crate) async fn start(pool: &Pool, listen: &Listen) -> Result<Http, String> {
        let cancel = CancellationToken::new();
        let listener = TcpListener::bind(listen.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", listen.bind))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut tasks = Vec::new();
        let app = http::router(
            pool.clone(),
            addr,
            &listen.mcp_allowed_hosts,
            listen.mcp,
            cancel.child_token(),
        );
        let cap = crate::http_server::connection_cap(pool.config().max_size);
        tasks.push(spawn_server(listener, app, cap, cancel.clone()));
        let mut metrics_addr = None;
        if let Some(mb) = listen.metrics_bind {
            let l = TcpListener::bind(mb)
                .await
                .map_err(|e| format!("cannot listen on {mb} for metrics: {e}"))?;
            metrics_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
            tasks.push(spawn_server(
                l,
                http::metrics_router(pool.clone()),
                cap,
                cancel.clone(),
            ));
        }
        let mcp = if listen.mcp { ", /mcp" } else { "" };
        tracing::info!(
            target: "wirepool_server::http",
            addr = %addr,
            metrics_addr = metrics_addr.map(|a| a.to_string()),
            "Listening on http://{addr} (status page at /, /health, /metrics{mcp})"
        );
        if let Some(m) = metrics_addr {
            tracing::info!(target: "wirepool_server::http", "Metrics also on http://{m}/metrics");
        }
        Ok(Http {
            addr,
            metrics_addr,
            cancel,
            tasks,
        })
    }

    /// Stops accepting, lets requests in flight finish (up to a grace period).
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let abort = t.abort_handle();
            // The listener gives its requests HTTP_GRACE itself; this is the backstop.
            if tokio::time::timeout(HTTP_GRACE + Duration::from_secs(1), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

fn spawn_server(
    listener: TcpListener,
    app: axum::Router,
    cap: usize,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(crate::http_server::serve(
        listener, app, cap, cancel, HTTP_GRACE,
    ))
}

/// Builds the pool, logging the failure in the operator's terms.
pub(crate) async fn build_pool(connect: ConnectConfig, cfg: PoolConfig) -> Result<Pool, String> {
    Pool::builder(connect)
        .config(cfg)
        .build()
        .await
        .map_err(|e| {
            format!(
                "cannot start the pool: {}\nlikely cause: {}",
                chain(&e),
                crate::check::likely_cause(&e)
            )
        })
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// `wirepool serve`.
pub(crate) async fn serve(
    connect: ConnectConfig,
    cfg: PoolConfig,
    listen: Listen,
) -> Result<(), String> {
    let pool = build_pool(connect, cfg).await?;
    let http = match Http::start(&pool, &listen).await {
        Ok(h) => h,
        Err(e) => {
            pool.close().await;
            return Err(e);
        }
    };
    let sig = shutdown_signal().await;
    tracing::info!(target: "wirepool_server::serve", signal = sig, "Received {sig}, shutting down");
    pool.close().await;
    http.stop().await;
    Ok(())
}

/// `wirepool mcp`: the MCP resources over stdin/stdout (logs stay on stderr or LOG_FILE).
pub(crate) async fn mcp_stdio(connect: ConnectConfig, cfg: PoolConfig) -> Result<(), String> {
    use rmcp::ServiceExt;
    let pool = build_pool(connect, cfg).await?;
    let io = match crate::mcp::stdio_after_probes().await {
        Ok(Some(io)) => io,
        Ok(None) => {
            pool.close().await;
            return Ok(()); // the client went away before the handshake
        }
        Err(e) => {
            pool.close().await;
            return Err(format!("reading the MCP client on stdin: {e}"));
        }
    };
    let service = match PoolResources::new(pool.clone()).serve(io).await {
        Ok(s) => s,
        Err(e) => {
            pool.close().await;
            return Err(format!("MCP handshake on stdio failed: {e}"));
        }
    };
    tokio::select! {
        r = service.waiting() => {
            if let Err(e) = r {
                tracing::warn!(target: "wirepool_server::mcp", "MCP session ended: {e}");
            }
        }
        sig = shutdown_signal() => {
            tracing::info!(target: "wirepool_server::mcp", signal = sig, "Received {sig}, shutting down");
        }
    }
    pool.close().await;
    Ok(())
}
