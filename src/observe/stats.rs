//! Statistics: the [`PoolStatistics`] snapshot, the close reasons and error types it
//! counts, and the acquisition-latency histogram's buckets (the counters behind it are in
//! `counters.rs`).

use std::time::SystemTime;

/// Upper bounds of the acquisition-latency buckets, in seconds. The buckets dashboards expect (1 ms,
/// 5 ms, 10 ms, 50 ms, 100 ms, 500 ms, 1 s) are all here, with finer ones below 1 ms and
/// longer ones up to the default acquire timeout; a last, implicit bucket is `+Inf`.
pub const ACQUIRE_BUCKETS: [f64; 20] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub(crate) const BUCKET_NANOS: [u64; 20] = {
    let mut out = [0u64; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (ACQUIRE_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// The quantile `q` of a histogram over [`ACQUIRE_BUCKETS`], in milliseconds, interpolated
/// within its bucket.
pub(crate) fn quantile_ms(histogram: &[u64; 21], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut seen = 0u64;
    for (i, &n) in histogram.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lo = if i == 0 { 0.0 } else { ACQUIRE_BUCKETS[i - 1] };
            let hi = ACQUIRE_BUCKETS.get(i).copied().unwrap_or(lo);
            let frac = (rank - seen as f64) / n as f64;
            return Some((lo + (hi - lo) * frac) * 1e3);
        }
        seen += n;
    }
    Some(ACQUIRE_BUCKETS[19] * 1e3)
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// It came back broken (I/O error, FATAL, protocol error).
    Broken,
    /// It reached `max_lifetime`.
    MaxLifetime,
    /// It sat idle longer than `idle_timeout` (above `min_size`).
    IdleTimeout,
    /// A background validation (keepalive) failed.
    ValidationFailed,
    /// It came back dirty and could not be reset (rollback or drain failed).
    ResetFailed,
    /// The caller closed or detached it.
    Caller,
    /// The pool shut down.
    Shutdown,
    /// The server ended the session while it sat idle in the pool (a FATAL such as
    /// `pg_terminate_backend` or `idle_session_timeout`, a restart, a reset socket); found
    /// at checkout or by the monitor, before any caller used it.
    ServerClosed,
}

impl CloseReason {
    /// Every reason, in label order (the order of declaration, which indexes the counters).
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Broken,
        CloseReason::MaxLifetime,
        CloseReason::IdleTimeout,
        CloseReason::ValidationFailed,
        CloseReason::ResetFailed,
        CloseReason::Caller,
        CloseReason::Shutdown,
        CloseReason::ServerClosed,
    ];

    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Broken => "broken",
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ValidationFailed => "validation_failed",
            CloseReason::ResetFailed => "reset_failed",
            CloseReason::Caller => "caller",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ServerClosed => "server_closed",
        }
    }
}

/// A kind of pool error, as counted in statistics and the `errors_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorType {
    /// Opening a connection failed.
    Connect,
    /// A new connection failed its `SELECT 1` validation.
    Validation,
    /// `acquire()` timed out.
    AcquireTimeout,
    /// A query ran past the command timeout.
    CommandTimeout,
    /// A connection came back broken.
    Broken,
}

impl ErrorType {
    /// Every type, in label order (the order of declaration, which indexes the counters).
    pub const ALL: [ErrorType; 5] = [
        ErrorType::Connect,
        ErrorType::Validation,
        ErrorType::AcquireTimeout,
        ErrorType::CommandTimeout,
        ErrorType::Broken,
    ];

    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Connect => "connect",
            ErrorType::Validation => "validation",
            ErrorType::AcquireTimeout => "acquire_timeout",
            ErrorType::CommandTimeout => "command_timeout",
            ErrorType::Broken => "broken",
        }
    }
}

/// A snapshot of the pool's statistics, under the field names of the health report's
/// schema, and more.
///
/// Each field is read atomically, but the snapshot is not one consistent cut: a release
/// that happens while the snapshot is taken may show in `total_releases` and not yet in
/// `idle_connections`. Sizes are exact at the moment each is read; counters never go back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolStatistics {
    /// Open connections (idle + active + held by the pool for maintenance).
    pub total_connections: usize,
    /// Connections available for immediate use.
    pub idle_connections: usize,
    /// Connections checked out to callers.
    pub active_connections: usize,
    /// Callers queued for a connection.
    pub waiting_requests: usize,
    /// Connections being opened right now.
    pub opening_connections: usize,
    /// Connections the pool holds for validation or reset.
    pub maintenance_connections: usize,
    /// Open connections that are encrypted (TLS).
    pub encrypted_connections: usize,
    /// Open connections per server (`host:port`), sorted by server.
    pub connections_by_host: Vec<(String, usize)>,
    /// The server (`host:port`) of the newest connection.
    pub current_host: Option<String>,
    /// The configured `min_size`.
    pub min_size: usize,
    /// The configured `max_size`.
    pub max_size: usize,
    /// Mean time to acquire a connection, in milliseconds.
    pub avg_acquisition_time_ms: f64,
    /// The most connections checked out at once since the pool was created.
    pub peak_active_connections: usize,
    /// The longest any acquisition has waited, in milliseconds.
    pub peak_wait_time_ms: f64,
    /// Successful acquisitions since the pool was created.
    pub total_acquisitions: u64,
    /// Connections handed back since the pool was created.
    pub total_releases: u64,
    /// Acquisitions that had to wait (no idle connection at the time).
    pub acquisitions_waited: u64,
    /// Acquisitions that timed out.
    pub acquire_timeouts: u64,
    /// Acquisitions abandoned by the caller (future dropped) while waiting.
    pub acquires_cancelled: u64,
    /// Connections opened since the pool was created.
    pub connections_created: u64,
    /// Connections closed, by reason.
    pub connections_closed: [(CloseReason, u64); 8],
    /// Errors, by type.
    pub errors: [(ErrorType, u64); 5],
    /// Potential leaks reported by the leak detector.
    pub leaks_detected: u64,
    /// Reconnection attempts made while the database was unreachable.
    pub reconnect_attempts: u64,
    /// Connections tried while the database was unreachable and callers waited, at the
    /// probe interval rather than the schedule's (one at a time; see
    /// `PoolConfig::reconnect_probe_interval`). Not counted in `reconnect_attempts`.
    pub reconnect_probes: u64,
    /// [`Listener`](crate::Listener)s of the pool not yet dropped, ended ones included
    /// (their connections are outside `max_size`).
    pub listeners: usize,
    /// Of those, the ones connected as of their last call (the others are reconnecting or
    /// ended; a loss is seen at a listener's next call).
    pub listeners_connected: usize,
    /// Reconnection attempts of the pool's listeners.
    pub listener_reconnects: u64,
    /// Notifications the pool's listeners have delivered.
    pub notifications_received: u64,
    /// Connections serving the shared path (`pool.query`, `pool.execute`, ...) now; they
    /// count among the active connections.
    pub pipelined_connections: usize,
    /// Shared-path statements in flight (sent or queued on a connection, not answered).
    pub statements_in_flight: usize,
    /// The most shared-path statements in flight per connection (`pipeline_depth`).
    pub pipeline_depth: usize,
    /// Shared-path callers waiting because every connection had `pipeline_depth` in
    /// flight (they are counted in `waiting_requests` too).
    pub pipeline_waiting: usize,
    /// Statements run through the shared path since the pool was created.
    pub pipelined_statements: u64,
    /// Shared-path statements after which the server said the session changed: a
    /// transaction left open (the pool rolled it back) or a reported setting changed (the
    /// connection left the shared path and was reset). Each is also logged with the
    /// statement's text; any at all means a statement that needs `acquire()` ran there.
    pub pipelined_session_changes: u64,
    /// Room left on the connections serving the shared path: the sum over them of
    /// `pipeline_depth` less their statements in flight. Health counts each connection's
    /// free share of its depth as that much of an idle connection.
    pub pipeline_free_slots: usize,
    /// Queries whose statement was already prepared on their connection.
    pub statement_cache_hits: u64,
    /// Queries that had to prepare their statement first.
    pub statement_cache_misses: u64,
    /// Counts per bucket of [`ACQUIRE_BUCKETS`] (not cumulative), then `+Inf`.
    pub acquisition_histogram: [u64; 21],
    /// Sum of all acquisition times, in seconds.
    pub acquisition_time_sum_seconds: f64,
    /// How long callers held their connections (checkout to return): counts per bucket of
    /// [`ACQUIRE_BUCKETS`] (not cumulative), then `+Inf`. Use time up with wait time flat:
    /// the database (or the application) is slow; wait time up with use time flat: the
    /// pool is too small.
    pub use_histogram: [u64; 21],
    /// Sum of all use times, in seconds.
    pub use_time_sum_seconds: f64,
    /// Mean use time, in milliseconds.
    pub avg_use_time_ms: f64,
    /// When the last acquisition slower than the health threshold happened.
    pub last_slow_acquire_time: Option<SystemTime>,
    /// The latest time at which a slow acquisition began to wait.
    pub last_slow_acquire_began: Option<SystemTime>,
    /// The latest time at which an operation that failed (and counted as an error) began.
    pub last_error_began: Option<SystemTime>,
    /// When the pool last recovered from an outage (`min_size` validated connections
    /// restored); errors and slow acquisitions that began before it no longer count
    /// against its health.
    pub recovered_at: Option<SystemTime>,
    /// Connect attempts that failed in a row (0 while the database answers). After
    /// connections are lost, the pool opens one replacement at a time until one succeeds,
    /// so an outage starts this at 1 (plus any connects already under way), and the
    /// reconnector's failed attempts and probes add to it.
    pub connect_failures: u64,
    /// Round trip of the last validation or keepalive query, in milliseconds; `None`
    /// while no connection is open.
    pub latency_ms: Option<f64>,
    /// When the pool was created.
    pub pool_created_at: SystemTime,
    /// When health was last computed (by the pool's own monitor or a caller).
    pub last_health_check: Option<SystemTime>,
    /// The last error the pool met.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_time: Option<SystemTime>,
}

impl PoolStatistics {
    pub(crate) fn empty(created: SystemTime) -> PoolStatistics {
        PoolStatistics {
            total_connections: 0,
            idle_connections: 0,
            active_connections: 0,
            waiting_requests: 0,
            opening_connections: 0,
            maintenance_connections: 0,
            encrypted_connections: 0,
            connections_by_host: Vec::new(),
            current_host: None,
            min_size: 0,
            max_size: 0,
            avg_acquisition_time_ms: 0.0,
            peak_active_connections: 0,
            peak_wait_time_ms: 0.0,
            total_acquisitions: 0,
            total_releases: 0,
            acquisitions_waited: 0,
            acquire_timeouts: 0,
            acquires_cancelled: 0,
            connections_created: 0,
            connections_closed: CloseReason::ALL.map(|r| (r, 0)),
            errors: ErrorType::ALL.map(|t| (t, 0)),
            leaks_detected: 0,
            reconnect_attempts: 0,
            reconnect_probes: 0,
            statement_cache_hits: 0,
            statement_cache_misses: 0,
            acquisition_histogram: [0; 21],
            acquisition_time_sum_seconds: 0.0,
            use_histogram: [0; 21],
            listeners: 0,
            listeners_connected: 0,
            listener_reconnects: 0,
            notifications_received: 0,
            pipelined_connections: 0,
            statements_in_flight: 0,
            pipeline_depth: 0,
            pipeline_waiting: 0,
            pipelined_statements: 0,
            pipelined_session_changes: 0,
            pipeline_free_slots: 0,
            use_time_sum_seconds: 0.0,
            avg_use_time_ms: 0.0,
            last_slow_acquire_time: None,
            last_slow_acquire_began: None,
            last_error_began: None,
            recovered_at: None,
            connect_failures: 0,
            latency_ms: None,
            pool_created_at: created,
            last_health_check: None,
            last_error: None,
            last_error_time: None,
        }
    }

    /// The acquisition-time quantile `q` (0..=1) in milliseconds, interpolated within the
    /// histogram bucket it falls in; `None` before the first acquisition.
    pub fn acquisition_quantile_ms(&self, q: f64) -> Option<f64> {
        quantile_ms(&self.acquisition_histogram, q)
    }

    /// The use-time quantile `q` (0..=1) in milliseconds, as
    /// [`acquisition_quantile_ms`](Self::acquisition_quantile_ms); `None` before the first
    /// return.
    pub fn use_quantile_ms(&self, q: f64) -> Option<f64> {
        quantile_ms(&self.use_histogram, q)
    }

    /// Connections closed for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.connections_closed
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Errors of type `ty`.
    pub fn errors_of(&self, ty: ErrorType) -> u64 {
        self.errors
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(0, |(_, n)| *n)
    }

    /// The leak heuristic of the health report: acquisitions - releases - active (0 in a healthy pool).
    pub fn leak_count(&self) -> i64 {
        self.total_acquisitions as i64 - self.total_releases as i64 - self.active_connections as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::observe::counters::Counters;

    #[test]
    fn label_order_is_declaration_order() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, t) in ErrorType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let c = Counters::new(Duration::from_millis(100));
        let (mut a, mut b) = (c.conn_tally(), c.conn_tally());
        for _ in 0..90 {
            c.record_immediate_acquire(&mut a);
        }
        for _ in 0..10 {
            c.record_waited_acquire(&mut a, Duration::from_millis(40));
        }
        let mut s = PoolStatistics::empty(SystemTime::now());
        c.fill(&mut s);
        assert_eq!(s.total_acquisitions, 100);
        assert_eq!(s.acquisitions_waited, 10);
        assert!(s.acquisition_quantile_ms(0.5).unwrap() <= 0.01);
        let p95 = s.acquisition_quantile_ms(0.95).unwrap();
        assert!((25.0..=50.0).contains(&p95), "{p95}");
        assert!((s.avg_acquisition_time_ms - 4.0).abs() < 1e-6);
        assert!((s.peak_wait_time_ms - 40.0).abs() < 1e-6);
        assert!(s.last_slow_acquire_time.is_none());
        c.record_waited_acquire(&mut b, Duration::from_millis(150));
        c.fill(&mut s);
        assert!(s.last_slow_acquire_time.is_some());
    }
}
