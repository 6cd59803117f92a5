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
//!
//! ```no_run
//! use axum::routing::get;
//!
//! # async fn f(pool: wirepool::Pool) -> std::io::Result<()> {
//! let app = axum::Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(wirepool::http::router(pool.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! [`Routes`] moves the endpoints (`/healthz`, `/internal/metrics`, ...) or changes the
//! metric names' prefix.

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
    prefix: Option<String>,
}

impl Routes {
    /// The endpoints at `/health` and `/metrics`, metric names prefixed with the pool's
    /// `metrics_prefix`.
    pub fn new(pool: Pool) -> Routes {
        Routes {
            pool,
            health_path: "/health".to_string(),
            metrics_path: "/metrics".to_string(),
            prefix: None,
        }
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
    /// As axum's `Router::route`: when a path does not start with `/`, or both endpoints
    /// are given the same path.
    pub fn router(self) -> Router {
        let health_path = self.health_path.clone();
        let metrics_path = self.metrics_path.clone();
        let state = std::sync::Arc::new(self);
        Router::new()
            .route(&health_path, get(health))
            .route(&metrics_path, get(metrics))
            .with_state(state)
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
