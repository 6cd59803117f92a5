//! Observability: statistics, lifecycle and health, leak detection, the health report, Prometheus text.

/// The pool's counters (the hot path's atomic adds); public only with `internals`.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod counters;
/// The pool's counters (the hot path's atomic adds).
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code, unused_imports)]
pub(crate) mod counters;
pub mod health;
pub(crate) mod history;
/// The leak detector's checkout slots and timing wheel; public only with `internals`.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod leak;
/// The leak detector's checkout slots and timing wheel.
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code, unused_imports)]
pub(crate) mod leak;
pub mod prometheus;
pub(crate) mod replication_status;
pub mod report;
pub mod statement_metrics;
pub mod stats;
pub(crate) mod striped;

pub use health::{
    can_serve, classify, headroom, idle_ratio, HealthStatus, HealthThresholds, LifecycleState,
};
pub use report::HealthReport;
pub use stats::{CloseReason, ErrorType, PoolStatistics, ACQUIRE_BUCKETS};
