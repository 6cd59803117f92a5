//! MCP over HTTP+SSE (the 2024-11-05 transport), beside streamable HTTP at `/mcp`: the
//! endpoint the monitoring guide points its clients at, `/sse`.
//!
//! - `GET /sse` opens a session: an event stream whose first event, `endpoint`, names the
//!   URL for the client's messages (`/messages?session_id=<id>`); the server's answers
//!   arrive on the stream as `message` events.
//! - `POST /messages?session_id=<id>` takes one JSON-RPC message: 202 once handed to the
//!   session, 404 for a session that does not exist (or whose stream has closed), 400 for a
//!   body that is not a JSON-RPC message.
//! - A session ends when its stream closes; its MCP service stops with it.
//!
//! The MCP library no longer ships this transport, so this is a thin layer on axum and an
//! rmcp [`Transport`] made of two channels. The same handler and the same Host and Origin
//! checks as `/mcp` apply.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{self, StreamExt};
use parking_lot::Mutex;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many messages may wait in a session, each way.
const QUEUE: usize = 64;

/// The open sessions: where to deliver each one's messages.
struct Sessions<S> {
    factory: Arc<dyn Fn() -> S + Send + Sync>,
    open: Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>,
    cancel: CancellationToken,
    cap: usize,
}

/// The routes `/sse` and `/messages`; `cancel` ends every session at shutdown, `cap`
/// bounds the sessions open at once.
pub(super) fn routes<S: ServerHandler + Send + Sync + 'static>(
    factory: Arc<dyn Fn() -> S + Send + Sync>,
    cancel: CancellationToken,
    cap: usize,
) -> Router {
    let sessions = Arc::new(Sessions {
        factory,
        open: Mutex::new(HashMap::new()),
        cancel,
        cap,
    });
    Router::new()
        .route("/sse", get(open_session))
        .route("/messages", post(message))
        .with_state(sessions)
}

/// A session id: 128 bits from the operating system's CSPRNG, in hex. Knowing one is what
/// lets a client post to a session, so it must not be guessable.
fn session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn open_session<S: ServerHandler + Send + Sync + 'static>(
    State(s): State<Arc<Sessions<S>>>,
) -> Response {
    if s.open.lock().len() >= s.cap {
        return too_many_sessions();
    }
    let Some(id) = session_id() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session id",
        )
            .into_response();
    };
    let (to_service, from_client) = mpsc::channel(QUEUE);
    let (to_client, from_service) = mpsc::channel::<TxJsonRpcMessage<RoleServer>>(QUEUE);
    s.open.lock().insert(id.clone(), to_service);
    let service_ends = CancellationToken::new();
    let transport = ChannelTransport {
        incoming: from_client,
        outgoing: to_client,
    };
    let handler = (s.factory)();
    let (shutdown, ends) = (s.cancel.clone(), service_ends.clone());
    tokio::spawn(async move {
        match handler.serve(transport).await {
            Ok(running) => {
                tokio::select! {
                    _ = running.waiting() => {}
                    _ = shutdown.cancelled() => {}
                    _ = ends.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::debug!(target: "wirepool::mcp", "SSE session ended before the handshake: {e}");
            }
        }
    });
    tracing::debug!(target: "wirepool::mcp", "SSE session opened");
    let guard = SessionGuard {
        sessions: s.clone(),
        id: id.clone(),
        service: service_ends,
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?session_id={id}"));
    let messages = stream::unfold((from_service, guard), |(mut rx, guard)| async move {
        let msg = rx.recv().await?;
        let event = match serde_json::to_string(&msg) {
            Ok(json) => Event::default().event("message").data(json),
            Err(e) => Event::default()
                .event("message")
                .comment(format!("unserializable: {e}")),
        };
        Some((event, (rx, guard)))
    });
    let events = stream::once(async move { endpoint })
        .chain(messages)
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Ends its session when the event stream is dropped (the client went away, or the
/// server is shutting down): no more messages are accepted, and the service stops.
struct SessionGuard<S> {
    sessions: Arc<Sessions<S>>,
    id: String,
    service: CancellationToken,
}

impl<S> Drop for SessionGuard<S> {
    fn drop(&mut self) {
        self.sessions.open.lock().remove(&self.id);
        self.service.cancel();
        tracing::debug!(target: "wirepool::mcp", "SSE session closed");
    }
}

#[derive(Debug, serde::Deserialize)]
struct SessionParam {
    session_id: Option<String>,
}

async fn message<S: ServerHandler + Send + Sync + 'static>(
    State(s): State<Arc<Sessions<S>>>,
    Query(q): Query<SessionParam>,
    body: Bytes,
) -> Response {
    let Some(id) = q.session_id else {
        return (StatusCode::BAD_REQUEST, "session_id is missing").into_response();
    };
    let Some(to_service) = s.open.lock().get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such session").into_response();
    };
    let msg: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a JSON-RPC message: {e}"),
            )
                .into_response()
        }
    };
    match to_service.send(msg).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "the session has ended").into_response(),
    }
}

/// An rmcp transport of two channels: messages POSTed for the session in, messages for
/// its event stream out.
struct ChannelTransport {
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleServer>>,
    outgoing: mpsc::Sender<TxJsonRpcMessage<RoleServer>>,
}

impl Transport<RoleServer> for ChannelTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.outgoing.clone();
        async move {
            out.send(item).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the event stream closed")
            })
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}

/// The answer to a request for a new MCP session past the cap.
pub(crate) fn too_many_sessions() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "10")],
        "too many MCP sessions are open; retry later",
    )
        .into_response()
}
