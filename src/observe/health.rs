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
    /// Unhealthy, with the reconnector working to restore connections.
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

    /// The lifecycle state that follows from a classification, given whether the
    /// reconnector is busy restoring connections.
    pub fn from_status(status: HealthStatus, reconnecting: bool) -> LifecycleState {
        match status {
            HealthStatus::Healthy => LifecycleState::Healthy,
            HealthStatus::Degraded => LifecycleState::Degraded,
            HealthStatus::Unhealthy if reconnecting => LifecycleState::Recovering,
            HealthStatus::Unhealthy => LifecycleState::Unhealthy,
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thresholds of the classification. The defaults are the guide's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// Idle share at or above which the pool can be healthy. Default: 0.8.
    pub healthy_idle_ratio: f64,
    /// Idle share below which the pool is unhealthy. Default: 0.5.
    pub unhealthy_idle_ratio: f64,
    /// How long an error keeps the pool degraded. Default: 60 s.
    pub error_window: Duration,
    /// An acquisition slower than this keeps the pool degraded for `error_window`.
    /// Default: 100 ms.
    pub slow_acquire: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            healthy_idle_ratio: 0.8,
            unhealthy_idle_ratio: 0.5,
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

/// Classifies a snapshot, in this order:
///
/// 1. shutting down or terminated: unhealthy;
/// 2. no open connection: unhealthy;
/// 3. idle share below `unhealthy_idle_ratio`: unhealthy;
/// 4. idle share below `healthy_idle_ratio`: degraded;
/// 5. an error within `error_window`: degraded;
/// 6. an acquisition slower than `slow_acquire` within `error_window`: degraded;
/// 7. otherwise healthy.
///
/// The idle share is `idle_connections / total_connections`, as the guide defines it.
pub fn classify(
    s: &PoolStatistics,
    state: LifecycleState,
    t: &HealthThresholds,
    now: SystemTime,
) -> HealthStatus {
    if matches!(
        state,
        LifecycleState::ShuttingDown | LifecycleState::Terminated
    ) {
        return HealthStatus::Unhealthy;
    }
    if s.total_connections == 0 {
        return HealthStatus::Unhealthy;
    }
    let idle_ratio = s.idle_connections as f64 / s.total_connections as f64;
    if idle_ratio < t.unhealthy_idle_ratio {
        return HealthStatus::Unhealthy;
    }
    if idle_ratio < t.healthy_idle_ratio
        || within(s.last_error_time, now, t.error_window)
        || within(s.last_slow_acquire_time, now, t.error_window)
    {
        return HealthStatus::Degraded;
    }
    HealthStatus::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(total: usize, idle: usize) -> PoolStatistics {
        let mut s = PoolStatistics::empty(SystemTime::UNIX_EPOCH);
        s.total_connections = total;
        s.idle_connections = idle;
        s.active_connections = total - idle;
        s
    }

    #[test]
    fn the_guides_rules() {
        let t = HealthThresholds::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let up = LifecycleState::Healthy;
        assert_eq!(classify(&stats(10, 10), up, &t, now), HealthStatus::Healthy);
        assert_eq!(classify(&stats(10, 8), up, &t, now), HealthStatus::Healthy);
        assert_eq!(classify(&stats(10, 7), up, &t, now), HealthStatus::Degraded);
        assert_eq!(classify(&stats(10, 5), up, &t, now), HealthStatus::Degraded);
        assert_eq!(
            classify(&stats(10, 4), up, &t, now),
            HealthStatus::Unhealthy
        );
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
    fn thresholds_are_configurable() {
        let t = HealthThresholds {
            healthy_idle_ratio: 0.5,
            unhealthy_idle_ratio: 0.1,
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
        for v in 0..7 {
            assert_eq!(LifecycleState::from_u8(v) as u8, v);
        }
    }
}
