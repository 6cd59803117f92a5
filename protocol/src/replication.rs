//! The streaming replication protocol's messages inside CopyData (PostgreSQL's "Streaming
//! Replication Protocol"): what the server sends (XLogData, primary keepalive) and what the
//! client answers (standby status update), and the WAL position they speak in, [`Lsn`].

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{ProtocolError, Result};

/// A position in the write-ahead log, written as PostgreSQL writes it: two hexadecimal
/// numbers, the high and the low 32 bits, `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, which PostgreSQL reads as "no position" (`InvalidXLogRecPtr`).
    pub const INVALID: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A text that is not an LSN (`X/Y`, each 1 to 8 hexadecimal digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLsnError(String);

impl fmt::Display for ParseLsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not an LSN (two hexadecimal numbers as X/Y): {:?}",
            self.0
        )
    }
}

impl std::error::Error for ParseLsnError {}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> std::result::Result<Lsn, ParseLsnError> {
        let err = || ParseLsnError(s.chars().take(40).collect());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(h, 16).map_err(|_| err())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

/// Microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's epoch, as the replication
/// messages give times.
pub type PgTimestamp = i64;

/// Seconds from the Unix epoch to PostgreSQL's.
pub const PG_EPOCH_UNIX_SECONDS: u64 = 946_684_800;

/// What the server sends inside CopyData during replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`: WAL data; for logical replication, one output-plugin message.
    XLogData {
        /// Where this data starts in the WAL.
        start: Lsn,
        /// The end of the WAL on the server.
        wal_end: Lsn,
        /// When the server sent it.
        sent_at: PgTimestamp,
        /// The data.
        data: Bytes,
    },
    /// `k`: the primary's keepalive.
    Keepalive {
        /// The end of the WAL on the server.
        wal_end: Lsn,
        /// When the server sent it.
        sent_at: PgTimestamp,
        /// The server asks for a status update now (or it will end the connection at
        /// `wal_sender_timeout`).
        reply_requested: bool,
    },
}

fn need(buf: &Bytes, n: usize, what: &str) -> Result<()> {
    if buf.remaining() < n {
        return Err(ProtocolError::protocol(format!(
            "replication message too short: {what} needs {n} more bytes, {} left",
            buf.remaining()
        )));
    }
    Ok(())
}

impl ReplicationMessage {
    /// Decodes one CopyData payload.
    ///
    /// # Errors
    ///
    /// A protocol violation for an unknown kind or a short message.
    pub fn parse(mut buf: Bytes) -> Result<ReplicationMessage> {
        need(&buf, 1, "its kind")?;
        match buf.get_u8() {
            b'w' => {
                need(&buf, 24, "XLogData's header")?;
                let start = Lsn(buf.get_u64());
                let wal_end = Lsn(buf.get_u64());
                let sent_at = buf.get_i64();
                Ok(ReplicationMessage::XLogData {
                    start,
                    wal_end,
                    sent_at,
                    data: buf,
                })
            }
            b'k' => {
                need(&buf, 17, "a keepalive")?;
                let wal_end = Lsn(buf.get_u64());
                let sent_at = buf.get_i64();
                let reply = buf.get_u8();
                if buf.has_remaining() {
                    return Err(ProtocolError::protocol(
                        "replication keepalive longer than its 18 bytes",
                    ));
                }
                Ok(ReplicationMessage::Keepalive {
                    wal_end,
                    sent_at,
                    reply_requested: reply != 0,
                })
            }
            k => Err(ProtocolError::protocol(format!(
                "unknown replication message kind {:?}",
                char::from(k)
            ))),
        }
    }
}

/// The standby status update (`r`), as a CopyData payload: the positions written, flushed
/// (durably processed) and applied, the client's clock, and whether the server should
/// answer at once.
pub fn standby_status_update(
    written: Lsn,
    flushed: Lsn,
    applied: Lsn,
    now: PgTimestamp,
    reply: bool,
) -> Bytes {
    let mut b = BytesMut::with_capacity(34);
    b.put_u8(b'r');
    b.put_u64(written.0);
    b.put_u64(flushed.0);
    b.put_u64(applied.0);
    b.put_i64(now);
    b.put_u8(u8::from(reply));
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_read_and_write_as_postgres_does() {
        for (text, v) in [
            ("16/B374D848", 0x16_B374_D848),
            ("0/0", 0),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("0/1", 1),
        ] {
            let l: Lsn = text.parse().unwrap();
            assert_eq!(l, Lsn(v));
            assert_eq!(l.to_string(), text);
        }
        assert_eq!("a/b".parse::<Lsn>().unwrap().to_string(), "A/B");
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "123456789/0",
            "g/0",
            "+1/0",
            "1 /0",
            "1",
        ] {
            let e = bad.parse::<Lsn>().unwrap_err();
            assert!(e.to_string().contains("not an LSN"), "{bad}");
        }
    }

    #[test]
    fn messages_decode_and_bad_ones_are_errors() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(10);
        w.put_u64(20);
        w.put_i64(30);
        w.put_slice(b"data");
        assert_eq!(
            ReplicationMessage::parse(w.freeze()).unwrap(),
            ReplicationMessage::XLogData {
                start: Lsn(10),
                wal_end: Lsn(20),
                sent_at: 30,
                data: Bytes::from_static(b"data")
            }
        );
        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(7);
        k.put_i64(8);
        k.put_u8(1);
        assert_eq!(
            ReplicationMessage::parse(k.clone().freeze()).unwrap(),
            ReplicationMessage::Keepalive {
                wal_end: Lsn(7),
                sent_at: 8,
                reply_requested: true
            }
        );
        k.put_u8(0);
        for bad in [
            Bytes::new(),
            Bytes::from_static(b"w\0\0"),
            Bytes::from_static(b"k\0"),
            k.freeze(),
            Bytes::from_static(b"x"),
        ] {
            assert!(ReplicationMessage::parse(bad).is_err());
        }
        let r = standby_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(r.len(), 34);
        assert_eq!(r[0], b'r');
        assert_eq!(r[33], 1);
    }
}
