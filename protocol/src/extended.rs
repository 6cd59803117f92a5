//! The extended query protocol without I/O: Parse / Describe / Bind / Execute / Close /
//! Sync / Flush written into a buffer, and the server's answers assembled.
//!
//! A query runs in one or two exchanges:
//!
//! 1. **Prepare** (only when the statement is not known yet): `Close`s of statements evicted
//!    from the cache, `Parse`, `Describe` (statement), `Flush`. The answer is
//!    `CloseComplete`s, `ParseComplete`, `ParameterDescription`, then `RowDescription` or
//!    `NoData`, with no ReadyForQuery: the server keeps the same session (and PgBouncer in
//!    transaction mode the same server) for the second exchange. After an error the server
//!    skips to the next `Sync`, which the driver then sends (when [`Prepare::handle`]
//!    returns the error).
//! 2. **Execute**: `Bind` (parameters in binary, results in binary), `Execute`, `Sync`. The
//!    answer is `BindComplete`, `DataRow`s, then `CommandComplete` (or
//!    `EmptyQueryResponse`), and `ReadyForQuery`. After an error the server skips to the
//!    `Sync` and answers `ReadyForQuery`, so the connection stays usable.

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_types::{Format, IsNull, ToSql, Type};

use super::backend::{BackendMessage, FieldDescription, TransactionStatus};
use super::error::{ProtocolError, Result};
use super::frontend::{append, append_checked, MAX_FRONTEND_MESSAGE};
use super::row::{Column, FromDataRow};
use super::DbError;

/// What the server said about a statement: its parameter types and result columns.
#[derive(Debug, Clone)]
pub struct Described {
    /// The types of the parameters (`$1`, `$2`, ...).
    pub params: Arc<[Type]>,
    /// The result columns (empty for a statement that returns no rows).
    pub columns: Arc<[Column]>,
}

/// Writes the first exchange for `sql` as statement `name` (`""`: the unnamed statement):
/// a `Close` for each of `evicted`, then `Parse`, `Describe` and `Flush`.
///
/// # Errors
///
/// An invalid-input error (NUL byte, message over the size limit); nothing is written then.
pub fn write_prepare(name: &str, sql: &str, evicted: &[String], out: &mut BytesMut) -> Result<()> {
    let mark = out.len();
    let r = write_parse(name, sql, &[], evicted, out).and_then(|()| {
        append(out, "Describe", name.len() + 2, |out| {
            frontend::describe(b'S', name, out)
                .map_err(|e| ProtocolError::invalid_input(e.to_string()))
        })?;
        frontend::flush(out);
        Ok(())
    });
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// `Parse` of `sql` as statement `name` (unless `parse` is false: it is prepared
/// already), `Describe` of it and `Sync`: a pipelined request for a statement's
/// description, in an exchange of its own.
///
/// # Errors
///
/// As [`write_parse`]; nothing is written then.
pub fn write_describe(name: &str, sql: &str, parse: bool, out: &mut BytesMut) -> Result<()> {
    let mark = out.len();
    let r = (|| {
        if parse {
            write_parse(name, sql, &[], &[], out)?;
        }
        append(out, "Describe", name.len() + 2, |out| {
            frontend::describe(b'S', name, out)
                .map_err(|e| ProtocolError::invalid_input(e.to_string()))
        })?;
        frontend::sync(out);
        Ok(())
    })();
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// `Close` of the statement `name` (sent before another request's Sync).
pub fn write_close_statement(name: &str, out: &mut BytesMut) {
    // Our own names: no NUL, always encodable.
    let _ = frontend::close(b'S', name, out);
}

/// Writes a `Close` for each of `evicted`, then `Parse` of `sql` as statement `name` with
/// the parameter types `types` (when they are known, a `Bind` can follow in the same
/// exchange).
///
/// # Errors
///
/// An invalid-input error (NUL byte, message over the size limit); nothing is written then.
pub fn write_parse(
    name: &str,
    sql: &str,
    types: &[Type],
    evicted: &[String],
    out: &mut BytesMut,
) -> Result<()> {
    if sql.as_bytes().contains(&0) {
        return Err(ProtocolError::invalid_input(
            "query text contains a NUL byte",
        ));
    }
    let mark = out.len();
    let r = (|| {
        for old in evicted {
            append(out, "Close", old.len() + 2, |out| {
                frontend::close(b'S', old, out)
                    .map_err(|e| ProtocolError::invalid_input(e.to_string()))
            })?;
        }
        append(
            out,
            "query text",
            name.len() + sql.len() + 4 + 4 * types.len(),
            |out| {
                frontend::parse(name, sql, types.iter().map(Type::oid), out)
                    .map_err(|e| ProtocolError::invalid_input(format!("query: {e}")))
            },
        )
    })();
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// Writes the second exchange: `Bind` of statement `name` with `params` (each encoded for
/// its type in `types`, in the format it prefers; every result column in binary), `Execute`
/// of all rows, `Sync`.
///
/// # Errors
///
/// An invalid-input error when the number of parameters is not the statement's, or the
/// message would be over the size limit; a conversion error when a value cannot be encoded
/// as its parameter's type. Nothing is written then.
pub fn write_execute(
    name: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    out: &mut BytesMut,
) -> Result<()> {
    write_bind_execute(name, types, params, false, out)
}

/// `Bind` of statement `name` with `params` to `portal`; on error `out` may hold part of
/// it (the callers truncate).
fn write_bind(
    portal: &str,
    name: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    out: &mut BytesMut,
) -> Result<()> {
    if params.len() != types.len() {
        return Err(ProtocolError::invalid_input(format!(
            "the statement has {} parameter{}, {} value{} given",
            types.len(),
            if types.len() == 1 { "" } else { "s" },
            params.len(),
            if params.len() == 1 { " was" } else { "s were" }
        )));
    }
    append_checked(out, "Bind", |out| {
        let formats = params
            .iter()
            .zip(types)
            .map(|(p, ty)| format_code(p.encode_format(ty)));
        let mut failed_at = None;
        let mut too_large = false;
        let mut index = 0;
        let start = out.len();
        frontend::bind(
            portal,
            name,
            formats,
            params.iter().zip(types),
            |(p, ty), buf| {
                // Past the message limit already: the values after it are not encoded.
                if buf.len() - start > MAX_FRONTEND_MESSAGE {
                    too_large = true;
                    return Err("the Bind message is over the protocol's limit".into());
                }
                let r = p.to_sql_checked(ty, buf);
                if r.is_err() {
                    failed_at = Some((index, ty.clone()));
                }
                index += 1;
                r.map(|n| match n {
                    IsNull::Yes => postgres_protocol::IsNull::Yes,
                    IsNull::No => postgres_protocol::IsNull::No,
                })
            },
            Some(1),
            out,
        )
        .map_err(|e| match e {
            frontend::BindError::Conversion(_) if too_large => ProtocolError::invalid_input(format!(
                "the parameters are over the protocol's limit of {MAX_FRONTEND_MESSAGE} bytes per message; nothing was sent"
            )),
            frontend::BindError::Conversion(e) => {
                let (i, ty) = failed_at.take().unwrap_or((0, Type::UNKNOWN));
                ProtocolError::conversion(
                    format!("parameter ${} (of type {ty}) cannot take this value", i + 1),
                    e,
                )
            }
            frontend::BindError::Serialization(e) => ProtocolError::invalid_input(format!("Bind: {e}")),
        })
    })
}

/// As [`write_execute`]; with `describe`, a `Describe` of the portal goes between `Bind`
/// and `Execute`: the server then describes the rows of this very execution (their types as
/// they are now), which [`Execute`] decodes them by. For a statement parsed again in the
/// same exchange, whose description may have changed since it was last described (a table
/// altered, a `search_path` changed).
///
/// # Errors
///
/// As [`write_execute`].
pub fn write_bind_execute(
    name: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    describe: bool,
    out: &mut BytesMut,
) -> Result<()> {
    write_bind_execute_in(name, types, params, describe, true, out)
}

/// `Bind` of statement `name` with `params` to the unnamed portal, `Describe` of it when
/// `describe`, `Execute`, and `Sync` only when `sync`: the statements of a batch that are
/// to take effect together share the one Sync after the last.
///
/// # Errors
///
/// As [`write_execute`]; nothing is written then.
pub fn write_bind_execute_in(
    name: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    describe: bool,
    sync: bool,
    out: &mut BytesMut,
) -> Result<()> {
    let mark = out.len();
    let r = (|| {
        write_bind("", name, types, params, out)?;
        if describe {
            frontend::describe(b'P', "", out)
                .map_err(|e| ProtocolError::invalid_input(e.to_string()))?;
        }
        frontend::execute("", 0, out).map_err(|e| ProtocolError::invalid_input(e.to_string()))?;
        if sync {
            frontend::sync(out);
        }
        Ok(())
    })();
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// `Execute` of a portal no statement ever names, to make the server fail the implicit
/// transaction of the statements before it (a batch whose next value did not convert):
/// everything up to the next `Sync` is then rolled back.
pub fn write_abort(out: &mut BytesMut) {
    // Fails only for a name with a NUL byte, which this one has not.
    let _ = frontend::execute("wirepool_abort", 0, out);
}

/// `Bind` of statement `name` with `params` to the named `portal`, then `Sync`: the
/// portal lasts until the transaction ends (or it is closed).
///
/// # Errors
///
/// As [`write_execute`].
pub fn write_bind_portal(
    portal: &str,
    name: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
    out: &mut BytesMut,
) -> Result<()> {
    let mark = out.len();
    let r = write_bind(portal, name, types, params, out);
    match r {
        Ok(()) => {
            frontend::sync(out);
            Ok(())
        }
        Err(e) => {
            out.truncate(mark);
            Err(e)
        }
    }
}

/// `Execute` of at most `max_rows` rows of `portal` (0 or less: all), then `Sync`.
pub fn write_execute_portal(portal: &str, max_rows: i32, out: &mut BytesMut) -> Result<()> {
    frontend::execute(portal, max_rows.max(0), out)
        .map_err(|e| ProtocolError::invalid_input(e.to_string()))?;
    frontend::sync(out);
    Ok(())
}

/// `Close` of each portal in `names`, then `Sync`.
pub fn write_close_portals(names: &[String], out: &mut BytesMut) {
    for n in names {
        // Our own names: no NUL, always encodable.
        let _ = frontend::close(b'P', n, out);
    }
    frontend::sync(out);
}

fn format_code(f: Format) -> i16 {
    match f {
        Format::Text => 0,
        Format::Binary => 1,
    }
}

/// The type with `oid`: a built-in one, or one named after its OID (a custom type, whose
/// values come as raw bytes; cast it to text in SQL to read it as a string).
pub fn type_of(oid: u32) -> Type {
    Type::from_oid(oid).unwrap_or_else(|| {
        Type::new(
            format!("oid {oid}"),
            oid,
            postgres_types::Kind::Simple,
            String::new(),
        )
    })
}

#[doc(hidden)]
pub fn columns_of(fields: Vec<FieldDescription>) -> Arc<[Column]> {
    columns_like(fields, &[])
}

/// The columns of a RowDescription; a column of a type not built in whose OID is the one
/// `known` has at the same place keeps `known`'s type (looked up when the statement was
/// first described).
fn columns_like(fields: Vec<FieldDescription>, known: &[Column]) -> Arc<[Column]> {
    fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let type_ = match known.get(i) {
                Some(k) if k.type_oid() == f.type_oid => k.type_().clone(),
                _ => type_of(f.type_oid),
            };
            Column::new(f.name, type_)
        })
        .collect()
}

/// The columns of a RowDescription, keeping the types of `known` where the OIDs match (see
/// `columns_like`).
#[doc(hidden)]
pub fn columns_like_known(fields: Vec<FieldDescription>, known: &[Column]) -> Arc<[Column]> {
    columns_like(fields, known)
}

/// What the driver of an exchange should do after a message.
#[derive(Debug)]
pub enum Step<T> {
    /// Send what was written to the output buffer (if anything), feed the next message.
    Continue,
    /// The server sent a notice: log it, feed the next message.
    Notice(Box<DbError>),
    /// The server started a COPY FROM STDIN, which this exchange does not serve: send
    /// CopyFail (and the Sync the server now waits for), feed the next message.
    RefuseCopyIn,
    /// The exchange is over.
    Done(T),
}

/// Assembles the answer to [`write_prepare`].
#[derive(Debug, Default)]
pub struct Prepare {
    params: Option<Vec<Type>>,
}

impl Prepare {
    /// A new assembler.
    pub fn new() -> Prepare {
        Prepare::default()
    }

    /// Feeds one server message. `Done(Ok(..))` once the statement is described;
    /// `Done(Err(e))` after an ErrorResponse, when the driver must send `Sync` and read up
    /// to ReadyForQuery before it reports `e`.
    ///
    /// # Errors
    ///
    /// A protocol error for a message that does not belong here.
    pub fn handle(&mut self, msg: BackendMessage) -> Result<Step<Result<Described, Box<DbError>>>> {
        match msg {
            BackendMessage::CloseComplete | BackendMessage::ParseComplete => {}
            BackendMessage::ParameterDescription(oids) => {
                self.params = Some(oids.into_iter().map(type_of).collect());
            }
            BackendMessage::RowDescription(fields) => return self.described(columns_of(fields)),
            BackendMessage::NoData => return self.described(Arc::from(Vec::new())),
            BackendMessage::ErrorResponse(e) => return Ok(Step::Done(Err(e))),
            BackendMessage::NoticeResponse(n) => return Ok(Step::Notice(n)),
            BackendMessage::ParameterStatus { .. }
            | BackendMessage::NotificationResponse { .. } => {}
            other => {
                return Err(ProtocolError::protocol(format!(
                    "unexpected {} while preparing a statement",
                    other.name()
                )))
            }
        }
        Ok(Step::Continue)
    }

    fn described(
        &mut self,
        columns: Arc<[Column]>,
    ) -> Result<Step<Result<Described, Box<DbError>>>> {
        let params = self.params.take().ok_or_else(|| {
            ProtocolError::protocol("the statement's columns came before its parameters")
        })?;
        Ok(Step::Done(Ok(Described {
            params: params.into(),
            columns,
        })))
    }
}

/// The outcome of an executed statement.
#[derive(Debug)]
pub struct Executed<R> {
    /// The rows, in order.
    pub rows: Vec<R>,
    /// The columns the rows were decoded with: the portal's own description when the
    /// request asked for it, else those the statement was described with.
    pub columns: Arc<[Column]>,
    /// The command tag (`SELECT 3`, `UPDATE 2`); `None` for an empty query.
    pub command_tag: Option<String>,
    /// The server's error, if the statement failed.
    pub error: Option<Box<DbError>>,
    /// The transaction status after the exchange.
    pub transaction_status: TransactionStatus,
    /// The statement was a COPY, which the extended query methods refuse (its data was
    /// drained, or CopyFail sent).
    pub copy_refused: bool,
}

impl<R> Executed<R> {
    /// The number of rows the command affected or returned (from its tag), 0 if none.
    pub fn rows_affected(&self) -> u64 {
        self.command_tag
            .as_deref()
            .and_then(|t| t.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// Assembles the answer to [`write_execute`], up to ReadyForQuery.
#[derive(Debug)]
pub struct Execute<R> {
    columns: Arc<[Column]>,
    rows: Vec<R>,
    command_tag: Option<String>,
    error: Option<Box<DbError>>,
    copy_refused: bool,
}

impl<R: FromDataRow> Execute<R> {
    /// An assembler for a statement whose result columns are `columns`.
    pub fn new(columns: Arc<[Column]>) -> Execute<R> {
        Execute {
            columns,
            rows: Vec::new(),
            command_tag: None,
            error: None,
            copy_refused: false,
        }
    }

    /// The row the last message brought, for a caller that streams rows one at a time.
    pub fn take_row(&mut self) -> Option<R> {
        self.rows.pop()
    }

    /// Feeds one server message; `Done` at ReadyForQuery.
    ///
    /// # Errors
    ///
    /// A protocol error for a message that does not belong here, or a row that does not
    /// match the statement's columns.
    pub fn handle(&mut self, msg: BackendMessage) -> Result<Step<Executed<R>>> {
        match msg {
            BackendMessage::ParseComplete
            | BackendMessage::BindComplete
            | BackendMessage::CloseComplete => {}
            // The portal's own description (see `write_execute_described`): the rows are
            // decoded by it, not by what the statement was once described as.
            BackendMessage::RowDescription(fields) => {
                self.columns = columns_like(fields, &self.columns)
            }
            BackendMessage::NoData => self.columns = Arc::from(Vec::new()),
            BackendMessage::DataRow(body) => {
                if body.len() != self.columns.len() {
                    return Err(ProtocolError::protocol(format!(
                        "DataRow has {} values for {} columns",
                        body.len(),
                        self.columns.len()
                    )));
                }
                self.rows.push(R::from_data_row(self.columns.clone(), body));
            }
            BackendMessage::CommandComplete(tag) => self.command_tag = Some(tag),
            BackendMessage::EmptyQueryResponse | BackendMessage::PortalSuspended => {}
            BackendMessage::ErrorResponse(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
            BackendMessage::NoticeResponse(n) => return Ok(Step::Notice(n)),
            BackendMessage::ParameterStatus { .. }
            | BackendMessage::NotificationResponse { .. } => {}
            // COPY is refused here, as by the simple query protocol: its input is failed,
            // its output drained, and the connection stays usable.
            BackendMessage::CopyInResponse => {
                self.copy_refused = true;
                return Ok(Step::RefuseCopyIn);
            }
            BackendMessage::CopyOutResponse => self.copy_refused = true,
            BackendMessage::CopyData(_) | BackendMessage::CopyDone if self.copy_refused => {}
            BackendMessage::ReadyForQuery(status) => {
                return Ok(Step::Done(Executed {
                    rows: std::mem::take(&mut self.rows),
                    columns: self.columns.clone(),
                    command_tag: self.command_tag.take(),
                    error: self.error.take(),
                    transaction_status: status,
                    copy_refused: self.copy_refused,
                }))
            }
            other => {
                return Err(ProtocolError::protocol(format!(
                    "unexpected {} in the answer to an extended query",
                    other.name()
                )))
            }
        }
        Ok(Step::Continue)
    }
}

/// Writes `Sync` (after an error in the first exchange, or to end one left half-done).
pub fn write_sync(out: &mut BytesMut) {
    frontend::sync(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataRowBody, FrameDecoder};

    /// A row as the tests see it: the columns and the body, untouched.
    struct RawRow(Arc<[Column]>, DataRowBody);

    impl FromDataRow for RawRow {
        fn from_data_row(columns: Arc<[Column]>, body: DataRowBody) -> RawRow {
            RawRow(columns, body)
        }
    }

    #[test]
    fn a_wrong_parameter_count_writes_nothing() {
        let mut out = BytesMut::from(&b"x"[..]);
        let e = write_execute("s", &[Type::INT4], &[], &mut out).unwrap_err();
        assert!(matches!(e, ProtocolError::InvalidInput(_)), "{e:?}");
        assert!(
            e.to_string().contains("1 parameter, 0 values were given"),
            "{e}"
        );
        assert_eq!(&out[..], b"x");
    }

    #[test]
    fn a_value_of_the_wrong_type_writes_nothing() {
        let mut out = BytesMut::new();
        let e =
            write_execute("s", &[Type::INT4, Type::TEXT], &[&1i32, &2i32], &mut out).unwrap_err();
        assert!(matches!(e, ProtocolError::Conversion(..)), "{e:?}");
        assert!(e.to_string().contains("$2 (of type text)"), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn prepare_then_execute_answers() {
        let mut p = Prepare::new();
        assert!(matches!(
            p.handle(BackendMessage::ParseComplete).unwrap(),
            Step::Continue
        ));
        p.handle(BackendMessage::ParameterDescription(vec![23]))
            .unwrap();
        let d = match p
            .handle(BackendMessage::RowDescription(vec![FieldDescription {
                name: "n".into(),
                table_oid: 0,
                column_id: 0,
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                format: 1,
            }]))
            .unwrap()
        {
            Step::Done(Ok(d)) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(&d.params[..], &[Type::INT4]);
        let mut e = Execute::<RawRow>::new(d.columns);
        let mut wire = BytesMut::new();
        for m in [
            BackendMessage::BindComplete,
            BackendMessage::DataRow(DataRowBody::from_values([Some([0u8, 0, 0, 42])])),
            BackendMessage::CommandComplete("SELECT 1".into()),
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        ] {
            m.encode(&mut wire);
        }
        let dec = FrameDecoder::default();
        let mut done = None;
        while let Some(m) = dec.decode(&mut wire).unwrap() {
            if let Step::Done(x) = e.handle(m).unwrap() {
                done = Some(x);
            }
        }
        let x = done.unwrap();
        let RawRow(columns, body) = &x.rows[0];
        assert_eq!(columns[0].name(), "n");
        assert_eq!(columns[0].type_(), &Type::INT4);
        assert_eq!(body.get(0), Some(Some(&[0u8, 0, 0, 42][..])));
        assert_eq!(x.rows_affected(), 1);
    }
}
