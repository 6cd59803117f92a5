//! The state every task of a pool shares ([`Shared`]), a pooled connection with its
//! bookkeeping ([`Pooled`]), the per-server and encryption counts, and what the pool does
//! with a connection: wrap, open in the background, apply its settings, discard, close,
//! and the statistics and health read from it all; its clocks (the cheap millisecond clock
//! the hot path reads, advanced by the monitor, and the waiters' deadline clock, tokio's so
//! that paused-time tests work); and the drain that ends `close()`.

use super::builder::ConnectHooks;
use super::loss_gate::{Entry, LossGate, Pass};
use super::open::{open_or_say_why, OpenFailed};
use super::*;

/// A pooled connection with the pool's bookkeeping.
#[derive(Debug)]
pub(crate) struct Pooled {
    pub(super) conn: Connection,
    pub(super) id: u64,
    /// Monitor-clock milliseconds at which the connection retires.
    pub(super) expires_ms: u64,
    /// Monitor-clock milliseconds of its last return (or creation).
    pub(super) last_used_ms: u64,
    /// Monitor-clock milliseconds of its last keepalive check (or creation): with its last
    /// use, when the next check is due. A check is not a use: it moves no idle timeout.
    pub(super) checked_ms: u64,
    /// When it last came back from a caller (or was created), on the use-time clock: a
    /// connection at rest longer than [`super::IDLE_PROBE_AFTER_MS`] is checked with the
    /// kernel at its next checkout.
    pub(super) rested_from: super::use_clock::Stamp,
    /// Its checkout state, for the leak detector.
    pub(super) leak_slot: crate::sync::Arc<LeakSlot>,
    /// Its checkouts' counts, written by its holder alone.
    pub(super) tally: crate::observe::checkout_tally::ConnTally,
    /// Counts it among the encrypted connections while it exists.
    _encrypted: Option<EncryptedMark>,
    /// Counts it among its server's connections while it exists.
    _host: HostMark,
}

/// The pool's connections per server (`host:port`).
pub(super) type HostCounts = Arc<Mutex<Vec<(Arc<str>, usize)>>>;

/// One connection in its server's count; dropped with the connection's bookkeeping.
#[derive(Debug)]
pub(super) struct HostMark {
    counts: HostCounts,
    host: Arc<str>,
}

impl HostMark {
    pub(super) fn new(counts: &HostCounts, host: &str) -> HostMark {
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
pub(super) struct EncryptedMark(Arc<AtomicUsize>);

impl EncryptedMark {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> EncryptedMark {
        count.fetch_add(1, Ordering::Relaxed);
        EncryptedMark(count.clone())
    }
}

impl Drop for EncryptedMark {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State shared by the pool handle, its guards and its tasks.
pub(crate) struct Shared {
    /// Connections are boxed: in and out of the idle list, into guards and through
    /// futures, a move is a pointer, not the whole connection.
    pub(super) core: Core<Box<Pooled>>,
    pub(super) connect: ConnectConfig,
    pub(super) cfg: PoolConfig,
    pub(super) counters: Counters,
    pub(super) state: AtomicU8,
    pub(super) created_at: SystemTime,
    pub(super) started: Instant,
    /// Milliseconds since `started`, advanced by the monitor (and by slow paths): the cheap
    /// clock of the hot path.
    pub(super) clock_ms: AtomicU64,
    pub(super) runtime: Handle,
    pub(super) next_id: AtomicU64,
    /// Consecutive failed connects; 0 while the database answers.
    pub(super) connect_failures: AtomicU64,
    /// After connections are lost, one open at a time until one succeeds (see
    /// [`Shared::spawn_open`]).
    pub(super) loss_gate: LossGate,
    pub(super) last_connect_error: Mutex<Option<(Error, Instant)>>,
    pub(super) wake_monitor: Notify,
    /// A caller joined an empty queue: the acquire-timeout task learns its deadline.
    pub(super) first_waiter: Arc<Notify>,
    /// The origin of waiters' deadlines (tokio's clock, so that paused-time tests work).
    pub(super) deadline_origin: tokio::time::Instant,
    pub(super) stop_monitor: Notify,
    /// Under `fail_fast`, the database became unreachable (the first failed connect):
    /// callers waiting for a connection fail with the connect error.
    pub(super) unreachable: Notify,
    /// Under `fail_fast`, when (on the cheap clock, plus one; 0 for never) a caller was last
    /// refused because the database was unreachable: a caller that would have waited,
    /// for whom the reconnector probes as for one that waits.
    pub(super) refused_at_ms: AtomicU64,
    /// `close()` began: connects under way are abandoned (the drain waits for
    /// connections, not for a connect that may hang).
    pub(super) abandon_opens: Notify,
    pub(super) closing: AtomicBool,
    pub(super) terminated: Notify,
    /// During `close()`: the last connection is gone (the drain waits on it).
    pub(super) drained: Notify,
    /// Set from the start of the reconnection schedule until `min_size` validated
    /// connections are back (the pool is RECOVERING meanwhile).
    pub(super) reconnecting: AtomicBool,
    /// Unix milliseconds of the last recovery from an outage; 0 before any.
    pub(super) recovered_at_ms: AtomicU64,
    /// The leak detector's registration side, when leak detection is on.
    pub(super) leak: Option<LeakDetector>,
    /// Counts command timeouts; set on every connection.
    pub(super) timeout_hook: TimeoutHook,
    /// The pool's listeners, counted.
    pub(super) listeners: Arc<crate::listener::ListenerCounts>,
    /// How the connections trace their statements.
    pub(super) trace: Arc<crate::conn::TraceSettings>,
    /// The OpenTelemetry instruments, when the builder was given a meter.
    #[cfg(feature = "otel")]
    pub(super) otel: Option<Arc<crate::otel::Instruments>>,
    /// Statement-cache hits and misses of all the pool's connections.
    pub(super) statement_stats: Arc<CacheStats>,
    /// The types its connections looked up in the catalog.
    pub(super) types: Arc<crate::conn::TypeCache>,
    /// `pool.query` and the rest: statements pipelined on the pool's connections.
    pub(super) path: Arc<super::pipelined::SharedPath>,
    /// Open connections that are encrypted.
    pub(super) encrypted: Arc<AtomicUsize>,
    /// Open connections per server.
    pub(super) hosts: HostCounts,
    /// The server of the newest connection (`host:port`).
    pub(super) newest_host: Mutex<Option<Arc<str>>>,
    /// Run on every new connection before it is first handed out, and after a reset.
    pub(super) hooks: ConnectHooks,
    /// The last 15 minutes, a sample a second (the status page's charts).
    pub(super) history: crate::observe::history::History,
    /// Checkouts the leak detector reported that have not come back.
    pub(super) open_leaks: Mutex<Vec<super::leak_task::OpenLeak>>,
    /// During an outage: the reconnection schedule's next attempt.
    pub(super) reconnect_plan: Mutex<Option<super::monitor::ReconnectPlan>>,
    /// The replication streams shown in the health report and the metrics.
    pub(super) replication: Mutex<Vec<std::sync::Weak<crate::replication::Gauges>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connect", &self.connect)
            .field("core", &self.core)
            .finish()
    }
}

impl Shared {
    /// Logs which server a new connection went to (with several hosts), and a switch of
    /// server (a failover).
    pub(super) fn note_server(&self, conn: &Connection, host: &Arc<str>) {
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
                // Another server's OIDs are its own. The cache is keyed by server, so this
                // only keeps it from holding the types of a server the pool left.
                self.types.clear();
                self.path.clear_described();
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
    pub(super) fn configure(&self, conn: &mut Connection) {
        conn.set_command_timeout(self.cfg.command_timeout);
        conn.set_timeout_hook(Some(self.timeout_hook.clone()));
        conn.set_trace(self.trace.clone());
        conn.set_statement_cache_capacity(self.cfg.statement_cache_capacity);
        conn.set_statement_cache_stats(self.statement_stats.clone());
        conn.set_type_cache(self.types.clone());
        conn.take_settings_changed();
    }

    /// True if a returned connection's session must be reset before it is handed out
    /// again, under the pool's [`SessionReset`] policy.
    #[inline]
    pub(super) fn needs_session_reset(&self, conn: &Connection) -> bool {
        if conn.reset_demanded() {
            return true;
        }
        match self.cfg.session_reset {
            SessionReset::Never => false,
            SessionReset::WhenDirty => conn.session_dirty(),
            SessionReset::UnlessProvenClean => conn.session_unproven(),
            SessionReset::Always => true,
        }
    }

    /// Runs the connect hooks: the SQL statements, then the closure. What they set is the
    /// session's starting point: a reset puts it back, then runs them again.
    pub(super) async fn run_hooks(&self, conn: &mut Connection) -> Result<()> {
        let hooked = !self.hooks.sql.is_empty() || self.hooks.after_connect.is_some();
        if hooked {
            conn.hooks_begin();
        }
        for sql in &self.hooks.sql {
            conn.simple_query(sql).await?;
        }
        if let Some(hook) = &self.hooks.after_connect {
            hook(conn).await?;
        }
        if conn.transaction_status() != crate::TransactionStatus::Idle || conn.is_busy() {
            return Err(Error::invalid_input(
                "a connect hook left the connection inside a transaction",
            ));
        }
        if hooked {
            // The shared path's reset between statements puts these back after RESET ALL.
            conn.capture_session_restore().await?;
        }
        conn.mark_session_clean();
        Ok(())
    }

    /// The reconnector has restored `min_size` validated connections: the outage is over.
    /// Errors and slow acquisitions that began before now stop counting against health.
    pub(super) fn mark_recovered(&self) {
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

    pub(super) fn state(&self) -> LifecycleState {
        LifecycleState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves to `new`, logging the transition once.
    pub(super) fn set_state(&self, new: LifecycleState) {
        let old = LifecycleState::from_u8(self.state.swap(new as u8, Ordering::AcqRel));
        if old != new {
            if new == LifecycleState::Unhealthy {
                tracing::warn!(target: "wirepool::health", from = old.as_str(), to = new.as_str(), "Health status: {old} -> {new}");
            } else {
                tracing::info!(target: "wirepool::health", from = old.as_str(), to = new.as_str(), "Health status: {old} -> {new}");
            }
        }
    }

    pub(super) fn wrap(&self, conn: Connection) -> Box<Pooled> {
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
            checked_ms: now,
            rested_from: super::use_clock::Stamp::now(),
            leak_slot,
            tally: self.counters.conn_tally(),
            _encrypted,
            _host,
        })
    }

    /// Hands a newly opened connection to the core (the oldest waiter or the idle list);
    /// if the pool closed meanwhile, closes it.
    pub(super) fn add_opened(&self, permit: OpenPermit<Box<Pooled>>, conn: Connection) {
        if let Some(p) = permit.complete(self.wrap(conn)) {
            self.close_conn(p, CloseReason::Shutdown);
        }
    }

    /// Opens a connection in a pool-owned task and hands it over with `permit`. False if
    /// it was not started: after a connection was lost, and before any connect succeeded,
    /// one open at a time tells whether the database is still there, and the permit is
    /// given back (the waiters keep their place). A database that went down is then met
    /// by one failed connect, after which the reconnector's schedule and probes alone
    /// retry, not by one connect per lost connection at once; if the open succeeds, the
    /// monitor it wakes opens the rest for the waiters in parallel.
    pub(super) fn spawn_open(self: &Arc<Self>, permit: OpenPermit<Box<Pooled>>) -> bool {
        // The one open is let run alone as long as a connect may take (or a caller may
        // wait, with no connect timeout), then another may start.
        let alone_for = self
            .connect
            .connect_timeout()
            .unwrap_or(self.cfg.acquire_timeout);
        let ticket = match self.loss_gate.enter(alone_for) {
            Entry::Free => None,
            Entry::Alone(t) => Some(t),
            Entry::Held => {
                drop(permit);
                return false;
            }
        };
        let shared = self.clone();
        self.runtime.spawn(async move {
            let pass = Pass {
                gate: &shared.loss_gate,
                ticket,
            };
            // What the connect says is recorded before the gate is given back, and the gate
            // before the permit is completed or given back: the next open to start (once
            // the pool counts none under way) sees both.
            let conn = match shared.open_unless_closing().await {
                None => None, // close() began: the drain does not wait for it
                Some(Ok(conn)) => {
                    shared.loss_gate.connected();
                    Some(conn)
                }
                Some(Err(f)) if f.session_ended && shared.loss_gate.ended_once() => {
                    // The server accepted the session, then ended it: the database is
                    // there. The monitor woken below opens the next one at once.
                    tracing::debug!(target: "wirepool::pool", "a new connection was ended as it was validated: {}", super::open::error_text(&f.error));
                    None
                }
                Some(Err(f)) => {
                    shared.connect_failed(f.error);
                    None
                }
            };
            drop(pass);
            match conn {
                Some(conn) => {
                    if shared.connect_failures.swap(0, Ordering::AcqRel) > 0 {
                        // The database is back: listeners waiting out their schedule try
                        // at once.
                        shared.listeners.database_back.notify_waiters();
                    }
                    shared.add_opened(permit, conn);
                }
                None => drop(permit),
            }
            shared.note_drained();
            shared.wake_monitor.notify_one();
        });
        true
    }

    /// A connect failed: counted (the first of a run is logged, and under `fail_fast`
    /// fails the callers already waiting), and kept as the last connect error.
    fn connect_failed(&self, e: Error) {
        let n = self.connect_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n == 1 {
            tracing::warn!(target: "wirepool::pool", "Database connection lost: {}", super::open::error_text(&e));
        }
        *self.last_connect_error.lock() = Some((e, Instant::now()));
        if n == 1 && self.cfg.fail_fast {
            // Callers already waiting fail now, as they would have if they came now.
            self.unreachable.notify_waiters();
        }
    }

    /// Opens a connection, unless `close()` began before or begins meanwhile (`None`):
    /// the drain waits for the pool's connections, not for a connect that may hang.
    async fn open_unless_closing(&self) -> Option<std::result::Result<Connection, OpenFailed>> {
        let abandoned = self.abandon_opens.notified();
        tokio::pin!(abandoned);
        // Registered before `closing` is read: a close after the read wakes it.
        abandoned.as_mut().enable();
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        tokio::select! {
            r = open_or_say_why(self) => Some(r),
            _ = abandoned => None,
        }
    }

    /// A connection reported that its server is no longer of the kind the pool asked for
    /// (`target_session_attrs`: a standby promoted, a primary demoted): the pool's idle
    /// connections to that server are closed too, before anyone gets them; new connections
    /// look for a server of the right kind.
    pub(super) fn server_kind_changed(self: &Arc<Self>, conn: &Connection) {
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
    pub(super) fn discard(self: &Arc<Self>, p: Box<Pooled>, holder: Holder, reason: CloseReason) {
        if p.conn.is_broken() {
            self.loss_gate.lost();
        }
        // The core first: once the close is counted, the sizes already leave it out.
        self.forget(holder);
        self.close_conn(p, reason);
    }

    /// Gives back the capacity of a connection held by `holder` that is gone (closed or
    /// detached): a waiter gets a replacement opened, unless the database is unreachable,
    /// when the reconnector alone opens connections.
    pub(super) fn forget(self: &Arc<Self>, holder: Holder) {
        if let Some(permit) = self.core.discard(holder) {
            if self.connect_failures.load(Ordering::Acquire) == 0 {
                self.spawn_open(permit);
            }
        }
        self.wake_monitor.notify_one();
        self.note_drained();
    }

    /// During `close()`, wakes the drain once the last connection is gone.
    pub(super) fn note_drained(&self) {
        if self.closing.load(Ordering::Acquire) && self.core.gauges().size == 0 {
            self.drained.notify_one();
        }
    }

    /// Closes a connection no longer counted by the core (Terminate, in the background).
    pub(super) fn close_conn(&self, p: Box<Pooled>, reason: CloseReason) {
        self.counters.record_closed(reason);
        self.note_drained();
        let conn = p.conn;
        if conn.is_broken() {
            return;
        }
        self.runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
        });
    }

    pub(super) fn statistics(&self) -> PoolStatistics {
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
            .load(Ordering::Relaxed)
            .min(s.total_connections);
        {
            use std::sync::atomic::Ordering as O;
            let l = &self.listeners;
            s.listeners = l.open.load(O::Relaxed);
            s.listeners_connected = l.connected.load(O::Relaxed);
            s.listener_reconnects = l.reconnects.load(O::Relaxed);
            s.notifications_received = l.notifications.load(O::Relaxed);
        }
        {
            let p = self.path.counts();
            s.pipelined_connections = p.lanes;
            s.statements_in_flight = p.in_flight;
            s.pipeline_depth = self.path.depth;
            s.pipeline_waiting = p.waiting;
            s.pipelined_statements = p.statements;
            s.pipelined_session_changes = p.session_changes;
            s.pipeline_free_slots = p.free_slots;
            // The shared path's own request for a connection is not a caller: the
            // statements it waits for are.
            s.waiting_requests = s
                .waiting_requests
                .saturating_sub(usize::from(self.path.asking()))
                + p.waiting;
        }
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
    pub(super) fn evaluate_health(&self) -> (PoolStatistics, HealthStatus, LifecycleState) {
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

    /// Whether the connects of a run are failing now (the database is unreachable).
    pub(super) fn connects_failing(&self) -> bool {
        self.connect_failures.load(Ordering::Acquire) > 0
    }

    /// Records an error of one of the pool's connections (found broken, or failing its
    /// check). While the database is unreachable it is only counted: the connect error
    /// stays the pool's last error, since it says why.
    pub(super) fn record_connection_error(
        &self,
        ty: ErrorType,
        message: &str,
        began: std::time::SystemTime,
    ) {
        if self.connects_failing() {
            self.counters.count_error(ty, began);
        } else {
            self.counters.record_error(ty, message.to_string(), began);
        }
    }

    pub(super) fn last_connect_error_since(&self, since: Instant) -> Option<Error> {
        self.last_connect_error
            .lock()
            .as_ref()
            .filter(|(_, at)| *at >= since || self.connects_failing())
            .map(|(e, _)| e.duplicate())
    }
}

impl Shared {
    /// The first server of the settings: where a statement that never reached one is
    /// counted (refused, or no connection to be had).
    pub(crate) fn first_target(&self) -> crate::conn::Target {
        let cfg = &self.connect;
        crate::conn::Target {
            namespace: Arc::from(cfg.dbname()),
            address: Arc::from(cfg.hosts()[0].to_string()),
            port: cfg.ports()[0],
        }
    }
}

// The clocks.
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
}

impl Shared {
    /// The second half of `close()`: waits for checked-out connections, then terminates.
    pub(super) async fn drain(&self) {
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
        // Woken by the last connection's return or close; the tick is a backstop for a
        // connection whose opening failed meanwhile (it leaves without passing the pool).
        while self.core.gauges().size > 0 && deadline.is_none_or(|d| Instant::now() < d) {
            let tick = deadline.map_or(DRAIN_TICK, |d| {
                d.saturating_duration_since(Instant::now()).min(DRAIN_TICK)
            });
            let _ = tokio::time::timeout(tick, self.drained.notified()).await;
        }
        // Statements of the shared path still in flight: their callers fail now (each told
        // whether its statement was sent), and the lanes' connections close.
        let lanes = self.path.lane_tasks().running();
        if lanes > 0 {
            tracing::warn!(
                target: "wirepool::pool",
                "{lanes} connections of the shared path still serving statements after the drain timeout; their statements fail and the connections close"
            );
            self.path.lane_tasks().abort(LANE_ABORT_BOUND).await;
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

/// How often the drain looks at the pool's size when nothing woke it.
const DRAIN_TICK: Duration = Duration::from_millis(250);

/// How long the drain waits for aborted lanes to end (a backstop: each ends within the
/// delivery of its CancelRequest, bounded by a second).
const LANE_ABORT_BOUND: Duration = Duration::from_secs(2);
