//! The PostgreSQL pool: the core bound to [`Connection`] and tokio.
//!
//! Background work runs in tasks the pool owns, never inside a caller's future: opening
//! connections (a caller that times out does not waste the connection it caused to be
//! opened), resetting returned connections, and the monitor (refill to `min_size`,
//! reconnection with backoff, retirement, keepalive, health).

mod backoff;
mod config;
mod environment;
mod expiry;
mod guard;
mod leak_task;
mod monitor;

use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::Notify;

pub(crate) use backoff::Backoff;
pub use config::{PoolConfig, SessionReset};
pub use environment::{EnvVar, ENVIRONMENT, MAX_POOL_SIZE};
pub use guard::PooledConnection;

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
use crate::sync::{AtomicBool, AtomicU64, AtomicU8, Mutex, Ordering};

/// A pooled connection with the pool's bookkeeping.
#[derive(Debug)]
pub(crate) struct Pooled {
    pub(crate) conn: Connection,
    pub(crate) id: u64,
    /// Monitor-clock milliseconds at which the connection retires.
    pub(crate) expires_ms: u64,
    /// Monitor-clock milliseconds of its last return (or creation).
    pub(crate) last_used_ms: u64,
    /// Its checkout state, for the leak detector.
    pub(crate) leak_slot: crate::sync::Arc<LeakSlot>,
    /// Counts it among the encrypted connections while it exists.
    _encrypted: Option<EncryptedMark>,
    /// Counts it among its server's connections while it exists.
    _host: HostMark,
}

/// The pool's connections per server (`host:port`).
type HostCounts = Arc<parking_lot::Mutex<Vec<(Arc<str>, usize)>>>;

/// One connection in its server's count; dropped with the connection's bookkeeping.
#[derive(Debug)]
struct HostMark {
    counts: HostCounts,
    host: Arc<str>,
}

impl HostMark {
    fn new(counts: &HostCounts, host: &str) -> HostMark {
        let mut c = counts.lock();
        let host = match c.iter_mut().find(|(h, _)| &**h == host) {
            Some((h, n)) => {
                *n += 1;
                h.clone()
            }
            None => {
                let h: Arc<str> = Arc::from(host);
                c.push((h.clone(), 1));
                h
            }
        };
        HostMark {
            counts: counts.clone(),
            host,
        }
    }
}

impl Drop for HostMark {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(i) = c.iter().position(|(h, _)| *h == self.host) {
            c[i].1 -= 1;
            if c[i].1 == 0 {
                c.swap_remove(i);
            }
        }
    }
}

/// One encrypted connection in the pool's count; dropped with the connection's
/// bookkeeping, whichever way it leaves (closed, discarded, detached).
#[derive(Debug)]
struct EncryptedMark(Arc<std::sync::atomic::AtomicUsize>);

impl EncryptedMark {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> EncryptedMark {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        EncryptedMark(count.clone())
    }
}

impl Drop for EncryptedMark {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// State shared by the pool handle, its guards and its tasks.
pub(crate) struct Shared {
    /// Connections are boxed: in and out of the idle list, into guards and through
    /// futures, a move is a pointer, not the whole connection.
    pub(crate) core: Core<Box<Pooled>>,
    pub(crate) connect: ConnectConfig,
    pub(crate) cfg: PoolConfig,
    pub(crate) counters: Counters,
    pub(crate) state: AtomicU8,
    pub(crate) created_at: SystemTime,
    started: Instant,
    /// Milliseconds since `started`, advanced by the monitor (and by slow paths): the cheap
    /// clock of the hot path.
    clock_ms: AtomicU64,
    pub(crate) runtime: Handle,
    next_id: AtomicU64,
    /// Consecutive failed connects; 0 while the database answers.
    pub(crate) connect_failures: AtomicU64,
    pub(crate) last_connect_error: Mutex<Option<(Error, Instant)>>,
    pub(crate) wake_monitor: Notify,
    /// A caller joined an empty queue: the acquire-timeout task learns its deadline.
    pub(crate) first_waiter: Arc<Notify>,
    /// The origin of waiters' deadlines (tokio's clock, so that paused-time tests work).
    deadline_origin: tokio::time::Instant,
    pub(crate) stop_monitor: Notify,
    pub(crate) closing: AtomicBool,
    terminated: Notify,
    /// Set from the start of the reconnection schedule until `min_size` validated
    /// connections are back (the pool is RECOVERING meanwhile).
    pub(crate) reconnecting: AtomicBool,
    /// Unix milliseconds of the last recovery from an outage; 0 before any.
    recovered_at_ms: AtomicU64,
    /// The leak detector's registration side, when leak detection is on.
    pub(crate) leak: Option<LeakDetector>,
    /// Counts command timeouts; set on every connection.
    timeout_hook: TimeoutHook,
    /// Statement-cache hits and misses of all the pool's connections.
    pub(crate) statement_stats: Arc<CacheStats>,
    /// Open connections that are encrypted.
    encrypted: Arc<std::sync::atomic::AtomicUsize>,
    /// Open connections per server.
    hosts: HostCounts,
    /// The server of the newest connection (`host:port`).
    newest_host: parking_lot::Mutex<Option<Arc<str>>>,
    /// Run on every new connection before it is first handed out, and after a reset.
    hooks: ConnectHooks,
}

/// An async closure run on each new connection (see [`Builder::after_connect`]).
pub type ConnectHook = Arc<
    dyn for<'c> Fn(
            &'c mut Connection,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'c>>
        + Send
        + Sync,
>;

/// What runs on a new connection before it joins the pool.
#[derive(Clone, Default)]
struct ConnectHooks {
    sql: Vec<String>,
    after_connect: Option<ConnectHook>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connect", &self.connect)
            .field("core", &self.core)
            .finish()
    }
}

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

/// Builds a [`Pool`]; see [`Pool::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is awaited"]
pub struct Builder {
    connect: ConnectConfig,
    cfg: PoolConfig,
    hooks: ConnectHooks,
}

impl std::fmt::Debug for ConnectHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectHooks")
            .field("sql", &self.sql)
            .field("after_connect", &self.after_connect.is_some())
            .finish()
    }
}

impl Builder {
    /// Replaces every pool setting.
    pub fn config(mut self, cfg: PoolConfig) -> Self {
        self.cfg = cfg;
        self
    }
    /// Connections kept open at all times. Default: 2.
    pub fn min_size(mut self, n: usize) -> Self {
        self.cfg.min_size = n;
        self
    }
    /// The most connections at once. Default: 10.
    pub fn max_size(mut self, n: usize) -> Self {
        self.cfg.max_size = n;
        self
    }
    /// How long `acquire()` may take. Default: 30 s.
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.cfg.acquire_timeout = d;
        self
    }
    /// How long one query may run through `PooledConnection::query`. Default: 60 s.
    pub fn command_timeout(mut self, d: Option<Duration>) -> Self {
        self.cfg.command_timeout = d;
        self
    }
    /// Retire connections older than this. Default: 3600 s.
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.cfg.max_lifetime = d;
        self
    }
    /// Close idle connections beyond `min_size` after this long. Default: 600 s.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.cfg.idle_timeout = d;
        self
    }
    /// How long `close()` waits for checked-out connections. Default: 30 s.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.cfg.drain_timeout = d;
        self
    }
    /// Leak detection on or off, and its timeout. Default: on, 30 s.
    pub fn leak_detection(mut self, enabled: bool, timeout: Duration) -> Self {
        self.cfg.leak_detection = enabled;
        self.cfg.leak_detection_timeout = timeout;
        self
    }
    /// Return the pool from `build()` even if the database cannot be reached yet; see
    /// [`PoolConfig::start_without_database`]. Default: false.
    pub fn start_without_database(mut self, yes: bool) -> Self {
        self.cfg.start_without_database = yes;
        self
    }
    /// When a returned connection's session is reset, so that one caller's role,
    /// settings, LISTENs, cursors, temporary tables or locks never reach the next (see
    /// [`SessionReset`]). Default: [`SessionReset::WhenDirty`].
    pub fn session_reset(mut self, policy: SessionReset) -> Self {
        self.cfg.session_reset = policy;
        self
    }
    /// Prepared statements kept per connection; `0` for PgBouncer in transaction mode.
    /// Default: 100.
    pub fn statement_cache_capacity(mut self, n: usize) -> Self {
        self.cfg.statement_cache_capacity = n;
        self
    }
    /// Also capture a full backtrace at each acquisition for leak reports. Default: false.
    pub fn leak_backtrace(mut self, yes: bool) -> Self {
        self.cfg.leak_backtrace = yes;
        self
    }
    /// Validate idle connections unused this long (`None`: never). Default: 30 s.
    pub fn keepalive_interval(mut self, d: Option<Duration>) -> Self {
        self.cfg.keepalive_interval = d;
        self
    }
    /// The reconnection delays; the last repeats. Default: 1, 2, 4, 8, 16 s.
    pub fn reconnect_delays(mut self, delays: Vec<Duration>) -> Self {
        self.cfg.reconnect_delays = delays;
        self
    }
    /// Spread each reconnection delay over [delay/2, delay]. Default: false.
    pub fn reconnect_jitter(mut self, yes: bool) -> Self {
        self.cfg.reconnect_jitter = yes;
        self
    }
    /// Fail callers at once with the connect error while the database is unreachable.
    /// Default: false.
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.cfg.fail_fast = yes;
        self
    }
    /// How often the monitor runs. Default: 250 ms.
    pub fn monitor_interval(mut self, d: Duration) -> Self {
        self.cfg.monitor_interval = d;
        self
    }
    /// The health classification's thresholds. Default: the guide's.
    pub fn health_thresholds(mut self, t: crate::observe::HealthThresholds) -> Self {
        self.cfg.health = t;
        self
    }
    /// The prefix of the Prometheus metric names. Default: `codebase_mcp_pool`.
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cfg.metrics_prefix = prefix.into();
        self
    }
    /// SQL run on every new connection before it is first handed out (after it is
    /// validated), e.g. `SET search_path TO app`. A statement that fails discards the
    /// connection and counts as a connect error.
    pub fn init_sql<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.hooks.sql = statements.into_iter().map(Into::into).collect();
        self
    }
    /// An async closure run on every new connection before it is first handed out (after
    /// [`Builder::init_sql`]). An error discards the connection and counts as a connect
    /// error.
    ///
    /// ```no_run
    /// # async fn f(cfg: wirepool::ConnectConfig) -> wirepool::Result<()> {
    /// let pool = wirepool::Pool::builder(cfg)
    ///     .after_connect(|conn| {
    ///         Box::pin(async move {
    ///             conn.execute("SELECT set_config('app.tenant', $1, false)", &[&"acme"])
    ///                 .await?;
    ///             Ok(())
    ///         })
    ///     })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(
                &'c mut Connection,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<()>> + Send + 'c>,
            > + Send
            + Sync
            + 'static,
    {
        self.hooks.after_connect = Some(Arc::new(hook));
        self
    }

    /// Opens and validates `min_size` connections, then starts the pool's monitor. Must be
    /// called inside a tokio runtime, whose handle the pool keeps for its tasks.
    ///
    /// # Errors
    ///
    /// A configuration error for settings that do not fit together; otherwise the first
    /// error met opening the initial connections (wrong password, database down, ...).
    pub async fn build(self) -> Result<Pool> {
        self.cfg.validate()?;
        let runtime = Handle::try_current()
            .map_err(|_| Error::config("Pool::build must run inside a tokio runtime"))?;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| Shared {
            timeout_hook: timeout_hook(weak.clone()),
            statement_stats: Arc::new(CacheStats::default()),
            encrypted: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            hosts: Arc::new(parking_lot::Mutex::new(Vec::new())),
            newest_host: parking_lot::Mutex::new(None),
            hooks: self.hooks,
            core: Core::new(self.cfg.max_size),
            counters: Counters::new(self.cfg.health.slow_acquire),
            connect: self.connect,
            state: AtomicU8::new(LifecycleState::Initializing as u8),
            created_at: SystemTime::now(),
            started: Instant::now(),
            clock_ms: AtomicU64::new(0),
            runtime,
            next_id: AtomicU64::new(1),
            connect_failures: AtomicU64::new(0),
            last_connect_error: Mutex::new(None),
            wake_monitor: Notify::new(),
            first_waiter: Arc::new(Notify::new()),
            deadline_origin: tokio::time::Instant::now(),
            stop_monitor: Notify::new(),
            closing: AtomicBool::new(false),
            terminated: Notify::new(),
            reconnecting: AtomicBool::new(false),
            recovered_at_ms: AtomicU64::new(0),
            leak: self.cfg.leak_detection.then(|| {
                LeakDetector::new(self.cfg.leak_detection_timeout, self.cfg.leak_backtrace)
            }),
            cfg: self.cfg,
        });
        tracing::info!(
            target: "wirepool::pool",
            min_size = shared.cfg.min_size,
            max_size = shared.cfg.max_size,
            database = shared.connect.dbname(),
            "Connection pool initialized: min_size={}, max_size={}",
            shared.cfg.min_size,
            shared.cfg.max_size
        );
        let t = Instant::now();
        let permits: Vec<_> =
            std::iter::from_fn(|| shared.core.want_open(shared.cfg.min_size)).collect();
        let opened = futures_join_all(permits.into_iter().map(|p| {
            let shared = shared.clone();
            async move {
                let c = open_validated(&shared).await;
                (p, c)
            }
        }))
        .await;
        let mut first_err = None;
        let mut n = 0;
        let mut failed = 0;
        for (permit, r) in opened {
            match r {
                Ok(conn) => {
                    n += 1;
                    shared.add_opened(permit, conn);
                }
                Err(e) => {
                    drop(permit);
                    failed += 1;
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if !shared.cfg.start_without_database => {
                for p in shared.core.close() {
                    shared.close_conn(p, CloseReason::Shutdown);
                }
                shared.set_state(LifecycleState::Unhealthy);
                tracing::error!(target: "wirepool::pool", "Pool initialization failed: {}", error_chain(&e));
                return Err(e);
            }
            Some(e) => {
                tracing::error!(
                    target: "wirepool::pool",
                    "Pool initialization failed: {}; the pool starts unhealthy and reconnects on its schedule",
                    error_chain(&e)
                );
                shared.connect_failures.store(failed, Ordering::Release);
                *shared.last_connect_error.lock() = Some((e, Instant::now()));
                shared.set_state(LifecycleState::Unhealthy);
            }
            None => tracing::info!(
                target: "wirepool::pool",
                "Created {n} initial connections in {}ms",
                t.elapsed().as_millis()
            ),
        }
        let pool = Pool { shared };
        monitor::spawn(&pool.shared);
        expiry::spawn(&pool.shared);
        leak_task::spawn(&pool.shared);
        pool.shared.evaluate_health();
        Ok(pool)
    }
}

/// Whole nanoseconds, saturating: `Duration::MAX` means "never".
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, saturating: `Duration::MAX` means "never".
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Awaits all futures concurrently (a tiny `join_all` on tokio tasks' terms).
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("an open task does not panic"));
    }
    out
}

/// The bound of the validation `SELECT 1` when the connection has no connect timeout.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one connection and validates it with `SELECT 1`, recording latency and errors.
pub(crate) async fn open_validated(shared: &Shared) -> Result<Connection> {
    let began = SystemTime::now();
    let mut conn = match Connection::connect(&shared.connect).await {
        Ok(c) => c,
        Err(e) => {
            shared
                .counters
                .record_error(ErrorType::Connect, connect_error_message(&e), began);
            return Err(e);
        }
    };
    shared.configure(&mut conn);
    let t = Instant::now();
    // Validation is the pool's own query: bounded like the connect, not by the callers'
    // command timeout (which may be shorter than a round trip).
    let limit = conn.replace_command_timeout(Some(
        shared
            .connect
            .connect_timeout()
            .unwrap_or(VALIDATION_TIMEOUT),
    ));
    let validated = conn.simple_query("SELECT 1").await;
    conn.replace_command_timeout(limit);
    match validated {
        Ok(rows) if rows.first().and_then(|r| r.get(0)) == Some("1") => {
            shared.counters.record_latency(t.elapsed());
            if let Err(e) = shared.run_hooks(&mut conn).await {
                shared.counters.record_error(
                    ErrorType::Connect,
                    format!("Connection setup failed: {}", error_chain(&e)),
                    began,
                );
                return Err(e);
            }
            shared.counters.created.fetch_add(1, Ordering::Relaxed);
            Ok(conn)
        }
        Ok(_) => {
            let e = Error::protocol("validation query SELECT 1 returned an unexpected result");
            shared.counters.record_error(
                ErrorType::Validation,
                "Connection validation failed".into(),
                began,
            );
            Err(e)
        }
        Err(e) => {
            shared.counters.record_error(
                ErrorType::Validation,
                format!("Connection validation failed: {}", error_chain(&e)),
                began,
            );
            Err(e)
        }
    }
}

/// Counts command timeouts of the pool's connections, without keeping the pool alive.
fn timeout_hook(pool: std::sync::Weak<Shared>) -> TimeoutHook {
    Arc::new(move |limit: Duration| {
        if let Some(s) = pool.upgrade() {
            s.counters.record_error(
                ErrorType::CommandTimeout,
                format!(
                    "Query cancelled after the command timeout of {} s",
                    limit.as_secs_f64()
                ),
                SystemTime::now() - limit,
            );
        }
    })
}

fn connect_error_message(e: &Error) -> String {
    let refused = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    if refused {
        format!("Database connection refused: {}", error_chain(e))
    } else {
        format!("Database connection failed: {}", error_chain(e))
    }
}

impl Shared {
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    /// Advances the cheap clock to the real time.
    pub(crate) fn tick_clock(&self) -> u64 {
        let ms = self.started.elapsed().as_millis() as u64;
        self.clock_ms.fetch_max(ms, Ordering::Relaxed);
        ms
    }

    /// Logs which server a new connection went to (with several hosts), and a switch of
    /// server (a failover).
    fn note_server(&self, conn: &Connection, host: &Arc<str>) {
        let several = self.connect.hosts().len() > 1;
        let kind = match conn.in_recovery() {
            Some(true) => "standby",
            Some(false) => "primary",
            None => "server",
        };
        if several {
            tracing::info!(target: "wirepool::pool", host = &**host, kind, "Connection opened to {host} ({kind})");
        } else {
            tracing::debug!(target: "wirepool::pool", host = &**host, "Connection opened to {host}");
        }
        let previous = self.newest_host.lock().replace(host.clone());
        if let Some(old) = previous.filter(|old| old != host) {
            // With random load balancing the server changes all the time; only a change
            // of the one server a pool uses is news.
            if self.connect.load_balance_hosts() == crate::config::LoadBalanceHosts::Disable {
                tracing::warn!(
                    target: "wirepool::pool",
                    from = &*old,
                    to = &**host,
                    "Connection pool switched from {old} to {host}"
                );
            }
        }
    }

    /// The pool's settings on a connection: command timeout, statement cache. Applied to
    /// a new connection, and again to a returned one whose settings a caller changed.
    pub(crate) fn configure(&self, conn: &mut Connection) {
        conn.set_command_timeout(self.cfg.command_timeout);
        conn.set_timeout_hook(Some(self.timeout_hook.clone()));
        conn.set_statement_cache_capacity(self.cfg.statement_cache_capacity);
        conn.set_statement_cache_stats(self.statement_stats.clone());
        conn.take_settings_changed();
    }

    /// True if a returned connection's session must be reset before it is handed out
    /// again, under the pool's [`SessionReset`] policy.
    #[inline]
    pub(crate) fn needs_session_reset(&self, conn: &Connection) -> bool {
        match self.cfg.session_reset {
            SessionReset::Never => false,
            SessionReset::WhenDirty => conn.session_dirty(),
            SessionReset::Always => true,
        }
    }

    /// Runs the connect hooks: the SQL statements, then the closure. What they set is the
    /// session's starting point: a reset puts it back, then runs them again.
    pub(crate) async fn run_hooks(&self, conn: &mut Connection) -> Result<()> {
        for sql in &self.hooks.sql {
            conn.simple_query(sql).await?;
        }
        if let Some(hook) = &self.hooks.after_connect {
            hook(conn).await?;
        }
        if conn.transaction_status() != crate::protocol::TransactionStatus::Idle || conn.is_busy() {
            return Err(Error::invalid_input(
                "a connect hook left the connection inside a transaction",
            ));
        }
        conn.mark_session_clean();
        Ok(())
    }

    /// Nanoseconds on the waiters' deadline clock.
    pub(crate) fn deadline_clock(&self) -> u64 {
        nanos(self.deadline_origin.elapsed())
    }

    /// A deadline-clock reading as an instant (far in the future for "never").
    pub(crate) fn deadline_instant(&self, d: u64) -> tokio::time::Instant {
        self.deadline_origin
            .checked_add(Duration::from_nanos(d))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365))
    }

    /// The wall-clock time of a monitor-clock reading.
    pub(crate) fn wall(&self, ms: u64) -> SystemTime {
        self.created_at + Duration::from_millis(ms)
    }

    /// The reconnector has restored `min_size` validated connections: the outage is over.
    /// Errors and slow acquisitions that began before now stop counting against health.
    pub(crate) fn mark_recovered(&self) {
        let now = SystemTime::now();
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| millis(d).max(1));
        self.recovered_at_ms.store(ms, Ordering::Release);
        self.reconnecting.store(false, Ordering::Release);
        let g = self.core.gauges();
        tracing::info!(
            target: "wirepool::pool",
            "Connection pool recovered: {}/{} connections available",
            g.open(),
            g.max_size
        );
        self.evaluate_health();
    }

    pub(crate) fn state(&self) -> LifecycleState {
        LifecycleState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves to `new`, logging the transition once.
    pub(crate) fn set_state(&self, new: LifecycleState) {
        let old = LifecycleState::from_u8(self.state.swap(new as u8, Ordering::AcqRel));
        if old != new {
            if new == LifecycleState::Unhealthy {
                tracing::warn!(target: "wirepool::health", from = old.as_str(), to = new.as_str(), "Health status: {old} -> {new}");
            } else {
                tracing::info!(target: "wirepool::health", from = old.as_str(), to = new.as_str(), "Health status: {old} -> {new}");
            }
        }
    }

    pub(crate) fn wrap(&self, conn: Connection) -> Box<Pooled> {
        let now = self.tick_clock();
        let expires_ms = match self.cfg.max_lifetime {
            Some(l) => {
                // Up to 5 % less, so connections opened together do not retire together.
                let jitter = 1.0 - 0.05 * crate::random::fraction();
                now.saturating_add(millis(l.mul_f64(jitter)))
            }
            None => u64::MAX,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let leak_slot = LeakSlot::new(id);
        if let Some(d) = &self.leak {
            d.track(leak_slot.clone());
        }
        let _encrypted = conn
            .is_encrypted()
            .then(|| EncryptedMark::new(&self.encrypted));
        let _host = HostMark::new(&self.hosts, conn.server_addr());
        self.note_server(&conn, &_host.host);
        Box::new(Pooled {
            conn,
            id,
            expires_ms,
            last_used_ms: now,
            leak_slot,
            _encrypted,
            _host,
        })
    }

    /// Hands a newly opened connection to the core (the oldest waiter or the idle list);
    /// if the pool closed meanwhile, closes it.
    fn add_opened(&self, permit: OpenPermit<Box<Pooled>>, conn: Connection) {
        if let Some(p) = permit.complete(self.wrap(conn)) {
            self.close_conn(p, CloseReason::Shutdown);
        }
    }

    /// Opens a connection in a pool-owned task and hands it over with `permit`.
    pub(crate) fn spawn_open(self: &Arc<Self>, permit: OpenPermit<Box<Pooled>>) {
        let shared = self.clone();
        self.runtime.spawn(async move {
            match open_validated(&shared).await {
                Ok(conn) => {
                    shared.connect_failures.store(0, Ordering::Release);
                    shared.add_opened(permit, conn);
                    shared.wake_monitor.notify_one();
                }
                Err(e) => {
                    drop(permit);
                    let n = shared.connect_failures.fetch_add(1, Ordering::AcqRel) + 1;
                    if n == 1 {
                        tracing::warn!(target: "wirepool::pool", "Database connection lost: {}", error_chain(&e));
                    }
                    *shared.last_connect_error.lock() = Some((e, Instant::now()));
                    shared.wake_monitor.notify_one();
                }
            }
        });
    }

    /// A connection reported that its server is no longer of the kind the pool asked for
    /// (`target_session_attrs`: a standby promoted, a primary demoted): the pool's idle
    /// connections to that server are closed too, before anyone gets them; new connections
    /// look for a server of the right kind.
    pub(crate) fn server_kind_changed(self: &Arc<Self>, conn: &Connection) {
        let addr = conn.server_addr().to_string();
        let kind = match conn.in_recovery() {
            Some(true) => "a standby",
            Some(false) => "a primary",
            None => "another kind of server",
        };
        tracing::warn!(
            target: "wirepool::pool",
            host = %addr,
            "Server {addr} is now {kind}, not what target_session_attrs asks for; its connections are closed"
        );
        for p in self.core.take_idle(|p| p.conn.server_addr() == addr) {
            self.discard(p, Holder::Pool, CloseReason::ValidationFailed);
        }
    }

    /// Removes a connection held by `holder` from the pool and closes it in the background.
    pub(crate) fn discard(self: &Arc<Self>, p: Box<Pooled>, holder: Holder, reason: CloseReason) {
        // The core first: once the close is counted, the sizes already leave it out.
        self.forget(holder);
        self.close_conn(p, reason);
    }

    /// Gives back the capacity of a connection held by `holder` that is gone (closed or
    /// detached): a waiter gets a replacement opened, unless the database is unreachable,
    /// when the reconnector alone opens connections.
    pub(crate) fn forget(self: &Arc<Self>, holder: Holder) {
        if let Some(permit) = self.core.discard(holder) {
            if self.connect_failures.load(Ordering::Acquire) == 0 {
                self.spawn_open(permit);
            }
        }
        self.wake_monitor.notify_one();
    }

    /// Closes a connection no longer counted by the core (Terminate, in the background).
    pub(crate) fn close_conn(&self, p: Box<Pooled>, reason: CloseReason) {
        self.counters.record_closed(reason);
        let conn = p.conn;
        if conn.is_broken() {
            return;
        }
        self.runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
        });
    }

    pub(crate) fn statistics(&self) -> PoolStatistics {
        let g = self.core.gauges();
        let mut s = PoolStatistics::empty(self.created_at);
        s.total_connections = g.open();
        s.idle_connections = g.idle;
        s.active_connections = g.active;
        s.waiting_requests = g.waiting;
        s.opening_connections = g.opening;
        s.maintenance_connections = g.maintenance;
        s.peak_active_connections = g.peak_active;
        s.min_size = self.cfg.min_size;
        s.max_size = self.cfg.max_size;
        s.connections_by_host = self
            .hosts
            .lock()
            .iter()
            .map(|(h, n)| (h.to_string(), *n))
            .collect();
        s.connections_by_host.sort();
        s.current_host = self.newest_host.lock().as_deref().map(str::to_string);
        s.encrypted_connections = self
            .encrypted
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(s.total_connections);
        s.statement_cache_hits = self.statement_stats.hits();
        s.statement_cache_misses = self.statement_stats.misses();
        s.connect_failures = self.connect_failures.load(Ordering::Acquire);
        s.recovered_at = match self.recovered_at_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        };
        self.counters.fill(&mut s);
        if s.total_connections == 0 {
            // A round trip measured on connections that are all gone says nothing now.
            s.latency_ms = None;
        }
        s
    }

    /// Classifies the current state and moves the lifecycle state accordingly.
    pub(crate) fn evaluate_health(&self) -> (PoolStatistics, HealthStatus, LifecycleState) {
        let now = SystemTime::now();
        let stats = self.statistics();
        let state = self.state();
        let status = classify(&stats, state, &self.cfg.health, now);
        let next = match state {
            LifecycleState::ShuttingDown | LifecycleState::Terminated => state,
            _ => LifecycleState::from_status(status, self.reconnecting.load(Ordering::Acquire)),
        };
        self.set_state(next);
        self.counters.record_health_check();
        (stats, status, next)
    }

    fn last_connect_error_since(&self, since: Instant) -> Option<Error> {
        self.last_connect_error
            .lock()
            .as_ref()
            .filter(|(_, at)| *at >= since || self.connect_failures.load(Ordering::Acquire) > 0)
            .map(|(e, _)| e.duplicate())
    }
}

impl Pool {
    /// A builder for a pool of connections made with `connect`.
    pub fn builder(connect: ConnectConfig) -> Builder {
        Builder {
            connect,
            cfg: PoolConfig::default(),
            hooks: ConnectHooks::default(),
        }
    }

    /// A pool configured from the environment: `DATABASE_URL` (and `PG*` for what it
    /// leaves out) plus the `POOL_*` variables (see [`PoolConfig::from_env`]).
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable that is missing or malformed, or an error
    /// opening the initial connections.
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
        self.acquire_at(site)
    }

    async fn acquire_at(&self, site: &'static Location<'static>) -> Result<PooledConnection> {
        let shared = &self.shared;
        let timeout = shared.cfg.acquire_timeout;
        let (waiter, open, first) = loop {
            let deadline = || shared.deadline_clock().saturating_add(nanos(timeout));
            match shared.core.try_acquire_until(deadline) {
                TryAcquire::Ready(mut p) => {
                    // The server may have ended the session while it sat idle (a FATAL
                    // before closing it, a restart): never hand that out. An atomic load
                    // when nothing arrived.
                    if !p.conn.check_idle() {
                        if p.conn.server_kind_changed() {
                            shared.server_kind_changed(&p.conn);
                            shared.discard(p, Holder::Caller, CloseReason::ValidationFailed);
                        } else {
                            shared.discard(p, Holder::Caller, CloseReason::ServerClosed);
                        }
                        continue;
                    }
                    shared.counters.record_immediate_acquire();
                    return Ok(PooledConnection::new(shared.clone(), p, site));
                }
                TryAcquire::Closed => return Err(Error::pool_closed()),
                TryAcquire::Queued {
                    waiter,
                    open,
                    first,
                } => break (waiter, open, first),
            }
        };
        let start = Instant::now();
        if first {
            shared.first_waiter.notify_one();
        }
        let failing = shared.connect_failures.load(Ordering::Acquire) > 0;
        if let Some(permit) = open {
            if failing {
                // The reconnector alone retries while the database is unreachable.
                drop(permit);
            } else {
                shared.spawn_open(permit);
            }
        }
        if failing && shared.cfg.fail_fast {
            drop(waiter);
            return Err(shared
                .last_connect_error_since(start)
                .unwrap_or_else(|| Error::closed("the database is unreachable")));
        }
        // The timeout is the pool's one timer (see `expiry`), not one per caller.
        let mut cancel_guard = CancelCount(Some(shared));
        let r = waiter.await;
        cancel_guard.0 = None;
        match r {
            Ok(p) => {
                shared.counters.record_waited_acquire(start.elapsed());
                Ok(PooledConnection::new(shared.clone(), p, site))
            }
            Err(Unserved::Closed) => Err(Error::pool_closed()),
            Err(Unserved::TimedOut) => {
                let waited = start.elapsed();
                shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                let last = shared.last_connect_error_since(start);
                let g = shared.core.gauges();
                let phase = if last.is_some() || g.open() == 0 || g.opening > 0 {
                    TimeoutPhase::Connect
                } else {
                    TimeoutPhase::Wait
                };
                let began = SystemTime::now() - waited;
                if last.is_some() {
                    // The database is unreachable: the connect error stays the pool's last
                    // error, since it says why; the timeout is counted.
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
                Err(Error::pool_timeout(phase, waited, last))
            }
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
        HealthReport::new(
            &stats,
            status,
            state,
            SystemTime::now(),
            self.shared.cfg.health.error_window,
        )
    }

    /// The lifecycle state.
    pub fn state(&self) -> LifecycleState {
        self.shared.state()
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
        let (stats, status, state) = self.shared.evaluate_health();
        let uptime = SystemTime::now()
            .duration_since(self.shared.created_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        prometheus::render_as(
            format,
            &stats,
            status,
            state,
            uptime,
            &self.shared.cfg.metrics_prefix,
        )
    }

    /// Graceful shutdown: no new acquires (queued callers get `PoolClosed`), idle
    /// connections are closed, checked-out ones are waited for up to `drain_timeout` and
    /// closed as they come back, then the pool is TERMINATED.
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
            for p in s.core.close() {
                s.close_conn(p, CloseReason::Shutdown);
            }
            let shared = s.clone();
            s.runtime.spawn(async move { shared.drain().await });
        }
        if s.state() != LifecycleState::Terminated {
            terminated.await;
        }
    }
}

impl Shared {
    /// The second half of `close()`: waits for checked-out connections, then terminates.
    async fn drain(&self) {
        let t = Instant::now();
        let g = self.core.gauges();
        // Checked out by callers; the pool's own (being reset or validated) are waited for
        // too, but are not callers' work.
        if g.active > 0 {
            tracing::info!(
                target: "wirepool::pool",
                "Waiting for {} active connections to complete (timeout: {}s)",
                g.active,
                self.cfg.drain_timeout.as_secs()
            );
        } else if g.maintenance > 0 {
            tracing::info!(
                target: "wirepool::pool",
                "Waiting for {} connections the pool is resetting or validating (timeout: {}s)",
                g.maintenance,
                self.cfg.drain_timeout.as_secs()
            );
        }
        // `None`: a drain timeout too long to add to the clock means "wait for all".
        let deadline = t.checked_add(self.cfg.drain_timeout);
        while self.core.gauges().size > 0 && deadline.is_none_or(|d| Instant::now() < d) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.core.gauges().size;
        if left > 0 {
            tracing::warn!(
                target: "wirepool::pool",
                "{left} connections still in use after the drain timeout; each is closed when it comes back"
            );
        } else {
            tracing::info!(
                target: "wirepool::pool",
                "All connections closed gracefully in {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
        self.stop_monitor.notify_one();
        self.set_state(LifecycleState::Terminated);
        tracing::info!(target: "wirepool::pool", "Connection pool terminated");
        self.terminated.notify_waiters();
    }
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
