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
//! What a string does not give is taken from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
//! `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT` and the TLS variables below; what neither gives has
//! libpq's default (host `localhost`, port 5432, the OS user, database = user), except
//! `connect_timeout`, which defaults to 10 s rather than "wait forever".
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

mod key_value;
mod keywords;
mod nul;
mod url;

use key_value::parse_key_value;
pub(crate) use keywords::parse_keyword;
pub use keywords::{
    ChannelBinding, Keyword, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs,
};
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

/// Values read from a string before the environment and defaults fill the gaps.
#[derive(Default)]
struct Partial {
    hosts: Vec<Host>,
    /// `None`: the default port for that host (an empty entry, as libpq allows).
    ports: Vec<Option<u16>>,
    target_session_attrs: Option<TargetSessionAttrs>,
    load_balance_hosts: Option<LoadBalanceHosts>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    application_name: Option<String>,
    options: Option<String>,
    connect_timeout: Option<Option<Duration>>,
    ssl_mode: Option<SslMode>,
    root_cert: Option<RootCert>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    negotiation: Option<SslNegotiation>,
    channel_binding: Option<ChannelBinding>,
    hostaddrs: Vec<std::net::IpAddr>,
    tcp: TcpSettings,
    /// The previous keyword was `password`: errors must not echo the next token, which
    /// may be the rest of an unquoted password.
    after_password: bool,
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

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("hosts", &self.hosts)
            .field("ports", &self.ports)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .field("connect_timeout", &self.connect_timeout)
            .field("ssl_mode", &self.tls.mode)
            // Certificate paths are not shown: they say where key material lives.
            .field("sslrootcert", &self.tls.root_cert.as_ref().map(|_| "<set>"))
            .field("sslcert", &self.tls.client_cert.as_ref().map(|_| "<set>"))
            .field("sslkey", &self.tls.client_key.as_ref().map(|_| "<set>"))
            .field("sslnegotiation", &self.tls.negotiation)
            .field("channel_binding", &self.tls.channel_binding)
            .field("hostaddr", &self.hostaddrs)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("tcp", &self.tcp)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

/// Prints a URL without the password: `postgres://user@host:port,host2:port2/dbname`.
impl fmt::Display for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}@", percent_encode(&self.user))?;
        for (i, h) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match h {
                Host::Tcp(_) => write!(f, "{h}")?,
                Host::Unix(p) => f.write_str(&percent_encode(&p.to_string_lossy()))?,
            }
            write!(f, ":{}", self.ports[i])?;
        }
        write!(f, "/{}", percent_encode(&self.dbname))
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

fn finish(p: Partial, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnectConfig> {
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
    };
    cfg.refuse_nul_bytes()?;
    Ok(cfg)
}

/// A comma-separated port list; empty entries are the default port.
fn port_list(v: &str, what: &str) -> Result<Vec<Option<u16>>> {
    v.split(',')
        .map(|p| {
            if p.trim().is_empty() {
                Ok(None)
            } else {
                parse_port(p).map(Some).map_err(|_| {
                    Error::config(format!("{what}: invalid port `{p}` (expected 1-65535)"))
                })
            }
        })
        .collect()
}

/// A comma-separated host list, with no empty entry.
fn host_list(v: &str, what: &str) -> Result<Vec<Host>> {
    v.split(',')
        .map(|h| {
            if h.trim().is_empty() {
                Err(Error::config(format!(
                    "{what}: an empty host in the list `{v}`"
                )))
            } else {
                host_from_str(h)
            }
        })
        .collect()
}

fn root_cert_from(v: &str) -> RootCert {
    if v == "system" {
        RootCert::System
    } else {
        RootCert::File(PathBuf::from(v))
    }
}

fn host_from_str(h: &str) -> Result<Host> {
    let h = h.trim();
    if h.is_empty() {
        return Err(Error::config("empty host name"));
    }
    if h.starts_with('/') {
        Ok(Host::Unix(PathBuf::from(h)))
    } else if h.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        Err(Error::config(format!("invalid host name `{h}`")))
    } else {
        Ok(Host::Tcp(h.to_string()))
    }
}

fn parse_port(v: &str) -> std::result::Result<u16, ()> {
    match v.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(()),
        Ok(p) => Ok(p),
    }
}

fn parse_connect_timeout(v: &str) -> std::result::Result<Option<Duration>, String> {
    match v.trim().parse::<i64>() {
        // libpq: zero, negative or unspecified means wait indefinitely.
        Ok(n) if n <= 0 => Ok(None),
        Ok(n) => Ok(Some(Duration::from_secs(n as u64))),
        Err(_) => Err(format!(
            "invalid connect_timeout `{v}` (expected whole seconds)"
        )),
    }
}

/// A non-negative whole number for the connection parameter `key`.
fn parse_int(key: &str, v: &str) -> Result<u32> {
    v.trim().parse::<u32>().map_err(|_| {
        Error::config(format!(
            "invalid {key} `{v}` (expected a whole number, 0 or more)"
        ))
    })
}

/// The largest `keepalives_idle` and `keepalives_interval` the socket options take (Linux's
/// `TCP_KEEPIDLE` and `TCP_KEEPINTVL` limit); checked when parsing, so that a value out of
/// range is a configuration error naming the setting, not an OS error at connect.
const MAX_KEEPALIVE_SECS: u32 = 32_767;

/// The largest `keepalives_count` (Linux's `TCP_KEEPCNT` limit).
const MAX_KEEPALIVE_COUNT: u32 = 127;

/// Whole seconds for `key`, at most `max`; 0 means the system's default (`None`), as in
/// libpq.
fn parse_secs_opt(key: &str, v: &str, max: u32) -> Result<Option<Duration>> {
    Ok(match parse_int_at_most(key, v, max)? {
        0 => None,
        n => Some(Duration::from_secs(u64::from(n))),
    })
}

fn parse_int_at_most(key: &str, v: &str, max: u32) -> Result<u32> {
    let n = parse_int(key, v)?;
    if n > max {
        return Err(Error::config(format!(
            "{key}: {n} is out of range (0 to {max})"
        )));
    }
    Ok(n)
}

/// The keywords [`apply`] knows.
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "application_name",
    "fallback_application_name",
    "options",
    "connect_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslnegotiation",
    "channel_binding",
    "client_encoding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Applies one `keyword = value` pair, from a URL query or a key=value string.
fn apply(p: &mut Partial, key: &str, value: String) -> Result<()> {
    match key {
        "host" => p.hosts = host_list(&value, "host")?,
        "hostaddr" => {
            p.hostaddrs = value
                .split(',')
                .map(|a| {
                    a.trim().parse::<std::net::IpAddr>().map_err(|_| {
                        Error::config(format!("invalid hostaddr `{a}` (expected an IP address)"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if p.hosts.is_empty() {
                // Without host names, the addresses are the hosts.
                p.hosts = p
                    .hostaddrs
                    .iter()
                    .map(|a| Host::Tcp(a.to_string()))
                    .collect();
            }
        }
        "port" => p.ports = port_list(&value, "port")?,
        "user" => p.user = Some(value),
        "password" => p.password = Some(value),
        "dbname" => p.dbname = Some(value),
        "application_name" => p.application_name = Some(value),
        "fallback_application_name" => {
            if p.application_name.is_none() {
                p.application_name = Some(value);
            }
        }
        "options" => p.options = Some(value),
        "connect_timeout" => {
            p.connect_timeout = Some(parse_connect_timeout(&value).map_err(Error::config)?)
        }
        "sslmode" => p.ssl_mode = Some(parse_keyword::<SslMode>(&value).map_err(Error::config)?),
        "sslrootcert" => p.root_cert = Some(root_cert_from(&value)),
        "sslcert" => p.client_cert = Some(PathBuf::from(value)),
        "sslkey" => p.client_key = Some(PathBuf::from(value)),
        "sslnegotiation" => {
            p.negotiation = Some(parse_keyword::<SslNegotiation>(&value).map_err(Error::config)?)
        }
        "channel_binding" => {
            p.channel_binding =
                Some(parse_keyword::<ChannelBinding>(&value).map_err(Error::config)?)
        }
        "client_encoding" => {
            if !value.eq_ignore_ascii_case("UTF8") && !value.eq_ignore_ascii_case("UTF-8") {
                return Err(Error::config(format!(
                    "client_encoding `{value}` is not supported (wirepool speaks UTF8)"
                )));
            }
        }
        "keepalives" => p.tcp.keepalives = parse_int(key, &value)? != 0,
        "keepalives_idle" => {
            p.tcp.keepalives_idle = parse_secs_opt(key, &value, MAX_KEEPALIVE_SECS)?
        }
        "keepalives_interval" => {
            p.tcp.keepalives_interval = parse_secs_opt(key, &value, MAX_KEEPALIVE_SECS)?
        }
        "keepalives_count" => {
            p.tcp.keepalives_count = match parse_int_at_most(key, &value, MAX_KEEPALIVE_COUNT)? {
                0 => None,
                n => Some(n),
            }
        }
        "tcp_user_timeout" => {
            p.tcp.tcp_user_timeout = match parse_int_at_most(key, &value, i32::MAX as u32)? {
                0 => None,
                ms => Some(Duration::from_millis(u64::from(ms))),
            }
        }
        "target_session_attrs" => {
            p.target_session_attrs =
                Some(parse_keyword::<TargetSessionAttrs>(&value).map_err(Error::config)?)
        }
        "load_balance_hosts" => {
            p.load_balance_hosts =
                Some(parse_keyword::<LoadBalanceHosts>(&value).map_err(Error::config)?)
        }
        other => {
            return Err(Error::config(format!(
                "invalid connection option `{other}`"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(s: &str) -> Result<ConnectConfig> {
        ConnectConfig::parse_with_env(s, |k| (k == "USER").then(|| "osuser".to_string()))
    }

    #[test]
    fn keepalive_settings_out_of_the_sockets_range_are_refused_when_parsed() {
        for (setting, bad, good) in [
            ("keepalives_idle", "40000", "32767"),
            ("keepalives_interval", "40000", "60"),
            ("keepalives_count", "128", "127"),
            ("tcp_user_timeout", "4294967295", "30000"),
        ] {
            let e = parse(&format!("host=127.0.0.1 {setting}={bad}")).unwrap_err();
            assert!(e.is_config() && e.to_string().contains(setting), "{e}");
            parse(&format!("host=127.0.0.1 {setting}={good}")).unwrap();
        }
    }

    #[test]
    fn url_with_everything() {
        let c = parse(
            "postgresql://us%40er:p%3Ass@db.example:6543/my%2Fdb?application_name=a%20b&connect_timeout=3&sslmode=disable",
        )
        .unwrap();
        assert_eq!(c.user(), "us@er");
        assert_eq!(c.password(), Some("p:ss"));
        assert_eq!(c.hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(c.port(), 6543);
        assert_eq!(c.dbname(), "my/db");
        assert_eq!(c.application_name(), Some("a b"));
        assert_eq!(c.connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(c.ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn ipv6_and_unix_hosts() {
        let c = parse("postgres://u@[::1]:5433/d").unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("::1".into())]);
        assert_eq!(c.port(), 5433);
        assert_eq!(c.to_string(), "postgres://u@[::1]:5433/d");
        let c = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/d").unwrap();
        assert_eq!(c.hosts(), &[Host::Unix("/var/run/postgresql".into())]);
        let c = parse("postgres:///d?host=/tmp/sock&user=x").unwrap();
        assert_eq!(c.hosts(), &[Host::Unix("/tmp/sock".into())]);
        assert_eq!(c.user(), "x");
    }

    #[test]
    fn key_value_with_quotes() {
        let c = parse(r"host=h port=1 user=u password='a \'b\' c' dbname = d options='-c x=1'")
            .unwrap();
        assert_eq!(c.password(), Some("a 'b' c"));
        assert_eq!(c.dbname(), "d");
        assert_eq!(c.options(), Some("-c x=1"));
        assert_eq!(c.port(), 1);
    }

    #[test]
    fn environment_fills_gaps_only() {
        let env = |k: &str| match k {
            "PGHOST" => Some("envhost".to_string()),
            "PGPORT" => Some("7000".to_string()),
            "PGUSER" => Some("envuser".to_string()),
            "PGPASSWORD" => Some("envpw".to_string()),
            "PGDATABASE" => Some("envdb".to_string()),
            "PGAPPNAME" => Some("envapp".to_string()),
            _ => None,
        };
        let c = ConnectConfig::parse_with_env("postgres://given@/", env).unwrap();
        assert_eq!(c.user(), "given");
        assert_eq!(c.hosts(), &[Host::Tcp("envhost".into())]);
        assert_eq!(c.port(), 7000);
        assert_eq!(c.password(), Some("envpw"));
        assert_eq!(c.dbname(), "envdb");
        assert_eq!(c.application_name(), Some("envapp"));
        let bad = ConnectConfig::parse_with_env("", |k| (k == "PGPORT").then(|| "x".into()));
        let err = bad.unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("PGPORT"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.user(), "osuser");
        assert_eq!(c.dbname(), "osuser");
        assert_eq!(c.port(), 5432);
        assert_eq!(c.connect_timeout(), Some(Duration::from_secs(10)));
        assert!(ConnectConfig::parse_with_env("", no_env)
            .unwrap_err()
            .is_config());
    }

    #[test]
    fn malformed_inputs_are_config_errors() {
        for bad in [
            "postgres://u@h:99999/d",
            "postgres://u@h:abc/d",
            "postgres://u@[::1/d",
            "postgres://u:%zz@h/d",
            "postgres://u@h/d?nosuchoption=1",
            "postgres://u@h/d?sslmode=sometimes",
            "postgres://u@h/d?channel_binding=maybe",
            "postgres://u@h/d?sslnegotiation=fast",
            "postgres://u@h/d?sslmode=prefer&sslnegotiation=direct",
            "postgres://u@h/d?sslmode=disable&channel_binding=require",
            "host=h hostaddr=not-an-ip",
            "host=h,i hostaddr=127.0.0.1",
            "postgres://u@h/d?connect_timeout=soon",
            "postgres://u@h/d?novalue",
            "mysql://u@h/d",
            "host=h port",
            "host=h password='unterminated",
            "bogus=1",
            "client_encoding=LATIN1",
            "postgres://u@h:5432:5433/d",
            "postgres://u@::1/d",
            "postgres://u@::1:5432/d",
            "host=h keepalives=banana",
            "host=h keepalives_idle=-1",
            "host=h keepalives_interval=1.5",
            "host=h keepalives_count=x",
            "host=h tcp_user_timeout=soon",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.is_config(), "{bad}: {err:?}");
        }
    }

    #[test]
    fn ipv6_without_brackets_says_how_to_write_it() {
        let e = parse("postgres://u@::1/d").unwrap_err().to_string();
        assert!(e.contains("[::1]"), "{e}");
        let e = parse("postgres://u@h:5432:5433/d").unwrap_err().to_string();
        assert!(e.contains("more than one `:`"), "{e}");
        // key=value strings take IPv6 addresses as they are, as libpq does.
        let c = parse("host=::1 port=5433").unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("::1".into())]);
        assert_eq!(c.to_string(), "postgres://osuser@[::1]:5433/osuser");
    }

    #[test]
    fn tcp_keepalive_settings() {
        let c = parse("host=h").unwrap();
        assert_eq!(c.tcp(), &TcpSettings::default());
        assert!(c.tcp().keepalives, "on by default, as in libpq");
        let c = parse(
            "postgres://u@h/d?keepalives=1&keepalives_idle=7&keepalives_interval=3&keepalives_count=4&tcp_user_timeout=2500",
        )
        .unwrap();
        let t = c.tcp();
        assert!(t.keepalives);
        assert_eq!(t.keepalives_idle, Some(Duration::from_secs(7)));
        assert_eq!(t.keepalives_interval, Some(Duration::from_secs(3)));
        assert_eq!(t.keepalives_count, Some(4));
        assert_eq!(t.tcp_user_timeout, Some(Duration::from_millis(2500)));
        assert!(!parse("host=h keepalives=0").unwrap().tcp().keepalives);
        assert_eq!(
            parse("host=h keepalives_idle=0")
                .unwrap()
                .tcp()
                .keepalives_idle,
            None,
            "0 is the system's default"
        );
        for (input, name) in [
            ("host=h keepalives=banana", "keepalives"),
            ("host=h keepalives_idle=x", "keepalives_idle"),
            ("host=h keepalives_interval=-2", "keepalives_interval"),
            ("host=h keepalives_count=many", "keepalives_count"),
            ("host=h tcp_user_timeout=1s", "tcp_user_timeout"),
        ] {
            let e = parse(input).unwrap_err().to_string();
            assert!(e.contains(name), "{input}: {e}");
        }
    }

    #[test]
    fn unencoded_specials_in_passwords() {
        // `@`, `?`, `:` and `#` are read as part of the password.
        for pw in ["p@ss", "p?ss", "p:ss", "p#ss", "a@b?c:d"] {
            let c = parse(&format!("postgres://u:{pw}@h:5433/d?sslmode=disable")).unwrap();
            assert_eq!(c.password(), Some(pw));
            assert_eq!(c.hosts(), &[Host::Tcp("h".into())]);
            assert_eq!((c.port(), c.dbname()), (5433, "d"));
        }
        // `/` cannot be told apart from the path: refused, without echoing any of it.
        for url in [
            "postgres://u:qx7/zk9@h/d",
            "postgres://u:qx7/zk9?vw3@h:5432/d",
            "postgres://u:qx7/zk9@h",
            "postgres://u:qx7@zk9/vw3@h/d",
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains("percent-encode"), "{url}: {e}");
            for part in ["qx7", "zk9", "vw3"] {
                assert!(!e.contains(part), "{url}: {e}");
            }
        }
        // A forgotten `@`: the would-be port is the password, and is not echoed.
        let e = parse("postgres://u:hunter2/d").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        // An unquoted password with a space, in a key=value string.
        for kv in ["host=h password=hun ter2", "host=h password=hun ter2=x"] {
            let e = parse(kv).unwrap_err().to_string();
            assert!(!e.contains("ter2"), "{kv}: {e}");
            assert!(e.contains("quote"), "{kv}: {e}");
        }
    }

    #[test]
    fn tls_settings_as_libpq_takes_them() {
        let c = parse("postgres://u@h/d").unwrap();
        assert_eq!(c.tls(), &TlsSettings::default());
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert_eq!(c.tls().channel_binding, ChannelBinding::Prefer);
        let c = parse(
            "host=h sslmode=verify-full sslrootcert=system sslcert=/c.pem sslkey=/k.pem \
             sslnegotiation=direct channel_binding=require",
        )
        .unwrap();
        let t = c.tls();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(RootCert::System));
        assert_eq!(
            t.client_cert.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(t.negotiation, SslNegotiation::Direct);
        assert_eq!(t.channel_binding, ChannelBinding::Require);
        // The environment fills what the string leaves out.
        let env = |k: &str| match k {
            "USER" => Some("osuser".to_string()),
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGSSLROOTCERT" => Some("/ca.pem".to_string()),
            "PGCHANNELBINDING" => Some("disable".to_string()),
            _ => None,
        };
        let c = ConnectConfig::parse_with_env("host=h", env).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(c.tls().root_cert, Some(RootCert::File("/ca.pem".into())));
        assert_eq!(c.tls().channel_binding, ChannelBinding::Disable);
        let bad = ConnectConfig::parse_with_env("host=h user=u", |k| {
            (k == "PGSSLMODE").then(|| "strict".to_string())
        });
        assert!(bad.unwrap_err().to_string().contains("PGSSLMODE"));
        // hostaddr: connect to the address, the name is for the certificate.
        let c = parse("host=db.example hostaddr=127.0.0.1").unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(c.hostaddr(0), Some("127.0.0.1".parse().unwrap()));
        let c = parse("hostaddr=::1").unwrap();
        assert_eq!(c.hosts(), &[Host::Tcp("::1".into())]);
        // Certificate paths are not printed.
        let c = parse("host=h sslrootcert=/secret/ca.pem sslkey=/secret/k.pem").unwrap();
        assert!(!format!("{c:?} {c}").contains("/secret"));
    }

    #[test]
    fn host_lists_as_libpq_takes_them() {
        let c = parse("postgres://u@h1:5433,h2:5434,h3/d?target_session_attrs=read-write&load_balance_hosts=random").unwrap();
        assert_eq!(
            c.hosts(),
            &[
                Host::Tcp("h1".into()),
                Host::Tcp("h2".into()),
                Host::Tcp("h3".into())
            ]
        );
        assert_eq!(c.ports(), &[5433, 5434, 5432]);
        assert_eq!(c.target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert_eq!(c.load_balance_hosts(), LoadBalanceHosts::Random);
        assert_eq!(c.to_string(), "postgres://u@h1:5433,h2:5434,h3:5432/d");
        // One port applies to every host.
        let c = parse("host=a,b,c port=6000").unwrap();
        assert_eq!(c.ports(), &[6000, 6000, 6000]);
        let c = parse("host=a,b port=6000,6001 target_session_attrs=prefer-standby").unwrap();
        assert_eq!(c.ports(), &[6000, 6001]);
        assert_eq!(c.target_session_attrs(), TargetSessionAttrs::PreferStandby);
        let c = parse("postgres://u@[::1]:7000,[::1]:7001/d").unwrap();
        assert_eq!(c.ports(), &[7000, 7001]);
        // From the environment, lists too.
        let env = |k: &str| match k {
            "USER" => Some("osuser".to_string()),
            "PGHOST" => Some("p,s".to_string()),
            "PGPORT" => Some("1,2".to_string()),
            "PGTARGETSESSIONATTRS" => Some("standby".to_string()),
            _ => None,
        };
        let c = ConnectConfig::parse_with_env("", env).unwrap();
        assert_eq!(c.ports(), &[1, 2]);
        assert_eq!(c.target_session_attrs(), TargetSessionAttrs::Standby);
        let one = c.for_host(1);
        assert_eq!(
            (one.hosts(), one.ports()),
            (&[Host::Tcp("s".into())][..], &[2][..])
        );
        assert_eq!(one.target_session_attrs(), TargetSessionAttrs::Any);
        // Bad input names the parameter.
        for (input, name) in [
            ("host=a,,b", "host"),
            ("postgres://u@a,,b/d", "host"),
            ("postgres://u@a,/d", "host"),
            ("host=a,b,c port=1,2", "port"),
            ("postgres://u@a:1,b:2,c:3/d?port=1,2", "port"),
            (
                "host=a target_session_attrs=primaryish",
                "target_session_attrs",
            ),
            ("host=a load_balance_hosts=sometimes", "load_balance_hosts"),
        ] {
            let e = parse(input).unwrap_err().to_string();
            assert!(e.contains(name), "{input}: {e}");
        }
    }

    #[test]
    fn password_never_printed() {
        let c = parse("postgres://u:hunter2@h/d").unwrap();
        let printed = format!("{c} {c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
