//! The PostgreSQL pool: the core bound to [`Connection`] and tokio.
//!
//! Background work runs in tasks the pool owns, never inside a caller's future: opening
//! connections (a caller that times out does not waste the connection it caused to be
//! opened), resetting returned connections, and the monitor (refill to `min_size`,
//! reconnection with backoff, retirement, keepalive, health).

mod acquire_timeout;
mod builder;
mod clock;
mod config;
mod environment;
mod guard;
mod leak_task;
mod loss_gate;
mod monitor;
mod open;
mod pipelined;
mod state;
#[cfg(feature = "axum")]
mod status_feed;
mod use_clock;

use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::Notify;

pub(crate) use crate::backoff::Backoff;
use builder::ConnectHooks;
pub use builder::{Builder, ConnectHook};
pub(crate) use clock::millis;
use clock::nanos;
#[cfg(feature = "axum")]
pub(crate) use config::check_metrics_prefix;
pub use config::MAX_POOL_SIZE;
pub use config::{PoolConfig, SessionReset};
pub use environment::{EnvVar, ENVIRONMENT};
pub use guard::PooledConnection;
pub(crate) use open::open_validated;
pub(crate) use state::{Pooled, Shared};
use use_clock::Stamp;

use crate::config::ConnectConfig;
use crate::conn::{CacheStats, Connection, TimeoutHook};
use crate::error::{chain as error_chain, Error, Result, TimeoutPhase};
use crate::observe::counters::Counters;
use crate::observe::leak::{LeakDetector, LeakSlot};
use crate::observe::{
    classify, prometheus, CloseReason, ErrorType, HealthReport, HealthStatus, LifecycleState,
    PoolStatistics,
};
use crate::pool_core::{Core, Holder, OpenPermit, TryAcquire, Unserved};
use crate::sync::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Mutex, Ordering};

/// How long a connection rests before its next checkout asks the kernel, not only the
/// runtime, whether the server sent anything (see `Connection::check_idle`): one system
/// call, about a microsecond, for a connection that sat this long; none on a busy pool.
pub(crate) const IDLE_PROBE_AFTER_MS: u64 = 5;

/// A PostgreSQL connection pool. A cheap handle: clones share one pool.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> wirepool::Result<()> {
/// use std::time::Duration;
/// use wirepool::Pool;
///
/// let pool = Pool::builder("postgres://app:secret@127.0.0.1/app".parse()?)
///     .min_size(2)
///     .max_size(10)
///     .acquire_timeout(Duration::from_secs(30))
///     .build()
///     .await?;
/// let mut conn = pool.acquire().await?;
/// let rows = conn.simple_query("SELECT 1").await?;
/// assert_eq!(rows[0].get(0), Some("1"));
/// drop(conn); // back to the pool
/// println!("{}", pool.health().to_json());
/// pool.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A builder for a pool of connections made with `connect`.
    pub fn builder(connect: ConnectConfig) -> Builder {
        Builder {
            connect,
            cfg: PoolConfig::default(),
            hooks: ConnectHooks::default(),
            notices: None,
            #[cfg(feature = "otel")]
            meter: None,
        }
    }

    /// A pool configured from the environment: `DATABASE_URL` (and `PG*` for what it
    /// leaves out) plus the `POOL_*` variables (see [`PoolConfig::from_env`]).
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable that is missing or malformed, or an error
    /// opening the initial connections.
    ///
    /// # Cancel safety
    ///
    /// As [`Builder::build`].
    pub async fn from_env() -> Result<Pool> {
        let url = std::env::var("DATABASE_URL").map_err(|_| {
            Error::config("DATABASE_URL is not set (e.g. postgres://user:pass@host:5432/db)")
        })?;
        let connect = ConnectConfig::parse_str(&url)
            .map_err(|e| Error::config(format!("DATABASE_URL: {}", error_chain(&e))))?;
        let cfg = PoolConfig::from_env()?;
        Pool::builder(connect).config(cfg).build().await
    }

    /// Takes a connection: an idle one at once, or the next one returned or opened, in
    /// arrival order. The caller's source location is recorded for leak reports.
    ///
    /// # Errors
    ///
    /// A pool timeout after `acquire_timeout` ([`Error::timeout_phase`] says whether it
    /// waited for a returned connection or for a new one to be opened; in the latter case
    /// the last connect error is the source), or `PoolClosed`. With `fail_fast`, a caller
    /// that would wait while the database is unreachable gets the last connect error at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future leaves the queue, and a connection already handed
    /// to it goes to the next waiter. A connection being opened on its behalf is opened by
    /// the pool regardless and goes to the next waiter or the idle list.
    #[track_caller]
    pub fn acquire(
        &self,
    ) -> impl std::future::Future<Output = Result<PooledConnection>> + Send + '_ {
        let site = Location::caller();
        async move {
            match self.try_idle(site) {
                Some(c) => Ok(c),
                None => self.acquire_at(site, Asker::Caller).await,
            }
        }
    }

    /// An idle connection the server has not ended, checked out at once; `None` when the
    /// caller has to take the queue's path (none idle, the one idle was ended, or closed).
    #[inline]
    fn try_idle(&self, site: &'static Location<'static>) -> Option<PooledConnection> {
        let p = self.shared.core.try_take_idle()?;
        self.hand_out_idle(p, site)
    }

    /// Checks out a connection taken from the idle list if the server has not ended it
    /// while it rested (a FATAL before closing it, a restart); else discards it and gives
    /// `None`. An atomic load when nothing arrived, and one non-blocking read of the socket
    /// after a rest of [`IDLE_PROBE_AFTER_MS`] or more.
    #[inline(always)]
    fn hand_out_idle(
        &self,
        mut p: Box<Pooled>,
        site: &'static Location<'static>,
    ) -> Option<PooledConnection> {
        let now = Stamp::now();
        if !p
            .conn
            .check_idle(now.at_least_ms_after(p.rested_from, IDLE_PROBE_AFTER_MS))
        {
            self.discard_ended(p);
            return None;
        }
        Some(self.checked_out_at_once(p, site, now))
    }

    /// A connection the server ended while it sat idle leaves the pool.
    #[cold]
    fn discard_ended(&self, p: Box<Pooled>) {
        let shared = &self.shared;
        if p.conn.server_kind_changed() {
            shared.server_kind_changed(&p.conn);
            shared.discard(p, Holder::Caller, CloseReason::ValidationFailed);
        } else {
            shared.discard(p, Holder::Caller, CloseReason::ServerClosed);
        }
    }

    /// The checkout of an idle connection, which needed no wait.
    #[inline(always)]
    fn checked_out_at_once(
        &self,
        mut p: Box<Pooled>,
        site: &'static Location<'static>,
        now: Stamp,
    ) -> PooledConnection {
        let shared = &self.shared;
        shared.counters.record_immediate_acquire(&mut p.tally);
        #[cfg(feature = "otel")]
        if let Some(o) = &shared.otel {
            o.waited(Duration::ZERO);
        }
        PooledConnection::new(shared.clone(), p, site, now)
    }

    /// The queue's path of [`Pool::acquire`]: wait for a connection returned or opened.
    /// The shared path's own request for a lane (`Asker::SharedPath`) is not a caller's:
    /// its timeout is not counted (the callers it asks for count theirs).
    async fn acquire_at(
        &self,
        site: &'static Location<'static>,
        asker: Asker,
    ) -> Result<PooledConnection> {
        let shared = &self.shared;
        let timeout = shared.cfg.acquire_timeout;
        // When the caller joined the queue, on the deadline clock: the one clock reading of
        // the wait's start, made for its deadline anyway.
        let mut queued_at = 0u64;
        // The same moment on the use-time clock (cheaper to read), to time a wait that
        // ends with a connection from the reading that starts its checkout.
        let mut queued_stamp = None;
        let (mut waiter, open, first) = loop {
            let mut deadline = || {
                let now = shared.deadline_clock();
                queued_at = now;
                queued_stamp = Some(Stamp::now());
                now.saturating_add(nanos(timeout))
            };
            // The waiter is polled next in this same poll of the caller's task: its waker
            // is registered as it joins the queue (one lock fewer when it has to wait).
            let tried = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(
                    shared
                        .core
                        .try_acquire_registered(&mut deadline, cx.waker()),
                )
            })
            .await;
            match tried {
                TryAcquire::Ready(p) => match self.hand_out_idle(p, site) {
                    Some(c) => return Ok(c),
                    None => continue,
                },
                TryAcquire::Closed => return Err(Error::pool_closed()),
                TryAcquire::Queued {
                    waiter,
                    open,
                    first,
                } => break (waiter, open, first),
            }
        };
        let waited_since = move |now: u64| Duration::from_nanos(now.saturating_sub(queued_at));
        if first {
            shared.first_waiter.notify_one();
        }
        // Under fail_fast, registered before the database's state is read: the first
        // failed connect from now on ends the wait, as it would have refused it.
        let unreachable = shared.cfg.fail_fast.then(|| {
            let mut n = Box::pin(shared.unreachable.notified());
            n.as_mut().enable();
            n
        });
        let failing = shared.connects_failing();
        if failing {
            // A caller waits while the database is unreachable: the reconnector probes for
            // it (see `monitor.rs`).
            shared.wake_monitor.notify_one();
        }
        if let Some(permit) = open {
            if failing {
                // The reconnector alone retries while the database is unreachable.
                drop(permit);
            } else {
                shared.spawn_open(permit);
            }
        }
        let unreachable_error = || {
            // Refused, as a caller that would have waited: the reconnector probes for it.
            shared
                .refused_at_ms
                .store(shared.tick_clock() + 1, Ordering::Relaxed);
            shared.wake_monitor.notify_one();
            let start = Instant::now() - waited_since(shared.deadline_clock());
            shared
                .last_connect_error_since(start)
                .unwrap_or_else(|| Error::closed("the database is unreachable"))
        };
        if failing && shared.cfg.fail_fast {
            drop(waiter);
            return Err(unreachable_error());
        }
        // The timeout is the pool's one timer (see `acquire_timeout.rs`), not one per caller.
        // A caller's wait abandoned is counted; the shared path's own request, given up
        // when its callers left, is not a caller's.
        let mut cancel_guard = CancelCount((asker == Asker::Caller).then_some(shared));
        let r = match unreachable {
            None => waiter.await,
            Some(mut unreachable) => tokio::select! {
                biased;
                r = &mut waiter => r,
                () = &mut unreachable => {
                    cancel_guard.0 = None;
                    drop(waiter);
                    return Err(unreachable_error());
                }
            },
        };
        cancel_guard.0 = None;
        match r {
            Ok(mut p) => {
                let now = Stamp::now();
                let waited = queued_stamp.map_or(Duration::ZERO, |q| now.since(q));
                shared.counters.record_waited_acquire(&mut p.tally, waited);
                #[cfg(feature = "otel")]
                if let Some(o) = &shared.otel {
                    o.waited(waited);
                }
                p.conn.set_checkout_wait(waited);
                Ok(PooledConnection::new(shared.clone(), p, site, now))
            }
            Err(Unserved::Closed) => Err(Error::pool_closed()),
            Err(Unserved::TimedOut) => Err(timed_out(
                shared,
                waited_since(shared.deadline_clock()),
                asker == Asker::Caller,
            )),
        }
    }

    /// The statistics snapshot (no lock on the hot path is taken; see [`PoolStatistics`]
    /// for what is and is not consistent).
    pub fn statistics(&self) -> PoolStatistics {
        self.shared.statistics()
    }

    /// The health report, from cached state (no database round trip). Also moves the
    /// lifecycle state if the classification changed.
    pub fn health(&self) -> HealthReport {
        let (stats, status, state) = self.shared.evaluate_health();
        let mut report = HealthReport::new(
            &stats,
            status,
            state,
            SystemTime::now(),
            self.shared.cfg.health.error_window,
        );
        report.replication = self.replication_status();
        report
    }

    /// Shows `stream`'s state, lag and reconnections in this pool's health report
    /// (`replication` in its JSON), its metrics (`<prefix>_replication_lag_bytes`,
    /// `_replication_state`, `_replication_reconnects_total`, labelled by slot) and its
    /// status page, for as long as the stream exists.
    pub fn watch_replication(&self, stream: &crate::replication::ReplicationStream) {
        let mut watched = self.shared.replication.lock();
        watched.retain(|w| w.strong_count() > 0);
        watched.push(std::sync::Arc::downgrade(stream.gauges()));
    }

    /// The figures of the replication streams this pool watches
    /// ([`Pool::watch_replication`]) that still exist.
    pub fn replication_status(&self) -> Vec<crate::replication::ReplicationStatus> {
        self.shared
            .replication
            .lock()
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|g| g.snapshot())
            .collect()
    }

    /// The lifecycle state.
    pub fn state(&self) -> LifecycleState {
        self.shared.state()
    }

    /// A [`Listener`](crate::Listener) on a connection of its own to the pool's database
    /// (outside `max_size`; see the listener's docs), reconnecting on the pool's schedule;
    /// its state and counts are in the pool's statistics and metrics. It ends when the
    /// pool closes: its calls return `PoolClosed` and its connection is closed.
    ///
    /// # Errors
    ///
    /// The connect error; `PoolClosed` once the pool is closed.
    ///
    /// # Cancel safety
    ///
    /// As [`Listener::connect`](crate::Listener::connect).
    pub async fn listener(&self) -> Result<crate::Listener> {
        crate::Listener::open(
            self.shared.connect.clone(),
            Backoff::new(
                self.shared.cfg.reconnect_delays.clone(),
                self.shared.cfg.reconnect_jitter,
            ),
            self.shared.listeners.clone(),
        )
        .await
    }

    /// Sends a notification on `channel` with `payload`, through `pg_notify` with both as
    /// parameters (never spliced into SQL), on a pooled connection in autocommit: it is
    /// delivered at once.
    ///
    /// # Errors
    ///
    /// As [`Pool::acquire`] and [`Connection::execute`]; the server refuses a payload of
    /// 8,000 bytes or more. An invalid-input error, before a connection is taken, for a
    /// channel name of more than [`MAX_CHANNEL_NAME`](crate::conn::MAX_CHANNEL_NAME) bytes
    /// (as [`Listener::listen`](crate::Listener::listen) refuses it).
    #[track_caller]
    pub fn notify<'a>(
        &'a self,
        channel: &'a str,
        payload: &'a str,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'a {
        let acquire = self.acquire();
        async move {
            crate::conn::check_channel(channel)?;
            let mut conn = acquire.await?;
            conn.execute("SELECT pg_catalog.pg_notify($1, $2)", &[&channel, &payload])
                .await
                .map(|_| ())
        }
    }

    /// Forgets the types the pool's connections looked up in the catalog (enums,
    /// composites, domains, extensions' types): after `ALTER TYPE ... ADD VALUE`,
    /// `ALTER TYPE ... ADD ATTRIBUTE`, `... DROP ATTRIBUTE` or `... RENAME ATTRIBUTE`,
    /// which keep a type's OID, so that the next statement prepared sees the new labels or
    /// fields. Until then a composite is decoded with the fields it had when first looked
    /// up, as tokio-postgres does with its own type cache: the server sends a composite's
    /// field types on the wire but not their names, so attributes of one type renamed
    /// into each other's places cannot be told apart from the answer. A type dropped and created again needs
    /// nothing: it has a new OID, and statements cached with the old one are prepared
    /// again.
    pub fn clear_type_cache(&self) {
        self.shared.types.clear();
    }

    #[cfg(feature = "internals")]
    pub(crate) fn shared_path_refusal(&self, on: bool) {
        self.shared.path.refusal_off.store(!on, Ordering::Relaxed);
    }

    /// The settings.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.cfg
    }

    /// The statistics in Prometheus text format, names prefixed with `metrics_prefix`.
    pub fn render_prometheus(&self) -> String {
        self.render_metrics(prometheus::Format::Prometheus)
    }

    /// The statistics in `format` (Prometheus text or OpenMetrics), names prefixed with
    /// `metrics_prefix`.
    pub fn render_metrics(&self, format: prometheus::Format) -> String {
        self.render_metrics_prefixed(format, &self.shared.cfg.metrics_prefix)
    }

    /// As [`Pool::render_metrics`], with names starting `prefix_`.
    pub(crate) fn render_metrics_prefixed(
        &self,
        format: prometheus::Format,
        prefix: &str,
    ) -> String {
        let (stats, status, state) = self.shared.evaluate_health();
        let uptime = SystemTime::now()
            .duration_since(self.shared.created_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let statements = self.statement_metrics();
        prometheus::render_all(
            format,
            &stats,
            (status, state),
            uptime,
            prefix,
            &statements,
            &self.replication_status(),
        )
    }

    /// The statement metrics: for each statement text run on the pool (through a
    /// checked-out connection or the pipelined path), its calls, errors by SQLSTATE,
    /// latency histogram, rows and time waited for a lane, the busiest (by total time)
    /// first. A statement is labelled by its text with its constants taken out (each
    /// string or number constant as `?`, comments removed, spaces collapsed; `$1`
    /// placeholders stay), so no parameter value or constant of the text is shown. The
    /// first [`PoolConfig::statement_metrics_limit`] labels seen get a row each; the rest
    /// are counted in a last row, `other`. Empty when statement metrics are off.
    pub fn statement_metrics(&self) -> Vec<crate::observe::statement_metrics::StatementRow> {
        self.shared
            .trace
            .statements
            .as_ref()
            .map(|m| m.snapshot())
            .unwrap_or_default()
    }

    /// Graceful shutdown: no new acquires (queued callers get `PoolClosed`), idle
    /// connections are closed, the pool's [listeners](Pool::listener) end (a `recv()`
    /// under way returns `PoolClosed` and closes its connection), checked-out ones are
    /// waited for up to `drain_timeout` and closed as they come back, then the pool is
    /// TERMINATED. A connection still checked
    /// out past `drain_timeout` is not taken from its caller: it stays usable, counts in
    /// the statistics' `total_connections` and `active_connections`, and is closed when
    /// it comes back. Connects under way are abandoned, not waited for (one to a server
    /// that does not answer could hold the drain until its connect timeout, or for ever
    /// with none).
    ///
    /// The shared path ([`Pool::query`] and the rest) takes no new statement (its callers
    /// get `PoolClosed` with [`Error::may_have_run`] `Some(false)`) and finishes the ones
    /// in flight within `drain_timeout` too. Past it, each still unanswered fails with
    /// `PoolClosed` and `may_have_run()` `Some(true)` if it was sent (it may have run),
    /// `Some(false)` if not; its connection is closed and a CancelRequest sent for what the
    /// server runs. `close()` returns once that is done (a second at most past the drain
    /// timeout, for the cancels): no statement of the shared path is answered after it.
    ///
    /// Idempotent; concurrent calls all return once the pool is terminated.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the drain runs in a task the pool owns, so dropping this future (under
    /// a timeout, say) does not stop it; the pool still terminates, and a later `close()`
    /// returns when it has.
    pub async fn close(&self) {
        let s = &self.shared;
        // Registered before the state is read, so the end of the drain cannot be missed.
        let terminated = s.terminated.notified();
        if !s.closing.swap(true, Ordering::AcqRel) {
            s.set_state(LifecycleState::ShuttingDown);
            tracing::info!(target: "wirepool::pool", "Graceful shutdown initiated");
            s.abandon_opens.notify_waiters();
            s.listeners.close();
            for p in s.core.close() {
                s.close_conn(p, CloseReason::Shutdown);
            }
            s.path.fail_waiters();
            let shared = s.clone();
            s.runtime.spawn(async move { shared.drain().await });
        }
        if s.state() != LifecycleState::Terminated {
            terminated.await;
        }
    }
}

/// Who asks for a connection in [`Pool::acquire_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// A caller of `acquire()`.
    Caller,
    /// The shared path, for a lane.
    SharedPath,
}

/// The error of a wait for a connection that lasted `waited`: the phase is the connect's
/// when the database is unreachable or no connection is open (the error names the last
/// connect error then), else the wait's. With `counted`, the timeout is counted in the
/// statistics and as the pool's error (a caller's wait; the shared path's own request for
/// a lane is not one).
pub(super) fn timed_out(shared: &Shared, waited: Duration, counted: bool) -> Error {
    let start = Instant::now() - waited;
    let last = shared.last_connect_error_since(start);
    let g = shared.core.gauges();
    let phase = if last.is_some() || g.open() == 0 || g.opening > 0 {
        TimeoutPhase::Connect
    } else {
        TimeoutPhase::Wait
    };
    if counted {
        shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        let began = SystemTime::now() - waited;
        if last.is_some() {
            // The database is unreachable: the connect error stays the pool's last error,
            // since it says why; the timeout is counted.
            shared
                .counters
                .count_error(ErrorType::AcquireTimeout, began);
        } else {
            shared.counters.record_error(
                ErrorType::AcquireTimeout,
                format!(
                    "Connection acquisition timeout after {} ms",
                    waited.as_millis()
                ),
                began,
            );
        }
    }
    Error::pool_timeout(phase, waited, last)
}

/// Counts an acquire abandoned by its caller while it waited.
struct CancelCount<'a>(Option<&'a Arc<Shared>>);

impl Drop for CancelCount<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}
