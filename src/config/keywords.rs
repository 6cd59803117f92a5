//! Settings whose values are keywords (`sslmode`, `channel_binding`, `sslnegotiation`,
//! `gssencmode`, `target_session_attrs`, `load_balance_hosts`): each enum has one table of its values
//! and their keywords, from which both its name ([`Keyword::as_str`]) and its parser
//! ([`std::str::FromStr`]) come.

use std::str::FromStr;

use crate::error::Error;

/// An enum whose values are written as keywords, as libpq writes them.
pub trait Keyword: Copy + PartialEq + Sized + 'static {
    /// The setting's name, for errors (`sslmode`).
    const SETTING: &'static str;
    /// Every value with its keyword, in the order the errors list them.
    const TABLE: &'static [(Self, &'static str)];

    /// The keyword libpq uses for this value.
    fn as_str(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, k)| k)
    }
}

/// The value written `s`, or an error listing the keywords.
pub(crate) fn parse_keyword<T: Keyword>(s: &str) -> std::result::Result<T, String> {
    T::TABLE
        .iter()
        .find(|(_, k)| *k == s)
        .map(|(v, _)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = T::TABLE.iter().map(|(_, k)| *k).collect();
            let (last, rest) = names.split_last().expect("a table is never empty");
            let expected = if rest.is_empty() {
                last.to_string()
            } else {
                format!("{} or {last}", rest.join(", "))
            };
            format!("invalid {} `{s}` (expected {expected})", T::SETTING)
        })
}

/// One table each: the value's keyword, `FromStr`, `Display`.
macro_rules! keywords {
    ($ty:ident, $setting:literal, [$($value:ident => $word:literal),+ $(,)?]) => {
        impl Keyword for $ty {
            const SETTING: &'static str = $setting;
            const TABLE: &'static [(Self, &'static str)] = &[$(($ty::$value, $word)),+];
        }

        impl $ty {
            /// The keyword libpq uses.
            pub fn as_str(self) -> &'static str {
                Keyword::as_str(self)
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<$ty, Error> {
                parse_keyword(s).map_err(Error::config)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Plain first; TLS only if the server refuses a plain connection.
    Allow,
    /// TLS if the server offers it (it answers `S` to SSLRequest), else plain; the
    /// certificate is not checked. libpq's default.
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is not checked (unless a root certificate is
    /// configured: then as `VerifyCa`, as in libpq).
    Require,
    /// TLS with a certificate chain that leads to the root certificate (`sslrootcert`).
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

/// libpq's `channel_binding`: whether SCRAM authentication binds to the TLS channel
/// (SCRAM-SHA-256-PLUS with `tls-server-end-point`), so that a man in the middle who
/// terminates TLS cannot relay the authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// Never.
    Disable,
    /// When the connection is encrypted and the server offers it. The default.
    #[default]
    Prefer,
    /// Always: the connection fails, before any password is sent, if the server does not
    /// authenticate with SCRAM-SHA-256-PLUS over TLS.
    Require,
}

/// libpq's `sslnegotiation`: how TLS starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslNegotiation {
    /// SSLRequest first, then the handshake if the server agrees. The default; every
    /// server version understands it.
    #[default]
    Postgres,
    /// The TLS handshake at once, with ALPN `postgresql` (PostgreSQL 17 and later); saves
    /// a round trip. Needs `sslmode` require or stricter.
    Direct,
}

/// libpq's `target_session_attrs`: which kind of server a connection must reach. Servers
/// that do not match are closed and the next host is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// Any server (the default).
    #[default]
    Any,
    /// One that accepts writes (`transaction_read_only` off).
    ReadWrite,
    /// One that does not (a standby, or `default_transaction_read_only` on).
    ReadOnly,
    /// A primary (not in recovery).
    Primary,
    /// A standby (in recovery).
    Standby,
    /// A standby if any host is one, else any server.
    PreferStandby,
}

/// libpq's `gssencmode`: whether the connection is encrypted with GSSAPI. wirepool never
/// asks for GSSAPI encryption (it encrypts with TLS); `prefer` goes on unencrypted by
/// GSSAPI as libpq's does when no encryption can be had, and `require` is a configuration
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GssEncMode {
    /// Never (the default here; libpq's when built without GSSAPI).
    #[default]
    Disable,
    /// If it can be had: with wirepool, never.
    Prefer,
    /// Always, or fail: refused when the settings are read.
    Require,
}

/// libpq's `load_balance_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadBalanceHosts {
    /// Hosts are tried in the order given (the default).
    #[default]
    Disable,
    /// Each new connection tries the hosts in a random order, so a pool spreads over them.
    Random,
}

keywords!(SslMode, "sslmode", [
    Disable => "disable",
    Allow => "allow",
    Prefer => "prefer",
    Require => "require",
    VerifyCa => "verify-ca",
    VerifyFull => "verify-full",
]);

keywords!(ChannelBinding, "channel_binding", [
    Disable => "disable",
    Prefer => "prefer",
    Require => "require",
]);

keywords!(SslNegotiation, "sslnegotiation", [
    Postgres => "postgres",
    Direct => "direct",
]);

keywords!(TargetSessionAttrs, "target_session_attrs", [
    Any => "any",
    ReadWrite => "read-write",
    ReadOnly => "read-only",
    Primary => "primary",
    Standby => "standby",
    PreferStandby => "prefer-standby",
]);

keywords!(GssEncMode, "gssencmode", [
    Disable => "disable",
    Prefer => "prefer",
    Require => "require",
]);

keywords!(LoadBalanceHosts, "load_balance_hosts", [
    Disable => "disable",
    Random => "random",
]);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Keyword + std::fmt::Debug + FromStr>() {
        let mut seen = Vec::new();
        for (v, k) in T::TABLE {
            assert_eq!(v.as_str(), *k);
            assert_eq!(parse_keyword::<T>(k).unwrap(), *v);
            assert!(!seen.contains(k), "{k} twice");
            seen.push(*k);
        }
        let e = parse_keyword::<T>("nonsense").unwrap_err();
        assert!(e.contains(T::SETTING) && e.contains(T::TABLE[0].1), "{e}");
    }

    #[test]
    fn every_keyword_round_trips_and_errors_list_them() {
        round_trips::<SslMode>();
        round_trips::<ChannelBinding>();
        round_trips::<SslNegotiation>();
        round_trips::<TargetSessionAttrs>();
        round_trips::<LoadBalanceHosts>();
        round_trips::<GssEncMode>();
        assert_eq!(
            parse_keyword::<SslMode>("x").unwrap_err(),
            "invalid sslmode `x` (expected disable, allow, prefer, require, verify-ca or verify-full)"
        );
    }
}
