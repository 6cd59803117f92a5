//! The HTTP listener every endpoint runs on, hardened against clients that are slow, idle
//! or greedy, so that `/health` stays answerable while they try:
//!
//! - **Header-read timeout** ([`HEADER_READ_TIMEOUT`]): a client that does not send a whole
//!   request head in time is disconnected. It also bounds an idle keep-alive connection,
//!   whose next request head is awaited the same way.
//! - **Request bodies** are limited to [`BODY_LIMIT`] bytes (413 at once for a larger
//!   `Content-Length`; a longer body fails when it crosses the limit) and must arrive within
//!   [`BODY_READ_TIMEOUT`], on every route, whether the route reads the body through an
//!   extractor or (as MCP's streamable HTTP does) by itself.
//! - **Connections** are capped below the process's file-descriptor limit
//!   ([`connection_cap`]). A new connection over the cap takes the place of the oldest one
//!   that has no request in progress (a client still sending its request head, or idle
//!   between requests); if every connection is busy the new one is closed at once. The
//!   process never runs out of descriptors to `accept` with.
//!
//! HTTP/1.1 only (what MCP clients, Prometheus and probes speak).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a client may take to send a request head, and how long a keep-alive connection
/// may stay idle between requests.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body any route takes (MCP messages are a few KiB).
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// How long a client may take to send a request body.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Descriptors kept free of HTTP connections: the pool's own, log files, the listeners.
const RESERVED_DESCRIPTORS: usize = 64;

/// The most HTTP connections at once, whatever the descriptor limit.
const MAX_CONNECTIONS: usize = 4096;

/// How many HTTP connections may be open at once: the soft `RLIMIT_NOFILE` less what the
/// pool (`pool_size` connections) and the process need besides, between 16 and 4096.
pub(crate) fn connection_cap(pool_size: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live local.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    soft.saturating_sub(RESERVED_DESCRIPTORS + pool_size)
        .clamp(16, MAX_CONNECTIONS)
}

/// Serves `app` on `listener` until `cancel`, then lets requests in flight finish for up to
/// `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    cap: usize,
    cancel: CancellationToken,
    grace: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let registry = Arc::new(Registry::new(cap));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors despite the cap (another part of the process):
                    // wait for some to be freed rather than spin.
                    tracing::debug!(target: "wirepool_server::http", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let Some(slot) = registry.admit() else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        let busy = slot.busy.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            handle(app.clone(), BusyGuard::new(&busy), req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                // Its place was given to a newer connection: dropped, so closed.
                _ = slot.evict.notified() => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

/// One request: refused at once if its declared body is too large; otherwise its body is
/// bounded in size and time, and the connection counts as busy until the response body is
/// sent.
async fn handle(
    app: Router,
    busy: BusyGuard,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Ok(too_large());
    }
    let req = req.map(|body| Body::new(Bounded::new(body)));
    let res = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    Ok(res.map(|body| {
        Body::new(Tracked {
            inner: body,
            _busy: busy,
        })
    }))
}

fn too_large() -> Response<Body> {
    let mut r = Response::new(Body::from(format!("request body over {BODY_LIMIT} bytes")));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// The open connections in the order they were accepted.
struct Registry {
    cap: usize,
    inner: parking_lot::Mutex<Inner>,
}

struct Inner {
    next: u64,
    open: VecDeque<Entry>,
}

struct Entry {
    id: u64,
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

/// A connection's place in the registry; freed when dropped.
struct Slot {
    id: u64,
    registry: Arc<Registry>,
    /// Requests in progress on the connection (their responses not yet fully sent).
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

impl Registry {
    fn new(cap: usize) -> Registry {
        Registry {
            cap,
            inner: parking_lot::Mutex::new(Inner {
                next: 0,
                open: VecDeque::new(),
            }),
        }
    }

    /// A place for a new connection: at the cap, the oldest connection without a request in
    /// progress is evicted for it; `None` if every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut g = self.inner.lock();
        if g.open.len() >= self.cap {
            let idle = g
                .open
                .iter()
                .position(|e| e.busy.load(Ordering::Acquire) == 0)?;
            let e = g.open.remove(idle).expect("the position is in range");
            // Stored if its task is not waiting yet: it ends at its next poll.
            e.evict.notify_one();
        }
        g.next += 1;
        let id = g.next;
        let busy = Arc::new(AtomicUsize::new(0));
        let evict = Arc::new(Notify::new());
        g.open.push_back(Entry {
            id,
            busy: busy.clone(),
            evict: evict.clone(),
        });
        Some(Slot {
            id,
            registry: self.clone(),
            busy,
            evict,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.registry.inner.lock();
        if let Some(i) = g.open.iter().position(|e| e.id == self.id) {
            g.open.remove(i);
        }
    }
}

/// Counts one request in progress on its connection while it lives.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(busy: &Arc<AtomicUsize>) -> BusyGuard {
        busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(busy.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection counted as busy until it is sent (an SSE
/// stream for as long as it is open).
struct Tracked {
    inner: Body,
    _busy: BusyGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body held to [`BODY_LIMIT`] bytes and [`BODY_READ_TIMEOUT`].
struct Bounded {
    inner: hyper::body::Incoming,
    left: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Bounded {
    fn new(inner: hyper::body::Incoming) -> Bounded {
        Bounded {
            inner,
            left: BODY_LIMIT,
            deadline: Box::pin(tokio::time::sleep(BODY_READ_TIMEOUT)),
        }
    }
}

/// Why a request body was cut off.
#[derive(Debug)]
struct BodyRefused(&'static str);

impl std::fmt::Display for BodyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BodyRefused {}

impl http_body::Body for Bounded {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > self.left {
                        return Poll::Ready(Some(Err(Box::new(BodyRefused(
                            "request body over the limit",
                        )))));
                    }
                    self.left -= data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyRefused(
                    "request body not received in time",
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let r = Arc::new(Registry::new(2));
        let a = r.admit().unwrap();
        let b = r.admit().unwrap();
        a.busy.fetch_add(1, Ordering::AcqRel); // a request in progress on the oldest
        let c = r.admit().expect("b is idle: evicted for c");
        assert_eq!(r.inner.lock().open.len(), 2);
        // Both left are busy: a newcomer is refused.
        c.busy.fetch_add(1, Ordering::AcqRel);
        assert!(r.admit().is_none());
        drop(b);
        assert_eq!(r.inner.lock().open.len(), 2, "b was already gone");
        drop(a);
        assert!(r.admit().is_some());
    }

    #[test]
    fn the_cap_leaves_room_below_the_descriptor_limit() {
        let cap = connection_cap(10);
        assert!((16..=MAX_CONNECTIONS).contains(&cap), "{cap}");
    }
}
