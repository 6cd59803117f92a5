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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres_types::{ToSql, Type};

use super::lane::{self, Lane, Pending, Placer};
use super::lane_close::Lanes;
use super::lane_plan::Plan;
use super::shared_write::{enqueue_execute, with_closes};
use super::{Pool, Shared};
use crate::conn::{stale_statement, Assembler, Outcome, ToStatement};
use crate::error::{Error, Result};
use crate::pool_core::reply::{Left, Reply};
use crate::protocol::extended::{
    write_bind_execute, write_close_statement, write_describe, write_parse, Described, Execute,
    Executed,
};
use crate::protocol::Row;
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
    described: Mutex<HashMap<Arc<str>, Described>>,
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
            opening: AtomicUsize::new(0),
            asking: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            depth: depth.max(1),
            max_lanes,
            in_flight: AtomicUsize::new(0),
            statements: AtomicU64::new(0),
            session_changes: AtomicU64::new(0),
            refusal_off: AtomicBool::new(false),
            described: Mutex::new(HashMap::new()),
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
        if shared.closing.load(Ordering::Acquire) {
            return Err(Error::pool_closed().with_sent(false));
        }
        if self.waiting.load(Ordering::Acquire) == 0 {
            if let Some(l) = self.try_place(shared) {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                return Ok(l);
            }
        }
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
        let wait = WaitForLane {
            w,
            path: self.clone(),
            done: false,
        };
        let lane = match tokio::time::timeout(shared.cfg.acquire_timeout, wait).await {
            Ok(r) => r?,
            Err(_) => {
                shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(Error::pool_timeout(
                    crate::error::TimeoutPhase::Wait,
                    shared.cfg.acquire_timeout,
                    shared.last_connect_error_since(
                        std::time::Instant::now() - shared.cfg.acquire_timeout,
                    ),
                ));
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
                let r = pool.acquire_at(Location::caller()).await;
                path.asking.store(false, Ordering::Release);
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
                        // clocks): ask again. Any other error (the database unreachable
                        // under fail_fast) ends the request; the next statement asks anew.
                        if e.kind() != crate::ErrorKind::PoolTimeout
                            || path.waiting.load(Ordering::Acquire) == 0
                        {
                            path.opening.store(0, Ordering::Release);
                            return;
                        }
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
        let mut q = self.waiters.lock();
        for w in q.drain(..) {
            w.complete(Err(Error::pool_closed().with_sent(false)));
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
    done: bool,
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
        if let Left::Late(Ok(lane)) = self.w.abandon() {
            // Placed just as it left: the slot is the next caller's.
            self.path.in_flight.fetch_add(1, Ordering::Relaxed);
            self.path.release(&lane);
        }
    }
}

impl Pool {
    /// Runs `statement` with `params` on one of the pool's open connections, alongside
    /// other callers' statements (pipelined, up to
    /// [`pipeline_depth`](super::Builder::pipeline_depth) in flight on each connection), and
    /// returns its rows. No connection is checked out for the caller: this is for one
    /// autocommit statement that needs no session of its own. The parameters and rows are
    /// those of [`Connection::query`](crate::Connection::query).
    ///
    /// ```no_run
    /// # async fn f(pool: &wirepool::Pool) -> wirepool::Result<()> {
    /// let rows = pool.query("SELECT id, name FROM users WHERE team = $1", &[&7i32]).await?;
    /// let n = pool.execute("UPDATE users SET seen = now() WHERE id = $1", &[&42i32]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// What needs a session (a transaction, `SET`, `LISTEN`, a cursor, `PREPARE`, a
    /// temporary table, an advisory lock, COPY) goes through [`Pool::acquire`]; such
    /// statements are refused here (see "Errors").
    ///
    /// # Errors
    ///
    /// As [`Connection::query`](crate::Connection::query); an `InvalidInput` error naming
    /// `acquire()` for a statement that changes or depends on the session's state; a pool
    /// timeout when no connection had room within the acquire timeout; a command timeout
    /// (the statement is abandoned: its answer is discarded, and it is cancelled once
    /// nothing else runs on its connection). When the connection is lost,
    /// [`Error::may_have_run`] says whether the statement had been sent.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the statement as a command timeout does; no other
    /// caller's statement is cancelled or loses its answer.
    pub async fn query<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>>
    where
        T: ?Sized + ToStatement,
    {
        Ok(self.run_shared(statement, params).await?.rows)
    }

    /// Runs `statement` on the shared path (see [`Pool::query`]) and returns its one row.
    ///
    /// # Errors
    ///
    /// As [`Pool::query`], or a row-count error if it returned no row or several.
    pub async fn query_one<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Row>
    where
        T: ?Sized + ToStatement,
    {
        let mut rows = self.query(statement, params).await?;
        match rows.len() {
            1 => Ok(rows.pop().expect("one row")),
            n => Err(Error::row_count(format!(
                "query_one expected one row, the query returned {n}"
            ))),
        }
    }

    /// Runs `statement` on the shared path (see [`Pool::query`]) and returns its row, if it
    /// returned one.
    ///
    /// # Errors
    ///
    /// As [`Pool::query`], or a row-count error if it returned several rows.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>>
    where
        T: ?Sized + ToStatement,
    {
        let mut rows = self.query(statement, params).await?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            n => Err(Error::row_count(format!(
                "query_opt expected at most one row, the query returned {n}"
            ))),
        }
    }

    /// Runs `statement` on the shared path (see [`Pool::query`]) and returns the number of
    /// rows it affected.
    ///
    /// # Errors
    ///
    /// As [`Pool::query`].
    pub async fn execute<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64>
    where
        T: ?Sized + ToStatement,
    {
        Ok(self.run_shared(statement, params).await?.rows_affected())
    }

    /// A batch of statements on the pool (see [`Batch`](crate::Batch)), on the shared path
    /// with no checkout, under the same refusals as [`Pool::query`]. An atomic batch (the
    /// default) is one request on one of the shared path's connections: its statements
    /// written back to back with one Sync after the last, so all take effect or none, in
    /// one round trip, pipelined with other callers' statements. An independent batch
    /// (`.atomic(false)`) places every statement on its own with its own Sync, each
    /// succeeding or failing alone.
    ///
    /// Dropping an atomic batch's future, or its command timeout, abandons it as
    /// [`Pool::query`] does one statement. When its connection is lost,
    /// [`Error::may_have_run`] answers for the batch as a whole.
    ///
    /// ```no_run
    /// # async fn f(pool: &wirepool::Pool) -> wirepool::Result<()> {
    /// let results = pool
    ///     .batch()
    ///     .execute("INSERT INTO chunks (file_id, body) VALUES ($1, $2)", &[&7i64, &"fn main() {}"])
    ///     .query("SELECT count(*) FROM chunks WHERE file_id = $1", &[&7i64])
    ///     .run()
    ///     .await?;
    /// assert_eq!(results[0].count(), 1);
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> crate::Batch<'_> {
        crate::Batch::on_pool(self)
    }

    /// Refuses, as the shared path does, a statement that needs a session of its own.
    pub(crate) fn check_shared(&self, sql: &str) -> Result<()> {
        self.shared.path.check_allowed(&crate::sql::verdict(sql))
    }

    pub(crate) async fn run_shared<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Executed>
    where
        T: ?Sized + ToStatement,
    {
        let shared = &self.shared;
        let path = &shared.path;
        let verdict = crate::sql::verdict(statement.sql());
        let sql = &verdict.sql;
        if params.len() > crate::conn::MAX_PARAMETERS {
            return Err(Error::invalid_input(format!(
                "{} parameters given; the protocol allows at most {}",
                params.len(),
                crate::conn::MAX_PARAMETERS
            )));
        }
        for attempt in 0..2 {
            let known = match (attempt, statement.described()) {
                (0, Some(d)) => Some(d.clone()),
                _ => path.described(sql),
            };
            if attempt == 0 {
                path.check_allowed(&verdict)?;
            }
            let described = match known {
                Some(d) => d,
                None => self.describe_shared(sql).await?,
            };
            let lane = path.place(shared).await?;
            path.statements.fetch_add(1, Ordering::Relaxed);
            let reset_after = !shared.cfg.session_reset.takes_as_clean(&verdict.class);
            let pending = match enqueue_execute(&lane, sql, reset_after, &described, params) {
                Ok(p) => p,
                Err(e) => {
                    path.release(&lane);
                    return Err(e);
                }
            };
            let executed = match self.answer(pending).await {
                Ok(Outcome::Executed(x)) => x,
                // Not sent: its lane stopped taking statements before it went out (another
                // caller's statement changed that session). Placed again, once.
                Err(e)
                    if attempt == 0
                        && e.kind() == crate::ErrorKind::Closed
                        && e.may_have_run() == Some(false)
                        && !shared.closing.load(Ordering::Acquire) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
                Ok(Outcome::Described(_) | Outcome::Reset { .. } | Outcome::Batch(_)) => {
                    return Err(Error::protocol(
                        "a description answered a pipelined statement",
                    ))
                }
            };
            let Some(err) = executed.error.as_ref() else {
                return Ok(executed);
            };
            if attempt == 0 && stale_statement(err) {
                // Its plan or its types are no longer the server's: described again, once.
                tracing::debug!(target: "wirepool::pool", code = err.code(), "describing a shared-path statement again: {}", err.message());
                path.forget(sql);
                continue;
            }
            return Err(Error::db_boxed(executed.error.expect("checked")));
        }
        unreachable!("the second attempt returns")
    }

    /// Waits for a request's answer, bounded by the command timeout.
    pub(super) async fn answer(&self, pending: Pending) -> Result<Outcome> {
        match self.shared.cfg.command_timeout {
            Some(limit) => match tokio::time::timeout(limit, pending).await {
                Ok(r) => r,
                Err(_) => {
                    self.shared.timeout_hook.as_ref()(limit);
                    Err(Error::command_timeout(limit))
                }
            },
            None => pending.await,
        }
    }

    /// Describes `sql` on a lane (preparing it there), with its types looked up.
    pub(super) async fn describe_shared(&self, sql: &Arc<str>) -> Result<Described> {
        let shared = &self.shared;
        let path = &shared.path;
        let lane = path.place(shared).await?;
        let pending = match lane.enqueue(sql, false, |q| {
            with_closes(q, |q| match q.names.get(sql) {
                Some(name) => {
                    write_describe(&name, sql, false, &mut q.out)?;
                    let plan = Plan {
                        uses: Some(name.clone()),
                        confirms: Some(name),
                        ..Plan::default()
                    };
                    Ok((Assembler::describe(), plan.into()))
                }
                None => {
                    let (name, evicted) = q.names.make(sql, lane.capacity, None);
                    if let Some(ev) = evicted {
                        write_close_statement(&ev, &mut q.out);
                    }
                    if let Err(e) = write_describe(&name, sql, true, &mut q.out) {
                        q.names.forget(sql, &name);
                        return Err(e.into());
                    }
                    let named = (!name.is_empty()).then_some(name);
                    let plan = Plan {
                        prepares: named.clone().map(|n| (sql.clone(), n)),
                        confirms: named,
                        ..Plan::default()
                    };
                    Ok((Assembler::describe(), plan.into()))
                }
            })
        }) {
            Ok(p) => p,
            Err(e) => {
                path.release(&lane);
                return Err(e);
            }
        };
        let mut described = match self.answer(pending).await? {
            Outcome::Described(r) => r.map_err(Error::db_boxed)?,
            Outcome::Executed(_) | Outcome::Reset { .. } | Outcome::Batch(_) => {
                return Err(Error::protocol("rows answered a pipelined Describe"))
            }
        };
        let scope = lane.type_scope.clone();
        drop(lane);
        let types = shared.types.clone();
        let missing = crate::conn::type_lookup::missing_types(&described, |o| types.get(&scope, o));
        if !missing.is_empty() {
            self.lookup_types_shared(&scope, &missing).await?;
        }
        crate::conn::type_lookup::resolve_with(&mut described, |o| types.get(&scope, o));
        path.remember(sql, &described);
        Ok(described)
    }

    /// The catalog query for types not built in, as one pipelined request.
    async fn lookup_types_shared(&self, scope: &Arc<str>, oids: &[u32]) -> Result<()> {
        let shared = &self.shared;
        let path = &shared.path;
        let lane = path.place(shared).await?;
        let param = [Type::OID_ARRAY];
        let values = oids.to_vec();
        let lookup: Arc<str> = Arc::from(crate::conn::type_lookup::LOOKUP_SQL);
        let pending = match lane.enqueue(&lookup, false, |q| {
            with_closes(q, |q| {
                write_parse("", &lookup, &param, &[], &mut q.out)?;
                write_bind_execute("", &param, &[&values], true, &mut q.out)?;
                Ok((
                    Assembler::Execute(Execute::new(Arc::from(Vec::new()))),
                    Plan::default().into(),
                ))
            })
        }) {
            Ok(p) => p,
            Err(e) => {
                path.release(&lane);
                return Err(e);
            }
        };
        let executed = match self.answer(pending).await? {
            Outcome::Executed(x) => x,
            Outcome::Described(_) | Outcome::Reset { .. } | Outcome::Batch(_) => {
                return Err(Error::protocol("a description answered a catalog query"))
            }
        };
        if let Some(e) = executed.error {
            return Err(Error::db_boxed(e));
        }
        shared.types.count_lookup();
        let types = crate::conn::type_lookup::types_from_rows(&executed.rows, oids)?;
        shared.types.insert(scope, types);
        Ok(())
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
