//! Mounting an MCP handler on an axum router: streamable HTTP at `/mcp`, HTTP+SSE at
//! `/sse` and `/messages`, both behind the Host/Origin guard and a cap on open sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServerHandler;
use tokio_util::sync::CancellationToken;

use super::sse;
use crate::http::guard::{self, Allowed};

/// The most MCP sessions open at once by default, per transport. A session costs some
/// 50 KB; a client that opens sessions without end gets 503 past this.
pub(crate) const DEFAULT_SESSION_CAP: usize = 256;

/// A streamable-HTTP session unused this long is closed (rmcp's default is 300 s).
const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(60);

type Factory<S> = Arc<dyn Fn() -> S + Send + Sync>;

/// An MCP handler's HTTP routes: streamable HTTP (`/mcp`, the current transport) and
/// HTTP+SSE (`GET /sse` opens a session, `POST /messages?session_id=..` carries the
/// client's messages; the 2024-11-05 transport, for older clients).
///
/// Both accept a request only when its `Host` names an allowed host (loopback by default:
/// `localhost`, `127.0.0.1`, `::1`; more with [`allow_hosts`](McpRoutes::allow_hosts)), and,
/// when it carries an `Origin` (a browser's), only from an allowed host too; otherwise
/// 403. This is the MCP transport specification's guard against DNS rebinding. An entry
/// `name` allows that host on any port, `name:port` that port only.
///
/// Each session gets its own handler from the factory.
pub struct McpRoutes<S> {
    factory: Factory<S>,
    hosts: Vec<String>,
    cancel: CancellationToken,
    session_cap: usize,
    session_idle: Duration,
}

impl<S> std::fmt::Debug for McpRoutes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpRoutes")
            .field("hosts", &self.hosts)
            .field("session_cap", &self.session_cap)
            .field("session_idle", &self.session_idle)
            .finish()
    }
}

impl<S: ServerHandler + Send + Sync + 'static> McpRoutes<S> {
    /// Routes serving a handler made by `factory` for each session.
    pub fn new(factory: impl Fn() -> S + Send + Sync + 'static) -> Self {
        McpRoutes {
            factory: Arc::new(factory),
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            cancel: CancellationToken::new(),
            session_cap: DEFAULT_SESSION_CAP,
            session_idle: DEFAULT_SESSION_IDLE,
        }
    }

    /// Also accepts these hosts (`name` or `name:port`) besides loopback: the names the
    /// server is reached by.
    pub fn allow_hosts<I: IntoIterator<Item = T>, T: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Ends every session when `token` is cancelled (at shutdown: an open event stream
    /// would otherwise keep a graceful HTTP shutdown waiting).
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The most sessions open at once per transport (256 by default); a request for one
    /// more gets 503 with `Retry-After`.
    pub fn session_cap(mut self, cap: usize) -> Self {
        self.session_cap = cap;
        self
    }

    /// A streamable-HTTP session unused this long is closed (60 s by default).
    pub fn session_idle(mut self, idle: Duration) -> Self {
        self.session_idle = idle;
        self
    }

    /// The router: `/mcp`, `/sse` and `/messages`, to `merge` into the application's.
    pub fn router(self) -> Router {
        let allowed = Allowed::new(&self.hosts);
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(self.hosts.clone())
            .with_cancellation_token(self.cancel.clone());
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(self.session_idle);
        let manager = Arc::new(manager);
        let factory = self.factory.clone();
        let service = StreamableHttpService::new(move || Ok(factory()), manager.clone(), config);
        let cap = SessionCap {
            manager,
            cap: self.session_cap,
        };
        Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(cap, cap_new_sessions))
            .merge(sse::routes(self.factory, self.cancel, self.session_cap))
            .layer(axum::middleware::from_fn_with_state(allowed, guard::check))
    }
}

#[derive(Clone)]
struct SessionCap {
    manager: Arc<LocalSessionManager>,
    cap: usize,
}

/// Refuses a request that would open a new streamable-HTTP session (one without an
/// `Mcp-Session-Id`) while the cap's number of sessions are open.
async fn cap_new_sessions(
    State(cap): State<SessionCap>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let opens =
        req.method() == axum::http::Method::POST && !req.headers().contains_key("mcp-session-id");
    if opens {
        let open = match cap.manager.sessions.try_read() {
            Ok(s) => s.len(),
            Err(_) => 0,
        };
        if open >= cap.cap {
            return sse::too_many_sessions();
        }
    }
    next.run(req).await
}
