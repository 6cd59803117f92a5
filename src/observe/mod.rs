//! Observability: statistics, lifecycle and health, leak detection, the health report, Prometheus text.

/// Each connection's checkout counts, written by its holder alone; public only with
/// `internals`.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod checkout_tally;
/// Each connection's checkout counts, written by its holder alone.
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code, unused_imports)]
pub(crate) mod checkout_tally;
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

pub use health::{
    can_serve, classify, headroom, idle_ratio, HealthStatus, HealthThresholds, LifecycleState,
};
pub use report::HealthReport;
pub use stats::{CloseReason, ErrorType, PoolStatistics, ACQUIRE_BUCKETS};
