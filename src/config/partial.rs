//! What a URL or key=value string gives, before the environment and the defaults fill the
//! gaps: the values by keyword (`apply`, one keyword list for both forms) and the parsers
//! of each value (host and port lists, timeouts, keepalive settings).

use super::*;

/// Values read from a string before the environment and defaults fill the gaps.
#[derive(Default)]
pub(super) struct Partial {
    pub(super) hosts: Vec<Host>,
    /// `None`: the default port for that host (an empty entry, as libpq allows).
    pub(super) ports: Vec<Option<u16>>,
    pub(super) target_session_attrs: Option<TargetSessionAttrs>,
    pub(super) load_balance_hosts: Option<LoadBalanceHosts>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) dbname: Option<String>,
    pub(super) application_name: Option<String>,
    pub(super) options: Option<String>,
    pub(super) connect_timeout: Option<Option<Duration>>,
    pub(super) ssl_mode: Option<SslMode>,
    pub(super) root_cert: Option<RootCert>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    pub(super) negotiation: Option<SslNegotiation>,
    pub(super) channel_binding: Option<ChannelBinding>,
    pub(super) min_protocol: Option<ProtocolVersion>,
    pub(super) max_protocol: Option<ProtocolVersion>,
    pub(super) require_auth: Option<RequireAuth>,
    pub(super) krbsrvname: Option<String>,
    pub(super) gss_enc_mode: Option<GssEncMode>,
    pub(super) hostaddrs: Vec<std::net::IpAddr>,
    pub(super) tcp: TcpSettings,
    /// `service`: the section of the service file whose settings fill what the string
    /// leaves out.
    pub(super) service: Option<String>,
    /// `servicefile` (libpq 18): the user's service file, in place of `PGSERVICEFILE`.
    pub(super) servicefile: Option<String>,
    /// `passfile`, as given (empty: the default file).
    pub(super) passfile: Option<PathBuf>,
    /// The keywords set so far, in the order given: a service file's line sets only a
    /// keyword not in it (so the string wins, and the first of two lines in the service).
    pub(super) set: Vec<String>,
    /// The previous keyword was `password`: errors must not echo the next token, which
    /// may be the rest of an unquoted password.
    pub(super) after_password: bool,
}

/// A comma-separated port list; empty entries are the default port.
pub(super) fn port_list(v: &str, what: &str) -> Result<Vec<Option<u16>>> {
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
pub(super) fn host_list(v: &str, what: &str) -> Result<Vec<Host>> {
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

pub(super) fn root_cert_from(v: &str) -> RootCert {
    if v == "system" {
        RootCert::System
    } else {
        RootCert::File(PathBuf::from(v))
    }
}

pub(super) fn host_from_str(h: &str) -> Result<Host> {
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

pub(super) fn parse_port(v: &str) -> std::result::Result<u16, ()> {
    match v.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(()),
        Ok(p) => Ok(p),
    }
}

pub(super) fn parse_connect_timeout(v: &str) -> std::result::Result<Option<Duration>, String> {
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
pub(super) fn parse_int(key: &str, v: &str) -> Result<u32> {
    v.trim().parse::<u32>().map_err(|_| {
        Error::config(format!(
            "invalid {key} `{v}` (expected a whole number, 0 or more)"
        ))
    })
}

/// The largest `keepalives_idle` and `keepalives_interval` the socket options take (Linux's
/// `TCP_KEEPIDLE` and `TCP_KEEPINTVL` limit); checked when parsing, so that a value out of
/// range is a configuration error naming the setting, not an OS error at connect.
pub(super) const MAX_KEEPALIVE_SECS: u32 = 32_767;

/// The largest `keepalives_count` (Linux's `TCP_KEEPCNT` limit).
pub(super) const MAX_KEEPALIVE_COUNT: u32 = 127;

/// Whole seconds for `key`, at most `max`; 0 means the system's default (`None`), as in
/// libpq.
pub(super) fn parse_secs_opt(key: &str, v: &str, max: u32) -> Result<Option<Duration>> {
    Ok(match parse_int_at_most(key, v, max)? {
        0 => None,
        n => Some(Duration::from_secs(u64::from(n))),
    })
}

pub(super) fn parse_int_at_most(key: &str, v: &str, max: u32) -> Result<u32> {
    let n = parse_int(key, v)?;
    if n > max {
        return Err(Error::config(format!(
            "{key}: {n} is out of range (0 to {max})"
        )));
    }
    Ok(n)
}

/// The keywords [`apply`] knows.
pub(super) const KEYWORDS: &[&str] = &[
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
    "min_protocol_version",
    "max_protocol_version",
    "require_auth",
    "krbsrvname",
    "gssencmode",
    "client_encoding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "load_balance_hosts",
    "service",
    "servicefile",
    "passfile",
];

/// Applies one `keyword = value` pair, from a URL query or a key=value string.
pub(super) fn apply(p: &mut Partial, key: &str, value: String) -> Result<()> {
    p.set.push(key.to_string());
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
        "min_protocol_version" | "max_protocol_version" => {
            let v = Some(ProtocolVersion::parse(key, &value)?);
            if key == "min_protocol_version" {
                p.min_protocol = v;
            } else {
                p.max_protocol = v;
            }
        }
        "require_auth" => p.require_auth = Some(RequireAuth::parse(&value)?),
        "krbsrvname" => p.krbsrvname = Some(value),
        "gssencmode" => {
            p.gss_enc_mode = Some(parse_keyword::<GssEncMode>(&value).map_err(Error::config)?)
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
        "service" => p.service = Some(value),
        "servicefile" => p.servicefile = Some(value),
        "passfile" => p.passfile = Some(PathBuf::from(value)),
        other => {
            return Err(Error::config(format!(
                "invalid connection option `{other}`"
            )))
        }
    }
    Ok(())
}
