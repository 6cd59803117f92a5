//! `require_auth`, as libpq 16: which authentication methods the client lets the server
//! use. A list of methods (`scram-sha-256,md5`) allows only those; a list of negated
//! methods (`!password,!md5`) allows all but those. `none` stands for the server letting
//! the client in without asking for anything. A request for a method outside the set
//! ends the startup before any secret, or anything derived from one, is sent.

use std::fmt;

use super::error::{ProtocolError, Result};

/// The methods `require_auth` names, in libpq's spelling.
const METHODS: &[(u8, &str)] = &[
    (RequireAuth::PASSWORD, "password"),
    (RequireAuth::MD5, "md5"),
    (RequireAuth::GSS, "gss"),
    (RequireAuth::SSPI, "sspi"),
    (RequireAuth::SCRAM, "scram-sha-256"),
    (RequireAuth::NONE, "none"),
];

/// The set of authentication methods a connection accepts (libpq's `require_auth`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequireAuth {
    allowed: u8,
    /// As written, for errors and `Display` (empty: every method).
    negated: bool,
}

impl RequireAuth {
    const PASSWORD: u8 = 1;
    const MD5: u8 = 1 << 1;
    const GSS: u8 = 1 << 2;
    const SSPI: u8 = 1 << 3;
    const SCRAM: u8 = 1 << 4;
    const NONE: u8 = 1 << 5;
    const ALL: u8 = (1 << 6) - 1;

    /// Every method, and none: the default.
    pub const ANY: RequireAuth = RequireAuth {
        allowed: RequireAuth::ALL,
        negated: true,
    };

    /// Parses libpq's list: comma-separated methods (`password`, `md5`, `gss`, `sspi`,
    /// `scram-sha-256`, `none`), either all plain or all negated with `!`. An empty
    /// string is the default (every method).
    ///
    /// # Errors
    ///
    /// A configuration error for an unknown method, a method given twice, or plain and
    /// negated methods mixed; libpq refuses the same.
    pub fn parse(s: &str) -> Result<RequireAuth> {
        if s.is_empty() {
            return Ok(RequireAuth::ANY);
        }
        let mut named = 0u8;
        let mut negated = None;
        for item in s.split(',') {
            let (neg, name) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            match negated {
                Some(n) if n != neg => {
                    return Err(ProtocolError::config(format!(
                        "require_auth `{s}` mixes negated and plain methods (write all of them with `!`, or none)"
                    )))
                }
                _ => negated = Some(neg),
            }
            let bit = METHODS
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(b, _)| *b)
                .ok_or_else(|| {
                    let names: Vec<&str> = METHODS.iter().map(|(_, n)| *n).collect();
                    ProtocolError::config(format!(
                        "invalid require_auth method `{name}` (expected {}, optionally negated with `!`)",
                        names.join(", ")
                    ))
                })?;
            if named & bit != 0 {
                return Err(ProtocolError::config(format!(
                    "require_auth names `{name}` more than once"
                )));
            }
            named |= bit;
        }
        let negated = negated.unwrap_or(false);
        Ok(RequireAuth {
            allowed: if negated {
                RequireAuth::ALL & !named
            } else {
                named
            },
            negated,
        })
    }

    fn allows(self, bit: u8) -> bool {
        self.allowed & bit != 0
    }

    /// The server lets the client in without authenticating (`none`).
    pub fn allows_none(self) -> bool {
        self.allows(RequireAuth::NONE)
    }

    /// A cleartext password (`password`).
    pub fn allows_password(self) -> bool {
        self.allows(RequireAuth::PASSWORD)
    }

    /// MD5 (`md5`).
    pub fn allows_md5(self) -> bool {
        self.allows(RequireAuth::MD5)
    }

    /// SCRAM-SHA-256, with or without channel binding (`scram-sha-256`).
    pub fn allows_scram(self) -> bool {
        self.allows(RequireAuth::SCRAM)
    }

    /// GSSAPI (`gss`).
    pub fn allows_gss(self) -> bool {
        self.allows(RequireAuth::GSS)
    }

    /// SSPI (`sspi`).
    pub fn allows_sspi(self) -> bool {
        self.allows(RequireAuth::SSPI)
    }

    /// Every method is allowed (the default).
    pub fn is_any(self) -> bool {
        self.allowed == RequireAuth::ALL
    }

    /// The error for a request of `asked` (what the server asked for, in words), which
    /// this set does not allow.
    pub(crate) fn refusal(self, asked: &str) -> ProtocolError {
        ProtocolError::auth(format!(
            "require_auth={self}: the server asked for {asked}, which is not allowed; nothing was sent"
        ))
    }
}

impl Default for RequireAuth {
    fn default() -> Self {
        RequireAuth::ANY
    }
}

impl fmt::Display for RequireAuth {
    /// The set as libpq would write it: the allowed methods, or the refused ones negated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, want) = if self.negated {
            ("!", false)
        } else {
            ("", true)
        };
        let names: Vec<String> = METHODS
            .iter()
            .filter(|(b, _)| self.allows(*b) == want)
            .map(|(_, n)| format!("{prefix}{n}"))
            .collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for RequireAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequireAuth({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_negated_lists() {
        let r = RequireAuth::parse("scram-sha-256,md5").unwrap();
        assert!(r.allows_scram() && r.allows_md5());
        assert!(!r.allows_password() && !r.allows_none() && !r.allows_gss());
        assert_eq!(r.to_string(), "md5,scram-sha-256");
        let r = RequireAuth::parse("!md5,!password").unwrap();
        assert!(r.allows_scram() && r.allows_none() && r.allows_gss());
        assert!(!r.allows_md5() && !r.allows_password());
        assert_eq!(r.to_string(), "!password,!md5");
        assert!(RequireAuth::parse("").unwrap().is_any());
        assert!(!RequireAuth::parse("!none").unwrap().allows_none());
    }

    #[test]
    fn bad_lists_are_refused() {
        for (s, says) in [
            ("md5,!password", "mixes"),
            ("md5,md5", "more than once"),
            ("kerberos", "invalid require_auth method `kerberos`"),
            ("md5,", "invalid require_auth method ``"),
            ("!", "invalid require_auth method ``"),
            ("MD5", "invalid require_auth method `MD5`"),
        ] {
            let e = RequireAuth::parse(s).unwrap_err().to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
