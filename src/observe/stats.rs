//! Statistics: lock-free counters and a fixed-bucket acquisition-latency histogram, updated
//! on the hot path with relaxed atomic adds, and the [`PoolStatistics`] snapshot.

use std::time::{Duration, SystemTime};

use crate::sync::{AtomicU64, Mutex, Ordering};

/// Upper bounds of the acquisition-latency buckets, in seconds. The guide's buckets (1 ms,
/// 5 ms, 10 ms, 50 ms, 100 ms, 500 ms, 1 s) are all here, with finer ones below 1 ms and
/// longer ones up to the default acquire timeout; a last, implicit bucket is `+Inf`.
pub const ACQUIRE_BUCKETS: [f64; 20] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const BUCKET_NANOS: [u64; 20] = {
    let mut out = [0u64; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (ACQUIRE_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

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

/// The pool's counters. Every update is a relaxed atomic add (or max). Public so that
/// benchmarks can drive the exact hot-path calls the pool makes.
#[derive(Debug)]
pub struct Counters {
    /// Acquisitions served at once; the total is this plus `waited` (one atomic add per
    /// acquisition on the fast path, and the first histogram bucket is derived from it).
    pub(crate) immediate: AtomicU64,
    pub(crate) releases: AtomicU64,
    pub(crate) waited: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) leaks: AtomicU64,
    pub(crate) reconnect_attempts: AtomicU64,
    closed: [AtomicU64; 8],
    errors: [AtomicU64; 5],
    wait_sum_nanos: AtomicU64,
    peak_wait_nanos: AtomicU64,
    buckets: [AtomicU64; 21],
    /// Unix milliseconds of the last acquisition slower than the health threshold.
    last_slow_acquire_ms: AtomicU64,
    /// Unix milliseconds at which the latest-starting slow acquisition began to wait.
    slow_acquire_began_ms: AtomicU64,
    /// Unix milliseconds at which the latest-starting failed operation began.
    error_began_ms: AtomicU64,
    /// Round trip of the last validation query, in microseconds (+1; 0 = none yet).
    latency_micros: AtomicU64,
    /// Unix milliseconds of that measurement.
    latency_at_ms: AtomicU64,
    last_health_check_ms: AtomicU64,
    last_error: Mutex<Option<(String, SystemTime)>>,
    slow_threshold_nanos: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_unix_ms(ms: u64) -> Option<SystemTime> {
    (ms != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

impl Counters {
    /// Counters; acquisitions slower than `slow_threshold` mark the pool degraded.
    pub fn new(slow_threshold: Duration) -> Counters {
        Counters {
            immediate: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            created: AtomicU64::new(0),
            leaks: AtomicU64::new(0),
            reconnect_attempts: AtomicU64::new(0),
            closed: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            wait_sum_nanos: AtomicU64::new(0),
            peak_wait_nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            last_slow_acquire_ms: AtomicU64::new(0),
            slow_acquire_began_ms: AtomicU64::new(0),
            error_began_ms: AtomicU64::new(0),
            latency_micros: AtomicU64::new(0),
            latency_at_ms: AtomicU64::new(0),
            last_health_check_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
            slow_threshold_nanos: slow_threshold.as_nanos() as u64,
        }
    }

    /// An acquisition served from the idle list without waiting. No clock is read: it
    /// counts in the lowest bucket (it took a lock and a pop, well under 10 µs).
    #[inline]
    pub fn record_immediate_acquire(&self) {
        self.immediate.fetch_add(1, Ordering::Relaxed);
    }

    /// An acquisition that waited `waited`.
    pub fn record_waited_acquire(&self, waited: Duration) {
        let nanos = waited.as_nanos().min(u64::MAX as u128) as u64;
        self.waited.fetch_add(1, Ordering::Relaxed);
        self.wait_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.peak_wait_nanos.fetch_max(nanos, Ordering::Relaxed);
        let idx = BUCKET_NANOS.iter().position(|&b| nanos <= b).unwrap_or(20);
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        if nanos > self.slow_threshold_nanos {
            let now = SystemTime::now();
            self.last_slow_acquire_ms
                .store(unix_ms(now), Ordering::Relaxed);
            self.slow_acquire_began_ms
                .fetch_max(unix_ms(now - waited), Ordering::Relaxed);
        }
    }

    /// A connection handed back.
    #[inline]
    pub fn record_release(&self) {
        self.releases.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error of `ty` and remembers its message as the pool's last error.
    /// `began` is when the failed operation started (a connect attempt, a wait, a
    /// checkout): once the pool has recovered from an outage, errors of operations that
    /// began before the recovery no longer count against its health.
    pub(crate) fn record_error(&self, ty: ErrorType, message: String, began: SystemTime) {
        self.count_error(ty, began);
        *self.last_error.lock() = Some((message, SystemTime::now()));
    }

    /// Counts an error of `ty` without replacing the last error's message (an acquire
    /// timeout while the database is unreachable: the connect error says why).
    pub(crate) fn count_error(&self, ty: ErrorType, began: SystemTime) {
        self.errors[ty as usize].fetch_add(1, Ordering::Relaxed);
        self.error_began_ms
            .fetch_max(unix_ms(began), Ordering::Relaxed);
    }

    pub(crate) fn record_latency(&self, rtt: Duration) {
        self.latency_micros
            .store(rtt.as_micros() as u64 + 1, Ordering::Relaxed);
        self.latency_at_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// How long ago the last round trip was measured (`None`: never).
    pub(crate) fn latency_age(&self) -> Option<Duration> {
        match self.latency_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                    .unwrap_or_default(),
            ),
        }
    }

    pub(crate) fn record_health_check(&self) {
        self.last_health_check_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.latency_micros.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us - 1)),
        }
    }

    pub(crate) fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.lock().clone()
    }

    /// Fills the counter part of a snapshot.
    pub(crate) fn fill(&self, s: &mut PoolStatistics) {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let immediate = r(&self.immediate);
        s.acquisitions_waited = r(&self.waited);
        // Both parts only grow, so the sum never goes back between snapshots.
        s.total_acquisitions = immediate + s.acquisitions_waited;
        s.total_releases = r(&self.releases);
        s.acquire_timeouts = r(&self.timeouts);
        s.acquires_cancelled = r(&self.cancelled);
        s.connections_created = r(&self.created);
        s.leaks_detected = r(&self.leaks);
        s.reconnect_attempts = r(&self.reconnect_attempts);
        for (i, c) in self.closed.iter().enumerate() {
            s.connections_closed[i] = (CloseReason::ALL[i], r(c));
        }
        for (i, c) in self.errors.iter().enumerate() {
            s.errors[i] = (ErrorType::ALL[i], r(c));
        }
        let wait_sum = r(&self.wait_sum_nanos);
        s.acquisition_time_sum_seconds = wait_sum as f64 / 1e9;
        s.avg_acquisition_time_ms = if s.total_acquisitions == 0 {
            0.0
        } else {
            wait_sum as f64 / 1e6 / s.total_acquisitions as f64
        };
        s.peak_wait_time_ms = r(&self.peak_wait_nanos) as f64 / 1e6;
        for (i, b) in self.buckets.iter().enumerate() {
            s.acquisition_histogram[i] = r(b);
        }
        // Immediate acquisitions took no measurable time: the first bucket.
        s.acquisition_histogram[0] += immediate;
        s.last_slow_acquire_time = from_unix_ms(r(&self.last_slow_acquire_ms));
        s.last_slow_acquire_began = from_unix_ms(r(&self.slow_acquire_began_ms));
        s.last_error_began = from_unix_ms(r(&self.error_began_ms));
        s.latency_ms = self.latency().map(|d| d.as_secs_f64() * 1e3);
        s.last_health_check = from_unix_ms(r(&self.last_health_check_ms));
        if let Some((msg, at)) = self.last_error() {
            s.last_error = Some(msg);
            s.last_error_time = Some(at);
        }
    }
}

/// A snapshot of the pool's statistics, with the guide's field names and more.
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
    /// Queries whose statement was already prepared on their connection.
    pub statement_cache_hits: u64,
    /// Queries that had to prepare their statement first.
    pub statement_cache_misses: u64,
    /// Counts per bucket of [`ACQUIRE_BUCKETS`] (not cumulative), then `+Inf`.
    pub acquisition_histogram: [u64; 21],
    /// Sum of all acquisition times, in seconds.
    pub acquisition_time_sum_seconds: f64,
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
    /// Connect attempts that failed in a row (0 while the database answers).
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
            statement_cache_hits: 0,
            statement_cache_misses: 0,
            acquisition_histogram: [0; 21],
            acquisition_time_sum_seconds: 0.0,
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
        let total: u64 = self.acquisition_histogram.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.acquisition_histogram.iter().enumerate() {
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

    /// The guide's leak heuristic: acquisitions - releases - active (0 in a healthy pool).
    pub fn leak_count(&self) -> i64 {
        self.total_acquisitions as i64 - self.total_releases as i64 - self.active_connections as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for _ in 0..90 {
            c.record_immediate_acquire();
        }
        for _ in 0..10 {
            c.record_waited_acquire(Duration::from_millis(40));
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
        c.record_waited_acquire(Duration::from_millis(150));
        c.fill(&mut s);
        assert!(s.last_slow_acquire_time.is_some());
    }
}
