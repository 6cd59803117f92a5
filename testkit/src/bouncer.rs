//! A PgBouncer in front of a throwaway cluster, on another free loopback port, for tests of
//! pools behind it: Debian's (1.18, no statement cache) by default, or PgBouncer 1.25 with
//! its cache of protocol-level prepared statements (`max_prepared_statements`).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use wirepool::ConnectConfig;

use super::cluster::*;
use crate::cluster_error::{err, ClusterError};
use crate::ports::free_port;

/// PgBouncer's pooling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolMode {
    /// A server connection per client session.
    Session,
    /// A server connection per transaction: statements of one client may run on
    /// different server connections.
    Transaction,
}

/// Which PgBouncer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BouncerVersion {
    /// The system's PgBouncer (`PGBOUNCER`, else `pgbouncer` on PATH or in /usr/sbin):
    /// Debian's 1.18, which passes named prepared statements through untouched.
    #[default]
    System,
    /// PgBouncer 1.25.2 (`PGBOUNCER_125`, else `target/pgbouncer-1.25.2/pgbouncer` in the
    /// workspace, which `scripts/setup` builds from the vendored source): it keeps named
    /// prepared statements available on whichever server connection a client gets.
    V1_25,
}

/// How [`Bouncer::start_with`] configures PgBouncer beyond its mode and pool size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BouncerOptions {
    /// Which PgBouncer runs.
    pub version: BouncerVersion,
    /// PgBouncer's `max_prepared_statements` (1.21 and later): the named prepared
    /// statements it keeps per server connection, 0 for none; `None` leaves PgBouncer's
    /// default (200 in 1.25; the setting does not exist in 1.18).
    pub max_prepared_statements: Option<usize>,
}

impl BouncerOptions {
    /// PgBouncer 1.25 with its statement cache on, `max_prepared_statements` at `n`.
    pub fn statement_cache(n: usize) -> BouncerOptions {
        BouncerOptions {
            version: BouncerVersion::V1_25,
            max_prepared_statements: Some(n),
        }
    }
}

/// A PgBouncer in front of a [`Cluster`], on a free loopback port, stopped and removed on
/// drop. Every role of the cluster is let in (`auth_type = trust`); the database is
/// `postgres`, and [`Role::Admin`] may use the admin console ([`Bouncer::show`]).
#[derive(Debug)]
pub struct Bouncer {
    dir: PathBuf,
    port: u16,
    child: std::process::Child,
}

impl Bouncer {
    /// Starts the system's PgBouncer (`PGBOUNCER`, else `pgbouncer` on PATH or in
    /// /usr/sbin) in `mode`, with `server_connections` server connections at most.
    ///
    /// # Errors
    ///
    /// When PgBouncer is not installed (the message says how to install it), or does not
    /// start listening within 30 s (the message carries its log).
    pub fn start(
        cluster: &Cluster,
        mode: PoolMode,
        server_connections: usize,
    ) -> Result<Bouncer, ClusterError> {
        Self::start_with(
            cluster,
            mode,
            server_connections,
            &BouncerOptions::default(),
        )
    }

    /// Starts the PgBouncer `options.version` names in `mode`, with `server_connections`
    /// server connections at most and `options.max_prepared_statements`.
    ///
    /// # Errors
    ///
    /// As [`Bouncer::start`]; when PgBouncer 1.25 has not been built (the message says
    /// how); when `max_prepared_statements` is asked of the system's PgBouncer.
    pub fn start_with(
        cluster: &Cluster,
        mode: PoolMode,
        server_connections: usize,
        options: &BouncerOptions,
    ) -> Result<Bouncer, ClusterError> {
        let bin = match options.version {
            BouncerVersion::System => {
                if options.max_prepared_statements.is_some() {
                    return Err(err(
                        "max_prepared_statements needs PgBouncer 1.21 or later: \
                         BouncerVersion::V1_25, not the system's PgBouncer",
                    ));
                }
                find_pgbouncer()?
            }
            BouncerVersion::V1_25 => find_pgbouncer_1_25()?,
        };
        let dir = cluster.root.join(format!(
            "pgbouncer-{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("creating {dir:?}: {e}")))?;
        cluster.chown(&dir)?;
        let port = free_port()?;
        let users: String = [
            Role::Admin,
            Role::Trust,
            Role::Password,
            Role::Md5,
            Role::Scram,
        ]
        .iter()
        .map(|r| format!("\"{}\" \"\"\n", r.name()))
        .collect();
        let mode = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        let ini = format!(
            "[databases]\npostgres = host=127.0.0.1 port={pg} dbname=postgres\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = {mode}\n\
             default_pool_size = {server_connections}\nmax_client_conn = 1000\n\
             server_reset_query =\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             admin_users = {admin}\n",
            pg = cluster.port,
            dir = dir.display(),
            admin = Role::Admin.name(),
        );
        let ini = match options.max_prepared_statements {
            Some(n) => format!("{ini}max_prepared_statements = {n}\n"),
            None => ini,
        };
        for (name, text) in [("userlist.txt", users), ("pgbouncer.ini", ini)] {
            std::fs::write(dir.join(name), text)
                .map_err(|e| err(format!("writing {name}: {e}")))?;
            cluster.chown(&dir.join(name))?;
        }
        let mut cmd = Command::new(&bin);
        cmd.arg(dir.join("pgbouncer.ini"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = cluster.owner {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("running {}: {e}", bin.display())))?;
        let mut bouncer = Bouncer { dir, port, child };
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                return Err(err(format!(
                    "pgbouncer exited ({status}):\n{}",
                    bouncer.log()
                )));
            }
            if t.elapsed() > std::time::Duration::from_secs(30) {
                return Err(err(format!(
                    "pgbouncer did not listen within 30 s:\n{}",
                    bouncer.log()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The usual pool behind this PgBouncer as `trust_user`: from `min` to `max`
    /// connections, with the statement cache off (unnamed statements, as transaction mode
    /// wants with PgBouncer before 1.21).
    ///
    /// # Panics
    ///
    /// When the pool cannot be built (the panic says why).
    pub async fn pool(&self, cluster: &Cluster, min: usize, max: usize) -> wirepool::Pool {
        wirepool::Pool::builder(self.config(cluster, Role::Trust))
            .min_size(min)
            .max_size(max)
            .statement_cache_capacity(0)
            .build()
            .await
            .unwrap_or_else(|e| panic!("pool behind PgBouncer: {e}"))
    }

    /// Connection settings for `role` through PgBouncer.
    pub fn config(&self, cluster: &Cluster, role: Role) -> ConnectConfig {
        cluster.config(role).with_port(self.port)
    }

    /// What PgBouncer has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Runs `SHOW <what>` (`STATS`, `SERVERS`, `CLIENTS`, `POOLS`, ...) on PgBouncer's
    /// admin console, through the cluster's `psql` as [`Role::Admin`], and returns its
    /// rows, each a map from column name to value (empty for NULL).
    ///
    /// # Errors
    ///
    /// When `psql` fails (the message carries its stderr).
    pub fn show(
        &self,
        cluster: &Cluster,
        what: &str,
    ) -> Result<Vec<BTreeMap<String, String>>, ClusterError> {
        const SEP: &str = "\x1f";
        let port = self.port.to_string();
        let sql = format!("SHOW {what}");
        let out = cluster.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-F",
                SEP,
                "-P",
                "footer=off",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                Role::Admin.name(),
                "-d",
                "pgbouncer",
                "-c",
                &sql,
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(SEP).collect();
        Ok(lines
            .map(|line| {
                header
                    .iter()
                    .zip(line.split(SEP))
                    .map(|(k, v)| ((*k).to_string(), v.to_string()))
                    .collect()
            })
            .collect())
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The version of PgBouncer `scripts/setup` builds into the workspace's `target/`.
const VENDORED: &str = "pgbouncer-1.25.2";

fn find_pgbouncer_1_25() -> Result<PathBuf, ClusterError> {
    let bin = std::env::var_os("PGBOUNCER_125").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(VENDORED)
                .join("pgbouncer")
        },
        PathBuf::from,
    );
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(err(format!(
            "PgBouncer 1.25 not found at {}; run scripts/setup (it builds {VENDORED} from the \
             vendored source into target/) or set PGBOUNCER_125 to its path",
            bin.display()
        )))
    }
}

fn find_pgbouncer() -> Result<PathBuf, ClusterError> {
    if let Ok(p) = std::env::var("PGBOUNCER") {
        return Ok(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.into_iter()
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err("pgbouncer not found; install it (Debian/Ubuntu: `apt-get install pgbouncer`) or set PGBOUNCER to its path")
        })
}
