//! The pool's counters: what the hot path updates (relaxed atomic adds), from which
//! [`PoolStatistics`] snapshots are filled.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::checkout_tally::{CheckoutCounters, ConnTally};
use super::stats::*;
use crate::sync::{AtomicU64, Mutex, Ordering};

/// How many of the last errors are kept (for the status page).
pub(crate) const RECENT_ERRORS: usize = 20;

/// One of the last errors: when, what kind, and its message (the same text as the
/// health report's `last_error`: no parameter value, no secret).
#[derive(Debug, Clone)]
pub(crate) struct RecentError {
    pub(crate) at: SystemTime,
    pub(crate) kind: ErrorType,
    pub(crate) message: String,
}

/// The pool's counters. Every update is a relaxed atomic add (or max); those of every
/// checkout go to its connection's own tally, which only its holder writes (see
/// [`super::checkout_tally`]).
#[derive(Debug)]
pub struct Counters {
    /// Acquisitions served at once or after a wait, the waits' and the uses' histograms
    /// (kept per connection: the adds of every checkout).
    checkouts: CheckoutCounters,
    pub(crate) timeouts: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) leaks: AtomicU64,
    pub(crate) reconnect_attempts: AtomicU64,
    pub(crate) reconnect_probes: AtomicU64,
    closed: [AtomicU64; 8],
    errors: [AtomicU64; 5],
    peak_wait_nanos: AtomicU64,
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
    /// The last [`RECENT_ERRORS`] errors, oldest first (the last one is the pool's last
    /// error).
    recent_errors: Mutex<VecDeque<RecentError>>,
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
            checkouts: CheckoutCounters::new(),
            timeouts: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            created: AtomicU64::new(0),
            leaks: AtomicU64::new(0),
            reconnect_attempts: AtomicU64::new(0),
            reconnect_probes: AtomicU64::new(0),
            closed: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            peak_wait_nanos: AtomicU64::new(0),
            last_slow_acquire_ms: AtomicU64::new(0),
            slow_acquire_began_ms: AtomicU64::new(0),
            error_began_ms: AtomicU64::new(0),
            latency_micros: AtomicU64::new(0),
            latency_at_ms: AtomicU64::new(0),
            last_health_check_ms: AtomicU64::new(0),
            recent_errors: Mutex::new(VecDeque::with_capacity(RECENT_ERRORS)),
            slow_threshold_nanos: slow_threshold.as_nanos() as u64,
        }
    }

    /// A tally for a new connection: its checkouts count there until it is dropped.
    pub fn conn_tally(&self) -> ConnTally {
        self.checkouts.tally()
    }

    /// An acquisition served from the idle list without waiting, counted on the tally of
    /// the connection it handed out. No clock is read: it counts in the lowest bucket (it
    /// took a lock and a pop, well under 10 µs).
    #[inline]
    pub fn record_immediate_acquire(&self, conn: &mut ConnTally) {
        conn.immediate();
    }

    /// An acquisition that waited `waited`, counted on the tally of the connection it
    /// handed out.
    pub fn record_waited_acquire(&self, conn: &mut ConnTally, waited: Duration) {
        let nanos = waited.as_nanos().min(u64::MAX as u128) as u64;
        let idx = BUCKET_NANOS.iter().position(|&b| nanos <= b).unwrap_or(20);
        conn.waited(nanos, idx);
        // Written only when it grows: the line stays shared between the threads.
        if nanos > self.peak_wait_nanos.load(Ordering::Relaxed) {
            self.peak_wait_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
        if nanos > self.slow_threshold_nanos {
            let now = SystemTime::now();
            self.last_slow_acquire_ms
                .store(unix_ms(now), Ordering::Relaxed);
            self.slow_acquire_began_ms
                .fetch_max(unix_ms(now - waited), Ordering::Relaxed);
        }
    }

    /// A caller held a connection for `held` (checkout to return), counted on its tally;
    /// it counts the release too.
    #[inline]
    pub fn record_use(&self, conn: &mut ConnTally, held: Duration) {
        let nanos = held.as_nanos().min(u64::MAX as u128) as u64;
        let idx = BUCKET_NANOS.iter().position(|&b| nanos <= b).unwrap_or(20);
        conn.used(nanos, idx);
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
        let mut recent = self.recent_errors.lock();
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(RecentError {
            at: SystemTime::now(),
            kind: ty,
            message,
        });
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
        self.recent_errors
            .lock()
            .back()
            .map(|e| (e.message.clone(), e.at))
    }

    /// The last errors, oldest first.
    pub(crate) fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors.lock().iter().cloned().collect()
    }

    /// Fills the counter part of a snapshot.
    pub(crate) fn fill(&self, s: &mut PoolStatistics) {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = self.checkouts.sum();
        let immediate = c.immediate;
        s.acquisitions_waited = c.waited;
        // Both parts only grow, so the sum never goes back between snapshots.
        s.total_acquisitions = immediate + s.acquisitions_waited;
        s.acquire_timeouts = r(&self.timeouts);
        s.acquires_cancelled = r(&self.cancelled);
        s.connections_created = r(&self.created);
        s.leaks_detected = r(&self.leaks);
        s.reconnect_attempts = r(&self.reconnect_attempts);
        s.reconnect_probes = r(&self.reconnect_probes);
        for (i, c) in self.closed.iter().enumerate() {
            s.connections_closed[i] = (CloseReason::ALL[i], r(c));
        }
        for (i, c) in self.errors.iter().enumerate() {
            s.errors[i] = (ErrorType::ALL[i], r(c));
        }
        let wait_sum = c.wait_sum_nanos;
        s.acquisition_time_sum_seconds = wait_sum as f64 / 1e9;
        s.avg_acquisition_time_ms = if s.total_acquisitions == 0 {
            0.0
        } else {
            wait_sum as f64 / 1e6 / s.total_acquisitions as f64
        };
        s.peak_wait_time_ms = r(&self.peak_wait_nanos) as f64 / 1e6;
        s.acquisition_histogram = c.wait_buckets;
        // Immediate acquisitions took no measurable time: the first bucket.
        s.acquisition_histogram[0] += immediate;
        s.use_histogram = c.use_buckets;
        let use_sum = c.use_sum_nanos;
        s.use_time_sum_seconds = use_sum as f64 / 1e9;
        // Every release records its use: the histogram's count is the releases' (one
        // counter fewer on the checkout path).
        let uses: u64 = s.use_histogram.iter().sum();
        s.total_releases = uses;
        s.avg_use_time_ms = if uses == 0 {
            0.0
        } else {
            use_sum as f64 / 1e6 / uses as f64
        };
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
