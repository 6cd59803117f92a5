//! The pool's health and statistics as MCP resources, for an
//! [rmcp](https://docs.rs/rmcp) server (feature `mcp`).
//!
//! | URI | MIME type | content |
//! |---|---|---|
//! | `health://connection-pool` | `application/json` | the health report (its JSON schema) |
//! | `statistics://connection-pool` | `application/json` | every statistic of the pool |
//!
//! Both are read from the pool's cached state: reading them sends nothing to the database.
//!
//! [`PoolResources`] is a whole rmcp [`ServerHandler`] (resources only), or a part of an
//! application's own handler: its [`list`](PoolResources::list) and
//! [`read`](PoolResources::read) answer the resource requests, and the application keeps
//! its tools. [`McpRoutes`] mounts a handler on an axum router over streamable HTTP
//! (`/mcp`) and HTTP+SSE (`/sse`, `/messages`), behind a Host/Origin guard against DNS
//! rebinding.
//!
//! ```no_run
//! use rmcp::model::*;
//! use rmcp::service::RequestContext;
//! use rmcp::{ErrorData, RoleServer, ServerHandler};
//! use wirepool::mcp::{McpRoutes, PoolResources};
//!
//! /// An application's handler: its own tools, and the pool's resources beside them.
//! #[derive(Clone)]
//! struct App {
//!     resources: PoolResources,
//! }
//!
//! impl ServerHandler for App {
//!     fn get_info(&self) -> ServerInfo {
//!         ServerInfo::new(ServerCapabilities::builder().enable_resources().enable_tools().build())
//!     }
//!
//!     async fn list_resources(
//!         &self,
//!         _: Option<PaginatedRequestParams>,
//!         _: RequestContext<RoleServer>,
//!     ) -> Result<ListResourcesResult, ErrorData> {
//!         Ok(ListResourcesResult::with_all_items(self.resources.list()))
//!     }
//!
//!     async fn read_resource(
//!         &self,
//!         request: ReadResourceRequestParams,
//!         _: RequestContext<RoleServer>,
//!     ) -> Result<ReadResourceResult, ErrorData> {
//!         self.resources
//!             .read(&request.uri)
//!             .ok_or_else(|| ErrorData::resource_not_found(request.uri.clone(), None))
//!     }
//! }
//!
//! # async fn f(pool: wirepool::Pool) {
//! let resources = PoolResources::new(pool.clone());
//! let app = axum::Router::new()
//!     .merge(wirepool::http::router(pool))
//!     .merge(McpRoutes::new(move || App { resources: resources.clone() }).router());
//! # let _ = app;
//! # }
//! ```

mod routes;
mod sse;

use rmcp::model::{
    Implementation, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResult, Resource, ResourceContents, ServerCapabilities, ServerInfo,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

pub use routes::McpRoutes;

use crate::pool::Pool;

/// The health resource's URI.
pub const HEALTH_URI: &str = "health://connection-pool";
/// The statistics resource's URI.
pub const STATISTICS_URI: &str = "statistics://connection-pool";

/// The pool's resources: an rmcp [`ServerHandler`] of its own, or a part of another.
#[derive(Debug, Clone)]
pub struct PoolResources {
    pool: Pool,
}

impl PoolResources {
    /// The resources of `pool`.
    pub fn new(pool: Pool) -> Self {
        PoolResources { pool }
    }

    /// The resources, for a `resources/list` answer.
    pub fn list(&self) -> Vec<Resource> {
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
                    "Every statistic of the pool: counts, acquisition and use times and \
                     quantiles, peaks, acquisitions and releases, closes by reason, errors \
                     by type, leaks detected, reconnect attempts.",
                )
                .with_mime_type("application/json"),
        ]
    }

    /// The resource at `uri`, for a `resources/read` answer; `None` when `uri` is not one
    /// of the pool's (so an application's handler goes on to its own).
    pub fn read(&self, uri: &str) -> Option<ReadResourceResult> {
        let text = match uri {
            HEALTH_URI => self.pool.health().to_json(),
            STATISTICS_URI => self.pool.statistics().to_json(),
            _ => return None,
        };
        Some(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )
        .with_mime_type("application/json")]))
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
        Ok(ListResourcesResult::with_all_items(self.list()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        self.read(&request.uri).ok_or_else(|| {
            ErrorData::resource_not_found(
                format!(
                    "no resource {:?}; this server has {HEALTH_URI} and {STATISTICS_URI}",
                    request.uri
                ),
                None,
            )
        })
    }
}
