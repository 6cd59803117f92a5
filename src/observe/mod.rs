//! Observability: statistics, lifecycle and health, leak detection, the health report, Prometheus text.

pub mod health;
pub mod leak;
pub mod prometheus;
pub mod report;
pub mod stats;

pub use health::{
    can_serve, classify, headroom, idle_ratio, HealthStatus, HealthThresholds, LifecycleState,
};
pub use report::HealthReport;
pub use stats::{CloseReason, ErrorType, PoolStatistics, ACQUIRE_BUCKETS};
