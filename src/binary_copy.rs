//! PostgreSQL's binary COPY format, as tokio-postgres's `binary_copy` offers it: rows of
//! typed values into a [`CopyInSink`], typed rows out of a [`CopyOutStream`].
//!
//! ```no_run
//! # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
//! use futures_util::StreamExt;
//! use wirepool::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
//! use wirepool::Type;
//!
//! let sink = conn.copy_in("COPY points (id, label) FROM STDIN (FORMAT binary)").await?;
//! let mut writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT]);
//! writer.write(&[&1i32, &"a"]).await?;
//! writer.write(&[&2i32, &None::<&str>]).await?;
//! assert_eq!(writer.finish().await?, 2);
//!
//! let out = conn.copy_out("COPY points (id, label) TO STDOUT (FORMAT binary)").await?;
//! let mut rows = BinaryCopyOutStream::new(out, &[Type::INT4, Type::TEXT]);
//! while let Some(row) = rows.next().await {
//!     let row = row?;
//!     let (id, label): (i32, Option<&str>) = (row.get(0), row.get(1));
//! #   let _ = (id, label);
//! }
//! # Ok(()) }
//! ```
//!
//! Unlike tokio-postgres, the writer's methods take `&mut self` (no pinning), and a row
//! with the wrong number of values is an invalid-input error rather than a panic.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use postgres_types::{FromSql, ToSql, Type};

use crate::conn::{CopyInSink, CopyOutStream};
use crate::error::{Error, Result};

use crate::copy_row::{put_header, ValueName, HEADER_LEN, MAGIC};
/// The writer hands its buffer to the sink past this size.
const FLUSH_AT: usize = 64 * 1024;

/// Writes rows of typed values in the binary COPY format into a [`CopyInSink`]. End with
/// [`finish`](BinaryCopyInWriter::finish); dropped without it, the COPY is rolled back.
#[must_use = "the COPY is rolled back unless finish() is awaited"]
pub struct BinaryCopyInWriter<'a> {
    sink: CopyInSink<'a>,
    types: Vec<Type>,
    buf: BytesMut,
}

impl std::fmt::Debug for BinaryCopyInWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryCopyInWriter")
            .field("types", &self.types)
            .finish()
    }
}

impl<'a> BinaryCopyInWriter<'a> {
    /// A writer of rows whose columns are of `types`, in order, into `sink` (from
    /// `copy_in("COPY ... FROM STDIN (FORMAT binary)")`).
    pub fn new(sink: CopyInSink<'a>, types: &[Type]) -> BinaryCopyInWriter<'a> {
        let mut buf = BytesMut::with_capacity(FLUSH_AT + 4096);
        put_header(&mut buf);
        BinaryCopyInWriter {
            sink,
            types: types.to_vec(),
            buf,
        }
    }

    /// Writes one row.
    ///
    /// # Errors
    ///
    /// An invalid-input error when `values` does not have one value per column (nothing
    /// of the row is written); a conversion error when a value cannot be a column's type;
    /// an I/O error from the connection.
    ///
    /// # Cancel safety
    ///
    /// The row is encoded before the first await. Dropping the future (while the
    /// connection has no room, say) loses nothing: that row and every row before it stay
    /// in the writer or on the connection, and go out with the next write or `finish`.
    pub async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<()> {
        encode_row(&mut self.buf, &self.types, values)?;
        if self.buf.len() >= FLUSH_AT {
            self.send_buf().await?;
        }
        Ok(())
    }

    /// Hands what is buffered to the connection once it has room, and flushes. The rows
    /// leave this writer's buffer only when the connection takes them (no await between
    /// the two): a future dropped while waiting for room loses none of them.
    async fn send_buf(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| Pin::new(&mut self.sink).poll_ready(cx)).await?;
        let chunk = self.buf.split().freeze();
        Pin::new(&mut self.sink).start_send(chunk)?;
        std::future::poll_fn(|cx| Pin::new(&mut self.sink).poll_flush(cx)).await
    }

    /// Writes the trailer, ends the COPY and returns the number of rows copied.
    ///
    /// # Errors
    ///
    /// The server's error about the data, as [`CopyInSink::finish`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the server's answer leaves the COPY's outcome unknown
    /// (as for any statement whose answer was not read); the connection's next call reads
    /// the answer first. Dropped before the trailer was handed to the connection, the
    /// writer's sink is dropped with it and the COPY is rolled back.
    pub async fn finish(mut self) -> Result<u64> {
        self.buf.put_i16(-1);
        self.send_buf().await?;
        self.sink.finish().await
    }
}

/// Appends one row of `values` (of `types`); on error `buf` is left as it was.
fn encode_row(buf: &mut BytesMut, types: &[Type], values: &[&(dyn ToSql + Sync)]) -> Result<()> {
    crate::copy_row::encode_row(buf, types, values, ValueName::Column)
}

/// The rows of a binary `COPY ... TO STDOUT`, decoded by their columns' types.
///
/// # Cancel safety
///
/// As [`CopyOutStream`](crate::CopyOutStream), which it reads: a `next()` dropped while
/// waiting loses no data (what was read stays buffered), and the stream dropped before its
/// end has its COPY cancelled before the connection's next use.
#[must_use = "a stream does nothing unless polled"]
pub struct BinaryCopyOutStream<'a> {
    stream: CopyOutStream<'a>,
    types: Arc<[Type]>,
    has_oids: Option<bool>,
    ended: bool,
}

impl std::fmt::Debug for BinaryCopyOutStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryCopyOutStream")
            .field("types", &self.types)
            .finish()
    }
}

impl<'a> BinaryCopyOutStream<'a> {
    /// The rows of `stream` (from `copy_out("COPY ... TO STDOUT (FORMAT binary)")`),
    /// whose columns are of `types`, in order.
    pub fn new(stream: CopyOutStream<'a>, types: &[Type]) -> BinaryCopyOutStream<'a> {
        BinaryCopyOutStream {
            stream,
            types: types.into(),
            has_oids: None,
            ended: false,
        }
    }
}

fn malformed(what: &str) -> Error {
    Error::protocol(format!("malformed binary COPY data: {what}"))
}

fn need(buf: &Bytes, at: usize, n: usize) -> Result<()> {
    if buf.len().saturating_sub(at) < n {
        Err(malformed("a row is cut short"))
    } else {
        Ok(())
    }
}

/// Decodes the row in `chunk` (after the header, in the first chunk); `None` at the
/// trailer.
pub(crate) fn decode(
    chunk: Bytes,
    has_oids: &mut Option<bool>,
    types: &Arc<[Type]>,
) -> Result<Option<BinaryCopyOutRow>> {
    let mut at = 0usize;
    let oids = match *has_oids {
        Some(h) => h,
        None => {
            need(&chunk, 0, HEADER_LEN)?;
            if !chunk.starts_with(MAGIC) {
                return Err(malformed("no PGCOPY signature"));
            }
            at = MAGIC.len();
            let flags = (&chunk[at..]).get_i32();
            let ext = (&chunk[at + 4..]).get_u32() as usize;
            at = HEADER_LEN;
            need(&chunk, at, ext)?;
            at += ext;
            let h = flags & (1 << 16) != 0;
            *has_oids = Some(h);
            h
        }
    };
    need(&chunk, at, 2)?;
    let count = (&chunk[at..]).get_i16();
    at += 2;
    if count == -1 {
        return Ok(None);
    }
    let expected = types.len() + usize::from(oids);
    if count < 0 || count as usize != expected {
        return Err(malformed(&format!(
            "a row of {count} values for {} columns",
            types.len()
        )));
    }
    let mut ranges = Vec::with_capacity(expected);
    for _ in 0..expected {
        need(&chunk, at, 4)?;
        let len = (&chunk[at..]).get_i32();
        at += 4;
        if len == -1 {
            ranges.push(None);
        } else if len < 0 {
            return Err(malformed("a negative value length"));
        } else {
            let len = len as usize;
            need(&chunk, at, len)?;
            ranges.push(Some(at..at + len));
            at += len;
        }
    }
    if oids {
        ranges.remove(0);
    }
    Ok(Some(BinaryCopyOutRow {
        buf: chunk,
        ranges,
        types: types.clone(),
    }))
}

impl Stream for BinaryCopyOutStream<'_> {
    type Item = Result<BinaryCopyOutRow>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let chunk = match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(c))) => c,
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(Some(Err(malformed("the data ended without its trailer"))));
            }
        };
        match decode(chunk, &mut this.has_oids, &this.types) {
            Ok(Some(row)) => Poll::Ready(Some(Ok(row))),
            Ok(None) => {
                // The trailer: the rest is the COPY's end.
                this.ended = true;
                match Pin::new(&mut this.stream).poll_next(cx) {
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    _ => Poll::Ready(None),
                }
            }
            Err(e) => {
                this.ended = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// A row of a binary COPY, read with typed [`get`](BinaryCopyOutRow::get).
#[derive(Debug, Clone)]
pub struct BinaryCopyOutRow {
    buf: Bytes,
    ranges: Vec<Option<Range<usize>>>,
    types: Arc<[Type]>,
}

impl BinaryCopyOutRow {
    /// The number of values.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True for a row of no columns.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Value `idx` as a `T`.
    ///
    /// # Errors
    ///
    /// A conversion error when there is no such column, its type cannot be read as a
    /// `T`, it is NULL and `T` is not an `Option`, or its bytes are malformed.
    pub fn try_get<'a, T: FromSql<'a>>(&'a self, idx: usize) -> Result<T> {
        let (Some(ty), Some(range)) = (self.types.get(idx), self.ranges.get(idx)) else {
            return Err(Error::conversion_msg(format!(
                "no column {idx} in a row of {} columns",
                self.ranges.len()
            )));
        };
        let about = || format!("of type {ty}, read as {}", std::any::type_name::<T>());
        if !T::accepts(ty) {
            let wrong = postgres_types::WrongType::new::<T>(ty.clone());
            return Err(Error::from_sql(idx, about(), wrong));
        }
        let raw = range.clone().map(|r| &self.buf[r]);
        T::from_sql_nullable(ty, raw).map_err(|e| Error::from_sql(idx, about(), e))
    }

    /// Value `idx` as a `T`.
    ///
    /// # Panics
    ///
    /// Where [`try_get`](Self::try_get) returns an error, as tokio-postgres's does.
    #[track_caller]
    pub fn get<'a, T: FromSql<'a>>(&'a self, idx: usize) -> T {
        match self.try_get(idx) {
            Ok(v) => v,
            Err(e) => panic!("error retrieving column {idx}: {}", crate::error::chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Value {
        I2(Option<i16>),
        I4(Option<i32>),
        I8(Option<i64>),
        F8(f64),
        Bool(Option<bool>),
        Text(Option<String>),
        Bytea(Vec<u8>),
    }

    impl Value {
        fn ty(&self) -> Type {
            match self {
                Value::I2(_) => Type::INT2,
                Value::I4(_) => Type::INT4,
                Value::I8(_) => Type::INT8,
                Value::F8(_) => Type::FLOAT8,
                Value::Bool(_) => Type::BOOL,
                Value::Text(_) => Type::TEXT,
                Value::Bytea(_) => Type::BYTEA,
            }
        }
        fn sql(&self) -> &(dyn ToSql + Sync) {
            match self {
                Value::I2(v) => v,
                Value::I4(v) => v,
                Value::I8(v) => v,
                Value::F8(v) => v,
                Value::Bool(v) => v,
                Value::Text(v) => v,
                Value::Bytea(v) => v,
            }
        }
        fn read_back(&self, row: &BinaryCopyOutRow, i: usize) -> bool {
            match self {
                Value::I2(v) => row.get::<Option<i16>>(i) == *v,
                Value::I4(v) => row.get::<Option<i32>>(i) == *v,
                Value::I8(v) => row.get::<Option<i64>>(i) == *v,
                Value::F8(v) => row.get::<f64>(i).to_bits() == v.to_bits(),
                Value::Bool(v) => row.get::<Option<bool>>(i) == *v,
                Value::Text(v) => row.get::<Option<String>>(i) == *v,
                Value::Bytea(v) => row.get::<Vec<u8>>(i) == *v,
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<Option<i16>>().prop_map(Value::I2),
            any::<Option<i32>>().prop_map(Value::I4),
            any::<Option<i64>>().prop_map(Value::I8),
            any::<f64>().prop_map(Value::F8),
            any::<Option<bool>>().prop_map(Value::Bool),
            any::<Option<String>>().prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytea),
        ]
    }

    proptest! {
        /// Rows of random shapes and values, encoded as the writer encodes them and decoded
        /// as the reader does (the server sends one row per chunk, the header with the
        /// first), come back equal.
        #[test]
        fn rows_round_trip(rows in proptest::collection::vec(proptest::collection::vec(value(), 1..8), 1..20)) {
            // One shape per stream: the first row's types; the others reshaped to them.
            let shape: Vec<Value> = rows[0].clone();
            let types: Vec<Type> = shape.iter().map(Value::ty).collect();
            let types_arc: Arc<[Type]> = types.clone().into();
            let mut has_oids = None;
            for (n, row) in rows.iter().enumerate() {
                let row: Vec<Value> = shape
                    .iter()
                    .enumerate()
                    .map(|(i, s)| row.get(i).filter(|v| v.ty() == s.ty()).unwrap_or(s).clone())
                    .collect();
                let mut buf = BytesMut::new();
                if n == 0 {
                    buf.put_slice(MAGIC);
                    buf.put_i32(0);
                    buf.put_i32(0);
                }
                let values: Vec<&(dyn ToSql + Sync)> = row.iter().map(Value::sql).collect();
                encode_row(&mut buf, &types, &values).unwrap();
                let decoded = decode(buf.freeze(), &mut has_oids, &types_arc).unwrap().unwrap();
                prop_assert_eq!(decoded.len(), row.len());
                for (i, v) in row.iter().enumerate() {
                    prop_assert!(v.read_back(&decoded, i), "column {} of {:?}", i, v);
                }
            }
            let mut trailer = BytesMut::new();
            trailer.put_i16(-1);
            prop_assert!(decode(trailer.freeze(), &mut has_oids, &types_arc).unwrap().is_none());
        }
    }

    #[test]
    fn a_wrong_number_of_values_is_refused_and_writes_nothing() {
        let mut buf = BytesMut::from(&b"x"[..]);
        let e = encode_row(&mut buf, &[Type::INT4, Type::TEXT], &[&1i32]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        let e = encode_row(&mut buf, &[Type::INT4, Type::TEXT], &[&1i32, &2i32]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Conversion);
        assert_eq!(&buf[..], b"x");
    }

    #[test]
    fn malformed_data_is_an_error_not_a_panic() {
        let types: Arc<[Type]> = vec![Type::INT4].into();
        for bad in [
            &b""[..],
            b"PGCOPY\n\xff\r\n\0\0\0\0\0",
            b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x01",
            b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\x04\0\0",
            b"PGCOPY\n\xff\r\n\0\0\0\0\0\xff\xff\xff\xff",
            b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x02",
            b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x01\xff\xff\xff\xfe",
        ] {
            let mut h = None;
            assert!(
                decode(Bytes::copy_from_slice(bad), &mut h, &types).is_err(),
                "{bad:?}"
            );
        }
        let mut h = None;
        let row = decode(
            Bytes::from_static(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\x04\0\0\0\x07"),
            &mut h,
            &types,
        )
        .unwrap()
        .unwrap();
        assert_eq!(row.get::<i32>(0), 7);
        assert!(decode(Bytes::from_static(b"\xff\xff"), &mut h, &types)
            .unwrap()
            .is_none());
    }
}
