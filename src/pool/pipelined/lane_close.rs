//! The end of the shared path at `close()`, and the CancelRequest a lane sends for
//! statements whose callers left.
//!
//! # Close
//!
//! At `close()` the lanes take no new statement (callers get `PoolClosed`, with
//! [`Error::may_have_run`](crate::Error::may_have_run) `Some(false)`) and finish what was
//! placed on them. When the drain timeout passes with a lane still serving, the pool
//! aborts the lanes: each fails its callers (`Some(true)` for a statement sent and not
//! answered, `Some(false)` for one not sent), closes its connection at once (a TCP reset,
//! so that the server cannot write more answers and ends the session at its next write),
//! and sends a CancelRequest for the statement the server runs. `close()` returns once
//! every lane has done so.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::conn::{CancelToken, Connection};
use crate::error::Error;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// How long an aborted lane waits for the delivery of its CancelRequest.
const ABORT_CANCEL_BOUND: Duration = Duration::from_secs(1);

/// The lanes' part of `close()`: how many lane tasks run, and the signal to abort them.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    running: AtomicUsize,
    aborted: AtomicBool,
    /// Woken when the abort starts, and when the last lane task ends.
    changed: Notify,
}

impl Lanes {
    /// A lane task starts; `done` must follow when it ends.
    pub(super) fn started(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// A lane task ended.
    pub(super) fn done(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_waiters();
        }
    }

    /// How many lane tasks run.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    pub(super) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Resolves once the lanes are aborted (at once if they are).
    pub(super) async fn until_aborted(&self) {
        loop {
            let n = self.changed.notified();
            if self.is_aborted() {
                return;
            }
            n.await;
        }
    }

    /// The drain timeout passed: every lane fails its callers and closes its connection.
    /// Returns once no lane task runs, or after `bound` (a backstop: an aborted lane ends
    /// within about `ABORT_CANCEL_BOUND`).
    pub(crate) async fn abort(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let n = self.changed.notified();
            if !self.aborted.swap(true, Ordering::AcqRel) {
                self.changed.notify_waiters();
            }
            if self.running() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), n).await.is_err() {
                return;
            }
        }
    }
}

/// The error of the callers of an aborted lane (their own says whether their statement
/// was sent).
pub(super) fn aborted() -> Error {
    Error::pool_closed().with_detail(
        "the pool closed and its drain timeout passed before the statement was answered",
    )
}

/// Closes an aborted lane's connection at once: a reset, not a goodbye, so that the
/// server's next write fails and its session ends; returns the token to cancel what it
/// runs, if anything was in flight.
pub(super) fn reset_connection(conn: &mut Connection, in_flight: bool) -> Option<CancelToken> {
    conn.reset_on_drop();
    conn.mark_broken();
    in_flight.then(|| conn.cancel_token())
}

/// Sends the CancelRequest of an aborted lane, once its connection is closed.
pub(super) async fn cancel_after_abort(token: CancelToken) {
    if let Ok(Err(e)) = tokio::time::timeout(ABORT_CANCEL_BOUND, token.cancel()).await {
        tracing::debug!(target: "wirepool::pool", "cancel of a statement in flight at close failed: {e}");
    }
}

/// Runs `f` unless the lanes are aborted first (`None` then).
pub(super) async fn unless_aborted<T>(lanes: &Lanes, f: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = f => Some(r),
        () = lanes.until_aborted() => None,
    }
}

/// A CancelRequest on its way (see the module docs of `lane.rs`).
pub(super) struct Cancel {
    /// When the statements in flight last made progress (one was answered).
    pub(super) progress: Instant,
    /// How many were in flight then.
    pub(super) left: usize,
    /// When this cancel was seen delivered.
    pub(super) delivered_at: Option<Instant>,
    done: Arc<AtomicUsize>,
}

/// How long after a delivered cancel the next abandoned statement is cancelled in turn.
pub(super) const RECANCEL: Duration = Duration::from_millis(50);

const CANCEL_PENDING: usize = 0;
const CANCEL_DELIVERED: usize = 1;
/// The cancel may still arrive later, when another statement runs: the connection is not
/// used again.
const CANCEL_FAILED: usize = 2;

impl Cancel {
    pub(super) fn start(conn: &Connection, progress: Instant, left: usize) -> Cancel {
        let token = conn.cancel_token();
        let done = Arc::new(AtomicUsize::new(CANCEL_PENDING));
        let d = done.clone();
        tokio::spawn(async move {
            let r = match token.cancel().await {
                Ok(()) => CANCEL_DELIVERED,
                Err(e) => {
                    tracing::debug!(target: "wirepool::pool", "cancel of abandoned pipelined statements failed: {e}");
                    CANCEL_FAILED
                }
            };
            d.store(r, Ordering::Release);
        });
        Cancel {
            progress,
            left,
            delivered_at: None,
            done,
        }
    }

    /// When the lane's task must look at this cancel again.
    pub(super) fn next_check(&self) -> Instant {
        let give_up = self.progress + crate::conn::CANCEL_GRACE;
        match self.delivered_at {
            Some(at) => give_up.min(at + RECANCEL),
            None => give_up.min(Instant::now() + RECANCEL),
        }
    }

    /// The server has closed the cancel connection: the signal is delivered (what it hit
    /// was one of the abandoned statements, or nothing).
    pub(super) fn finished(&self) -> Option<bool> {
        match self.done.load(Ordering::Acquire) {
            CANCEL_PENDING => None,
            r => Some(r == CANCEL_DELIVERED),
        }
    }
}
