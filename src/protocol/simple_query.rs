//! The answer to a simple query (`Q`), assembled from server messages.
//!
//! A query string may hold several statements: each gives its own result set, and one
//! ReadyForQuery ends the whole string. The first error aborts the rest; the error is
//! returned once ReadyForQuery arrives, so the connection stays in sync and usable. An
//! empty string gives EmptyQueryResponse. COPY is refused: CopyInResponse is answered with
//! CopyFail and CopyOut data is drained, and the caller gets a `CopyUnsupported` error.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use postgres_protocol::message::frontend;

use super::backend::{BackendMessage, TransactionStatus};
use crate::error::{DbError, Error, Result};

/// A column of a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_oid: u32,
}

impl Column {
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The OID of its data type.
    pub fn type_oid(&self) -> u32 {
        self.type_oid
    }
}

/// One row of a simple query's result, in text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    columns: Arc<[Column]>,
    values: Vec<Option<Bytes>>,
}

impl Row {
    /// The value of column `idx` as text; `None` for SQL NULL or an index out of range.
    pub fn get(&self, idx: usize) -> Option<&str> {
        // Values were checked to be UTF-8 when the row was received.
        self.values
            .get(idx)?
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
    /// The value of the column named `name` (the first, if several share the name).
    pub fn get_named(&self, name: &str) -> Option<&str> {
        self.get(self.column_index(name)?)
    }
    /// True if column `idx` is SQL NULL.
    pub fn is_null(&self, idx: usize) -> bool {
        matches!(self.values.get(idx), Some(None))
    }
    /// The index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
    /// The number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }
    /// True if the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The outcome of one statement in a simple query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    columns: Option<Arc<[Column]>>,
    rows: Vec<Row>,
    command_tag: Option<String>,
}

impl ResultSet {
    /// The columns, if the statement returned rows (even zero of them).
    pub fn columns(&self) -> Option<&[Column]> {
        self.columns.as_deref()
    }
    /// The rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
    /// Takes the rows.
    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }
    /// The command tag, e.g. `SELECT 2`, `INSERT 0 1`, `BEGIN`.
    pub fn command_tag(&self) -> Option<&str> {
        self.command_tag.as_deref()
    }
    /// The row count at the end of the command tag (`INSERT 0 3` gives 3), if there is one.
    pub fn rows_affected(&self) -> Option<u64> {
        self.command_tag
            .as_deref()?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }
}

/// What the driver of a [`SimpleQuery`] should do after a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum QueryEvent {
    /// Send what was written to the output buffer (if anything) and feed the next message.
    Continue,
    /// The server sent a notice; log it and feed the next message.
    Notice(Box<DbError>),
    /// ReadyForQuery arrived: call [`SimpleQuery::finish`].
    Done(TransactionStatus),
}

/// Assembles the messages that answer one simple query.
#[derive(Debug, Default)]
pub struct SimpleQuery {
    sets: Vec<ResultSet>,
    current: Option<ResultSet>,
    error: Option<DbError>,
    copy_refused: bool,
}

impl SimpleQuery {
    /// Writes the Query message for `sql` into `out` and returns the assembler.
    ///
    /// # Errors
    ///
    /// An invalid-input error if `sql` contains a NUL byte or is over the protocol's
    /// message size limit; nothing is written then.
    pub fn start(sql: &str, out: &mut BytesMut) -> Result<SimpleQuery> {
        if sql.as_bytes().contains(&0) {
            return Err(Error::invalid_input("query text contains a NUL byte"));
        }
        super::frontend::append(out, "query text", sql.len() + 1, |out| {
            frontend::query(sql, out).map_err(|e| Error::invalid_input(format!("query: {e}")))
        })?;
        Ok(SimpleQuery::default())
    }

    /// The error the server reported, if any (the first one).
    pub fn server_error(&self) -> Option<&DbError> {
        self.error.as_ref()
    }

    /// Feeds one server message.
    ///
    /// # Errors
    ///
    /// A protocol error for a message that does not belong in a simple query's answer; the
    /// connection is out of sync then and must be closed.
    pub fn handle(&mut self, msg: BackendMessage, out: &mut BytesMut) -> Result<QueryEvent> {
        match msg {
            BackendMessage::RowDescription(fields) => {
                let columns: Arc<[Column]> = fields
                    .into_iter()
                    .map(|f| Column {
                        name: f.name,
                        type_oid: f.type_oid,
                    })
                    .collect();
                self.current = Some(ResultSet {
                    columns: Some(columns),
                    ..ResultSet::default()
                });
            }
            BackendMessage::DataRow(values) => {
                let set = self
                    .current
                    .as_mut()
                    .ok_or_else(|| Error::protocol("DataRow without RowDescription"))?;
                let columns = set.columns.clone().unwrap_or_else(|| Arc::from(Vec::new()));
                if values.len() != columns.len() {
                    return Err(Error::protocol(format!(
                        "DataRow has {} values for {} columns",
                        values.len(),
                        columns.len()
                    )));
                }
                if values
                    .iter()
                    .flatten()
                    .any(|v| std::str::from_utf8(v).is_err())
                {
                    return Err(Error::protocol("DataRow value is not valid UTF-8"));
                }
                set.rows.push(Row { columns, values });
            }
            BackendMessage::CommandComplete(tag) => {
                let mut set = self.current.take().unwrap_or_default();
                set.command_tag = Some(tag);
                self.sets.push(set);
            }
            BackendMessage::EmptyQueryResponse => {}
            BackendMessage::ErrorResponse(e) => {
                self.current = None;
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
            BackendMessage::NoticeResponse(n) => return Ok(QueryEvent::Notice(Box::new(n))),
            BackendMessage::CopyInResponse => {
                frontend::copy_fail("COPY is not supported by wirepool", out)
                    .map_err(|e| Error::protocol(format!("encoding CopyFail: {e}")))?;
                self.copy_refused = true;
            }
            BackendMessage::CopyOutResponse => self.copy_refused = true,
            BackendMessage::CopyData(_) | BackendMessage::CopyDone if self.copy_refused => {}
            BackendMessage::ParameterStatus { .. }
            | BackendMessage::NotificationResponse { .. } => {}
            BackendMessage::ReadyForQuery(status) => return Ok(QueryEvent::Done(status)),
            other => {
                return Err(Error::protocol(format!(
                    "unexpected {} in the answer to a simple query",
                    other.name()
                )))
            }
        }
        Ok(QueryEvent::Continue)
    }

    /// The result sets, or the first error: COPY refused, or the server's error.
    ///
    /// # Errors
    ///
    /// `CopyUnsupported` if the query asked for COPY; the server's [`DbError`] otherwise.
    pub fn finish(self) -> Result<Vec<ResultSet>> {
        if self.copy_refused {
            return Err(Error::copy_unsupported());
        }
        match self.error {
            Some(e) => Err(Error::db(e)),
            None => Ok(self.sets),
        }
    }
}
