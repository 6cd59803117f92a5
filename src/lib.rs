//! wirepool
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
pub mod conn;
pub mod error;
pub mod protocol;
#[cfg(feature = "throwaway")]
pub mod throwaway;

pub use config::ConnectConfig;
pub use conn::{CancelToken, Connection};
pub use error::{DbError, Error, ErrorKind, Result, TimeoutPhase};
pub use protocol::{Row, TransactionStatus};
pub mod core;
pub mod observe;
pub mod pool;
mod sync;
pub use observe::{HealthReport, HealthStatus, LifecycleState, PoolStatistics};
pub use pool::{Pool, PoolConfig, PooledConnection};
