//! The pool's HTTP endpoints as an [axum](https://docs.rs/axum) router, to merge into an
//! application's own (feature `axum`).
//!
//! - `GET /health`: the health report as JSON (its schema is in the operator's guide),
//!   from the pool's cached state, no database query. The status code is 503 only when
//!   the pool cannot serve a caller now (no open connection and the database does not
//!   answer, or shutting down, or terminated), so a load balancer stops sending work
//!   during an outage and during the drain. A saturated pool answers 200 with
//!   `"status":"unhealthy"`: dropping busy instances from a load balancer would move their
//!   load onto the others.
//! - `GET /metrics`: the statistics in Prometheus text format 0.0.4, or OpenMetrics 1.0
//!   when the `Accept` header asks for `application/openmetrics-text`.
//! - `GET /`: the status page, one self-contained HTML page (no script, style or font
//!   fetched from anywhere) that polls `GET /status/data` once a second while it is open
//!   and visible: the tier and the reason for it, the lifecycle state, the connections,
//!   pipelined statements and latency percentiles of the last 15 minutes, the leaks in
//!   progress, the last errors, the reconnection schedule during an outage and the
//!   statement table. Both answer only requests whose `Host` (and `Origin`, when a browser
//!   sends one) names loopback or a host given to [`Routes::allow_hosts`]; others get 403
//!   (the guard against DNS rebinding the MCP endpoints use). No secret or parameter
//!   value is on it.
//!
//! ```no_run
//! use axum::routing::get;
//!
//! # async fn f(pool: wirepool::Pool) -> std::io::Result<()> {
//! let app = axum::Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .merge(wirepool::http::router(pool.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! [`Routes`] moves the endpoints (`/healthz`, `/internal/metrics`, `/pool`, ...), turns
//! the status page off (an application that serves `/` itself moves or drops the page, or
//! axum refuses the overlapping route), or changes the metric names' prefix.

pub(crate) mod guard;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::Result;
use crate::observe::prometheus::Format;
use crate::pool::Pool;

/// `/health` and `/metrics` for `pool`, with the pool's own metrics prefix; a router to
/// `merge` into the application's.
pub fn router(pool: Pool) -> Router {
    Routes::new(pool).router()
}

/// Where the endpoints are mounted and how the metrics are named.
#[derive(Debug, Clone)]
pub struct Routes {
    pool: Pool,
    health_path: String,
    metrics_path: String,
    status_path: Option<String>,
    hosts: Vec<String>,
    prefix: Option<String>,
}

/// Where the status page's data is served (the page reads it from there wherever the page
/// itself is).
pub const STATUS_DATA_PATH: &str = "/status/data";

const STATUS_PAGE: &str = include_str!("status_page.html");

/// The page's content security policy: nothing but its own inline script and style, and
/// its feed on the same server.
const STATUS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Routes {
    /// The endpoints at `/health` and `/metrics`, metric names prefixed with the pool's
    /// `metrics_prefix`.
    pub fn new(pool: Pool) -> Routes {
        Routes {
            pool,
            health_path: "/health".to_string(),
            metrics_path: "/metrics".to_string(),
            status_path: Some("/".to_string()),
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            prefix: None,
        }
    }

    /// Serves the status page at `path` (it starts with `/`; its data stays at
    /// [`STATUS_DATA_PATH`]).
    pub fn status_path(mut self, path: impl Into<String>) -> Routes {
        self.status_path = Some(path.into());
        self
    }

    /// No status page and no `/status/data`.
    pub fn without_status_page(mut self) -> Routes {
        self.status_path = None;
        self
    }

    /// Also lets the status page be reached by these hosts (`name` or `name:port`), besides
    /// loopback: the names the server is reached by. `/health` and `/metrics` answer any
    /// `Host` (load balancers and scrapers use the address).
    pub fn allow_hosts<I: IntoIterator<Item = T>, T: Into<String>>(mut self, hosts: I) -> Routes {
        self.hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Serves the health report at `path` (it starts with `/`).
    pub fn health_path(mut self, path: impl Into<String>) -> Routes {
        self.health_path = path.into();
        self
    }

    /// Serves the metrics at `path` (it starts with `/`).
    pub fn metrics_path(mut self, path: impl Into<String>) -> Routes {
        self.metrics_path = path.into();
        self
    }

    /// Names the metrics `prefix_...` instead of the pool's `metrics_prefix`.
    ///
    /// # Errors
    ///
    /// A configuration error when `prefix` is not a Prometheus name.
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Result<Routes> {
        let prefix = prefix.into();
        crate::pool::check_metrics_prefix(&prefix)?;
        self.prefix = Some(prefix);
        Ok(self)
    }

    /// The router.
    ///
    /// # Panics
    ///
    /// As axum's `Router::route`: when a path does not start with `/`, or two endpoints
    /// are given the same path.
    pub fn router(self) -> Router {
        let health_path = self.health_path.clone();
        let metrics_path = self.metrics_path.clone();
        let status_path = self.status_path.clone();
        let allowed = guard::Allowed::new(&self.hosts);
        let state = std::sync::Arc::new(self);
        let endpoints = Router::new()
            .route(&health_path, get(health))
            .route(&metrics_path, get(metrics))
            .with_state(state.clone());
        let Some(status_path) = status_path else {
            return endpoints;
        };
        let status = Router::new()
            .route(&status_path, get(status_page))
            .route(STATUS_DATA_PATH, get(status_data))
            .with_state(state)
            // On the status routes only: an application's other paths (and its fallback)
            // are its own business.
            .route_layer(axum::middleware::from_fn_with_state(allowed, guard::check));
        endpoints.merge(status)
    }
}

impl Routes {
    /// A router of the metrics route alone (for a listener of its own).
    pub fn metrics_router(self) -> Router {
        let metrics_path = self.metrics_path.clone();
        Router::new()
            .route(&metrics_path, get(metrics))
            .with_state(std::sync::Arc::new(self))
    }
}

/// The health report with its status code.
pub(crate) fn health_response(pool: &Pool) -> Response {
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

async fn status_page() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, STATUS_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

async fn status_data(State(routes): State<std::sync::Arc<Routes>>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        routes.pool.status_json(),
    )
        .into_response()
}

async fn health(State(routes): State<std::sync::Arc<Routes>>) -> Response {
    health_response(&routes.pool)
}

async fn metrics(State(routes): State<std::sync::Arc<Routes>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let prefix = routes
        .prefix
        .as_deref()
        .unwrap_or(&routes.pool.config().metrics_prefix);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        routes.pool.render_metrics_prefixed(format, prefix),
    )
        .into_response()
}
