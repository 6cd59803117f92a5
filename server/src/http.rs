//! The HTTP surface: `GET /health`, `GET /metrics`, and MCP over streamable HTTP at `/mcp`.
//!
//! - `/health`: the health JSON (plus the lifecycle `state`) from cached pool state, no
//!   database query. 503 only when the pool cannot serve a caller now: no open connection
//!   and the database does not answer, or shutting down / terminated; a load balancer then
//!   stops sending work during an outage and during the drain. A saturated pool answers 200
//!   with `"status":"unhealthy"`: dropping busy instances from a load balancer would move
//!   their load onto the others and cascade.
//! - `/metrics`: Prometheus text format 0.0.4, or OpenMetrics 1.0 when the `Accept` header
//!   asks for `application/openmetrics-text`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use wirepool::observe::prometheus::Format;
use wirepool::Pool;

use crate::mcp::PoolResources;

/// The routes: `/health` and `/metrics` always; when `mcp` is set, MCP over streamable
/// HTTP at `/mcp` and over HTTP+SSE at `/sse` (+ `/messages`), accepting requests whose
/// Host (and Origin, when a browser sends one) names loopback, the bind address or a host
/// `mcp` lists (see [`crate::guard`]). `cancel` ends the MCP sessions at shutdown.
pub(crate) fn router(
    pool: Pool,
    bind: SocketAddr,
    mcp: Option<&[String]>,
    cancel: CancellationToken,
) -> Router {
    let state = Arc::new(pool.clone());
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Some(extra) = mcp {
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        if !bind.ip().is_unspecified() {
            hosts.push(bind.ip().to_string());
        }
        hosts.extend(extra.iter().cloned());
        let guard = crate::guard::Allowed::new(&hosts);
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(hosts)
            .with_cancellation_token(cancel.clone());
        let sse = crate::sse::routes(pool.clone(), cancel);
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(MCP_SESSION_IDLE);
        let manager = Arc::new(manager);
        let service = StreamableHttpService::new(
            move || Ok(PoolResources::new(pool.clone())),
            manager.clone(),
            config,
        );
        let mcp = Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(
                manager,
                cap_new_sessions,
            ))
            .merge(sse)
            .layer(axum::middleware::from_fn_with_state(
                guard,
                crate::guard::check,
            ));
        r = r.merge(mcp);
    }
    r
}

/// The most MCP sessions open at once, per transport (streamable HTTP, HTTP+SSE). A session
/// costs some 50 KB; a client that opens sessions without end gets 503 past this.
pub(crate) const MCP_SESSION_CAP: usize = 256;

/// A streamable-HTTP MCP session unused this long is closed (rmcp's default is 300 s).
const MCP_SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The answer to a request for a new MCP session past [`MCP_SESSION_CAP`].
pub(crate) fn too_many_sessions() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "10")],
        "too many MCP sessions are open; retry later",
    )
        .into_response()
}

/// Refuses a request that would open a new streamable-HTTP session (one without an
/// `Mcp-Session-Id`) while [`MCP_SESSION_CAP`] sessions are open.
async fn cap_new_sessions(
    State(manager): State<Arc<LocalSessionManager>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let opens =
        req.method() == axum::http::Method::POST && !req.headers().contains_key("mcp-session-id");
    if opens {
        let open = match manager.sessions.try_read() {
            Ok(s) => s.len(),
            Err(_) => 0,
        };
        if open >= MCP_SESSION_CAP {
            return too_many_sessions();
        }
    }
    next.run(req).await
}

/// Only the metrics routes, for a separate metrics listener.
pub(crate) fn metrics_router(pool: Pool) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(pool))
}

async fn health(State(pool): State<Arc<Pool>>) -> Response {
    let report = pool.health();
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        report.to_json(),
    )
        .into_response()
}

async fn metrics(State(pool): State<Arc<Pool>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        pool.render_metrics(format),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wirepool_testkit::{Cluster, Role};

    use wirepool::LifecycleState;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_is_503_while_draining_and_after() {
        let pg = Cluster::start().unwrap_or_else(|e| panic!("throwaway PostgreSQL: {e}"));
        let pool = Pool::builder(pg.config(Role::Trust))
            .drain_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap();
        let state = Arc::new(pool.clone());
        assert_eq!(health(State(state.clone())).await.status(), StatusCode::OK);

        // A connection still out: close() waits for it, the pool is SHUTTING_DOWN.
        let held = pool.acquire().await.unwrap();
        let closing = tokio::spawn({
            let pool = pool.clone();
            async move { pool.close().await }
        });
        while pool.state() != LifecycleState::ShuttingDown {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let r = health(State(state.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Metrics keep answering during the drain.
        let m = metrics(State(state.clone()), HeaderMap::new()).await;
        assert_eq!(m.status(), StatusCode::OK);

        drop(held);
        closing.await.unwrap();
        assert_eq!(pool.state(), LifecycleState::Terminated);
        assert_eq!(
            health(State(state)).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
