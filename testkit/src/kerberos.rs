//! A throwaway Kerberos realm on loopback: MIT Kerberos's KDC (Debian's `krb5-kdc`) with
//! its database in a temporary directory, principals and keytabs made with `kadmin.local`,
//! tickets fetched with `kinit`. Nothing of the machine's own Kerberos set-up is read or
//! written: every tool gets this realm's `krb5.conf` and `kdc.conf` through
//! `KRB5_CONFIG` and `KRB5_KDC_PROFILE`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{fresh_root, watchdog, Cluster};
use crate::cluster_error::{err, ClusterError};
use crate::ports::free_port;

/// The realm's name.
pub const REALM: &str = "WIREPOOL.TEST";

/// A running KDC for [`REALM`] on a free port of 127.0.0.1 (TCP and UDP); stopped and
/// its directory removed when dropped, or when the test process is gone.
#[derive(Debug)]
pub struct Kdc {
    root: PathBuf,
    port: u16,
    kdc: Option<Child>,
    watchdog: Option<Child>,
}

fn tool(name: &str) -> Result<PathBuf, ClusterError> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            err(format!(
                "{name} not found: install MIT Kerberos (Debian: krb5-kdc krb5-admin-server krb5-user), as scripts/setup does"
            ))
        })
}

impl Kdc {
    /// Creates the realm's database and starts the KDC.
    ///
    /// # Errors
    ///
    /// When the Kerberos tools are missing (the message says which packages hold them),
    /// or when creating the database or starting the KDC fails (with their output).
    pub fn start() -> Result<Kdc, ClusterError> {
        let root = fresh_root()?;
        let mut kdc = Kdc {
            root,
            port: 0,
            kdc: None,
            watchdog: None,
        };
        kdc.spawn_watchdog();
        let mut tries = 1;
        loop {
            kdc.port = free_port()?;
            kdc.write_config()?;
            match kdc.create_and_run() {
                Err(_) if tries < 3 => tries += 1,
                done => return done.map(|()| kdc),
            }
        }
    }

    fn write_config(&self) -> Result<(), ClusterError> {
        let port = self.port;
        let root = self.root.display();
        let krb5 = format!(
            "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
             dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n \
             udp_preference_limit = 1\n\
             [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\
             [domain_realm]\n localhost = {REALM}\n"
        );
        let kdc = format!(
            "[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n\
             [realms]\n {REALM} = {{\n  database_name = {root}/principal\n  \
             key_stash_file = {root}/stash\n  acl_file = {root}/kadm5.acl\n }}\n\
             [logging]\n kdc = FILE:{root}/kdc.log\n"
        );
        for (name, text) in [("krb5.conf", krb5), ("kdc.conf", kdc)] {
            std::fs::write(self.root.join(name), text)
                .map_err(|e| err(format!("writing {name}: {e}")))?;
        }
        Ok(())
    }

    fn create_and_run(&mut self) -> Result<(), ClusterError> {
        if !self.root.join("principal").exists() {
            // The master key of a realm that lives as long as a test: the KDC reads it from
            // the stash file.
            self.run(
                "kdb5_util",
                &["create", "-s", "-r", REALM, "-P", "throwaway-master-key"],
            )?;
        }
        let child = self
            .command(&tool("krb5kdc")?)
            .args(["-n", "-r", REALM, "-P"])
            .arg(self.root.join("kdc.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("starting krb5kdc: {e}")))?;
        self.kdc = Some(child);
        // Ready when it takes a TCP connection; gone when it could not bind its port.
        let t = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.kdc.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.kdc = None;
                    return Err(err(format!(
                        "krb5kdc exited ({status}): {}",
                        std::fs::read_to_string(self.root.join("kdc.log")).unwrap_or_default()
                    )));
                }
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err(err("krb5kdc did not listen within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.root.join("kdc.conf"))
            .env_remove("KRB5CCNAME")
            .env_remove("KRB5_KTNAME")
            .env_remove("KRB5_CLIENT_KTNAME");
        cmd
    }

    fn run(&self, name: &str, args: &[&str]) -> Result<String, ClusterError> {
        let out = self
            .command(&tool(name)?)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("running {name}: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "{name} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn kadmin(&self, query: &str) -> Result<(), ClusterError> {
        self.run("kadmin.local", &["-r", REALM, "-q", query])
            .map(|_| ())
    }

    /// The realm's `krb5.conf`, for `KRB5_CONFIG`: where its KDC is, no DNS lookups.
    pub fn krb5_conf(&self) -> PathBuf {
        self.root.join("krb5.conf")
    }

    /// The KDC's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Adds principals with random keys and writes their keys into a new keytab, whose
    /// path is returned (`postgres/localhost` for a server reached as `localhost`, a user
    /// name for a client).
    ///
    /// # Errors
    ///
    /// When `kadmin.local` fails.
    pub fn keytab(&self, file: &str, principals: &[&str]) -> Result<PathBuf, ClusterError> {
        let path = self.root.join(file);
        for p in principals {
            self.kadmin(&format!("addprinc -randkey {p}"))?;
            self.kadmin(&format!("ktadd -k {} {p}", path.display()))?;
        }
        Ok(path)
    }

    /// Fetches `principal`'s ticket-granting ticket with its key from `keytab` into the
    /// credential cache `ccache` (a file path, for `KRB5CCNAME=FILE:...`).
    ///
    /// # Errors
    ///
    /// When `kinit` fails.
    pub fn kinit(&self, principal: &str, keytab: &Path, ccache: &Path) -> Result<(), ClusterError> {
        let out = self
            .command(&tool("kinit")?)
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .args(["-k", "-t"])
            .arg(keytab)
            .arg(principal)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("running kinit: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "kinit {principal} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// The KDC's log so far (one line per ticket it issued or refused).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("kdc.log")).unwrap_or_default()
    }

    fn spawn_watchdog(&mut self) {
        self.watchdog = watchdog(&format!(
            "[ -f '{root}/kdc.pid' ] && kill $(cat '{root}/kdc.pid') 2>/dev/null; rm -rf '{root}'",
            root = self.root.display(),
        ));
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        for child in [self.kdc.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Cluster {
    /// Lets the role `gss_user` (created here) log in over TCP with GSSAPI only
    /// (`include_realm=0`: the principal `gss_user@WIREPOOL.TEST`), with the server's keys
    /// from `keytab` (every service principal in it is accepted), then restarts the
    /// server. The other roles keep their methods.
    ///
    /// # Errors
    ///
    /// When the keytab cannot be copied, or psql or pg_ctl fails.
    pub fn enable_gss(&mut self, keytab: &Path) -> Result<(), ClusterError> {
        let own = self.root.join("server.keytab");
        std::fs::copy(keytab, &own).map_err(|e| err(format!("copying the keytab: {e}")))?;
        self.chown(&own)?;
        self.psql(&format!(
            "ALTER SYSTEM SET krb_server_keyfile = '{}'",
            own.display()
        ))?;
        // Checkpointed: the restart below stops the server with `-m immediate`, and the
        // cluster commits asynchronously.
        self.psql("CREATE ROLE gss_user LOGIN")?;
        self.psql("CHECKPOINT")?;
        let hba = self.data_dir().join("pg_hba.conf");
        let rules =
            std::fs::read_to_string(&hba).map_err(|e| err(format!("reading pg_hba.conf: {e}")))?;
        let gss = "host all gss_user 127.0.0.1/32 gss include_realm=0\n\
                   host all gss_user ::1/128 gss include_realm=0\n";
        std::fs::write(&hba, format!("{gss}{rules}"))
            .map_err(|e| err(format!("writing pg_hba.conf: {e}")))?;
        self.restart()
    }
}
