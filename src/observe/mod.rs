//! Observability: statistics, lifecycle and health, leak detection, the health report, Prometheus text.

crate::internal_mod! {
    /// The pool's counters (the hot path's atomic adds).
    counters
}
pub mod health;
crate::internal_mod! {
    /// The leak detector's checkout slots and timing wheel.
    leak
}
pub mod prometheus;
pub mod report;
pub mod statement_metrics;
pub mod stats;

pub use health::{
    can_serve, classify, headroom, idle_ratio, HealthStatus, HealthThresholds, LifecycleState,
};
pub use report::HealthReport;
pub use stats::{CloseReason, ErrorType, PoolStatistics, ACQUIRE_BUCKETS};
