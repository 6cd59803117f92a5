//! Protocol versions, as libpq 18 names them (`min_protocol_version`,
//! `max_protocol_version`): 3.0, understood by every server since PostgreSQL 7.4, and 3.2
//! (PostgreSQL 18), whose only change is a cancel key of up to 256 bytes. There was never
//! a 3.1.

use std::fmt;

use super::error::{ProtocolError, Result};

/// A protocol version: the major number in the high 16 bits, the minor in the low, as the
/// StartupMessage and NegotiateProtocolVersion carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion(u32);

impl ProtocolVersion {
    /// 3.0: every server since PostgreSQL 7.4, and every pooler.
    pub const V3_0: ProtocolVersion = ProtocolVersion(0x0003_0000);
    /// 3.2: PostgreSQL 18 (cancel keys of up to 256 bytes).
    pub const V3_2: ProtocolVersion = ProtocolVersion(0x0003_0002);
    /// The newest version wirepool speaks (libpq's `latest`).
    pub const LATEST: ProtocolVersion = ProtocolVersion::V3_2;

    /// The version as the wire carries it.
    pub fn code(self) -> u32 {
        self.0
    }

    /// The version a wire code names (any code: a server may name one wirepool does
    /// not know).
    pub fn from_code(code: u32) -> ProtocolVersion {
        ProtocolVersion(code)
    }

    /// The major number.
    pub fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor number.
    pub fn minor(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// Parses libpq's spellings: `3.0`, `3.2` or `latest`.
    ///
    /// # Errors
    ///
    /// A configuration error naming `setting` and the spellings, for anything else
    /// (`3.1` too: it never existed).
    pub fn parse(setting: &str, s: &str) -> Result<ProtocolVersion> {
        match s {
            "3.0" => Ok(ProtocolVersion::V3_0),
            "3.2" => Ok(ProtocolVersion::V3_2),
            "latest" => Ok(ProtocolVersion::LATEST),
            _ => Err(ProtocolError::config(format!(
                "invalid {setting} `{s}` (expected 3.0, 3.2 or latest)"
            ))),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_codes() {
        assert_eq!(
            ProtocolVersion::parse("max_protocol_version", "3.0").unwrap(),
            ProtocolVersion::V3_0
        );
        assert_eq!(
            ProtocolVersion::parse("max_protocol_version", "latest").unwrap(),
            ProtocolVersion::V3_2
        );
        assert_eq!(ProtocolVersion::V3_2.code(), 196_610);
        assert_eq!(ProtocolVersion::V3_2.to_string(), "3.2");
        for bad in ["3.1", "3", "3.3", "4.0", "", " 3.0", "LATEST"] {
            let e = ProtocolVersion::parse("min_protocol_version", bad).unwrap_err();
            assert!(e.to_string().contains("min_protocol_version"), "{e}");
        }
    }
}
