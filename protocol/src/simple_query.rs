//! The answer to a simple query (`Q`), assembled from server messages.
//!
//! A query string may hold several statements: each gives its own result set, and one
//! ReadyForQuery ends the whole string. The first error aborts the rest; the error is
//! returned once ReadyForQuery arrives, so the connection stays in sync and usable. An
//! empty string gives EmptyQueryResponse. COPY is refused: CopyInResponse is answered with
//! CopyFail and CopyOut data is drained, and the caller gets a `CopyUnsupported` error.

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use super::backend::{BackendMessage, TransactionStatus};
use super::error::{ProtocolError, Result};
use super::extended::columns_of;
use super::row::{Column, SimpleRow};
use super::DbError;

/// The outcome of one statement in a simple query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    columns: Option<Arc<[Column]>>,
    rows: Vec<SimpleRow>,
    command_tag: Option<String>,
}

impl ResultSet {
    /// The columns, if the statement returned rows (even zero of them).
    pub fn columns(&self) -> Option<&[Column]> {
        self.columns.as_deref()
    }
    /// The rows.
    pub fn rows(&self) -> &[SimpleRow] {
        &self.rows
    }
    /// Takes the rows.
    pub fn into_rows(self) -> Vec<SimpleRow> {
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
    /// The first statement's result (most query strings hold one statement: no vector).
    first: Option<ResultSet>,
    /// The results of the statements after the first.
    more: Vec<ResultSet>,
    current: Option<ResultSet>,
    error: Option<Box<DbError>>,
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
            return Err(ProtocolError::invalid_input(
                "query text contains a NUL byte",
            ));
        }
        super::frontend::append(out, "query text", sql.len() + 1, |out| {
            frontend::query(sql, out)
                .map_err(|e| ProtocolError::invalid_input(format!("query: {e}")))
        })?;
        Ok(SimpleQuery::default())
    }

    /// Starts a result set with these columns: what a RowDescription does, for a driver
    /// that recognized the message (by its bytes) as one whose columns it already has.
    pub fn described(&mut self, columns: Arc<[Column]>) {
        self.current = Some(ResultSet {
            columns: Some(columns),
            ..ResultSet::default()
        });
    }

    /// The columns of the result set in progress, once its RowDescription came.
    pub fn columns(&self) -> Option<&Arc<[Column]>> {
        self.current.as_ref()?.columns.as_ref()
    }

    /// The error the server reported, if any (the first one).
    pub fn server_error(&self) -> Option<&DbError> {
        self.error.as_deref()
    }

    /// Feeds one server message.
    ///
    /// # Errors
    ///
    /// A protocol error for a message that does not belong in a simple query's answer; the
    /// connection is out of sync then and must be closed.
    pub fn handle(&mut self, msg: BackendMessage, out: &mut BytesMut) -> Result<QueryEvent> {
        match msg {
            BackendMessage::RowDescription(fields) => self.described(columns_of(fields)),
            BackendMessage::DataRow(body) => {
                let set = self
                    .current
                    .as_mut()
                    .ok_or_else(|| ProtocolError::protocol("DataRow without RowDescription"))?;
                let columns = set.columns.clone().unwrap_or_else(|| Arc::from(Vec::new()));
                if body.len() != columns.len() {
                    return Err(ProtocolError::protocol(format!(
                        "DataRow has {} values for {} columns",
                        body.len(),
                        columns.len()
                    )));
                }
                if body
                    .values()
                    .flatten()
                    .any(|v| std::str::from_utf8(v).is_err())
                {
                    return Err(ProtocolError::protocol("DataRow value is not valid UTF-8"));
                }
                set.rows.push(SimpleRow::new(columns, body));
            }
            BackendMessage::CommandComplete(tag) => {
                let mut set = self.current.take().unwrap_or_default();
                set.command_tag = Some(tag);
                if self.first.is_none() {
                    self.first = Some(set);
                } else {
                    self.more.push(set);
                }
            }
            BackendMessage::EmptyQueryResponse => {}
            BackendMessage::ErrorResponse(e) => {
                self.current = None;
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
            BackendMessage::NoticeResponse(n) => return Ok(QueryEvent::Notice(n)),
            BackendMessage::CopyInResponse => {
                frontend::copy_fail("COPY is not supported by wirepool", out)
                    .map_err(|e| ProtocolError::protocol(format!("encoding CopyFail: {e}")))?;
                self.copy_refused = true;
            }
            BackendMessage::CopyOutResponse => self.copy_refused = true,
            BackendMessage::CopyData(_) | BackendMessage::CopyDone if self.copy_refused => {}
            BackendMessage::ParameterStatus { .. }
            | BackendMessage::NotificationResponse { .. } => {}
            BackendMessage::ReadyForQuery(status) => return Ok(QueryEvent::Done(status)),
            other => {
                return Err(ProtocolError::protocol(format!(
                    "unexpected {} in the answer to a simple query",
                    other.name()
                )))
            }
        }
        Ok(QueryEvent::Continue)
    }

    /// The command tags of the statements that completed so far, in order (also when a
    /// later statement failed).
    pub fn command_tags(&self) -> impl Iterator<Item = &str> {
        self.first
            .iter()
            .chain(&self.more)
            .filter_map(ResultSet::command_tag)
    }

    /// The result sets, or the first error: COPY refused, or the server's error.
    ///
    /// # Errors
    ///
    /// `CopyUnsupported` if the query asked for COPY; the server's [`DbError`] otherwise.
    pub fn finish(self) -> Result<Vec<ResultSet>> {
        let (first, more) = self.outcome()?;
        let mut sets = Vec::with_capacity(usize::from(first.is_some()) + more.len());
        sets.extend(first);
        sets.extend(more);
        Ok(sets)
    }

    /// The rows of all the statements, in order, or the first error as for
    /// [`SimpleQuery::finish`]. A single statement's rows are returned as they are.
    ///
    /// # Errors
    ///
    /// As for [`SimpleQuery::finish`].
    pub fn finish_rows(self) -> Result<Vec<SimpleRow>> {
        let (first, more) = self.outcome()?;
        let rows = first.map(ResultSet::into_rows).unwrap_or_default();
        if more.is_empty() {
            return Ok(rows);
        }
        Ok(rows
            .into_iter()
            .chain(more.into_iter().flat_map(ResultSet::into_rows))
            .collect())
    }

    fn outcome(self) -> Result<(Option<ResultSet>, Vec<ResultSet>)> {
        if self.copy_refused {
            return Err(ProtocolError::copy_unsupported());
        }
        match self.error {
            Some(e) => Err(ProtocolError::db_boxed(e)),
            None => Ok((self.first, self.more)),
        }
    }
}
