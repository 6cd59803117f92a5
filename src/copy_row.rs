//! The binary COPY format's header and rows, written once for the two writers of it:
//! [`BinaryCopyInWriter`](crate::binary_copy::BinaryCopyInWriter) and `execute_many` by
//! COPY.

use bytes::{BufMut, BytesMut};
use postgres_types::{IsNull, ToSql, Type};

use crate::error::{Error, Result};

/// The signature that opens binary COPY data.
pub(crate) const MAGIC: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// The signature, the flags and the length of the header extension.
pub(crate) const HEADER_LEN: usize = MAGIC.len() + 4 + 4;

/// Appends the header: the signature, no flags, no header extension.
pub(crate) fn put_header(buf: &mut BytesMut) {
    buf.put_slice(MAGIC);
    buf.put_i32(0);
    buf.put_i32(0);
}

/// What a row's values are called in errors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ValueName {
    /// `column 0`, `column 1`, ... (a COPY's columns).
    Column,
    /// `parameter $1`, `parameter $2`, ... (a statement's parameters).
    Parameter,
}

impl ValueName {
    fn of(self, i: usize) -> String {
        match self {
            ValueName::Column => format!("column {i}"),
            ValueName::Parameter => format!("parameter ${}", i + 1),
        }
    }
}

/// Appends one row of `values` (of `types`) in the binary COPY format; on error `buf` is
/// left as it was.
pub(crate) fn encode_row(
    buf: &mut BytesMut,
    types: &[Type],
    values: &[&(dyn ToSql + Sync)],
    name: ValueName,
) -> Result<()> {
    if values.len() != types.len() {
        return Err(Error::invalid_input(format!(
            "a row of {} values for {} columns",
            values.len(),
            types.len()
        )));
    }
    let mark = buf.len();
    buf.put_i16(types.len() as i16);
    for (i, (value, ty)) in values.iter().zip(types).enumerate() {
        let at = buf.len();
        buf.put_i32(0);
        let len = match value.to_sql_checked(ty, buf) {
            Ok(IsNull::Yes) => -1,
            Ok(IsNull::No) => match i32::try_from(buf.len() - at - 4) {
                Ok(n) => n,
                Err(_) => {
                    buf.truncate(mark);
                    return Err(Error::invalid_input(format!(
                        "{}'s value is over 2 GiB",
                        name.of(i)
                    )));
                }
            },
            Err(e) => {
                buf.truncate(mark);
                return Err(Error::conversion(
                    format!("{} (of type {ty}) cannot take this value", name.of(i)),
                    e,
                ));
            }
        };
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}
