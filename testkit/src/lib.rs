//! Test support for wirepool, kept out of the library: throwaway PostgreSQL clusters
//! ([`Cluster`]: plain, with TLS, a streaming standby; [`Bouncer`]: PgBouncer in front of
//! one) and the helpers the tests, benchmarks, examples and the `wirepool demo` share:
//! [`cluster`], [`eventually`], [`fast_config`].
//!
//! `with-postgres COMMAND...` (a binary of this crate) runs a command with `DATABASE_URL`
//! set to a throwaway cluster's, for the doc tests.

mod cluster;
pub mod http;
pub mod process;

use std::time::{Duration, Instant};

pub use cluster::{find_bin_dir, Bouncer, Cluster, ClusterError, PoolMode, Role};
use wirepool::PoolConfig;

/// A throwaway cluster, or a panic that says why there is none (never a silent skip).
pub fn cluster() -> Cluster {
    Cluster::start().unwrap_or_else(|e| panic!("throwaway PostgreSQL: {e}"))
}

/// A throwaway cluster with TLS (see [`Cluster::start_tls`]).
pub fn tls_cluster() -> Cluster {
    Cluster::start_tls().unwrap_or_else(|e| panic!("throwaway PostgreSQL with TLS: {e}"))
}

/// How often [`eventually`] polls.
pub const POLL: Duration = Duration::from_millis(20);

/// How long [`eventually`] waits: generous, for a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `f` every [`POLL`] until it is true; panics naming `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < PATIENCE, "timed out waiting for: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// The pool's defaults with a fast monitor (20 ms) and no keepalive validation, so that
/// tests see the pool's background work within a few ticks.
pub fn fast_config() -> PoolConfig {
    let mut c = PoolConfig::default();
    c.monitor_interval = Duration::from_millis(20);
    c.keepalive_interval = None;
    c
}
