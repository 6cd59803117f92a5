//! Connection settings: libpq URLs, key=value strings and the `PG*` environment variables.
//!
//! Accepted forms, as libpq accepts them:
//!
//! - `postgres://user:secret@host:5432/dbname?application_name=app&connect_timeout=5`, or
//!   with several hosts `postgres://user@h1:5432,h2:5433/dbname?target_session_attrs=read-write`
//!   (`postgresql://` too; percent-encoding anywhere; `[::1]` for IPv6 hosts; a host that
//!   begins with `/`, written percent-encoded or as `?host=/run/postgresql`, is a Unix-socket
//!   directory);
//! - `host=localhost port=5432 user=app password='a b' dbname=app` (values may be quoted with
//!   `'`, with `\'` and `\\` escapes).
//!
//! What a string does not give is taken from its service (below), then from `PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`,
//! `PGTARGETSESSIONATTRS`, `PGLOADBALANCEHOSTS`, `PGPASSFILE` and the TLS variables below;
//! what none gives has libpq's default (host `localhost`, port 5432, the OS user from `USER`
//! or `LOGNAME`, database = user), except `connect_timeout`, which defaults to 10 s rather
//! than "wait forever".
//!
//! # Password file and service file
//!
//! As in libpq:
//!
//! - **`passfile`** (or `PGPASSFILE`; default `.pgpass` in the home directory, `HOME`):
//!   when no password is given (neither `password` nor `PGPASSWORD`), each connection to a
//!   host reads the file and takes the password of its first line
//!   `hostname:port:database:username:password` that matches the host, its port, the
//!   database and the user. A field `*` matches anything; `\:` and `\\` stand for `:` and
//!   `\`; a line starting with `#` is a comment. A Unix-socket connection through a
//!   default socket directory (`/tmp`, `/var/run/postgresql`, `/run/postgresql`) matches
//!   `localhost`, one through another directory matches that directory's path. The file
//!   is read again for each new connection, so a changed password is used without a
//!   restart. It is ignored, with a warning, when it is not a plain file, or, on Unix,
//!   when the group or others have any access to it (permissions beyond `0600`).
//! - **`service`** (or `PGSERVICE`): the settings of the section `[name]` of the user's
//!   service file (`PGSERVICEFILE`, default `.pg_service.conf` in the home directory),
//!   or, when that file has no such section, of the system's, `pg_service.conf` in the
//!   directory `PGSYSCONFDIR` (there is no compiled-in system directory: without
//!   `PGSYSCONFDIR`, no system file). Its lines are `keyword=value` (no space around
//!   `=`), with `#` for comments; any keyword of a connection string may be set there but
//!   `service`. The file is read when the string is parsed; a service found in no file
//!   is a configuration error naming the files searched, a malformed line one naming the
//!   file and the line.
//!
//! Precedence: what the string gives, then what its service gives, then the environment,
//! then the defaults.
//!
//! TLS is configured as in libpq: `sslmode` (`disable`, `allow`, `prefer` by default,
//! `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file, or `system`),
//! `sslcert` / `sslkey`, `sslnegotiation` (`postgres` or `direct`), `channel_binding`
//! (`disable`, `prefer`, `require`); also from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
//! `PGSSLKEY`, `PGSSLNEGOTIATION`, `PGCHANNELBINDING`. `hostaddr` gives the address to
//! connect to while `host` names the server for certificate checks. Without the `tls`
//! feature, `require` and stricter are configuration errors. Unknown keywords are errors,
//! as in libpq.
//!
//! Protocol versions as libpq 18: `min_protocol_version` and `max_protocol_version` (`3.0`,
//! `3.2` or `latest`; also `PGMINPROTOCOLVERSION`, `PGMAXPROTOCOLVERSION`). 3.0 is asked
//! for unless `max_protocol_version` says otherwise or `min_protocol_version` is above 3.0;
//! a server that speaks only an older version answers with NegotiateProtocolVersion, and
//! the connection goes on in that version if `min_protocol_version` allows it. 3.2
//! (PostgreSQL 18) brings cancel keys of up to 256 bytes.
//!
//! `require_auth` (also `PGREQUIREAUTH`), as libpq 16: the methods the server may use
//! (`password`, `md5`, `gss`, `sspi`, `scram-sha-256`, `none`), or a list of negated ones
//! (`!md5,!password`). A request for any other method fails before a password, or
//! anything derived from one, is sent, and the error names what the server asked for.
//! GSSAPI (Kerberos) authentication, with the `gssapi` cargo feature: `krbsrvname` (also
//! `PGKRBSRVNAME`, default `postgres`) names the server's service principal,
//! `<krbsrvname>/<host>`, with the ticket from the user's credential cache. `gssencmode`
//! (also `PGGSSENCMODE`) takes `disable` (the default) and `prefer`, which both connect
//! without GSSAPI encryption (wirepool encrypts with TLS); `require` is a configuration
//! error.
//!
//! A [`PasswordProvider`] fetches the password for each new connection instead (a
//! rotating token); see `Builder::password_provider` on the pool.
//!
//! The password and the certificate paths never appear in `Debug` or `Display` output.
//!
//! A user, database, password, `application_name` or `options` holding a NUL byte (`%00`
//! in a URL) is a configuration error naming the setting, when parsed, and for values given
//! through the setters when a connection or pool is opened with them, before any socket.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::protocol::{ProtocolVersion, RequireAuth};

mod display;
mod key_value;
mod keywords;
mod nul;
mod partial;
mod passfile;
mod password_provider;
mod service;
mod url;

use key_value::parse_key_value;
pub(crate) use keywords::parse_keyword;
pub use keywords::{
    ChannelBinding, GssEncMode, Keyword, LoadBalanceHosts, SslMode, SslNegotiation,
    TargetSessionAttrs,
};
use partial::*;
pub use password_provider::PasswordProvider;
use url::{parse_url, percent_encode};

/// Default cap on the size of one long server message (DataRow, RowDescription, CopyData,
/// ErrorResponse, NoticeResponse, NotificationResponse): 64 MiB.
pub use crate::protocol::DEFAULT_MAX_MESSAGE_SIZE;

/// Where to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Host {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// A directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    Unix(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(h) if h.contains(':') => write!(f, "[{h}]"),
            Host::Tcp(h) => f.write_str(h),
            Host::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where the root certificates for `verify-ca` and `verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootCert {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// The platform's trusted roots (`sslrootcert=system`, as libpq 16).
    System,
}

/// The TLS settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`, if given.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: the client certificate (PEM), for `cert` authentication.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// `sslnegotiation`.
    pub negotiation: SslNegotiation,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
}

/// Settings for one PostgreSQL connection.
///
/// From a URL or key=value string (or the environment alone), completed as libpq completes
/// them: by the string's `service` (the service file), then the `PG*` environment
/// variables, then the defaults. With no password, one is looked up in the password file
/// (`passfile`, `PGPASSFILE`, `~/.pgpass`, which must not be open to the group or others)
/// each time a connection is opened. See the [module documentation](crate::config).
///
/// # Examples
///
/// ```
/// use wirepool::ConnectConfig;
/// let cfg: ConnectConfig = "postgres://app:secret@127.0.0.1:5433/appdb?application_name=web"
///     .parse()
///     .unwrap();
/// assert_eq!(cfg.port(), 5433);
/// assert_eq!(cfg.dbname(), "appdb");
/// assert!(!format!("{cfg} {cfg:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    hosts: Vec<Host>,
    /// One port per host.
    ports: Vec<u16>,
    user: String,
    password: Option<String>,
    dbname: String,
    application_name: Option<String>,
    options: Option<String>,
    connect_timeout: Option<Duration>,
    tls: TlsSettings,
    /// `hostaddr`: the address to connect to for each host (the host name then only
    /// names the server for TLS), as in libpq.
    hostaddrs: Vec<std::net::IpAddr>,
    target_session_attrs: TargetSessionAttrs,
    load_balance_hosts: LoadBalanceHosts,
    tcp: TcpSettings,
    max_message_size: usize,
    min_protocol: ProtocolVersion,
    max_protocol: ProtocolVersion,
    require_auth: RequireAuth,
    /// `krbsrvname`: the Kerberos service name of the server (GSSAPI).
    krbsrvname: String,
    gss_enc_mode: GssEncMode,
    password_provider: Option<PasswordProvider>,
    /// The password file, resolved when parsed (`passfile`, `PGPASSFILE`, `~/.pgpass`),
    /// read when a connection without a password is opened.
    passfile: Option<PathBuf>,
    /// A logical replication connection (`replication=database` at startup): set by
    /// [`ReplicationClient::connect`](crate::replication::ReplicationClient::connect) on its
    /// own copy, never by parsing.
    replication: bool,
}

/// TCP settings of a connection, with libpq's names and meaning: keepalives on by default
/// with the operating system's timings unless given, and the operating system's
/// `TCP_USER_TIMEOUT` unless given. Unix sockets ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpSettings {
    /// `keepalives`: send TCP keepalive probes on idle connections. Default: on.
    pub keepalives: bool,
    /// `keepalives_idle`: idle time before the first probe. Default: the system's.
    pub keepalives_idle: Option<Duration>,
    /// `keepalives_interval`: time between unanswered probes. Default: the system's.
    pub keepalives_interval: Option<Duration>,
    /// `keepalives_count`: unanswered probes before the connection is dropped. Default:
    /// the system's.
    pub keepalives_count: Option<u32>,
    /// `tcp_user_timeout`: how long sent data may stay unacknowledged before the
    /// connection is dropped. Default: the system's. Linux only; elsewhere it is ignored,
    /// as libpq ignores it.
    pub tcp_user_timeout: Option<Duration>,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            keepalives: true,
            keepalives_idle: None,
            keepalives_interval: None,
            keepalives_count: None,
            tcp_user_timeout: None,
        }
    }
}

impl ConnectConfig {
    /// Parses a URL or key=value string, filling the gaps from the process environment.
    ///
    /// # Errors
    ///
    /// A configuration error naming the part that is malformed.
    pub fn parse_str(s: &str) -> Result<ConnectConfig> {
        Self::parse_with_env(s, |k| std::env::var(k).ok())
    }

    /// Parses `s`, reading `PG*` variables through `env` instead of the process environment.
    ///
    /// # Errors
    ///
    /// A configuration error naming the part that is malformed.
    pub fn parse_with_env(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<ConnectConfig> {
        let s = s.trim();
        let partial = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            parse_url(s)?
        } else if s.contains("://") {
            let scheme = &s[..s.find("://").unwrap_or(0)];
            return Err(Error::config(format!(
                "unsupported URL scheme `{scheme}` (expected postgres:// or postgresql://)"
            )));
        } else {
            parse_key_value(s)?
        };
        finish(partial, &env)
    }

    /// Settings from the environment alone (`PGHOST`, `PGPORT`, ...), with libpq's defaults.
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable that is malformed.
    pub fn from_pg_env() -> Result<ConnectConfig> {
        Self::parse_with_env("", |k| std::env::var(k).ok())
    }

    /// The hosts, tried in order (or shuffled, with `load_balance_hosts=random`).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// The first host's port (also the Unix socket's number).
    pub fn port(&self) -> u16 {
        self.ports[0]
    }
    /// The ports, one per host.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
    /// `target_session_attrs`. Default: `any`.
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
    }
    /// `load_balance_hosts`. Default: `disable`.
    pub fn load_balance_hosts(&self) -> LoadBalanceHosts {
        self.load_balance_hosts
    }
    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The password, if any. Never logged by wirepool.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
    /// The database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }
    /// The `application_name` sent at startup.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }
    /// This configuration for a logical replication connection.
    pub(crate) fn for_replication(mut self) -> ConnectConfig {
        self.replication = true;
        self
    }

    /// True for a logical replication connection.
    pub(crate) fn is_replication(&self) -> bool {
        self.replication
    }

    /// The `options` (command-line options for the backend) sent at startup.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }
    /// How long opening a connection (socket and authentication) may take.
    /// Default: 10 s. `None` waits as long as the operating system does.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
    /// The `sslmode` as configured. Default: `prefer`.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }
    /// The TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }
    /// The `hostaddr` for host `i`, if one is given.
    pub fn hostaddr(&self, i: usize) -> Option<std::net::IpAddr> {
        self.hostaddrs.get(i).copied()
    }
    /// TCP keepalive and user-timeout settings.
    pub fn tcp(&self) -> &TcpSettings {
        &self.tcp
    }
    /// The password file, read when a connection is opened without a password:
    /// `passfile`, else `PGPASSFILE`, else `.pgpass` in the home directory (`HOME`).
    pub fn passfile(&self) -> Option<&std::path::Path> {
        self.passfile.as_deref()
    }
    /// The largest long message (DataRow, ErrorResponse, ...) accepted from the server.
    /// Default: [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Replaces the hosts with one TCP host (on the first host's port).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts = vec![Host::Tcp(host.into())];
        self.ports.truncate(1);
        self.hostaddrs.clear();
        self
    }
    /// Replaces the hosts with one Unix-socket directory (on the first host's port).
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hosts = vec![Host::Unix(dir.into())];
        self.ports.truncate(1);
        self.hostaddrs.clear();
        self
    }
    /// Sets the port of every host.
    pub fn with_port(mut self, port: u16) -> Self {
        self.ports = vec![port; self.hosts.len()];
        self
    }
    /// These settings narrowed to host `i` alone (its port and `hostaddr`), with
    /// `target_session_attrs=any`: to look at one server of a list.
    pub fn for_host(&self, i: usize) -> ConnectConfig {
        let mut c = self.clone();
        c.hosts = vec![self.hosts[i].clone()];
        c.ports = vec![self.ports[i]];
        c.hostaddrs = self.hostaddrs.get(i).map(|a| vec![*a]).unwrap_or_default();
        c.target_session_attrs = TargetSessionAttrs::Any;
        c.load_balance_hosts = LoadBalanceHosts::Disable;
        c
    }
    /// Sets `target_session_attrs`.
    pub fn with_target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Self {
        self.target_session_attrs = attrs;
        self
    }
    /// Sets `load_balance_hosts`.
    pub fn with_load_balance_hosts(mut self, lb: LoadBalanceHosts) -> Self {
        self.load_balance_hosts = lb;
        self
    }
    /// Sets the user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }
    /// Sets (or clears) the password.
    pub fn with_password(mut self, password: Option<impl Into<String>>) -> Self {
        self.password = password.map(Into::into);
        self
    }
    /// Sets (or, with `None`, turns off) the password file.
    pub fn with_passfile(mut self, path: Option<impl Into<PathBuf>>) -> Self {
        self.passfile = path.map(Into::into);
        self
    }
    /// Sets the database name.
    pub fn with_dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = dbname.into();
        self
    }
    /// Sets the `application_name`.
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }
    /// Sets the connect timeout (`None`: no limit of our own).
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Sets the `sslmode`.
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.tls.mode = mode;
        self
    }
    /// Sets the root certificates for `verify-ca` / `verify-full`.
    pub fn with_root_cert(mut self, root: Option<RootCert>) -> Self {
        self.tls.root_cert = root;
        self
    }
    /// Sets the client certificate and its key (PEM files).
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.client_cert = Some(cert.into());
        self.tls.client_key = Some(key.into());
        self
    }
    /// Sets `channel_binding`.
    pub fn with_channel_binding(mut self, cb: ChannelBinding) -> Self {
        self.tls.channel_binding = cb;
        self
    }
    /// `min_protocol_version`: the oldest protocol version accepted when the server
    /// answers with an older one than asked for. Default 3.0.
    pub fn min_protocol_version(&self) -> ProtocolVersion {
        self.min_protocol
    }

    /// `max_protocol_version`: the version asked for. Default 3.0 (as libpq 18), or the
    /// newest when `min_protocol_version` is above 3.0.
    pub fn max_protocol_version(&self) -> ProtocolVersion {
        self.max_protocol
    }

    /// Sets `min_protocol_version` and `max_protocol_version`; a minimum above the
    /// maximum fails when a connection is opened.
    pub fn with_protocol_versions(mut self, min: ProtocolVersion, max: ProtocolVersion) -> Self {
        self.min_protocol = min;
        self.max_protocol = max;
        self
    }

    /// `require_auth`: the authentication methods the server may use.
    pub fn require_auth(&self) -> RequireAuth {
        self.require_auth
    }

    /// Sets `require_auth`.
    pub fn with_require_auth(mut self, allowed: RequireAuth) -> Self {
        self.require_auth = allowed;
        self
    }

    /// `krbsrvname`: the Kerberos service name GSSAPI authentication asks a ticket for,
    /// as `<krbsrvname>@<host>`. Default `postgres`.
    pub fn krbsrvname(&self) -> &str {
        &self.krbsrvname
    }

    /// Sets `krbsrvname`.
    pub fn with_krbsrvname(mut self, name: impl Into<String>) -> Self {
        self.krbsrvname = name.into();
        self
    }

    /// `gssencmode`: `disable` (the default) or `prefer`; wirepool does not encrypt with
    /// GSSAPI.
    pub fn gss_enc_mode(&self) -> GssEncMode {
        self.gss_enc_mode
    }

    /// The password provider, if one is set.
    pub fn password_provider(&self) -> Option<&PasswordProvider> {
        self.password_provider.as_ref()
    }

    /// Sets a provider called for the password of each new connection (it takes the
    /// place of `password`); see [`PasswordProvider`].
    pub fn with_password_provider(mut self, provider: Option<PasswordProvider>) -> Self {
        self.password_provider = provider;
        self
    }

    /// Sets the cap on one long server message.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
}

impl FromStr for ConnectConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<ConnectConfig> {
        ConnectConfig::parse_str(s)
    }
}

/// A keyword setting: the string's value, else the environment variable `var`'s, else
/// `default`.
fn keyword_or_env<T: Keyword>(
    given: Option<T>,
    var: &str,
    default: T,
    env_nonempty: &dyn Fn(&str) -> Option<String>,
) -> Result<T> {
    match given {
        Some(v) => Ok(v),
        None => match env_nonempty(var) {
            Some(v) => parse_keyword::<T>(&v).map_err(|e| Error::config(format!("{var}: {e}"))),
            None => Ok(default),
        },
    }
}

/// The settings from the string `p`, then those of its service (if any), then the
/// environment's, then the defaults.
fn finish(mut p: Partial, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnectConfig> {
    service::apply_service(&mut p, env)?;
    let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let hosts = if p.hosts.is_empty() {
        match env_nonempty("PGHOST") {
            Some(h) => host_list(&h, "PGHOST")?,
            None => vec![Host::Tcp("localhost".to_string())],
        }
    } else {
        p.hosts
    };
    // One port per host: a list of one applies to all; an empty entry is the default.
    let (ports, port_source) = if p.ports.is_empty() {
        match env_nonempty("PGPORT") {
            Some(v) => (port_list(&v, "PGPORT")?, "PGPORT"),
            None => (vec![None], "port"),
        }
    } else {
        (p.ports, "port")
    };
    let default_port = 5432;
    let ports: Vec<u16> = match ports.len() {
        1 => vec![ports[0].unwrap_or(default_port); hosts.len()],
        n if n == hosts.len() => ports.iter().map(|p| p.unwrap_or(default_port)).collect(),
        n => {
            return Err(Error::config(format!(
                "{port_source}: {n} ports for {} hosts (give one port for all, or one per host)",
                hosts.len()
            )))
        }
    };
    let target_session_attrs = keyword_or_env(
        p.target_session_attrs,
        "PGTARGETSESSIONATTRS",
        TargetSessionAttrs::Any,
        &env_nonempty,
    )?;
    let load_balance_hosts = keyword_or_env(
        p.load_balance_hosts,
        "PGLOADBALANCEHOSTS",
        LoadBalanceHosts::Disable,
        &env_nonempty,
    )?;
    let user = match p.user.or_else(|| env_nonempty("PGUSER")) {
        Some(u) => u,
        None => env_nonempty("USER")
            .or_else(|| env_nonempty("LOGNAME"))
            .ok_or_else(|| {
                Error::config("no user name given (set one in the URL, `user=`, or PGUSER)")
            })?,
    };
    let password = p.password.or_else(|| env("PGPASSWORD"));
    // libpq: an empty `passfile` is the default file, and the default is ~/.pgpass.
    let home_passfile = || env_nonempty("HOME").map(|h| PathBuf::from(h).join(".pgpass"));
    let passfile = match p.passfile {
        Some(f) if f.as_os_str().is_empty() => home_passfile(),
        Some(f) => Some(f),
        None => env_nonempty("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(home_passfile),
    };
    let dbname = p
        .dbname
        .or_else(|| env_nonempty("PGDATABASE"))
        .unwrap_or_else(|| user.clone());
    let application_name = p.application_name.or_else(|| env_nonempty("PGAPPNAME"));
    let connect_timeout = match p.connect_timeout {
        Some(t) => t,
        None => match env_nonempty("PGCONNECT_TIMEOUT") {
            Some(v) => parse_connect_timeout(&v)
                .map_err(|e| Error::config(format!("PGCONNECT_TIMEOUT: {e}")))?,
            None => Some(Duration::from_secs(10)),
        },
    };
    let ssl_mode = keyword_or_env(p.ssl_mode, "PGSSLMODE", SslMode::Prefer, &env_nonempty)?;
    let root_cert = p
        .root_cert
        .or_else(|| env_nonempty("PGSSLROOTCERT").map(|v| root_cert_from(&v)));
    let client_cert = p
        .client_cert
        .or_else(|| env_nonempty("PGSSLCERT").map(PathBuf::from));
    let client_key = p
        .client_key
        .or_else(|| env_nonempty("PGSSLKEY").map(PathBuf::from));
    let negotiation = keyword_or_env(
        p.negotiation,
        "PGSSLNEGOTIATION",
        SslNegotiation::Postgres,
        &env_nonempty,
    )?;
    let channel_binding = keyword_or_env(
        p.channel_binding,
        "PGCHANNELBINDING",
        ChannelBinding::Prefer,
        &env_nonempty,
    )?;
    if channel_binding == ChannelBinding::Require && ssl_mode == SslMode::Disable {
        return Err(Error::config(
            "channel_binding=require needs TLS, and sslmode=disable turns it off",
        ));
    }
    if negotiation == SslNegotiation::Direct && ssl_mode < SslMode::Require {
        return Err(Error::config(format!(
            "sslnegotiation=direct needs sslmode require, verify-ca or verify-full (not {})",
            ssl_mode.as_str()
        )));
    }
    if !cfg!(feature = "tls") && ssl_mode >= SslMode::Require {
        return Err(Error::config(format!(
            "sslmode={} needs TLS, and this build of wirepool has none (the `tls` feature is off)",
            ssl_mode.as_str()
        )));
    }
    if !p.hostaddrs.is_empty() && p.hostaddrs.len() != hosts.len() {
        return Err(Error::config(format!(
            "hostaddr lists {} addresses for {} hosts",
            p.hostaddrs.len(),
            hosts.len()
        )));
    }
    let min_protocol = match p.min_protocol {
        Some(v) => v,
        None => match env_nonempty("PGMINPROTOCOLVERSION") {
            Some(v) => ProtocolVersion::parse("PGMINPROTOCOLVERSION", &v)?,
            None => ProtocolVersion::V3_0,
        },
    };
    // As libpq 18: without a maximum, 3.0 (poolers and old servers that do not answer
    // NegotiateProtocolVersion can serve it), unless the minimum asks for more.
    let max_protocol = match p.max_protocol {
        Some(v) => v,
        None => match env_nonempty("PGMAXPROTOCOLVERSION") {
            Some(v) => ProtocolVersion::parse("PGMAXPROTOCOLVERSION", &v)?,
            None if min_protocol > ProtocolVersion::V3_0 => ProtocolVersion::LATEST,
            None => ProtocolVersion::V3_0,
        },
    };
    if min_protocol > max_protocol {
        return Err(Error::config(format!(
            "min_protocol_version {min_protocol} is greater than max_protocol_version {max_protocol}"
        )));
    }
    let require_auth = match p.require_auth {
        Some(r) => r,
        None => match env_nonempty("PGREQUIREAUTH") {
            Some(v) => {
                RequireAuth::parse(&v).map_err(|e| Error::config(format!("PGREQUIREAUTH: {e}")))?
            }
            None => RequireAuth::ANY,
        },
    };
    let krbsrvname = p
        .krbsrvname
        .or_else(|| env_nonempty("PGKRBSRVNAME"))
        .unwrap_or_else(|| "postgres".to_string());
    let gss_enc_mode = keyword_or_env(
        p.gss_enc_mode,
        "PGGSSENCMODE",
        GssEncMode::Disable,
        &env_nonempty,
    )?;
    if gss_enc_mode == GssEncMode::Require {
        return Err(Error::config(
            "gssencmode=require: wirepool does not encrypt with GSSAPI (it encrypts with TLS: sslmode)",
        ));
    }
    let cfg = ConnectConfig {
        hosts,
        ports,
        user,
        password,
        dbname,
        application_name,
        options: p.options,
        connect_timeout,
        tls: TlsSettings {
            mode: ssl_mode,
            root_cert,
            client_cert,
            client_key,
            negotiation,
            channel_binding,
        },
        hostaddrs: p.hostaddrs,
        target_session_attrs,
        load_balance_hosts,
        tcp: p.tcp,
        max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        min_protocol,
        max_protocol,
        require_auth,
        krbsrvname,
        gss_enc_mode,
        password_provider: None,
        passfile,
        replication: false,
    };
    cfg.refuse_nul_bytes()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
