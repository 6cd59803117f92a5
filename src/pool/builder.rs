//! [`Builder`]: every pool setting, the connect hooks, and `build()`, which opens and
//! validates `min_size` connections and starts the pool's tasks.

use super::open::timeout_hook;
use super::*;

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
pub(super) struct ConnectHooks {
    pub(super) sql: Vec<String>,
    pub(super) after_connect: Option<ConnectHook>,
}

/// Builds a [`Pool`]; see [`Pool::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is awaited"]
pub struct Builder {
    pub(super) connect: ConnectConfig,
    pub(super) cfg: PoolConfig,
    pub(super) hooks: ConnectHooks,
    pub(super) notices: Option<crate::conn::NoticeHandler>,
    #[cfg(feature = "otel")]
    pub(super) meter: Option<opentelemetry::metrics::Meter>,
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
    /// Fetches the password for each new connection from `f` instead of the settings: a
    /// rotating credential such as an AWS RDS IAM or Azure Entra token. It is called once
    /// per connection attempt (the pool's connections, the reconnector's, a
    /// [`Pool::listener`]'s, each host tried in failover), before the startup message;
    /// what it returns serves that handshake only and is never logged. Its error fails
    /// the attempt as an authentication error naming the provider, and the pool retries
    /// on its reconnection schedule. Sessions already open are not touched: PostgreSQL
    /// checks a password when a session starts, not afterwards.
    ///
    /// ```no_run
    /// # async fn f(url: &str) -> wirepool::Result<()> {
    /// let pool = wirepool::Pool::builder(url.parse()?)
    ///     .password_provider(|| async {
    ///         // Ask the cloud provider's SDK for a fresh token here.
    ///         Ok::<_, std::io::Error>(std::env::var("DB_TOKEN").unwrap_or_default())
    ///     })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn password_provider<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<String, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let provider = crate::config::PasswordProvider::new(f);
        self.connect = self.connect.with_password_provider(Some(provider));
        self
    }

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
    /// Close idle connections beyond `min_size` after this long unused by callers (keepalive
    /// checks are not use). Default: 600 s.
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
    /// [`SessionReset`]). Default: [`SessionReset::UnlessProvenClean`].
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
    /// Statements of the shared path ([`Pool::query`], [`Pool::execute`], ...) placed on
    /// one connection at most, sent or waiting there to be sent with the next ones (1 to
    /// 1024); more callers wait, in arrival order. Default: 16.
    /// `POOL_PIPELINE_DEPTH`.
    pub fn pipeline_depth(mut self, n: usize) -> Self {
        self.cfg.pipeline_depth = n;
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
    /// While the database is down and callers wait, try one connection at a time at this
    /// interval besides the schedule (`None`: the schedule alone; see
    /// [`PoolConfig::reconnect_probe_interval`]). Default: 250 ms.
    pub fn reconnect_probe_interval(mut self, every: Option<Duration>) -> Self {
        self.cfg.reconnect_probe_interval = every;
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
    /// The health classification's thresholds. Default: see `docs/health-model.md`.
    pub fn health_thresholds(mut self, t: crate::observe::HealthThresholds) -> Self {
        self.cfg.health = t;
        self
    }
    /// The prefix of the Prometheus metric names. Default: `codebase_mcp_pool`.
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cfg.metrics_prefix = prefix.into();
        self
    }
    /// Logs a statement that takes at least `threshold` at WARN (target
    /// `wirepool::slow_query`): its duration, its SQL (cut to a bounded length), the
    /// connection's id and the line that acquired it; never a parameter's value.
    /// Default: off. `POOL_SLOW_QUERY_THRESHOLD` (milliseconds).
    pub fn slow_query_threshold(mut self, threshold: Duration) -> Self {
        self.cfg.slow_query_threshold = Some(threshold).filter(|d| !d.is_zero());
        self
    }
    /// How many statement texts get metrics of their own (calls, errors by SQLSTATE,
    /// latency, rows; see [`Pool::statement_metrics`](crate::Pool::statement_metrics)); the
    /// rest are counted as `other`. 0 turns statement metrics off. Default: 100.
    /// `POOL_STATEMENT_METRICS_LIMIT`.
    pub fn statement_metrics_limit(mut self, limit: usize) -> Self {
        self.cfg.statement_metrics_limit = limit;
        self
    }
    /// Sends the server's notices (RAISE NOTICE, warnings, as [`DbError`](crate::DbError)s
    /// with their severity and SQLSTATE) to `handler` as they arrive, on every connection
    /// of the pool, instead of the log. Default: each is logged at INFO, target
    /// `wirepool::notice`, with its SQLSTATE (class 57, sent as a session ends, at DEBUG).
    /// Notices are never queued: a statement that raises a million takes no more memory
    /// than one that raises one. The handler runs on the task reading the answer: keep it
    /// short.
    ///
    /// ```no_run
    /// # async fn f(url: &str) -> wirepool::Result<()> {
    /// let pool = wirepool::Pool::builder(url.parse()?)
    ///     .notice_handler(|n| eprintln!("{} {}: {}", n.severity(), n.code(), n.message()))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn notice_handler(
        mut self,
        handler: impl Fn(&crate::DbError) + Send + Sync + 'static,
    ) -> Self {
        self.notices = Some(crate::conn::NoticeHandler(Arc::new(handler)));
        self
    }
    /// The level of the query spans (target `wirepool::query`; their fields are in the
    /// crate docs, "Query tracing"). Default: DEBUG, so a subscriber at INFO builds none; INFO puts a
    /// span around every statement for an application that exports traces.
    pub fn query_span_level(mut self, level: tracing::Level) -> Self {
        self.cfg.query_span_level = level;
        self
    }
    /// Whether each query's span carries its SQL text (`db.query.text`; the statement as
    /// written, with its `$1` placeholders, never the values). Default: true.
    pub fn query_text_in_spans(mut self, yes: bool) -> Self {
        self.cfg.query_text_in_spans = yes;
        self
    }
    /// The pool's name in OpenTelemetry metrics (`db.client.connection.pool.name`).
    /// Default: `host:port/database` of the first host.
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.cfg.pool_name = Some(name.into());
        self
    }
    /// Records the pool's metrics into `meter` under OpenTelemetry's database semantic
    /// conventions (see [`crate::otel`]).
    #[cfg(feature = "otel")]
    pub fn opentelemetry(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
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
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the pool being built: the connections opened so far are
    /// closed with it.
    pub async fn build(self) -> Result<Pool> {
        self.cfg.validate()?;
        self.connect.refuse_nul_bytes()?;
        let runtime = Handle::try_current()
            .map_err(|_| Error::config("Pool::build must run inside a tokio runtime"))?;
        // The checkout clock's rate is measured from here on.
        super::use_clock::calibrate();
        #[cfg(feature = "otel")]
        let meter = self.meter;
        let connect = self.connect;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            #[cfg(feature = "otel")]
            let otel = meter.map(|m| {
                let name = self
                    .cfg
                    .pool_name
                    .clone()
                    .unwrap_or_else(|| default_pool_name(&connect));
                let weak = weak.clone();
                let stats: crate::otel::StatisticsSource =
                    Arc::new(move || weak.upgrade().map(|s| s.statistics()));
                Arc::new(crate::otel::Instruments::new(&m, stats, name))
            });
            let trace = Arc::new(crate::conn::TraceSettings {
                span_level: self.cfg.query_span_level,
                hide_query_text: !self.cfg.query_text_in_spans,
                slow_query: self.cfg.slow_query_threshold,
                statements: (self.cfg.statement_metrics_limit > 0).then(|| {
                    Arc::new(crate::observe::statement_metrics::StatementMetrics::new(
                        self.cfg.statement_metrics_limit,
                    ))
                }),
                #[cfg(feature = "otel")]
                operations: otel.as_ref().map(|i| i.operation_sink()),
                #[cfg(not(feature = "otel"))]
                operations: None,
                notices: self.notices,
            });
            Shared {
                #[cfg(feature = "otel")]
                otel,
                trace,
                listeners: Arc::default(),
                timeout_hook: timeout_hook(weak.clone()),
                statement_stats: Arc::new(CacheStats::default()),
                types: Arc::default(),
                path: Arc::new(super::pipelined::SharedPath::new(
                    self.cfg.pipeline_depth,
                    self.cfg.max_size,
                )),
                encrypted: Arc::new(AtomicUsize::new(0)),
                hosts: Arc::new(Mutex::new(Vec::new())),
                newest_host: Mutex::new(None),
                hooks: self.hooks,
                history: Default::default(),
                open_leaks: Mutex::new(Vec::new()),
                reconnect_plan: Mutex::new(None),
                replication: Mutex::new(Vec::new()),
                core: Core::new(self.cfg.max_size),
                counters: Counters::new(self.cfg.health.slow_acquire),
                connect,
                state: AtomicU8::new(LifecycleState::Initializing as u8),
                created_at: SystemTime::now(),
                started: Instant::now(),
                clock_ms: AtomicU64::new(0),
                runtime,
                next_id: AtomicU64::new(1),
                connect_failures: AtomicU64::new(0),
                loss_gate: super::loss_gate::LossGate::new(),
                last_connect_error: Mutex::new(None),
                wake_monitor: Notify::new(),
                first_waiter: Arc::new(Notify::new()),
                deadline_origin: tokio::time::Instant::now(),
                stop_monitor: Notify::new(),
                abandon_opens: Notify::new(),
                unreachable: Notify::new(),
                refused_at_ms: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                terminated: Notify::new(),
                drained: Notify::new(),
                reconnecting: AtomicBool::new(false),
                recovered_at_ms: AtomicU64::new(0),
                leak: self.cfg.leak_detection.then(|| {
                    LeakDetector::new(self.cfg.leak_detection_timeout, self.cfg.leak_backtrace)
                }),
                cfg: self.cfg,
            }
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
                tracing::error!(target: "wirepool::pool", "Pool initialization failed: {}", super::open::error_text(&e));
                return Err(e);
            }
            Some(e) => {
                tracing::error!(
                    target: "wirepool::pool",
                    "Pool initialization failed: {}; the pool starts unhealthy and reconnects on its schedule",
                    super::open::error_text(&e)
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
        acquire_timeout::spawn(&pool.shared);
        leak_task::spawn(&pool.shared);
        pool.shared.evaluate_health();
        Ok(pool)
    }
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

/// `host:port/database` of the first host: the pool's name where none is given.
#[cfg(feature = "otel")]
fn default_pool_name(c: &ConnectConfig) -> String {
    let host = c.hosts().first().map(|h| h.to_string()).unwrap_or_default();
    let port = c.ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.dbname())
}
