//! The simple query protocol: SQL text in, text rows out.

use std::sync::Arc;

use super::{bounded, Connection};
use crate::error::{Error, Result};
use crate::protocol::{self, Column, QueryEvent, ResultSet, SimpleQuery, SimpleRow};

impl Connection {
    /// Runs `sql` with the simple query protocol and returns the rows of all its statements,
    /// as text. Several statements separated by `;` run in one round trip. For values from
    /// outside the program, use [`Connection::query`] with parameters instead of splicing
    /// them into SQL.
    ///
    /// # Errors
    ///
    /// The server's error ([`DbError`](crate::DbError); the rest of a multi-statement
    /// string is not run and the connection stays usable), `CopyUnsupported` for COPY (the
    /// connection stays usable), a command timeout, or an I/O, closed or protocol error
    /// (the connection is then broken).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-way leaves the answer unread; the next call reads it first.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleRow>> {
        self.traced_simple(sql, SimpleQuery::finish_rows).await
    }

    /// [`Connection::simple_query`] without a span: the pool's own statements.
    pub(crate) async fn simple_query_untraced(&mut self, sql: &str) -> Result<Vec<SimpleRow>> {
        self.run_simple(sql, SimpleQuery::finish_rows).await
    }

    /// Like [`Connection::simple_query`], with one [`ResultSet`] per statement, command tags
    /// included.
    ///
    /// # Errors
    ///
    /// As for [`Connection::simple_query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::simple_query`]: the answer left unread is read by the next call
    /// first.
    pub async fn simple_query_sets(&mut self, sql: &str) -> Result<Vec<ResultSet>> {
        self.traced_simple(sql, SimpleQuery::finish).await
    }

    /// [`Connection::run_simple`] in a query span.
    async fn traced_simple<T>(
        &mut self,
        sql: &str,
        finish: fn(SimpleQuery) -> protocol::Result<T>,
    ) -> Result<T> {
        use tracing::Instrument;
        let traced = self.trace_start(sql);
        let span = traced.running_span();
        let r = self.run_simple(sql, finish).instrument(span).await;
        self.trace_end(traced, sql, &r);
        r
    }

    /// Sends `sql` and reads its whole answer, within the command timeout; `finish` makes
    /// the result of it.
    async fn run_simple<T>(
        &mut self,
        sql: &str,
        finish: fn(SimpleQuery) -> protocol::Result<T>,
    ) -> Result<T> {
        bounded!(self, async {
            self.finish_pending().await?;
            let query = self.start_simple(sql)?;
            self.finish_simple(query, finish).await
        })
    }

    /// Writes a Query message (nothing is sent yet; the next flush sends it). Synchronous,
    /// so a caller can tell for certain whether the query was queued.
    pub(super) fn start_simple(&mut self, sql: &str) -> Result<SimpleQuery> {
        let query = SimpleQuery::start(sql, &mut self.write_buf)?;
        self.owe_ready(false);
        self.in_flight = true;
        Ok(query)
    }

    /// Sends what is queued and reads the answer of the query `start_simple` wrote, to its
    /// end; `finish` makes the result of the assembled answer (the server's error if there
    /// was one).
    pub(super) async fn finish_simple<T>(
        &mut self,
        mut query: SimpleQuery,
        finish: fn(SimpleQuery) -> protocol::Result<T>,
    ) -> Result<T> {
        self.flush().await?;
        loop {
            if self.read_buf.is_empty() {
                if let Err(e) = self.read_more().await {
                    return Err(reported(&query, e));
                }
            }
            // The same statement run again describes its rows with the same bytes: their
            // columns are taken again rather than parsed again.
            let description = match self.known_description() {
                Description::Known(columns) => {
                    query.described(columns);
                    continue;
                }
                Description::New(frame) => Some(frame),
                Description::NotNext => None,
            };
            let msg = match self.next_message().await {
                Ok(m) => m,
                Err(e) => return Err(reported(&query, e)),
            };
            match query.handle(msg, &mut self.write_buf) {
                Ok(QueryEvent::Continue) => {
                    if let (Some(frame), Some(columns)) = (description, query.columns()) {
                        self.last_description = Some(KnownDescription {
                            frame,
                            columns: columns.clone(),
                        });
                    }
                    if !self.write_buf.is_empty() {
                        self.flush().await?;
                    }
                }
                Ok(QueryEvent::Notice(n)) => self.notice(&n),
                Ok(QueryEvent::Done(_)) => {
                    self.in_flight = false;
                    self.check_encoding()?;
                    // The server dropped every prepared statement: so does the cache, also
                    // when a later statement of the string failed (a rollback does not
                    // bring prepared statements back).
                    if query
                        .command_tags()
                        .any(|t| matches!(t, "DISCARD ALL" | "DEALLOCATE ALL"))
                    {
                        self.forget_prepared();
                    }
                    return finish(query).map_err(Error::from);
                }
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }

    /// Looks at the next message, if it is a whole RowDescription: the columns of the last
    /// one if the bytes are the same (the message is then consumed), or a copy of its bytes
    /// to remember it by once it is parsed.
    fn known_description(&mut self) -> Description {
        let buf = &self.read_buf[..];
        if buf.len() < 5 || buf[0] != b'T' {
            return Description::NotNext;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        // An odd length is left to the frame decoder, which reports it.
        if !(4..DESCRIPTION_CACHE_LIMIT).contains(&len) || buf.len() <= len {
            return Description::NotNext;
        }
        let total = len + 1;
        if let Some(known) = &self.last_description {
            if known.frame[..] == buf[..total] {
                let columns = known.columns.clone();
                bytes::Buf::advance(&mut self.read_buf, total);
                return Description::Known(columns);
            }
        }
        Description::New(buf[..total].into())
    }
}

/// The error to report when reading the answer to `query` failed with `e`: a FATAL error is
/// followed by the server closing the socket, so the server's reason rather than the end of
/// the stream.
fn reported(query: &SimpleQuery, e: Error) -> Error {
    match query.server_error().filter(|d| d.is_fatal()) {
        Some(db) => Error::db(db.clone()),
        None => e,
    }
}

/// A RowDescription a connection received (its bytes) and its columns.
pub(super) struct KnownDescription {
    frame: Box<[u8]>,
    columns: Arc<[Column]>,
}

/// The largest RowDescription a connection remembers (its bytes are kept).
const DESCRIPTION_CACHE_LIMIT: usize = 4096;

/// What [`Connection::known_description`] found.
enum Description {
    /// The next message repeats the last RowDescription: its columns.
    Known(Arc<[Column]>),
    /// The next message is another RowDescription: its bytes.
    New(Box<[u8]>),
    /// The next message is not a whole RowDescription.
    NotNext,
}
