//! The shared path: `pool.query`, `query_one`, `query_opt` and `execute` run one
//! autocommit statement on an open connection alongside other callers' statements, with no
//! checkout of the caller's own. Statements are placed on lanes (connections serving the
//! shared path, see `lane.rs`), up to `pipeline_depth` in flight on each, in FIFO order
//! when every lane is full.
//!
//! # Placement
//!
//! A statement goes to the lane with the fewest in flight; an idle lane first. When the
//! lanes are busy and the pool has an idle connection and nobody waits for one, another
//! lane is opened beside them (the statement does not wait for it).
//!
//! # One queue
//!
//! When no lane has room, the caller waits in the shared path's FIFO, and the shared path
//! asks the pool for a connection in the pool's own FIFO, behind the callers of
//! `acquire()` that came before: one request at a time, on behalf of every statement that
//! waits. A connection returned to the pool (or opened) thus serves the oldest waiter of
//! either kind: when the shared path's request is the oldest, the connection becomes a
//! lane and takes the waiting statements, up to its depth. A lane gives its connection
//! back when it has nothing to do for 20 ms, and at once, one lane at a time, after it has
//! served what was placed on it, when a caller of `acquire()` waits: so neither kind of
//! caller starves the other, and a pipelined caller never waits while a connection sits
//! idle.

mod batch;
mod lane;
mod lane_close;
mod lane_plan;
mod lane_trace;
mod lane_watch;
mod statements;
mod write;

use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use self::lane::{Lane, Placer};
use self::lane_close::Lanes;
use crate::conn::request::Described;
use crate::error::{Error, Result};
use crate::pool::{Pool, Shared};
use crate::pool_core::reply::{Left, Reply};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

/// The default for `pipeline_depth`.
pub(crate) const DEFAULT_PIPELINE_DEPTH: usize = 16;

/// Statements described for the shared path, by SQL, at most this many.
const DESCRIBED_CAPACITY: usize = 1024;

/// A caller waiting for room on a lane.
type Waiter = Arc<Reply<Result<Arc<Lane>>>>;

/// The shared path's state, one per pool.
pub(crate) struct SharedPath {
    lanes: parking_lot::RwLock<Vec<Arc<Lane>>>,
    waiters: Mutex<VecDeque<Waiter>>,
    /// `waiters.len()`, read without the lock.
    waiting: AtomicUsize,
    /// Notified when the last caller waiting for room leaves the queue without it: the
    /// path's own request for a connection is given up then.
    nobody_waits: tokio::sync::Notify,
    /// Lanes being opened (at most one at a time).
    opening: AtomicUsize,
    /// The lane being opened waits in the pool's queue for a connection (it counts among
    /// the pool's waiters there; the statements it waits for count here).
    asking: AtomicBool,
    /// A lane is giving its connection back for a caller of `acquire()`.
    draining: AtomicBool,
    /// Statements in flight per lane, at most.
    pub(crate) depth: usize,
    max_lanes: usize,
    /// Statements placed and not answered.
    in_flight: AtomicUsize,
    /// Statements run through the shared path.
    pub(super) statements: AtomicU64,
    /// Statements after which the server said the session changed (see `lane_watch.rs`).
    session_changes: AtomicU64,
    /// The refusal is off: the tests of the net under it (`internals` only).
    pub(crate) refusal_off: AtomicBool,
    /// Descriptions of the statements run here (parameter and column types), by SQL.
    described: Mutex<crate::text_map::TextMap<Described>>,
    /// The lanes' tasks, and their abort when the drain timeout passes at close.
    lane_tasks: Lanes,
}

impl std::fmt::Debug for SharedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPath")
            .field("lanes", &self.lanes.read().len())
            .field("depth", &self.depth)
            .finish()
    }
}

/// The shared path's gauges and counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PathCounts {
    pub(crate) lanes: usize,
    pub(crate) in_flight: usize,
    pub(crate) waiting: usize,
    pub(crate) statements: u64,
    pub(crate) free_slots: usize,
    pub(crate) session_changes: u64,
}

impl SharedPath {
    pub(crate) fn new(depth: usize, max_lanes: usize) -> SharedPath {
        SharedPath {
            lanes: parking_lot::RwLock::new(Vec::new()),
            waiters: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            nobody_waits: tokio::sync::Notify::new(),
            opening: AtomicUsize::new(0),
            asking: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            depth: depth.max(1),
            max_lanes,
            in_flight: AtomicUsize::new(0),
            statements: AtomicU64::new(0),
            session_changes: AtomicU64::new(0),
            refusal_off: AtomicBool::new(false),
            described: Mutex::new(Default::default()),
            lane_tasks: Lanes::default(),
        }
    }

    pub(crate) fn counts(&self) -> PathCounts {
        let lanes = self.lanes.read();
        PathCounts {
            lanes: lanes.len(),
            free_slots: lanes
                .iter()
                .filter(|l| l.open())
                .map(|l| self.depth.saturating_sub(l.depth.load(Ordering::Relaxed)))
                .sum(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            statements: self.statements.load(Ordering::Relaxed),
            session_changes: self.session_changes.load(Ordering::Relaxed),
        }
    }

    /// A request queued on `lane` on the caller's reservation, or the error that kept it
    /// out, its slot given back then.
    fn queued(&self, lane: &Arc<Lane>, queued: Result<lane::Pending>) -> Result<lane::Pending> {
        if queued.is_err() {
            self.release(lane);
        }
        queued
    }

    /// Whether a request that failed with `e` was never sent (its lane stopped taking
    /// statements before it went out) and may be placed again: once, and not while the
    /// pool closes.
    fn may_place_again(&self, shared: &Shared, e: &Error) -> bool {
        e.kind() == crate::ErrorKind::Closed
            && e.may_have_run() == Some(false)
            && !shared.closing.load(Ordering::Acquire)
    }

    /// Forgets the statements described (the pool switched servers).
    pub(crate) fn clear_described(&self) {
        self.described.lock().clear();
    }

    /// The lanes' tasks (see `lane_close.rs`).
    pub(crate) fn lane_tasks(&self) -> &Lanes {
        &self.lane_tasks
    }

    /// A place for one statement: a lane with room, now or in arrival order.
    pub(super) async fn place(self: &Arc<Self>, shared: &Arc<Shared>) -> Result<Arc<Lane>> {
        match self.place_now(shared) {
            Some(r) => r,
            None => self.place_queued(shared).await,
        }
    }

    /// The placement that needs no wait: a lane with room while no caller waits for one
    /// (or the refusal of a closing pool); `None` when the caller has to queue.
    #[inline]
    pub(super) fn place_now(self: &Arc<Self>, shared: &Arc<Shared>) -> Option<Result<Arc<Lane>>> {
        if shared.closing.load(Ordering::Acquire) {
            return Some(Err(Error::pool_closed().with_sent(false)));
        }
        if self.waiting.load(Ordering::Acquire) == 0 {
            if let Some(l) = self.try_place(shared) {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                return Some(Ok(l));
            }
        }
        None
    }

    /// The caller waits in the path's FIFO for room on a lane.
    pub(super) async fn place_queued(self: &Arc<Self>, shared: &Arc<Shared>) -> Result<Arc<Lane>> {
        let w: Waiter = Arc::new(Reply::new());
        {
            let mut q = self.waiters.lock();
            q.push_back(w.clone());
            self.waiting.store(q.len(), Ordering::Release);
        }
        self.open_lane(shared);
        // A slot may have freed between the try and the queue.
        for l in self.lanes.read().iter() {
            self.serve_waiters(l);
        }
        let mut wait = WaitForLane {
            w,
            path: self.clone(),
            shared: shared.clone(),
            done: false,
            timed_out: false,
        };
        let lane = tokio::select! {
            r = &mut wait => r?,
            () = tokio::time::sleep(shared.cfg.acquire_timeout) => {
                wait.timed_out = true;
                return Err(super::timed_out(shared, shared.cfg.acquire_timeout, true));
            }
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(lane)
    }

    /// The least loaded lane with room, reserved; and another lane opened beside busy ones
    /// when the pool has a connection to spare.
    fn try_place(self: &Arc<Self>, shared: &Arc<Shared>) -> Option<Arc<Lane>> {
        for _ in 0..4 {
            let lanes = self.lanes.read();
            let mut best: Option<(&Arc<Lane>, usize)> = None;
            for l in lanes.iter() {
                if !l.open() {
                    continue;
                }
                let d = l.depth.load(Ordering::Relaxed);
                if d < self.depth && best.is_none_or(|(_, b)| d < b) {
                    best = Some((l, d));
                    if d == 0 {
                        break;
                    }
                }
            }
            let n = lanes.len();
            match best {
                Some((l, d)) => {
                    if l.try_reserve(self.depth) {
                        let l = l.clone();
                        drop(lanes);
                        if d > 0 && n < self.max_lanes {
                            self.grow(shared);
                        }
                        return Some(l);
                    }
                }
                None => return None,
            }
        }
        None
    }

    /// Opens another lane beside busy ones, in the background, if the pool has an idle
    /// connection and no caller of `acquire()` waits: growth that takes nothing from
    /// anyone.
    fn grow(self: &Arc<Self>, shared: &Arc<Shared>) {
        if self.lanes.read().len() >= self.max_lanes {
            return;
        }
        let g = shared.core.gauges();
        if g.waiting > 0 || (g.idle == 0 && g.size >= g.max_size) {
            return;
        }
        self.open_lane(shared);
    }

    /// Asks the pool for a connection for a new lane, in the pool's FIFO behind the callers
    /// of `acquire()` already waiting, unless a lane is being opened already. While callers
    /// still wait for room once it is open, it asks again.
    fn open_lane(self: &Arc<Self>, shared: &Arc<Shared>) {
        if shared.closing.load(Ordering::Acquire)
            || self.lanes.read().len() >= self.max_lanes
            || self
                .opening
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let path = self.clone();
        let shared = shared.clone();
        shared.runtime.clone().spawn(async move {
            let pool = Pool {
                shared: shared.clone(),
            };
            loop {
                path.asking.store(true, Ordering::Release);
                // Asked for callers waiting for room, the request is given up once they all
                // left (timed out, dropped): the connection is not taken from an acquire()
                // caller, nor the database probed, for nobody. Asked for growth (nobody
                // waits), it takes an idle connection or gives up at its own timeout.
                let left = path.nobody_waits.notified();
                let for_waiters = path.waiting.load(Ordering::Acquire) > 0;
                let r = tokio::select! {
                    r = pool.acquire_at(Location::caller(), super::Asker::SharedPath) => Some(r),
                    () = left, if for_waiters => None,
                };
                path.asking.store(false, Ordering::Release);
                let Some(r) = r else {
                    path.opening.store(0, Ordering::Release);
                    // A caller that came meanwhile found this request under way.
                    if path.waiting.load(Ordering::Acquire) > 0 {
                        path.open_lane(&shared);
                    }
                    return;
                };
                match r {
                    Ok(mut guard) => {
                        guard.pool_owned();
                        let lane =
                            Arc::new(Lane::new(&mut guard, shared.cfg.statement_cache_capacity));
                        path.lanes.write().push(lane.clone());
                        path.opening.store(0, Ordering::Release);
                        path.serve_waiters(&lane);
                        path.lane_tasks.started();
                        shared
                            .runtime
                            .spawn(lane::run(lane, guard, path.clone()));
                        // More callers than the new lane had room for: another lane, at the
                        // pool's next turn.
                        if path.waiting.load(Ordering::Acquire) > 0 {
                            path.open_lane(&shared);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(target: "wirepool::pool", "no connection for the shared path: {e}");
                        if shared.closing.load(Ordering::Acquire) {
                            path.opening.store(0, Ordering::Release);
                            path.fail_waiters();
                            return;
                        }
                        // A timeout while statements still wait (theirs run on their own
                        // clocks): ask again.
                        if e.kind() == crate::ErrorKind::PoolTimeout
                            && path.waiting.load(Ordering::Acquire) > 0
                        {
                            continue;
                        }
                        // Any other error (the database unreachable under fail_fast) ends
                        // the request; the next statement asks anew. The statements that
                        // wait fail with it as an acquire() caller does, unless a lane
                        // still runs to make room for them: left waiting with no request
                        // under way, nothing would serve them when the database is back.
                        path.opening.store(0, Ordering::Release);
                        if path.lanes.read().is_empty() {
                            path.fail_waiters_with(&e);
                        }
                        return;
                    }
                }
            }
        });
    }

    /// Whether the shared path waits in the pool's queue for a connection (it is one of
    /// the pool's waiters then).
    pub(crate) fn asking(&self) -> bool {
        self.asking.load(Ordering::Acquire)
    }

    /// Gives room on `lane` to the oldest waiters, as much as it has.
    fn serve_waiters(&self, lane: &Arc<Lane>) {
        while self.waiting.load(Ordering::Acquire) > 0 && lane.try_reserve(self.depth) {
            if !self.hand_off(lane) {
                lane.depth.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }

    /// Gives a slot of `lane` (already counted in its depth) to the oldest waiter still
    /// there; false if there is none.
    fn hand_off(&self, lane: &Arc<Lane>) -> bool {
        let mut q = self.waiters.lock();
        while let Some(w) = q.pop_front() {
            self.waiting.store(q.len(), Ordering::Release);
            if w.complete(Ok(lane.clone())) {
                return true;
            }
        }
        false
    }

    /// A request on `lane` is over (answered, skipped or failed): its slot goes to the
    /// oldest waiter, or back to the lane.
    pub(super) fn release(&self, lane: &Arc<Lane>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.waiting.load(Ordering::Acquire) > 0 && lane.open() && self.hand_off(lane) {
            // The waiter counts itself in flight when it wakes.
            return;
        }
        lane.depth.fetch_sub(1, Ordering::AcqRel);
    }

    /// Callers of `acquire()` wait in the pool's queue (besides the shared path's own
    /// request for a connection).
    fn exclusive_waiting(&self, shared: &Shared) -> bool {
        shared.core.gauges().waiting > usize::from(self.asking())
    }

    /// The pool is closing: callers still waiting get `PoolClosed` (their statement was
    /// not sent).
    pub(crate) fn fail_waiters(&self) {
        self.fail_waiters_with(&Error::pool_closed());
    }

    /// Fails every statement waiting for room with `e` (none of them was sent).
    fn fail_waiters_with(&self, e: &Error) {
        let mut q = self.waiters.lock();
        for w in q.drain(..) {
            w.complete(Err(e.duplicate().with_sent(false)));
        }
        self.waiting.store(0, Ordering::Release);
    }

    pub(super) fn described(&self, sql: &str) -> Option<Described> {
        self.described.lock().get(sql).cloned()
    }

    fn remember(&self, sql: &str, d: &Described) {
        let mut m = self.described.lock();
        if m.len() >= DESCRIBED_CAPACITY {
            m.clear();
        }
        m.insert(Arc::from(sql), d.clone());
    }

    pub(super) fn forget(&self, sql: &str) {
        self.described.lock().remove(sql);
    }
}

impl Placer for SharedPath {
    fn release(&self, lane: &Arc<Lane>) {
        SharedPath::release(self, lane);
    }

    fn lane_tasks(&self) -> &Lanes {
        SharedPath::lane_tasks(self)
    }

    /// The server said a statement changed the session (a transaction left open, a
    /// reported setting changed).
    fn count_session_change(&self) {
        self.session_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// A lane ended: if callers still wait for room, a lane is asked for on their behalf
    /// (the ended lane was counted among the lanes while it drained).
    fn open_lane_for_waiters(self: &Arc<Self>, shared: &Arc<Shared>) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.open_lane(shared);
        }
    }

    /// `lane` takes requests again (a cancel is over, or the last request whose caller
    /// left is off it).
    fn lane_has_room(&self, lane: &Arc<Lane>) {
        self.serve_waiters(lane);
    }

    /// Whether an idle lane should give its connection back now: the pool is closing, or
    /// a caller of `acquire()` waits (one lane at a time drains for it).
    fn should_release(&self, shared: &Shared) -> bool {
        shared.closing.load(Ordering::Acquire) || self.exclusive_waiting(shared)
    }

    /// A busy lane asks whether it should stop taking statements and drain, so that its
    /// connection goes to a waiting caller of `acquire()`.
    fn should_drain(&self, shared: &Shared) -> bool {
        (shared.closing.load(Ordering::Acquire) || self.exclusive_waiting(shared))
            && self
                .draining
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// A lane retired, or ended its drain.
    fn drained(&self) {
        self.draining.store(false, Ordering::Release);
    }

    /// The lane's task ended: it takes no more statements.
    fn remove_lane(&self, lane: &Arc<Lane>) {
        self.lanes.write().retain(|l| !Arc::ptr_eq(l, lane));
    }
}

/// A caller waiting for room on a lane; leaving gives back a slot handed to it meanwhile.
struct WaitForLane {
    w: Waiter,
    path: Arc<SharedPath>,
    shared: Arc<Shared>,
    done: bool,
    /// It left at its deadline (counted as a timeout, not as a cancel).
    timed_out: bool,
}

impl Future for WaitForLane {
    type Output = Result<Arc<Lane>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let r = self.w.poll_take(cx);
        if r.is_ready() {
            self.done = true;
        }
        r
    }
}

impl Drop for WaitForLane {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.w.abandon() {
            Left::Late(Ok(lane)) => {
                // Placed just as it left: the slot is the next caller's.
                self.path.in_flight.fetch_add(1, Ordering::Relaxed);
                self.path.release(&lane);
            }
            Left::Late(Err(_)) | Left::Taken => {}
            Left::Early => {
                // Out of the queue now: a caller who left no longer counts as waiting, and
                // no lane is asked for on its behalf.
                let mut q = self.path.waiters.lock();
                q.retain(|w| !Arc::ptr_eq(w, &self.w));
                self.path.waiting.store(q.len(), Ordering::Release);
                if q.is_empty() {
                    self.path.nobody_waits.notify_waiters();
                }
                drop(q);
                if !self.timed_out {
                    self.shared
                        .counters
                        .cancelled
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl SharedPath {
    /// Refuses a statement that needs a session of its own (see `crate::sql::classify`).
    pub(super) fn check_allowed(&self, verdict: &crate::sql::Verdict) -> Result<()> {
        match verdict.class.refusal {
            Some(why) if !self.refusal_off.load(Ordering::Relaxed) => {
                Err(Error::invalid_input(format!(
                    "{why}, which the pool's shared path (pool.query, pool.execute, ...) does \
                     not keep; run it on a connection from pool.acquire()"
                )))
            }
            _ => Ok(()),
        }
    }
}
