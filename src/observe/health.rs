//! Lifecycle states and the three-tier health classification.
//!
//! [`classify`] is a pure function of a statistics snapshot, the lifecycle state, the
//! thresholds and `now`; the pool's monitor calls it on every tick and logs each lifecycle
//! transition as `Health status: A -> B`.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::stats::PoolStatistics;

/// The three-tier health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Full capacity, no recent errors, no slow acquisitions.
    Healthy,
    /// Working, with reduced idle capacity, recent errors or slow acquisitions.
    Degraded,
    /// Cannot serve: no connections, severe capacity shortage, or shutting down.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`, as in the health JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// The value of the `health_status` gauge: 0 healthy, 1 degraded, 2 unhealthy.
    pub fn gauge_value(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pool's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LifecycleState {
    /// Opening and validating the first `min_size` connections.
    Initializing = 0,
    /// Classified healthy.
    Healthy = 1,
    /// Classified degraded.
    Degraded = 2,
    /// Classified unhealthy.
    Unhealthy = 3,
    /// After an outage, until the reconnector has restored `min_size` validated
    /// connections.
    Recovering = 4,
    /// `close()` was called: draining.
    ShuttingDown = 5,
    /// Closed; every connection is gone.
    Terminated = 6,
}

impl LifecycleState {
    /// The state's name in upper case, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Initializing => "INITIALIZING",
            LifecycleState::Healthy => "HEALTHY",
            LifecycleState::Degraded => "DEGRADED",
            LifecycleState::Unhealthy => "UNHEALTHY",
            LifecycleState::Recovering => "RECOVERING",
            LifecycleState::ShuttingDown => "SHUTTING_DOWN",
            LifecycleState::Terminated => "TERMINATED",
        }
    }

    pub(crate) fn from_u8(v: u8) -> LifecycleState {
        match v {
            0 => LifecycleState::Initializing,
            1 => LifecycleState::Healthy,
            2 => LifecycleState::Degraded,
            3 => LifecycleState::Unhealthy,
            4 => LifecycleState::Recovering,
            5 => LifecycleState::ShuttingDown,
            _ => LifecycleState::Terminated,
        }
    }

    /// Every state, in the order of their numbers.
    pub const ALL: [LifecycleState; 7] = [
        LifecycleState::Initializing,
        LifecycleState::Healthy,
        LifecycleState::Degraded,
        LifecycleState::Unhealthy,
        LifecycleState::Recovering,
        LifecycleState::ShuttingDown,
        LifecycleState::Terminated,
    ];

    /// The lifecycle state that follows from a classification, given whether the
    /// reconnector is restoring connections after an outage (RECOVERING until `min_size`
    /// validated connections are back, whatever the classification meanwhile).
    pub fn from_status(status: HealthStatus, recovering: bool) -> LifecycleState {
        match status {
            _ if recovering => LifecycleState::Recovering,
            HealthStatus::Healthy => LifecycleState::Healthy,
            HealthStatus::Degraded => LifecycleState::Degraded,
            HealthStatus::Unhealthy => LifecycleState::Unhealthy,
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thresholds of the classification (see `docs/health-model.md`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// Headroom (see [`headroom`]) at or above which the pool can be healthy. Default: 0.8.
    pub healthy_headroom: f64,
    /// Headroom below which the pool is unhealthy. Default: 0.5.
    pub unhealthy_headroom: f64,
    /// How long an error keeps the pool degraded. Default: 60 s.
    pub error_window: Duration,
    /// An acquisition slower than this keeps the pool degraded for `error_window`.
    /// Default: 100 ms.
    pub slow_acquire: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            healthy_headroom: 0.8,
            unhealthy_headroom: 0.5,
            error_window: Duration::from_secs(60),
            slow_acquire: Duration::from_millis(100),
        }
    }
}

fn within(t: Option<SystemTime>, now: SystemTime, window: Duration) -> bool {
    match t {
        // A time in the future (clock stepped back) counts as recent.
        Some(t) => now.duration_since(t).map_or(true, |age| age <= window),
        None => false,
    }
}

/// The share of `max_size` a new caller can have without waiting: idle connections, those
/// the pool holds for a moment to validate or reset them, those being opened that no
/// caller waits for, and the capacity not yet opened,
/// `(idle + maintenance + max(opening - waiting, 0) + max_size - open - opening) / max_size`; a
/// connection serving the shared path (`pool.query`) counts as the free share of its
/// `pipeline_depth` (one with 4 of 16 statements in flight as three quarters of an idle
/// connection), so a pool whose every connection is pipelining with room to spare is
/// not mistaken for a saturated one.
///
/// This is how wirepool reads "idle connections as a share of the total" (see
/// `docs/health-model.md`): a pool that keeps `total` near `max_size`, where the two agree; a pool that opens
/// connections on demand has `total` near what it uses, and the literal share would call
/// two busy connections out of two open "unhealthy" although eight more can be opened
/// at once and nobody waits. The literal share is exported as its own metric.
pub fn headroom(s: &PoolStatistics) -> f64 {
    let used = s.total_connections + s.opening_connections;
    let cap = s.max_size.max(used).max(1);
    // A connection being opened that no caller waits for will be idle in a moment (after
    // an outage the pool opens what its waiters asked for; they may have been served
    // meanwhile): it is room, not load.
    let unclaimed = s.opening_connections.saturating_sub(s.waiting_requests);
    let lanes = s.pipeline_free_slots as f64 / s.pipeline_depth.max(1) as f64;
    // A connection being reset on its return (most returns, under the default policy) is
    // idle again after one round trip: room too.
    let free = s.idle_connections + s.maintenance_connections + unclaimed + (cap - used);
    (free as f64 + lanes).min(cap as f64) / cap as f64
}

/// `idle_connections / total_connections`, the literal share (0 with no
/// connection).
pub fn idle_ratio(s: &PoolStatistics) -> f64 {
    if s.total_connections == 0 {
        0.0
    } else {
        s.idle_connections as f64 / s.total_connections as f64
    }
}

/// True while a caller can be served now: the pool is not shutting down, and it has an
/// open connection or can open one (the database answers). A saturated pool can serve:
/// its callers wait in line for a connection that will come back.
pub fn can_serve(s: &PoolStatistics, state: LifecycleState) -> bool {
    !matches!(
        state,
        LifecycleState::ShuttingDown | LifecycleState::Terminated
    ) && (s.total_connections > 0 || s.connect_failures == 0)
}

/// Classifies a snapshot, in this order:
///
/// 1. shutting down or terminated: unhealthy;
/// 2. no open connection: unhealthy (unless `min_size` is 0 and connects succeed: such a
///    pool at rest has none open);
/// 3. [`headroom`] below `unhealthy_headroom`: unhealthy (a severe capacity shortage);
/// 4. headroom below `healthy_headroom`: degraded;
/// 5. an error within `error_window`: degraded;
/// 6. an acquisition slower than `slow_acquire` within `error_window`: degraded;
/// 7. otherwise healthy.
///
/// Errors and slow acquisitions whose operation began before
/// [`PoolStatistics::recovered_at`] (callers who waited through an outage) no longer
/// count once the pool has recovered; new ones count as before.
pub fn classify(
    s: &PoolStatistics,
    state: LifecycleState,
    t: &HealthThresholds,
    now: SystemTime,
) -> HealthStatus {
    classify_with_cause(s, state, t, now).0
}

/// Why a classification came out as it did: the first rule of [`classify`] that held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cause {
    /// Rule 1: `close()` was called.
    ShuttingDown,
    /// Rule 2: no open connection.
    NoConnections,
    /// Rule 3: headroom (the value) below `unhealthy_headroom`.
    SevereShortage(f64),
    /// Rule 4: headroom below `healthy_headroom`.
    ReducedCapacity(f64),
    /// Rule 5: an error within the window.
    RecentError,
    /// Rule 6: a slow acquisition within the window.
    SlowAcquire,
    /// Rule 7.
    Healthy,
}

impl Cause {
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // read by the status page
    /// The reason in the monitoring guide's words, with the figures behind it.
    pub(crate) fn describe(self, state: LifecycleState, t: &HealthThresholds) -> String {
        let pct = |v: f64| (v * 100.0).round();
        let window = t.error_window.as_secs();
        let why = match self {
            Cause::ShuttingDown if state == LifecycleState::Terminated => {
                "Pool closed: all connections closed, resources released".to_string()
            }
            Cause::ShuttingDown => {
                "Graceful shutdown: waiting for active queries to complete".to_string()
            }
            Cause::NoConnections => {
                "Pool cannot serve requests: no connections available (total_connections == 0)"
                    .to_string()
            }
            Cause::SevereShortage(room) => format!(
                "Severe capacity shortage: idle capacity {}% of the pool (below {}%)",
                pct(room),
                pct(t.unhealthy_headroom)
            ),
            Cause::ReducedCapacity(room) => format!(
                "Reduced capacity: idle capacity {}% of the pool ({}-{}%)",
                pct(room),
                pct(t.unhealthy_headroom),
                pct(t.healthy_headroom) - 1.0
            ),
            Cause::RecentError => {
                format!("Recent errors occurred (within the last {window} seconds)")
            }
            Cause::SlowAcquire => format!(
                "Peak wait time above {} ms (within the last {window} seconds)",
                t.slow_acquire.as_millis()
            ),
            Cause::Healthy => "Operating at full capacity with no issues".to_string(),
        };
        match state {
            LifecycleState::Recovering => {
                format!("Reconnection attempts in progress; {}", lower_first(&why))
            }
            LifecycleState::Initializing => {
                format!(
                    "Creating the first min_size connections; {}",
                    lower_first(&why)
                )
            }
            _ => why,
        }
    }
}

#[cfg_attr(not(feature = "axum"), allow(dead_code))] // read by the status page
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// [`classify`], with the rule that decided it.
pub(crate) fn classify_with_cause(
    s: &PoolStatistics,
    state: LifecycleState,
    t: &HealthThresholds,
    now: SystemTime,
) -> (HealthStatus, Cause) {
    if matches!(
        state,
        LifecycleState::ShuttingDown | LifecycleState::Terminated
    ) {
        return (HealthStatus::Unhealthy, Cause::ShuttingDown);
    }
    // A pool that keeps none at rest (`min_size` 0) and can open one is at its idle
    // capacity with none open, as the guide reads `total_connections == min_size`.
    if s.total_connections == 0 && (s.min_size > 0 || s.connect_failures > 0) {
        return (HealthStatus::Unhealthy, Cause::NoConnections);
    }
    let room = headroom(s);
    if room < t.unhealthy_headroom {
        return (HealthStatus::Unhealthy, Cause::SevereShortage(room));
    }
    let since_recovery = |began: Option<SystemTime>| match (s.recovered_at, began) {
        (Some(r), Some(b)) => b >= r,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if room < t.healthy_headroom {
        return (HealthStatus::Degraded, Cause::ReducedCapacity(room));
    }
    if within(s.last_error_time, now, t.error_window) && since_recovery(s.last_error_began) {
        return (HealthStatus::Degraded, Cause::RecentError);
    }
    if within(s.last_slow_acquire_time, now, t.error_window)
        && since_recovery(s.last_slow_acquire_began)
    {
        return (HealthStatus::Degraded, Cause::SlowAcquire);
    }
    (HealthStatus::Healthy, Cause::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of `min_size` 2 and `max_size` 10 with `total` open connections, `idle` of
    /// them idle.
    fn stats(total: usize, idle: usize) -> PoolStatistics {
        let mut s = PoolStatistics::empty(SystemTime::UNIX_EPOCH);
        s.min_size = 2;
        s.max_size = 10;
        s.total_connections = total;
        s.idle_connections = idle;
        s.active_connections = total - idle;
        s
    }

    #[test]
    fn connections_being_reset_are_room() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Two callers busy on a pool of ten with four open: one idle, one being reset.
        let mut s = stats(4, 1);
        s.active_connections = 2;
        s.maintenance_connections = 1;
        assert!((headroom(&s) - 0.8).abs() < 1e-9);
        assert_eq!(
            classify(&s, LifecycleState::Healthy, &t, now),
            HealthStatus::Healthy
        );
    }

    #[test]
    fn connections_being_opened_for_nobody_are_room() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = LifecycleState::Healthy;
        // Just after an outage: 2 open and idle, 8 being opened, the waiters served.
        let mut s = stats(2, 2);
        s.opening_connections = 8;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Healthy);
        // The same with 8 callers waiting for them: a shortage.
        s.idle_connections = 0;
        s.active_connections = 2;
        s.waiting_requests = 8;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Unhealthy);
    }

    #[test]
    fn pipelining_connections_count_by_their_room() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = LifecycleState::Healthy;
        // Every connection serves the shared path: active, yet with room.
        let mut s = stats(10, 0);
        s.pipeline_depth = 16;
        s.pipelined_connections = 10;
        s.pipeline_free_slots = 10 * 14;
        assert!((headroom(&s) - 0.875).abs() < 1e-9);
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Healthy);
        s.pipeline_free_slots = 10 * 8;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Degraded);
        // Full, callers waiting: saturated.
        s.pipeline_free_slots = 0;
        s.waiting_requests = 40;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Unhealthy);
    }

    #[test]
    fn the_guides_rules() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = LifecycleState::Healthy;
        // At max_size, headroom is the idle share.
        assert_eq!(classify(&stats(10, 10), up, &t, now), HealthStatus::Healthy);
        assert_eq!(classify(&stats(10, 8), up, &t, now), HealthStatus::Healthy);
        assert_eq!(classify(&stats(10, 7), up, &t, now), HealthStatus::Degraded);
        assert_eq!(classify(&stats(10, 5), up, &t, now), HealthStatus::Degraded);
        assert_eq!(
            classify(&stats(10, 4), up, &t, now),
            HealthStatus::Unhealthy
        );
        // Below max_size, the capacity not yet opened counts: two busy connections of
        // two open, eight more to be had at once.
        assert_eq!(classify(&stats(2, 0), up, &t, now), HealthStatus::Healthy);
        assert_eq!(headroom(&stats(2, 0)), 0.8);
        assert_eq!(idle_ratio(&stats(2, 0)), 0.0);
        assert_eq!(classify(&stats(4, 0), up, &t, now), HealthStatus::Degraded);
        assert_eq!(classify(&stats(6, 0), up, &t, now), HealthStatus::Unhealthy);
        // Connections being opened for callers who wait for them are not available yet.
        let mut s = stats(2, 0);
        s.opening_connections = 4;
        s.waiting_requests = 4;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Unhealthy);
        assert_eq!(classify(&stats(0, 0), up, &t, now), HealthStatus::Unhealthy);
        assert_eq!(
            classify(&stats(10, 10), LifecycleState::ShuttingDown, &t, now),
            HealthStatus::Unhealthy
        );

        let mut s = stats(4, 4);
        s.last_error_time = Some(now - Duration::from_secs(59));
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Degraded);
        s.last_error_time = Some(now - Duration::from_secs(61));
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Healthy);
        s.last_slow_acquire_time = Some(now - Duration::from_secs(5));
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Degraded);
    }

    #[test]
    fn after_recovery_only_what_began_since_counts() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = LifecycleState::Healthy;
        let mut s = stats(2, 2);
        s.recovered_at = Some(now - Duration::from_secs(3));
        // The outage's errors and a caller who waited through it: both began before.
        s.last_error_time = Some(now - Duration::from_secs(2));
        s.last_error_began = Some(now - Duration::from_secs(10));
        s.last_slow_acquire_time = Some(now - Duration::from_secs(2));
        s.last_slow_acquire_began = Some(now - Duration::from_secs(5));
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Healthy);
        // A new error after the recovery counts as before.
        s.last_error_began = Some(now - Duration::from_secs(1));
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Degraded);
        s.last_error_began = Some(now - Duration::from_secs(10));
        s.last_slow_acquire_began = Some(now - Duration::from_secs(1));
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Degraded);
    }

    #[test]
    fn can_serve_unless_closing_or_unreachable_with_nothing_open() {
        let up = LifecycleState::Healthy;
        let mut s = stats(10, 0);
        s.waiting_requests = 50;
        assert!(
            can_serve(&s, up),
            "saturated, but callers get served in turn"
        );
        assert!(!can_serve(&s, LifecycleState::ShuttingDown));
        assert!(!can_serve(&s, LifecycleState::Terminated));
        let mut down = stats(0, 0);
        down.connect_failures = 3;
        assert!(!can_serve(&down, LifecycleState::Recovering));
        down.connect_failures = 0;
        assert!(
            can_serve(&down, up),
            "min_size 0: a connection can be opened"
        );
    }

    #[test]
    fn no_open_connection_is_unhealthy_unless_the_pool_keeps_none_and_can_open_one() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = LifecycleState::Healthy;
        let mut s = stats(0, 0);
        s.min_size = 2;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Unhealthy);
        s.min_size = 0;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Healthy);
        s.connect_failures = 1;
        assert_eq!(classify(&s, up, &t, now), HealthStatus::Unhealthy);
    }

    #[test]
    fn thresholds_are_configurable() {
        let t = HealthThresholds {
            healthy_headroom: 0.5,
            unhealthy_headroom: 0.1,
            ..Default::default()
        };
        let now = SystemTime::now();
        assert_eq!(
            classify(&stats(10, 5), LifecycleState::Healthy, &t, now),
            HealthStatus::Healthy
        );
        assert_eq!(
            classify(&stats(10, 1), LifecycleState::Healthy, &t, now),
            HealthStatus::Degraded
        );
    }

    #[test]
    fn lifecycle_from_status() {
        assert_eq!(
            LifecycleState::from_status(HealthStatus::Unhealthy, true),
            LifecycleState::Recovering
        );
        assert_eq!(
            LifecycleState::from_status(HealthStatus::Unhealthy, false),
            LifecycleState::Unhealthy
        );
        assert_eq!(
            LifecycleState::from_status(HealthStatus::Degraded, true),
            LifecycleState::Recovering
        );
        for v in 0..7 {
            assert_eq!(LifecycleState::from_u8(v) as u8, v);
        }
    }
}
