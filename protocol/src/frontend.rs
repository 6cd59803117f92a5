//! Encoding of frontend messages (through `postgres_protocol`), with the checks that come
//! before anything is written: the server's size limit, NUL bytes in strings.
//!
//! A message that fails a check leaves the output buffer exactly as it was, so a
//! connection never holds half a message it will not send.

use bytes::BytesMut;

use super::error::{ProtocolError, Result};

/// The largest length a frontend message may declare (its length field counts itself):
/// the server's `PQ_LARGE_MESSAGE_LIMIT`, 1 GiB less 2 bytes. A longer message makes the
/// server close the connection.
pub const MAX_FRONTEND_MESSAGE: usize = 0x3FFF_FFFE;

/// Appends one message to `out` with `encode`, after checking that its declared length
/// (`body_len` plus the length field) is within [`MAX_FRONTEND_MESSAGE`]. On any error
/// `out` is left as it was.
///
/// # Errors
///
/// An invalid-input error naming `what` when the message would be too large, or whatever
/// `encode` reports (mapped by the caller).
pub(crate) fn append(
    out: &mut BytesMut,
    what: &str,
    body_len: usize,
    encode: impl FnOnce(&mut BytesMut) -> Result<()>,
) -> Result<()> {
    if body_len.saturating_add(4) > MAX_FRONTEND_MESSAGE {
        return Err(ProtocolError::invalid_input(format!(
            "{what} of {body_len} bytes is over the protocol's limit of {MAX_FRONTEND_MESSAGE} bytes per message; nothing was sent"
        )));
    }
    let mark = out.len();
    encode(out).inspect_err(|_| out.truncate(mark))
}

/// Appends one message with `encode` whose size is only known once encoded (a Bind of
/// caller values), then checks it against [`MAX_FRONTEND_MESSAGE`]. On any error `out` is
/// left as it was.
///
/// # Errors
///
/// An invalid-input error naming `what` when the message is too large, or whatever
/// `encode` reports.
pub(crate) fn append_checked(
    out: &mut BytesMut,
    what: &str,
    encode: impl FnOnce(&mut BytesMut) -> Result<()>,
) -> Result<()> {
    let mark = out.len();
    encode(out).inspect_err(|_| out.truncate(mark))?;
    let len = out.len() - mark - 1;
    if len > MAX_FRONTEND_MESSAGE {
        out.truncate(mark);
        return Err(ProtocolError::invalid_input(format!(
            "{what} of {len} bytes is over the protocol's limit of {MAX_FRONTEND_MESSAGE} bytes per message; nothing was sent"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_encoding_leaves_the_buffer_as_it_was() {
        let mut out = BytesMut::from(&b"kept"[..]);
        let e = append(&mut out, "query", MAX_FRONTEND_MESSAGE, |_| Ok(())).unwrap_err();
        assert!(matches!(e, ProtocolError::InvalidInput(_)), "{e:?}");
        assert_eq!(&out[..], b"kept");
        let e = append(&mut out, "query", 3, |o| {
            o.extend_from_slice(b"half");
            Err(ProtocolError::invalid_input("no"))
        })
        .unwrap_err();
        assert!(matches!(e, ProtocolError::InvalidInput(_)), "{e:?}");
        assert_eq!(&out[..], b"kept");
    }
}
