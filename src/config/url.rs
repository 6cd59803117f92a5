//! `postgres://` and `postgresql://` URLs: hosts and ports (lists, IPv6 in brackets),
//! percent-encoding, and the query parameters, which are keywords as in a key=value string.

use super::*;

pub(super) fn parse_url(s: &str) -> Result<Partial> {
    let rest = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
    // The user name and password end at the last `@` before the first `/`, so an unencoded
    // `@`, `?`, `:` or `#` in a password is read as part of it.
    let slash = rest.find('/').unwrap_or(rest.len());
    let (userinfo, after) = match rest[..slash].rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let (hostspec, tail) = after.split_at(host_end);
    let (path, query) = match tail.strip_prefix('/') {
        Some(t) => match t.split_once('?') {
            Some((p, q)) => (Some(p), Some(q)),
            None => (Some(t), None),
        },
        None => (None, tail.strip_prefix('?')),
    };
    // An `@` further on is an unencoded `/` in the password, or an `@` in the database
    // name or a parameter: guessing wrong would put the password in an error or a database
    // name, so the URL is refused, without echoing any of it.
    if after.contains('@') {
        return Err(Error::config(
            "malformed URL: `@` after the host part; percent-encode `/`, `?`, `#` and `@` \
             in the user name, password, database name and parameters (`/` is %2F, `@` is %40)",
        ));
    }
    let mut p = Partial::default();
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, pw)) => (u, Some(pw)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            p.user = Some(percent_decode(user, "user name")?);
            p.set.push("user".into());
        }
        if let Some(pw) = password {
            p.password = Some(percent_decode(pw, "password")?);
            p.set.push("password".into());
        }
    }
    if !hostspec.is_empty() {
        let parts = split_hosts(hostspec)?;
        for part in &parts {
            let (host, port) = split_host_port(part)?;
            if host.is_empty() {
                if parts.len() > 1 {
                    return Err(Error::config("host: an empty host in the URL's host list"));
                }
            } else {
                p.hosts.push(host_from_str(&percent_decode(host, "host")?)?);
            }
            let port = match port {
                None | Some("") => None,
                // Not echoed: in a URL with a forgotten `@`, the "port" is a password.
                Some(port) => Some(parse_port(port).map_err(|_| {
                    Error::config("invalid port in URL (expected a number from 1 to 65535)")
                })?),
            };
            p.ports.push(port);
        }
        if p.ports.iter().all(Option::is_none) {
            p.ports.clear();
        }
        if !p.hosts.is_empty() {
            p.set.push("host".into());
        }
        if !p.ports.is_empty() {
            p.set.push("port".into());
        }
    }
    if let Some(path) = path {
        if !path.is_empty() {
            p.dbname = Some(percent_decode(path, "database name")?);
            p.set.push("dbname".into());
        }
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Error::config(format!("missing `=` after `{pair}` in URL query")))?;
            let k = percent_decode(k, "query parameter")?;
            let v = percent_decode(v, "query parameter")?;
            apply(&mut p, &k, v)?;
        }
    }
    Ok(p)
}

/// Splits `h1:p1,[::1]:p2` at commas outside brackets.
pub(super) fn split_hosts(spec: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(Error::config("unbalanced brackets in URL host"));
        }
    }
    out.push(&spec[start..]);
    Ok(out)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (RFC 3986; an IPv6 address in a URL needs
/// its brackets, as in libpq).
pub(super) fn split_host_port(part: &str) -> Result<(&str, Option<&str>)> {
    if let Some(rest) = part.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| Error::config("missing `]` after IPv6 address in URL"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(Error::config(format!(
                "unexpected `{after}` after IPv6 address in URL"
            ))),
        }
    } else {
        match part.split_once(':') {
            Some(_) if part.parse::<std::net::Ipv6Addr>().is_ok() => Err(Error::config(format!(
                "an IPv6 address in a URL must be in brackets: [{part}]"
            ))),
            Some((h, p)) if p.contains(':') => Err(Error::config(format!(
                "invalid host `{h}` in URL: more than one `:` (an IPv6 address must be in brackets, e.g. [::1]:5432)"
            ))),
            Some((h, p)) => Ok((h, Some(p))),
            None => Ok((part, None)),
        }
    }
}

pub(super) fn percent_decode(s: &str, what: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::config(format!("invalid percent-encoding in {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::config(format!("{what} is not valid UTF-8 after percent-decoding")))
}

pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
