//! The binary's HTTP surface, made of the library's parts: `/health`, `/metrics` and the
//! status page at `/` with its data under `/status/` ([`wirepool::http`]), and, when MCP is on, the pool's resources over streamable HTTP at
//! `/mcp` and HTTP+SSE at `/sse` ([`wirepool::mcp`]).

use std::net::SocketAddr;

use axum::Router;
use tokio_util::sync::CancellationToken;
use wirepool::mcp::{McpRoutes, PoolResources};
use wirepool::Pool;

/// The routes: `/health`, `/metrics` and the status page always; when `mcp` is set, MCP at
/// `/mcp` and `/sse` (+ `/messages`). The status page and MCP accept requests whose Host
/// (and Origin, when a browser sends one) names loopback, the bind address or a host of
/// `allowed`. `cancel` ends the MCP sessions at shutdown.
pub(crate) fn router(
    pool: Pool,
    bind: SocketAddr,
    allowed: &[String],
    mcp: bool,
    cancel: CancellationToken,
) -> Router {
    let mut hosts = Vec::new();
    if !bind.ip().is_unspecified() {
        hosts.push(bind.ip().to_string());
    }
    hosts.extend(allowed.iter().cloned());
    let r = wirepool::http::Routes::new(pool.clone())
        .allow_hosts(hosts.clone())
        .router();
    if !mcp {
        return r;
    }
    let resources = PoolResources::new(pool);
    r.merge(
        McpRoutes::new(move || resources.clone())
            .allow_hosts(hosts)
            .cancellation(cancel)
            .router(),
    )
}

/// Only the metrics route, for a separate metrics listener.
pub(crate) fn metrics_router(pool: Pool) -> Router {
    wirepool::http::Routes::new(pool).metrics_router()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wirepool_testkit::Role;

    use wirepool::LifecycleState;

    use axum::http::StatusCode;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_is_503_while_draining_and_after() {
        let pg = wirepool_testkit::cluster();
        let pool = Pool::builder(pg.config(Role::Trust))
            .drain_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap();
        let app = router(
            pool.clone(),
            "127.0.0.1:0".parse().unwrap(),
            &[],
            false,
            CancellationToken::new(),
        );
        let get = |path: &'static str| {
            let app = app.clone();
            async move {
                use tower::ServiceExt;
                let req = axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap();
                app.oneshot(req).await.unwrap().status()
            }
        };
        assert_eq!(get("/health").await, StatusCode::OK);

        // A connection still out: close() waits for it, the pool is SHUTTING_DOWN.
        let held = pool.acquire().await.unwrap();
        let closing = tokio::spawn({
            let pool = pool.clone();
            async move { pool.close().await }
        });
        while pool.state() != LifecycleState::ShuttingDown {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(get("/health").await, StatusCode::SERVICE_UNAVAILABLE);
        // Metrics keep answering during the drain.
        assert_eq!(get("/metrics").await, StatusCode::OK);

        drop(held);
        closing.await.unwrap();
        assert_eq!(pool.state(), LifecycleState::Terminated);
        assert_eq!(get("/health").await, StatusCode::SERVICE_UNAVAILABLE);
    }
}
