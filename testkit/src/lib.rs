//! Test support for wirepool, kept out of the library: throwaway PostgreSQL clusters
//! ([`Cluster`]: plain, with TLS, a streaming standby; [`Bouncer`]: PgBouncer 1.18 or 1.25 in
//! front of one) and the helpers the tests, benchmarks, examples and the `wirepool demo` share:
//! [`cluster`], [`eventually`], [`fast_config`].
//!
//! `with-postgres COMMAND...` (a binary of this crate) runs a command with `DATABASE_URL`
//! set to a throwaway cluster's, for the doc tests.

mod bouncer;
mod certificates;
mod cluster;
mod cluster_error;
pub mod http;
pub mod kerberos;
mod ports;
pub mod process;
mod server_binaries;

use std::time::{Duration, Instant};

pub use bouncer::{Bouncer, BouncerOptions, BouncerVersion, PoolMode};
pub use cluster::{Cluster, Role};
pub use cluster_error::ClusterError;
pub use server_binaries::{find_bin_dir, pg18_bin_dir};
use wirepool::PoolConfig;

/// A throwaway cluster, or a panic that says why there is none (never a silent skip).
pub fn cluster() -> Cluster {
    Cluster::start().unwrap_or_else(|e| panic!("throwaway PostgreSQL: {e}"))
}

/// A throwaway PostgreSQL 18 cluster (see [`Cluster::start_18`]), whatever `PG_BIN` says.
pub fn cluster_18() -> Cluster {
    Cluster::start_18().unwrap_or_else(|e| panic!("throwaway PostgreSQL 18: {e}"))
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

/// Waits for every task, each within two minutes; panics when one hangs or panicked.
pub async fn join_all_within(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .expect("a task hung for two minutes")
            .unwrap();
    }
}

/// The usual pool of the tests: on `pg` as `role`, from `min` to `max` connections, the
/// rest the pool's defaults.
///
/// # Panics
///
/// When the pool cannot be built (the panic says why).
pub async fn pool(pg: &Cluster, role: Role, min: usize, max: usize) -> wirepool::Pool {
    wirepool::Pool::builder(pg.config(role))
        .min_size(min)
        .max_size(max)
        .build()
        .await
        .unwrap_or_else(|e| panic!("pool on the throwaway PostgreSQL: {e}"))
}

/// A pool on `cfg` with the pool settings `config`.
///
/// # Panics
///
/// When the pool cannot be built (the panic says why).
pub async fn pool_from(cfg: wirepool::ConnectConfig, config: PoolConfig) -> wirepool::Pool {
    wirepool::Pool::builder(cfg)
        .config(config)
        .build()
        .await
        .unwrap_or_else(|e| panic!("pool: {e}"))
}

/// Runs `promtool check metrics` over `text` and panics unless it passes with nothing to
/// say (promtool comes with Debian's `prometheus` package, which `scripts/setup` installs).
pub fn assert_promtool_passes(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed: apt-get install prometheus (scripts/setup does): {e}")
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {findings}");
    assert!(findings.trim().is_empty(), "promtool findings: {findings}");
}

/// The pool's defaults with a fast monitor (20 ms) and no keepalive validation, so that
/// tests see the pool's background work within a few ticks.
pub fn fast_config() -> PoolConfig {
    let mut c = PoolConfig::default();
    c.monitor_interval = Duration::from_millis(20);
    c.keepalive_interval = None;
    c
}

/// The Python interpreter with the official MCP SDK: `WIREPOOL_TEST_PYTHON`, else the
/// workspace's `target/mcp-venv/bin/python` (which `scripts/test` creates).
///
/// # Panics
///
/// When it does not exist, with the commands that make it.
pub fn mcp_python() -> std::path::PathBuf {
    let p = std::env::var_os("WIREPOOL_TEST_PYTHON").map_or_else(
        || {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/mcp-venv/bin/python")
        },
        std::path::PathBuf::from,
    );
    assert!(
        p.exists(),
        "the MCP Python SDK and Playwright are needed at {}: run scripts/test, or python3 -m venv target/mcp-venv \
         && target/mcp-venv/bin/pip install mcp playwright",
        p.display()
    );
    p
}
