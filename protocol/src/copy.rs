//! The COPY sub-protocol's frontend messages: `CopyData`, `CopyDone`, `CopyFail`; and the
//! `COPY n` tag's row count.

use bytes::{BufMut, BytesMut};

use super::error::{ProtocolError, Result};
use super::frontend::append;

/// Appends one `CopyData` message carrying `data`.
///
/// # Errors
///
/// An invalid-input error when `data` is over the protocol's message limit (nothing is
/// written then).
pub fn write_copy_data(data: &[u8], out: &mut BytesMut) -> Result<()> {
    append(out, "CopyData", data.len(), |out| {
        out.reserve(5 + data.len());
        out.put_u8(b'd');
        out.put_i32((4 + data.len()) as i32);
        out.put_slice(data);
        Ok(())
    })
}

/// Appends `CopyDone`.
pub fn write_copy_done(out: &mut BytesMut) {
    postgres_protocol::message::frontend::copy_done(out);
}

/// Appends `CopyFail` with `reason` (the server's error message then quotes it).
pub fn write_copy_fail(reason: &str, out: &mut BytesMut) {
    // A NUL would end the string early; the reason is ours, so there is none.
    let clean: String = reason.chars().filter(|&c| c != '\0').collect();
    postgres_protocol::message::frontend::copy_fail(&clean, out)
        .expect("a CopyFail without NUL bytes is always encodable");
}

/// The row count of a `COPY n` command tag.
pub fn copy_rows(tag: &str) -> Result<u64> {
    tag.strip_prefix("COPY ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ProtocolError::protocol(format!("unexpected command tag {tag:?} after COPY"))
        })
}

/// Checks a CopyBothResponse (`W`): the overall format, a column count and a format per
/// column, which postgres-protocol does not parse. Its length must be exactly that.
pub(crate) fn check_copy_both(frame: &[u8]) -> Result<()> {
    let body = &frame[5..];
    let bad = || ProtocolError::protocol("malformed CopyBothResponse");
    let [_format, hi, lo, columns @ ..] = body else {
        return Err(bad());
    };
    let n = i16::from_be_bytes([*hi, *lo]);
    if n < 0 || columns.len() != usize::from(n.unsigned_abs()) * 2 {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_data_is_framed() {
        let mut out = BytesMut::new();
        write_copy_data(b"1\tx\n", &mut out).unwrap();
        assert_eq!(&out[..], b"d\0\0\0\x081\tx\n");
        write_copy_done(&mut out);
        assert_eq!(&out[9..], b"c\0\0\0\x04");
        assert_eq!(copy_rows("COPY 12").unwrap(), 12);
        assert!(copy_rows("SELECT 1").is_err());
    }
}
