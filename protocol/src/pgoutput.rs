//! The messages of `pgoutput`, PostgreSQL's logical decoding output plugin (PostgreSQL's
//! "Logical Replication Message Formats", protocol versions 1 to 4), decoded from the data
//! of XLogData messages.
//!
//! [`PgOutputDecoder`] keeps the one piece of state the format needs: whether it is inside
//! a streamed transaction's block (between Stream Start and Stream Stop), where the
//! messages that carry changes begin with the transaction's id. Column values stay as the
//! server sent them ([`TupleValue`]); typing them needs the relation's columns, which the
//! caller keeps from the [`Relation`] messages.
//!
//! Every length and count is checked against the bytes there are: a malformed message is
//! a [`ProtocolError`], never a panic or an allocation the message does not pay for.

use bytes::{Buf, Bytes};

use crate::replication::{Lsn, PgTimestamp};
use crate::{ProtocolError, Result};

/// A column's value in a row of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value the change did not touch; the server does not send it again.
    UnchangedToast,
    /// `t`: the value in text format.
    Text(Bytes),
    /// `b`: the value in binary format (when the stream asked for `binary`).
    Binary(Bytes),
}

/// A column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the key an update or delete names).
    pub key: bool,
    /// Its name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: u32,
    /// Its type modifier (`atttypmod`).
    pub type_modifier: i32,
}

/// A table's description, sent before the first change of it in a stream and again after
/// it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Its OID.
    pub id: u32,
    /// Its schema (empty for `pg_catalog`).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its replica identity setting (`d`efault, `n`othing, `f`ull, `i`ndex).
    pub replica_identity: u8,
    /// Its columns.
    pub columns: Vec<RelationColumn>,
}

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldRow {
    /// `K`: the replica identity's columns (the others are NULL).
    Key(Vec<TupleValue>),
    /// `O`: the whole old row (replica identity full).
    Full(Vec<TupleValue>),
}

/// One pgoutput message. `xid` is the streamed transaction's id, present inside a Stream
/// Start / Stream Stop block only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    /// `B`: a transaction begins.
    Begin {
        /// The LSN of its commit record.
        final_lsn: Lsn,
        /// Its commit time.
        committed_at: PgTimestamp,
        /// Its id.
        xid: u32,
    },
    /// `C`: the transaction committed.
    Commit {
        /// The LSN of the commit.
        commit_lsn: Lsn,
        /// The end of the transaction in the WAL.
        end_lsn: Lsn,
        /// Its commit time.
        committed_at: PgTimestamp,
    },
    /// `O`: where the transaction came from (replication origin).
    Origin {
        /// The LSN of the commit on the origin server.
        commit_lsn: Lsn,
        /// The origin's name.
        name: String,
    },
    /// `R`: a table's description.
    Relation {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// The description.
        relation: Relation,
    },
    /// `Y`: a type's name.
    Type {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// Its OID.
        id: u32,
        /// Its schema (empty for `pg_catalog`).
        namespace: String,
        /// Its name.
        name: String,
    },
    /// `I`: a row inserted.
    Insert {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// The table's OID.
        relation_id: u32,
        /// The new row.
        new: Vec<TupleValue>,
    },
    /// `U`: a row updated.
    Update {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// The table's OID.
        relation_id: u32,
        /// The old row or its key, when the key changed or the identity is full.
        old: Option<OldRow>,
        /// The new row.
        new: Vec<TupleValue>,
    },
    /// `D`: a row deleted.
    Delete {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// The table's OID.
        relation_id: u32,
        /// The old row or its key.
        old: OldRow,
    },
    /// `T`: tables truncated.
    Truncate {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// `CASCADE` was given.
        cascade: bool,
        /// `RESTART IDENTITY` was given.
        restart_identity: bool,
        /// The tables' OIDs.
        relation_ids: Vec<u32>,
    },
    /// `M`: a message of `pg_logical_emit_message`.
    Message {
        /// The streamed transaction, if inside a stream block.
        xid: Option<u32>,
        /// Emitted as part of its transaction (else at once).
        transactional: bool,
        /// Its LSN.
        lsn: Lsn,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Bytes,
    },
    /// `S`: a block of a large in-progress transaction begins.
    StreamStart {
        /// The transaction.
        xid: u32,
        /// Its first block.
        first_segment: bool,
    },
    /// `E`: the block ends.
    StreamStop,
    /// `c`: a streamed transaction committed.
    StreamCommit {
        /// The transaction.
        xid: u32,
        /// The LSN of the commit.
        commit_lsn: Lsn,
        /// The end of the transaction in the WAL.
        end_lsn: Lsn,
        /// Its commit time.
        committed_at: PgTimestamp,
    },
    /// `A`: a streamed transaction, or one of its subtransactions, aborted.
    StreamAbort {
        /// The transaction.
        xid: u32,
        /// The subtransaction that aborted (`xid` when the whole transaction did).
        subxid: u32,
        /// The abort's LSN and time (protocol 4 with parallel streaming only).
        abort: Option<(Lsn, PgTimestamp)>,
    },
}

/// Decodes pgoutput messages one after another (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct PgOutputDecoder {
    in_stream: bool,
}

/// The most columns a row can have in PostgreSQL.
const MAX_COLUMNS: usize = 1664;

struct Reader {
    buf: Bytes,
    kind: u8,
}

impl Reader {
    fn short(&self, what: &str) -> ProtocolError {
        ProtocolError::protocol(format!(
            "pgoutput message {:?} too short for {what}",
            char::from(self.kind)
        ))
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        if self.buf.remaining() < 1 {
            return Err(self.short(what));
        }
        Ok(self.buf.get_u8())
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        if self.buf.remaining() < 4 {
            return Err(self.short(what));
        }
        Ok(self.buf.get_u32())
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        if self.buf.remaining() < 4 {
            return Err(self.short(what));
        }
        Ok(self.buf.get_i32())
    }

    fn i16(&mut self, what: &str) -> Result<i16> {
        if self.buf.remaining() < 2 {
            return Err(self.short(what));
        }
        Ok(self.buf.get_i16())
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        if self.buf.remaining() < 8 {
            return Err(self.short(what));
        }
        Ok(self.buf.get_u64())
    }

    fn lsn(&mut self, what: &str) -> Result<Lsn> {
        self.u64(what).map(Lsn)
    }

    fn time(&mut self, what: &str) -> Result<PgTimestamp> {
        self.u64(what).map(|v| v as i64)
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes> {
        if self.buf.remaining() < n {
            return Err(self.short(what));
        }
        Ok(self.buf.split_to(n))
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self, what: &str) -> Result<String> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(ProtocolError::protocol(format!(
                "pgoutput message {:?}: {what} has no terminating NUL",
                char::from(self.kind)
            )));
        };
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| {
            ProtocolError::protocol(format!(
                "pgoutput message {:?}: {what} is not UTF-8",
                char::from(self.kind)
            ))
        })
    }

    /// A column count: not negative, at most PostgreSQL's limit, and no more than the
    /// bytes left could hold at `min_size` bytes each.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let n = self.i16(what)?;
        let n = usize::try_from(n).map_err(|_| {
            ProtocolError::protocol(format!(
                "pgoutput message {:?}: negative {what}",
                char::from(self.kind)
            ))
        })?;
        if n > MAX_COLUMNS || n * min_size > self.buf.remaining() {
            return Err(self.short(what));
        }
        Ok(n)
    }

    fn tuple(&mut self) -> Result<Vec<TupleValue>> {
        let n = self.count("a row's column count", 1)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let v = match self.u8("a column's kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                k @ (b't' | b'b') => {
                    let len = self.i32("a column's length")?;
                    let len = usize::try_from(len).map_err(|_| {
                        ProtocolError::protocol("pgoutput column with a negative length")
                    })?;
                    let data = self.bytes(len, "a column's value")?;
                    if k == b't' {
                        TupleValue::Text(data)
                    } else {
                        TupleValue::Binary(data)
                    }
                }
                k => {
                    return Err(ProtocolError::protocol(format!(
                        "pgoutput column of unknown kind {:?}",
                        char::from(k)
                    )))
                }
            };
            out.push(v);
        }
        Ok(out)
    }

    fn end(self) -> Result<()> {
        if self.buf.has_remaining() {
            return Err(ProtocolError::protocol(format!(
                "pgoutput message {:?} has {} bytes past its end",
                char::from(self.kind),
                self.buf.remaining()
            )));
        }
        Ok(())
    }
}

impl PgOutputDecoder {
    /// A decoder outside any stream block.
    pub fn new() -> PgOutputDecoder {
        PgOutputDecoder::default()
    }

    /// True between Stream Start and Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes one message (the data of one XLogData).
    ///
    /// # Errors
    ///
    /// A protocol violation for an unknown kind, a short or overlong message, a count or
    /// length the message does not hold, a string without its NUL or not UTF-8, a stream
    /// block opened twice or closed unopened, or a two-phase message (never requested).
    pub fn decode(&mut self, data: Bytes) -> Result<PgOutputMessage> {
        let mut r = Reader { buf: data, kind: 0 };
        r.kind = r.u8("its kind")?;
        let xid = |r: &mut Reader, in_stream: bool| -> Result<Option<u32>> {
            if in_stream {
                r.u32("the streamed transaction's id").map(Some)
            } else {
                Ok(None)
            }
        };
        let msg = match r.kind {
            b'B' => PgOutputMessage::Begin {
                final_lsn: r.lsn("the final LSN")?,
                committed_at: r.time("the commit time")?,
                xid: r.u32("the transaction id")?,
            },
            b'C' => {
                let _flags = r.u8("the flags")?;
                PgOutputMessage::Commit {
                    commit_lsn: r.lsn("the commit LSN")?,
                    end_lsn: r.lsn("the end LSN")?,
                    committed_at: r.time("the commit time")?,
                }
            }
            b'O' => PgOutputMessage::Origin {
                commit_lsn: r.lsn("the origin's commit LSN")?,
                name: r.cstr("the origin's name")?,
            },
            b'R' => {
                let xid = xid(&mut r, self.in_stream)?;
                let id = r.u32("the relation's OID")?;
                let namespace = r.cstr("the namespace")?;
                let name = r.cstr("the relation's name")?;
                let replica_identity = r.u8("the replica identity")?;
                // Each column: flags, a name of at least its NUL, type OID, modifier.
                let n = r.count("the column count", 10)?;
                let mut columns = Vec::with_capacity(n);
                for _ in 0..n {
                    let flags = r.u8("a column's flags")?;
                    columns.push(RelationColumn {
                        key: flags & 1 != 0,
                        name: r.cstr("a column's name")?,
                        type_oid: r.u32("a column's type")?,
                        type_modifier: r.i32("a column's type modifier")?,
                    });
                }
                PgOutputMessage::Relation {
                    xid,
                    relation: Relation {
                        id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    },
                }
            }
            b'Y' => PgOutputMessage::Type {
                xid: xid(&mut r, self.in_stream)?,
                id: r.u32("the type's OID")?,
                namespace: r.cstr("the namespace")?,
                name: r.cstr("the type's name")?,
            },
            b'I' => {
                let xid = xid(&mut r, self.in_stream)?;
                let relation_id = r.u32("the relation's OID")?;
                match r.u8("the new row's marker")? {
                    b'N' => {}
                    k => {
                        return Err(ProtocolError::protocol(format!(
                            "pgoutput insert with {:?} where the new row's N belongs",
                            char::from(k)
                        )))
                    }
                }
                PgOutputMessage::Insert {
                    xid,
                    relation_id,
                    new: r.tuple()?,
                }
            }
            b'U' => {
                let xid = xid(&mut r, self.in_stream)?;
                let relation_id = r.u32("the relation's OID")?;
                let mut old = None;
                let mut marker = r.u8("the row's marker")?;
                if marker == b'K' || marker == b'O' {
                    let row = r.tuple()?;
                    old = Some(if marker == b'K' {
                        OldRow::Key(row)
                    } else {
                        OldRow::Full(row)
                    });
                    marker = r.u8("the new row's marker")?;
                }
                if marker != b'N' {
                    return Err(ProtocolError::protocol(format!(
                        "pgoutput update with {:?} where the new row's N belongs",
                        char::from(marker)
                    )));
                }
                PgOutputMessage::Update {
                    xid,
                    relation_id,
                    old,
                    new: r.tuple()?,
                }
            }
            b'D' => {
                let xid = xid(&mut r, self.in_stream)?;
                let relation_id = r.u32("the relation's OID")?;
                let old = match r.u8("the old row's marker")? {
                    b'K' => OldRow::Key(r.tuple()?),
                    b'O' => OldRow::Full(r.tuple()?),
                    k => {
                        return Err(ProtocolError::protocol(format!(
                            "pgoutput delete with {:?} where the old row's K or O belongs",
                            char::from(k)
                        )))
                    }
                };
                PgOutputMessage::Delete {
                    xid,
                    relation_id,
                    old,
                }
            }
            b'T' => {
                let xid = xid(&mut r, self.in_stream)?;
                let n = r.u32("the table count")? as usize;
                let options = r.u8("the options")?;
                if n.saturating_mul(4) != r.buf.remaining() {
                    return Err(r.short("its tables"));
                }
                let mut relation_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    relation_ids.push(r.u32("a table's OID")?);
                }
                PgOutputMessage::Truncate {
                    xid,
                    cascade: options & 1 != 0,
                    restart_identity: options & 2 != 0,
                    relation_ids,
                }
            }
            b'M' => {
                let xid = xid(&mut r, self.in_stream)?;
                let flags = r.u8("the flags")?;
                let lsn = r.lsn("the message's LSN")?;
                let prefix = r.cstr("the prefix")?;
                let len = r.u32("the content's length")? as usize;
                PgOutputMessage::Message {
                    xid,
                    transactional: flags & 1 != 0,
                    lsn,
                    prefix,
                    content: r.bytes(len, "the content")?,
                }
            }
            b'S' => {
                if self.in_stream {
                    return Err(ProtocolError::protocol(
                        "pgoutput Stream Start inside a stream block",
                    ));
                }
                let xid = r.u32("the transaction id")?;
                let first = r.u8("the first-segment flag")?;
                self.in_stream = true;
                PgOutputMessage::StreamStart {
                    xid,
                    first_segment: first == 1,
                }
            }
            b'E' => {
                if !self.in_stream {
                    return Err(ProtocolError::protocol(
                        "pgoutput Stream Stop outside a stream block",
                    ));
                }
                self.in_stream = false;
                PgOutputMessage::StreamStop
            }
            b'c' => {
                let xid = r.u32("the transaction id")?;
                let _flags = r.u8("the flags")?;
                PgOutputMessage::StreamCommit {
                    xid,
                    commit_lsn: r.lsn("the commit LSN")?,
                    end_lsn: r.lsn("the end LSN")?,
                    committed_at: r.time("the commit time")?,
                }
            }
            b'A' => {
                let xid = r.u32("the transaction id")?;
                let subxid = r.u32("the subtransaction id")?;
                let abort = if r.buf.has_remaining() {
                    Some((r.lsn("the abort LSN")?, r.time("the abort time")?))
                } else {
                    None
                };
                PgOutputMessage::StreamAbort { xid, subxid, abort }
            }
            k @ (b'b' | b'P' | b'K' | b'r' | b'p') => {
                return Err(ProtocolError::protocol(format!(
                    "pgoutput two-phase message {:?}, which this stream did not ask for",
                    char::from(k)
                )))
            }
            k => {
                return Err(ProtocolError::protocol(format!(
                    "unknown pgoutput message {:?}",
                    char::from(k)
                )))
            }
        };
        r.end()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    fn cstr(b: &mut BytesMut, s: &str) {
        b.put_slice(s.as_bytes());
        b.put_u8(0);
    }

    fn relation(xid: Option<u32>) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'R');
        if let Some(x) = xid {
            b.put_u32(x);
        }
        b.put_u32(16384);
        cstr(&mut b, "public");
        cstr(&mut b, "files");
        b.put_u8(b'd');
        b.put_i16(2);
        for (flags, name, oid) in [(1u8, "id", 20u32), (0, "body", 25)] {
            b.put_u8(flags);
            cstr(&mut b, name);
            b.put_u32(oid);
            b.put_i32(-1);
        }
        b.freeze()
    }

    fn tuple(b: &mut BytesMut) {
        b.put_i16(3);
        b.put_u8(b't');
        b.put_i32(2);
        b.put_slice(b"42");
        b.put_u8(b'n');
        b.put_u8(b'u');
    }

    #[test]
    fn a_transaction_decodes() {
        let mut d = PgOutputDecoder::new();
        let mut b = BytesMut::new();
        b.put_u8(b'B');
        b.put_u64(0x1_0000_0010);
        b.put_i64(5);
        b.put_u32(700);
        assert_eq!(
            d.decode(b.freeze()).unwrap(),
            PgOutputMessage::Begin {
                final_lsn: Lsn(0x1_0000_0010),
                committed_at: 5,
                xid: 700
            }
        );
        let PgOutputMessage::Relation {
            xid: None,
            relation,
        } = d.decode(relation(None)).unwrap()
        else {
            panic!()
        };
        assert_eq!(relation.name, "files");
        assert!(relation.columns[0].key && !relation.columns[1].key);
        assert_eq!(relation.columns[1].type_oid, 25);

        let mut b = BytesMut::new();
        b.put_u8(b'U');
        b.put_u32(16384);
        b.put_u8(b'K');
        tuple(&mut b);
        b.put_u8(b'N');
        tuple(&mut b);
        let PgOutputMessage::Update { old, new, .. } = d.decode(b.freeze()).unwrap() else {
            panic!()
        };
        let expected = vec![
            TupleValue::Text(Bytes::from_static(b"42")),
            TupleValue::Null,
            TupleValue::UnchangedToast,
        ];
        assert_eq!(old, Some(OldRow::Key(expected.clone())));
        assert_eq!(new, expected);

        let mut b = BytesMut::new();
        b.put_u8(b'T');
        b.put_u32(2);
        b.put_u8(3);
        b.put_u32(1);
        b.put_u32(2);
        assert_eq!(
            d.decode(b.freeze()).unwrap(),
            PgOutputMessage::Truncate {
                xid: None,
                cascade: true,
                restart_identity: true,
                relation_ids: vec![1, 2]
            }
        );
    }

    #[test]
    fn stream_blocks_carry_the_transaction_id() {
        let mut d = PgOutputDecoder::new();
        let mut b = BytesMut::new();
        b.put_u8(b'S');
        b.put_u32(9);
        b.put_u8(1);
        assert!(matches!(
            d.decode(b.clone().freeze()).unwrap(),
            PgOutputMessage::StreamStart {
                xid: 9,
                first_segment: true
            }
        ));
        assert!(d.decode(b.freeze()).is_err(), "a second Stream Start");
        // Inside the block the relation starts with the transaction's id.
        assert!(matches!(
            d.decode(relation(Some(9))).unwrap(),
            PgOutputMessage::Relation { xid: Some(9), .. }
        ));
        assert_eq!(
            d.decode(Bytes::from_static(b"E")).unwrap(),
            PgOutputMessage::StreamStop
        );
        assert!(d.decode(Bytes::from_static(b"E")).is_err());
        let mut b = BytesMut::new();
        b.put_u8(b'A');
        b.put_u32(9);
        b.put_u32(10);
        assert_eq!(
            d.decode(b.freeze()).unwrap(),
            PgOutputMessage::StreamAbort {
                xid: 9,
                subxid: 10,
                abort: None
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let mut huge = BytesMut::new();
        huge.put_u8(b'I');
        huge.put_u32(1);
        huge.put_u8(b'N');
        huge.put_i16(1);
        huge.put_u8(b't');
        huge.put_i32(i32::MAX);
        let mut many = BytesMut::new();
        many.put_u8(b'I');
        many.put_u32(1);
        many.put_u8(b'N');
        many.put_i16(i16::MAX);
        let mut truncate = BytesMut::new();
        truncate.put_u8(b'T');
        truncate.put_u32(u32::MAX);
        truncate.put_u8(0);
        let mut unterminated = BytesMut::new();
        unterminated.put_u8(b'O');
        unterminated.put_u64(1);
        unterminated.put_slice(b"origin");
        let mut long = BytesMut::from(&relation(None)[..]);
        long.put_u8(0);
        for bad in [
            Bytes::new(),
            Bytes::from_static(b"Z"),
            Bytes::from_static(b"B\0"),
            Bytes::from_static(b"P"),
            huge.freeze(),
            many.freeze(),
            truncate.freeze(),
            unterminated.freeze(),
            long.freeze(),
        ] {
            assert!(
                PgOutputDecoder::new().decode(bad.clone()).is_err(),
                "{bad:?}"
            );
        }
    }
}
