//! A lane: one of the pool's connections serving the shared path (`pool.query` and the
//! rest) with many statements in flight. Callers write their requests into the lane's
//! queue (each one Bind/Execute/Sync, Parse first where the connection has not prepared
//! the statement); the lane's own task sends them, together once the server is on the
//! last one it was sent ([`SEND_AT_IN_FLIGHT`]), and reads the answers in order, handing
//! each to its caller. Every lane writes its own queue: no loop is shared between
//! connections.
//!
//! # Cancellation
//!
//! A caller that leaves (its future dropped, its command timeout) never costs another
//! caller its answer:
//! - a request not yet sent is not sent (unless it prepares a statement that later
//!   requests use; then it is sent and its answer discarded);
//! - a request sent is left to finish and its answer discarded. Until it has, the lane
//!   takes no new request: a caller usually leaves because its statement is slow, and one
//!   placed behind it would wait as long;
//! - a CancelRequest ends
//!   whatever the backend runs when it arrives, so one is sent only when every request in
//!   flight on the connection was abandoned, and nothing more is written until all of their
//!   answers are in and the cancel has been delivered; what it then hits is one of them or
//!   nothing (a backend between statements ignores a cancel).
//!
//! # Failure
//!
//! When the connection is lost, each request sent and not answered fails with
//! [`Error::may_have_run`] `Some(true)`, each request not sent with `Some(false)`. Nothing
//! is resent. So does each when the pool's drain timeout passes at `close()` (see
//! `lane_close.rs`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::Notify;

use super::lane_close::Lanes;
use super::lane_close::{self, Cancel, RECANCEL};
use super::lane_plan::Plans;
use super::lane_plan::{self, changes_names};
use super::lane_watch::Answer;
use super::lane_watch::{Judged, Watch};
use crate::conn::{Assembler, Connection, Fed, Outcome, PipelineNames};
use crate::error::{Error, Result};
use crate::pool::PooledConnection;
use crate::pool::Shared;
use crate::pool_core::reply::{Left, Reply};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};

/// How long a lane with nothing to do keeps its connection before it goes back to the
/// pool (at once when the pool is closing, or a caller waits in `acquire()` for it).
const LINGER: Duration = Duration::from_millis(20);

/// The lane sends what callers queued once no more than this many of its requests are
/// still in flight: when the server starts on the last statement it has. Until then the
/// statements queue in the client, where they would have waited behind the same ones in
/// the server (a connection runs its statements in order), and go out together: one write
/// and one wake-up of the server for many statements instead of one each. With a statement
/// per Sync, the server's wake-ups are what the path's throughput is bound by (see
/// docs/benchmarks.md). A lane with nothing in flight sends at once, and so does one that
/// drains to give its connection back (a caller of `acquire()` waits for it).
const SEND_AT_IN_FLIGHT: usize = 1;

/// A lane's `depth` once it retired: no request can be placed on it any more.
const RETIRED: usize = usize::MAX / 2;

/// A request's answer, on its way to its caller.
pub(super) struct Entry {
    reply: Arc<Reply<Answer>>,
    assembler: Assembler,
    plans: Plans,
    /// The statement's text, for the log when the server says it changed the session.
    sql: Arc<str>,
    /// The session reset the lane sent after a statement (no caller waits for it).
    reset: bool,
    /// The caller's span, where the server's notices about the request are logged (none
    /// when nothing sees the statement's span).
    span: tracing::Span,
    /// Where its bytes are in the queue's buffer.
    start: usize,
    end: usize,
}

/// What callers queued and the lane's task has not taken yet.
pub(super) struct Queue {
    pub(super) out: BytesMut,
    entries: Vec<Entry>,
    /// The connection's statement names (taken from it for the lane's life).
    pub(super) names: PipelineNames,
    /// Names to close with the next request (forgotten because stale).
    pub(super) to_close: Vec<Arc<str>>,
    /// The lane is gone: nothing more is taken; callers place their requests elsewhere.
    closed: bool,
    /// What the pool's connect hooks set, for the session reset to apply again.
    restore: Option<Arc<str>>,
    /// How the reset ends a replication origin the session set up.
    origin: crate::conn::OriginEnd,
    /// How the reset closes dblink's named connections, where the database has dblink.
    dblink: Option<Arc<str>>,
    /// This lane wrote the session reset's Parse, or the connection had it (the
    /// connection's own flag, `names.reset_parsed`, is set only once a reset answered).
    reset_written: bool,
}

impl Queue {
    /// Queues the session reset (no caller waits for its answer).
    fn push_reset(&mut self, sql: &Arc<str>, named: bool) {
        let start = self.out.len();
        super::lane_watch::write_reset(
            &mut self.out,
            self.restore.as_deref(),
            self.origin,
            self.dblink.as_deref(),
            self.reset_written,
            named,
        );
        self.reset_written = named;
        let end = self.out.len();
        self.entries.push(Entry {
            reply: Arc::new(Reply::new()),
            assembler: Assembler::reset(),
            plans: Plans::default(),
            sql: sql.clone(),
            reset: true,
            span: tracing::Span::none(),
            start,
            end,
        });
    }
}

/// One connection of the shared path.
pub(crate) struct Lane {
    pub(super) queue: Mutex<Queue>,
    /// Wakes the lane's task: a request queued, or a caller left.
    work: Notify,
    /// Requests placed on the lane and not answered yet.
    pub(super) depth: AtomicUsize,
    /// New requests may be placed here (false while a cancel is under way, or once the
    /// lane drains to give its connection back).
    pub(super) accepting: AtomicBool,
    /// Requests whose callers left and that are still on the lane (queued or in flight):
    /// while there are any, no new request is placed here (see the module docs).
    abandoned: AtomicUsize,
    /// The connection's server and database, the key of the pool's type cache.
    pub(super) type_scope: Arc<str>,
    /// Named statements kept per connection (the statement cache's capacity).
    pub(super) capacity: usize,
    /// Where its statements run, for their spans and the metrics sink.
    pub(super) target: Arc<crate::conn::Target>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .field("accepting", &self.accepting.load(Ordering::Relaxed))
            .field("abandoned", &self.abandoned.load(Ordering::Relaxed))
            .finish()
    }
}

/// The caller's side of a queued request.
pub(super) struct Pending {
    reply: Arc<Reply<Answer>>,
    lane: Arc<Lane>,
    done: bool,
}

impl Future for Pending {
    type Output = Answer;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let r = self.reply.poll_take(cx);
        if r.is_ready() {
            self.done = true;
        }
        r
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done && matches!(self.reply.abandon(), Left::Early) {
            // Counted before anyone else can be placed behind it; the lane's task decides
            // whether to skip, discard or cancel it.
            self.lane.abandoned.fetch_add(1, Ordering::AcqRel);
            self.lane.work.notify_one();
        }
    }
}

impl Lane {
    pub(super) fn new(conn: &mut Connection, capacity: usize) -> Lane {
        let names = conn.take_pipeline_names();
        Lane {
            queue: Mutex::new(Queue {
                out: BytesMut::with_capacity(4096),
                entries: Vec::new(),
                reset_written: names.reset_parsed,
                names,
                to_close: Vec::new(),
                closed: false,
                restore: conn.session_restore(),
                origin: conn.origin_end(),
                dblink: conn.dblink_close().cloned(),
            }),
            work: Notify::new(),
            depth: AtomicUsize::new(0),
            accepting: AtomicBool::new(true),
            abandoned: AtomicUsize::new(0),
            type_scope: conn.type_scope(),
            target: Arc::new(conn.trace_target()),
            capacity,
        }
    }

    /// Whether new requests may be placed here: it accepts them, and holds none whose
    /// caller left.
    #[inline]
    pub(super) fn open(&self) -> bool {
        self.accepting.load(Ordering::Acquire) && self.abandoned.load(Ordering::Acquire) == 0
    }

    /// Takes one more request if the lane is [open](Lane::open) and has room under `max`.
    #[inline]
    pub(super) fn try_reserve(&self, max: usize) -> bool {
        if !self.open() {
            return false;
        }
        let mut d = self.depth.load(Ordering::Relaxed);
        loop {
            if d >= max {
                return false;
            }
            match self
                .depth
                .compare_exchange_weak(d, d + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => d = now,
            }
        }
    }

    /// Queues a request whose bytes `write` appends (on the caller's reservation), with
    /// the assembler of its answer. On an error from `write` (a value that does not
    /// convert) nothing is queued.
    ///
    /// With `reset_after`, the session reset follows the request (see `lane_watch.rs`), in
    /// the same write: the statement was not proven to leave the session alone. The
    /// server's notices about the request are logged in `span`.
    pub(super) fn enqueue(
        self: &Arc<Self>,
        sql: &Arc<str>,
        reset_after: bool,
        span: tracing::Span,
        write: impl FnOnce(&mut Queue) -> Result<(Assembler, Plans)>,
    ) -> Result<Pending> {
        let reply = Arc::new(Reply::new());
        {
            let mut q = self.queue.lock();
            if q.closed {
                return Err(Error::closed(
                    "the statement was not sent: its connection left the shared path",
                )
                .with_sent(false));
            }
            let mark = (q.out.len(), q.entries.len());
            let start = q.out.len();
            let (assembler, plans) = match write(&mut q) {
                Ok(x) => x,
                Err(e) => {
                    q.out.truncate(mark.0);
                    q.entries.truncate(mark.1);
                    return Err(e);
                }
            };
            let end = q.out.len();
            q.entries.push(Entry {
                reply: reply.clone(),
                assembler,
                plans,
                sql: sql.clone(),
                reset: false,
                span,
                start,
                end,
            });
            if reset_after {
                q.push_reset(sql, self.capacity > 0);
            }
        }
        self.work.notify_one();
        Ok(Pending {
            reply,
            lane: self.clone(),
            done: false,
        })
    }
}

/// What a lane needs of the path that places requests on it (the pool's shared path): each
/// request's slot given back as its answer goes out, room announced, the drain it may be
/// asked for, its end. The lane owns its queue and its count of requests; the path owns
/// who waits for room.
pub(super) trait Placer: Send + Sync + 'static {
    /// A request on `lane` is over (answered, skipped or failed): its slot goes to the
    /// oldest caller waiting for room, or back to the lane.
    fn release(&self, lane: &Arc<Lane>);
    /// `lane` takes requests again.
    fn lane_has_room(&self, lane: &Arc<Lane>);
    /// The server said a statement changed the session.
    fn count_session_change(&self);
    /// Whether a busy lane should stop taking requests and drain (at most one at a time).
    fn should_drain(&self, shared: &Shared) -> bool;
    /// Whether an idle lane should give its connection back now.
    fn should_release(&self, shared: &Shared) -> bool;
    /// The lane that drained is done.
    fn drained(&self);
    /// The lane's task ended: it takes no more requests.
    fn remove_lane(&self, lane: &Arc<Lane>);
    /// A lane ended: callers still waiting for room ask for another.
    fn open_lane_for_waiters(self: &Arc<Self>, shared: &Arc<Shared>);
    /// The lanes' tasks, and their abort at close.
    fn lane_tasks(&self) -> &Lanes;
}

/// The lane's task: sends what is queued, reads the answers, until the lane retires (the
/// connection then goes back to the pool) or its connection is lost.
pub(super) async fn run<P: Placer>(lane: Arc<Lane>, mut guard: PooledConnection, path: Arc<P>) {
    let shared = guard.shared().clone();
    let mut inflight: VecDeque<Entry> = VecDeque::new();
    let mut cancel: Option<Cancel> = None;
    let mut idle_since: Option<Instant> = None;
    // Taking no more statements, to give the connection back (the pool closes, or a caller
    // of acquire() waits); `holds_drain`: as the one lane that drains for such a caller.
    let mut draining = false;
    let mut holds_drain = false;
    let mut watch = Watch::default();
    let conn: &mut Connection = &mut guard;
    // A session changed before the lane took the connection (the pool's policy is to
    // reset never) is the policy's; only what happens on the lane is the watch's.
    let changed_before = conn.server_saw_session_change();
    // The pool's drain timeout passed at close: the lane fails its callers and ends.
    let mut aborted = false;
    let failure = loop {
        if path.lane_tasks().is_aborted() {
            aborted = true;
            break lane_close::aborted();
        }
        if !draining {
            if shared.closing.load(Ordering::Acquire) {
                draining = true;
            } else if path.should_drain(&shared) {
                draining = true;
                holds_drain = true;
            }
            if draining {
                lane.accepting.store(false, Ordering::Release);
            }
        }
        // Before the answers read since the last turn are handed out: the callers those
        // answers wake queue their next statements meanwhile, and go out together with
        // them at the next turn (taking right after the answers, before those callers ran,
        // sent smaller writes: 93-96k statements/s against 113-117k in the benchmark).
        // A draining lane holds nothing back: its connection is wanted as soon as what was
        // placed on it is answered.
        if cancel.is_none()
            && watch.takes_requests()
            && (draining || inflight.len() <= SEND_AT_IN_FLIGHT)
        {
            take(&lane, conn, &mut inflight, &*path);
        }
        if let Err(e) = dispatch(
            &lane,
            conn,
            &mut inflight,
            &*path,
            &mut watch,
            changed_before,
        ) {
            break e;
        }
        if !watch.takes_requests() {
            lane.accepting.store(false, Ordering::Release);
            if inflight.is_empty() && cancel.is_none() {
                if watch.in_transaction() {
                    // Every statement that ran inside the transaction has answered.
                    match lane_close::unless_aborted(path.lane_tasks(), roll_back(conn)).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => break e,
                        None => {
                            aborted = true;
                            break lane_close::aborted();
                        }
                    }
                    watch.rolled_back();
                    settle(&lane, watch.take_undelivered(), &*path);
                }
                if watch.session_changed() {
                    // Reset before anyone uses it again; what was queued behind (not sent)
                    // fails as not run, and its callers may try again on another lane.
                    conn.demand_reset();
                    if retire(&lane) {
                        break Error::pool_closed();
                    }
                    break Error::closed(
                        "its connection left the shared path: a statement before it changed the session",
                    );
                } else if !draining {
                    lane.accepting.store(true, Ordering::Release);
                    path.lane_has_room(&lane);
                }
                continue;
            }
        }
        if let Some(c) = &mut cancel {
            if inflight.len() < c.left {
                c.left = inflight.len();
                c.progress = Instant::now();
            }
            match c.finished() {
                Some(true) if inflight.is_empty() => {
                    cancel = None;
                    if !draining {
                        lane.accepting.store(true, Ordering::Release);
                        path.lane_has_room(&lane);
                    }
                    continue;
                }
                Some(false) if inflight.is_empty() => {
                    conn.mark_broken();
                    break Error::closed("a cancel of abandoned statements was not confirmed");
                }
                Some(true) => {
                    // The cancel hit one abandoned statement (or fell between two); the next
                    // one runs now, abandoned too: cancelled in its turn.
                    let at = *c.delivered_at.get_or_insert_with(Instant::now);
                    if at.elapsed() >= RECANCEL {
                        *c = Cancel::start(conn, c.progress, inflight.len());
                    }
                }
                _ => {}
            }
            if c.progress.elapsed() > crate::conn::CANCEL_GRACE {
                conn.mark_broken();
                break Error::closed(
                    "a cancelled statement did not end; the connection was closed",
                );
            }
        } else if inflight.iter().any(|e| !e.reset)
            && inflight.iter().all(|e| e.reset || e.reply.is_abandoned())
        {
            // Everything in flight is abandoned: a cancel can only hit one of them.
            lane.accepting.store(false, Ordering::Release);
            cancel = Some(Cancel::start(conn, Instant::now(), inflight.len()));
            continue;
        }
        let idle = inflight.is_empty() && conn.pipeline_out().is_empty() && cancel.is_none();
        if idle {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if (draining || path.should_release(&shared) || since.elapsed() >= LINGER)
                && retire(&lane)
            {
                break Error::pool_closed();
            }
            tokio::select! {
                _ = lane.work.notified() => tokio::task::yield_now().await,
                _ = tokio::time::sleep(LINGER) => {}
                () = path.lane_tasks().until_aborted() => {}
            }
            continue;
        }
        idle_since = None;
        let grace = async {
            match &cancel {
                Some(c) => tokio::time::sleep_until(c.next_check().into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = std::future::poll_fn(|cx| conn.poll_pipeline(cx)) => {
                if let Err(e) = r {
                    break e;
                }
            }
            _ = lane.work.notified() => {
                // Callers whose answers just came are queueing their next statements: let
                // them, so that they go out in one write (and the server reads them in one).
                tokio::task::yield_now().await;
            }
            _ = grace => {}
            () = path.lane_tasks().until_aborted() => {}
        }
    };
    let retired = !aborted && failure.kind() == crate::ErrorKind::PoolClosed && inflight.is_empty();
    // Closed at once; the statement the server runs is cancelled once it is.
    let cancel_token = aborted
        .then(|| lane_close::reset_connection(conn, !inflight.is_empty()))
        .flatten();
    if !retired {
        tracing::debug!(target: "wirepool::pool", "a lane of the shared path ended: {failure}");
        watch.abandon(|| lost(&failure, true));
        settle(&lane, watch.take_undelivered(), &*path);
        fail(&lane, &mut inflight, &*path, &failure);
    }
    let names = std::mem::take(&mut lane.queue.lock().names);
    conn.restore_pipeline_names(names);
    path.remove_lane(&lane);
    if holds_drain {
        path.drained();
    }
    drop(guard);
    // Callers waiting for room on this lane (it stopped taking statements: a drain, a
    // changed session) ask for a lane of their own, at their turn in the pool's queue.
    path.open_lane_for_waiters(&shared);
    if let Some(token) = cancel_token {
        lane_close::cancel_after_abort(token).await;
    }
    path.lane_tasks().done();
}

/// Moves what callers queued into the connection's write buffer (leaving out requests
/// whose callers left before they were sent) and their entries in flight.
fn take(
    lane: &Arc<Lane>,
    conn: &mut Connection,
    inflight: &mut VecDeque<Entry>,
    path: &impl Placer,
) {
    let mut q = lane.queue.lock();
    if q.entries.is_empty() {
        return;
    }
    let entries = std::mem::take(&mut q.entries);
    // A request whose caller left is not sent, unless a later one runs the statement it
    // prepares.
    let skip: Vec<bool> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.reply.is_abandoned()
                && e.plans.iter().all(|p| match &p.prepares {
                    None => true,
                    Some((_, name)) => !entries[i + 1..].iter().any(|l| l.plans.uses(name)),
                })
        })
        .collect();
    let out = conn.pipeline_out();
    if !skip.contains(&true) {
        if out.is_empty() {
            std::mem::swap(out, &mut q.out);
        } else {
            out.extend_from_slice(&q.out);
            q.out.clear();
        }
        drop(q);
        inflight.extend(entries);
        return;
    }
    let mut skipped = 0;
    for (e, &s) in entries.iter().zip(&skip) {
        if s {
            skipped += 1;
            for (sql, name) in e.plans.iter().filter_map(|p| p.prepares.as_ref()) {
                // Never parsed.
                q.names.forget(sql, name);
            }
        } else {
            out.extend_from_slice(&q.out[e.start..e.end]);
        }
    }
    q.out.clear();
    drop(q);
    inflight.extend(
        entries
            .into_iter()
            .zip(skip)
            .filter(|(_, s)| !s)
            .map(|(e, _)| e),
    );
    for _ in 0..skipped {
        path.release(lane);
    }
    settle(lane, skipped, path);
}

/// `n` requests whose callers left are off the lane: once none is left, it takes new ones.
fn settle(lane: &Arc<Lane>, n: usize, path: &impl Placer) {
    if n > 0 && lane.abandoned.fetch_sub(n, Ordering::AcqRel) == n {
        path.lane_has_room(lane);
    }
}

/// Hands every whole answer read so far to its caller.
fn dispatch(
    lane: &Arc<Lane>,
    conn: &mut Connection,
    inflight: &mut VecDeque<Entry>,
    path: &impl Placer,
    watch: &mut Watch,
    changed_before: bool,
) -> Result<()> {
    while let Some(msg) = conn.pipeline_message()? {
        let Some(front) = inflight.front_mut() else {
            conn.unrequested(msg)?;
            continue;
        };
        let ready = crate::conn::ends_request(&msg);
        match front.assembler.feed(msg) {
            Ok(Fed::Continue) => {}
            Ok(Fed::Notice(n)) => {
                // In its caller's span, as a checked-out connection's notice is.
                let _in_span = front.span.enter();
                conn.notice(&n);
            }
            Ok(Fed::Done(outcome)) => {
                let e = inflight.pop_front().expect("the front entry");
                if e.reset {
                    {
                        let mut q = lane.queue.lock();
                        let ok = matches!(&outcome, Outcome::Reset { error: None });
                        // Once a reset answered, the connection has its statements; after
                        // one failed, the next prepares them again (after a Close).
                        q.names.reset_parsed = ok && q.reset_written;
                        q.reset_written &= ok;
                    }
                    if watch.reset_done(&outcome, &e.sql) {
                        path.count_session_change();
                        lane.accepting.store(false, Ordering::Release);
                    } else if !watch.session_changed() && !changed_before {
                        // What the reset itself reported (settings put back) is no change.
                        conn.session_was_reset();
                    }
                    if ready {
                        conn.pipeline_check()?;
                    }
                    continue;
                }
                if changes_names(&e.plans, &outcome) {
                    let mut q = lane.queue.lock();
                    let q = &mut *q;
                    lane_plan::apply(&mut q.names, &mut q.to_close, &e.plans, &outcome);
                }
                let changed = (!changed_before
                    && !watch.session_changed()
                    && conn.server_saw_session_change())
                .then(|| conn.last_reported_setting().unwrap_or("a command tag"));
                if changed.is_some() {
                    path.count_session_change();
                }
                let was_open = watch.in_transaction();
                let judged = watch.judge(
                    &e.sql,
                    &e.reply,
                    outcome,
                    conn.transaction_status(),
                    changed,
                );
                if !was_open && watch.in_transaction() {
                    path.count_session_change();
                }
                if !watch.takes_requests() {
                    lane.accepting.store(false, Ordering::Release);
                }
                path.release(lane);
                match judged {
                    Judged::Deliver(answer) => {
                        if !e.reply.complete(answer) {
                            settle(lane, 1, path);
                        }
                    }
                    Judged::Held => {}
                }
                settle(lane, watch.take_undelivered(), path);
                if ready {
                    conn.pipeline_check()?;
                }
            }
            Err(e) => {
                conn.mark_broken();
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Rolls back the transaction a statement left open, once every answer is in.
async fn roll_back(conn: &mut Connection) -> Result<()> {
    let r = tokio::time::timeout(
        crate::conn::CANCEL_GRACE,
        conn.simple_query_untraced("ROLLBACK"),
    )
    .await
    .map_err(|_| Error::closed("the rollback of a transaction left open did not end"))
    .and_then(|r| r);
    match r {
        Ok(_) if conn.transaction_status() == crate::TransactionStatus::Idle => Ok(()),
        Ok(_) => {
            conn.mark_broken();
            Err(Error::closed(
                "the connection stayed in a transaction after ROLLBACK",
            ))
        }
        Err(e) => {
            conn.mark_broken();
            Err(e)
        }
    }
}

/// The lane is done with its connection: every caller still waiting gets `failure`, sent
/// or not.
fn fail(lane: &Arc<Lane>, inflight: &mut VecDeque<Entry>, path: &impl Placer, failure: &Error) {
    lane.accepting.store(false, Ordering::Release);
    let queued = {
        let mut q = lane.queue.lock();
        q.closed = true;
        q.out.clear();
        let queued = std::mem::take(&mut q.entries);
        // Never sent: the statements they would have prepared are not on the connection,
        // whose names outlive the lane.
        for e in &queued {
            for (sql, name) in e.plans.iter().filter_map(|p| p.prepares.as_ref()) {
                q.names.forget(sql, name);
            }
        }
        queued
    };
    for e in inflight.drain(..).filter(|e| !e.reset) {
        e.reply.complete(Err(lost(failure, true)));
        path.release(lane);
    }
    for e in queued.into_iter().filter(|e| !e.reset) {
        e.reply.complete(Err(lost(failure, false)));
        path.release(lane);
    }
}

fn lost(failure: &Error, sent: bool) -> Error {
    let words = if sent {
        "the statement was sent and its answer lost: it may have run"
    } else {
        "the statement was not sent: it did not run"
    };
    let detail = format!("{words} ({})", crate::error::chain(failure));
    let e = if failure.kind() == crate::ErrorKind::PoolClosed {
        Error::pool_closed().with_detail(detail)
    } else {
        Error::closed(detail)
    };
    e.with_sent(sent)
}

/// Gives the connection back if nothing is placed on the lane: true if it retired.
fn retire(lane: &Lane) -> bool {
    if lane
        .depth
        .compare_exchange(0, RETIRED, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    lane.accepting.store(false, Ordering::Release);
    let mut q = lane.queue.lock();
    if !q.entries.is_empty() {
        // Placed just before the depth moved: cannot be, a placement counts first.
        drop(q);
        lane.depth.store(0, Ordering::Release);
        lane.accepting.store(true, Ordering::Release);
        return false;
    }
    q.closed = true;
    true
}
