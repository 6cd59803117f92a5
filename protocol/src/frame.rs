//! Framing of the server's byte stream: the checks that come before any parsing.
//!
//! Every backend message is a type byte, a big-endian `Int32` length that counts itself, and
//! a body. The length is untrusted: [`FrameDecoder`] checks the tag first, bounds the length
//! per message type the way libpq does (only `T D d V E N A` may exceed 30,000 bytes, and
//! those are held to a configurable maximum), and only then waits for the body. It never
//! reserves memory from a length it has not checked; [`FrameDecoder::wanted`] tells the
//! reader how many more bytes the frame in progress needs, bounded the same way.

use bytes::BytesMut;

use super::backend::BackendMessage;
use super::error::{ProtocolError, Result};

/// Default cap on the size of one long server message (DataRow, RowDescription, CopyData,
/// ErrorResponse, NoticeResponse, NotificationResponse): 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The largest message of a type that libpq treats as short.
pub const SHORT_MESSAGE_LIMIT: usize = 30_000;

/// The largest ParameterDescription: its length, a 16-bit count and a 4-byte type per
/// parameter, for the 65,535 parameters the protocol allows (libpq treats it as short, and
/// so would refuse statements with more than 7,498 parameters).
pub(crate) const PARAMETER_DESCRIPTION_LIMIT: usize = 4 + 2 + 4 * 65_535;

/// The tags a server may send.
const KNOWN_TAGS: &[u8] = b"RSKZCDTIENAGHWdcv123nstV";
/// The tags that may be long (libpq's `VALID_LONG_MESSAGE_TYPE`).
const LONG_TAGS: &[u8] = b"TDdVENA";

const UNKNOWN: u8 = 0;
const SHORT: u8 = 1;
const LONG: u8 = 2;

/// Each byte's kind as a tag (one load per header instead of two scans of the lists).
static TAG_KIND: [u8; 256] = {
    let mut t = [UNKNOWN; 256];
    let mut i = 0;
    while i < KNOWN_TAGS.len() {
        t[KNOWN_TAGS[i] as usize] = SHORT;
        i += 1;
    }
    let mut i = 0;
    while i < LONG_TAGS.len() {
        t[LONG_TAGS[i] as usize] = LONG;
        i += 1;
    }
    t
};

/// Splits the server's byte stream into messages, with bounded lengths.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_message_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder that accepts long messages of up to `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> FrameDecoder {
        FrameDecoder {
            max_message_size: max_message_size.max(SHORT_MESSAGE_LIMIT),
        }
    }

    /// The cap for a message with this tag.
    pub fn limit_for(&self, tag: u8) -> usize {
        if TAG_KIND[usize::from(tag)] == LONG {
            self.max_message_size
        } else if tag == b't' {
            // Never beyond the configured cap on long messages.
            PARAMETER_DESCRIPTION_LIMIT.min(self.max_message_size)
        } else {
            SHORT_MESSAGE_LIMIT
        }
    }

    /// Checks the header at the front of `buf`, if a whole header is there. Returns the total
    /// frame size (type byte included).
    fn check_header(&self, buf: &[u8]) -> Result<Option<usize>> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let tag = buf[0];
        if TAG_KIND[usize::from(tag)] == UNKNOWN {
            return Err(ProtocolError::protocol(format!(
                "unknown message type {} (byte {tag:#04x}); the stream is out of sync",
                printable(tag)
            )));
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len < 4 {
            return Err(ProtocolError::protocol(format!(
                "message {} declares length {len}, less than its own length field",
                printable(tag)
            )));
        }
        let limit = self.limit_for(tag);
        if len > limit {
            return Err(ProtocolError::protocol(format!(
                "message {} declares {len} bytes, over the limit of {limit}",
                printable(tag)
            )));
        }
        Ok(Some(len + 1))
    }

    /// Decodes the next complete message from the front of `buf`, removing its bytes.
    /// `Ok(None)` means more bytes are needed. Any error means the stream cannot be trusted
    /// any more: the connection must be closed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BackendMessage>> {
        let Some(total) = self.check_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        if let Some(m) = BackendMessage::decode_in_place(&buf[..total]) {
            bytes::Buf::advance(buf, total);
            return m.map(Some);
        }
        BackendMessage::decode_frame(buf.split_to(total)).map(Some)
    }

    /// How many more bytes the frame at the front of `buf` needs (at least 1 when the
    /// header is incomplete; 0 when a whole frame is buffered). Bounded by the per-type cap,
    /// so a reader may reserve this much.
    pub fn wanted(&self, buf: &[u8]) -> Result<usize> {
        match self.check_header(buf)? {
            None => Ok(5 - buf.len()),
            Some(total) => Ok(total.saturating_sub(buf.len())),
        }
    }
}

fn printable(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("{tag:#04x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TransactionStatus;

    #[test]
    fn four_gib_header_is_a_protocol_error_without_allocation() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"D\xff\xff\xff\xff"[..]);
        let cap = buf.capacity();
        let err = d.decode(&mut buf).unwrap_err();
        assert!(err.is_protocol(), "{err:?}");
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert_eq!(buf.capacity(), cap);
        assert!(d.wanted(&buf).is_err());
    }

    #[test]
    fn ready_and_complete_decode_in_place_and_reject_bad_bodies() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"[..]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(BackendMessage::CommandComplete("SELECT 1".into()))
        );
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(BackendMessage::ReadyForQuery(TransactionStatus::Idle))
        );
        assert!(buf.is_empty());
        for bad in [
            &b"Z\x00\x00\x00\x06II"[..],
            b"Z\x00\x00\x00\x04",
            b"Z\x00\x00\x00\x05X",
            b"C\x00\x00\x00\x07SEL",
            b"C\x00\x00\x00\x08S\x00L\x00",
            b"C\x00\x00\x00\x04",
            b"C\x00\x00\x00\x07\xff\xfe\x00",
        ] {
            let err = d.decode(&mut BytesMut::from(bad)).unwrap_err();
            assert!(err.is_protocol(), "{bad:?}: {err:?}");
        }
    }

    /// A DataRow frame with `body` (value count included).
    fn data_row(body: &[u8]) -> BytesMut {
        let mut f = BytesMut::from(&b"D"[..]);
        f.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn data_rows_decode_values_and_nulls_and_reject_bad_bodies() {
        use crate::backend::DataRowBody;
        let d = FrameDecoder::default();
        // "ab", NULL, "" and a negative length other than -1, which is NULL too (libpq).
        let body = b"\x00\x04\x00\x00\x00\x02ab\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xfe";
        let want = DataRowBody::from_values([Some(&b"ab"[..]), None, Some(b""), None]);
        assert_eq!(
            d.decode(&mut data_row(body)).unwrap(),
            Some(BackendMessage::DataRow(want))
        );
        assert_eq!(
            d.decode(&mut data_row(b"\x00\x00")).unwrap(),
            Some(BackendMessage::DataRow(DataRowBody::from_values(Vec::<
                Option<&[u8]>,
            >::new(
            ))))
        );
        for (bad, why) in [
            (&b""[..], "without its value count"),
            (b"\x00", "without its value count"),
            (
                b"\x00\x02\x00\x00\x00\x01a\x00\x00\x00",
                "ends inside a value's length",
            ),
            (b"\x00\x01\x00\x00\x00\x05abc", "runs past the message"),
            (b"\x00\x01\x7f\xff\xff\xffabc", "runs past the message"),
            (b"\x00\x01\x00\x00\x00\x01ab", "bytes after its last value"),
            (b"\x00\x00\x00", "bytes after its last value"),
            // 65535 values announced in 8 bytes: refused before anything is reserved.
            (
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                "counts more values",
            ),
        ] {
            let err = d.decode(&mut data_row(bad)).unwrap_err();
            assert!(err.is_protocol(), "{bad:?}: {err:?}");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_tag_table_matches_the_lists() {
        for b in 0..=255u8 {
            let want = if LONG_TAGS.contains(&b) {
                LONG
            } else if KNOWN_TAGS.contains(&b) {
                SHORT
            } else {
                UNKNOWN
            };
            assert_eq!(TAG_KIND[usize::from(b)], want, "tag {b:#04x}");
        }
        assert!(LONG_TAGS.iter().all(|t| KNOWN_TAGS.contains(t)));
    }

    #[test]
    fn short_types_are_capped_at_30000() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"Z\x00\x00\x75\x31"[..]); // 30001
        assert!(d.decode(&mut buf).unwrap_err().is_protocol());
        let mut buf = BytesMut::from(&b"D\x00\x00\x75\x31"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none(), "DataRow may be long");
        assert_eq!(d.wanted(&buf).unwrap(), 30002 - 5);
    }

    #[test]
    fn a_parameter_description_may_describe_65535_parameters() {
        let d = FrameDecoder::default();
        let len = (PARAMETER_DESCRIPTION_LIMIT as u32).to_be_bytes();
        let mut buf = BytesMut::from(&[b't', len[0], len[1], len[2], len[3]][..]);
        assert!(d.decode(&mut buf).unwrap().is_none(), "waits for the body");
        let len = (PARAMETER_DESCRIPTION_LIMIT as u32 + 1).to_be_bytes();
        let mut buf = BytesMut::from(&[b't', len[0], len[1], len[2], len[3]][..]);
        assert!(d.decode(&mut buf).unwrap_err().is_protocol());
    }

    #[test]
    fn unknown_tag_and_short_length() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00\x04"[..]);
        assert!(d
            .decode(&mut buf)
            .unwrap_err()
            .to_string()
            .contains("unknown message type"));
        let mut buf = BytesMut::from(&b"Z\x00\x00\x00\x03"[..]);
        assert!(d.decode(&mut buf).unwrap_err().is_protocol());
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let d = FrameDecoder::default();
        let mut full = BytesMut::new();
        BackendMessage::ReadyForQuery(TransactionStatus::InTransaction).encode(&mut full);
        let mut buf = BytesMut::new();
        for (i, b) in full.iter().enumerate() {
            assert!(d.decode(&mut buf).unwrap().is_none());
            assert!(d.wanted(&buf).unwrap() > 0, "at {i}");
            buf.extend_from_slice(&[*b]);
        }
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(BackendMessage::ReadyForQuery(
                TransactionStatus::InTransaction
            ))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn negotiate_protocol_version_and_long_key() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let v = BackendMessage::NegotiateProtocolVersion {
            newest_version: 0x0003_0000,
            unrecognized: vec!["_pq_.test_opt".into()],
        };
        v.encode(&mut buf);
        let k = BackendMessage::BackendKeyData {
            process_id: 42,
            secret_key: bytes::Bytes::from(vec![7u8; 32]),
        };
        k.encode(&mut buf);
        assert_eq!(d.decode(&mut buf).unwrap(), Some(v));
        assert_eq!(d.decode(&mut buf).unwrap(), Some(k));
        // A forged option count must not allocate.
        let mut buf = BytesMut::from(&b"v\x00\x00\x00\x0c\x00\x03\x00\x00\xff\xff\xff\xff"[..]);
        assert!(d.decode(&mut buf).unwrap_err().is_protocol());
    }
}
