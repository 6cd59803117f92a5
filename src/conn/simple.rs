//! The simple query protocol: SQL text in, text rows out.

use super::{bounded, log_notice, Connection};
use crate::error::{Error, Result};
use crate::protocol::{QueryEvent, ResultSet, SimpleQuery, SimpleRow};

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
        let mut sets = self.simple_query_sets(sql).await?;
        if sets.len() == 1 {
            // One statement (the usual case): its rows as they are, no second vector.
            return Ok(sets.pop().map(ResultSet::into_rows).unwrap_or_default());
        }
        Ok(sets.into_iter().flat_map(ResultSet::into_rows).collect())
    }

    /// Like [`Connection::simple_query`], with one [`ResultSet`] per statement, command tags
    /// included.
    ///
    /// # Errors
    ///
    /// As for [`Connection::simple_query`].
    pub async fn simple_query_sets(&mut self, sql: &str) -> Result<Vec<ResultSet>> {
        bounded!(self, async {
            self.finish_pending().await?;
            let query = self.start_simple(sql)?;
            self.finish_simple(query).await
        })
    }

    /// Writes a Query message (nothing is sent yet; the next flush sends it). Synchronous,
    /// so a caller can tell for certain whether the query was queued.
    pub(super) fn start_simple(&mut self, sql: &str) -> Result<SimpleQuery> {
        let query = SimpleQuery::start(sql, &mut self.write_buf)?;
        self.pending += 1;
        self.in_flight = true;
        Ok(query)
    }

    /// Sends what is queued and reads the answer of the query `start_simple` wrote.
    pub(super) async fn finish_simple(&mut self, mut query: SimpleQuery) -> Result<Vec<ResultSet>> {
        self.flush().await?;
        loop {
            let msg = match self.next_message().await {
                Ok(m) => m,
                Err(e) => {
                    // A FATAL error is followed by the server closing the socket: report the
                    // server's reason rather than the end of the stream.
                    if let Some(db) = query.server_error().filter(|d| d.is_fatal()) {
                        return Err(Error::db(db.clone()));
                    }
                    return Err(e);
                }
            };
            match query.handle(msg, &mut self.write_buf) {
                Ok(QueryEvent::Continue) => {
                    if !self.write_buf.is_empty() {
                        self.flush().await?;
                    }
                }
                Ok(QueryEvent::Notice(n)) => log_notice(&n),
                Ok(QueryEvent::Done(_)) => {
                    self.in_flight = false;
                    self.check_encoding()?;
                    let sets = query.finish()?;
                    // The server dropped every prepared statement: so does the cache.
                    if sets
                        .iter()
                        .any(|s| matches!(s.command_tag(), Some("DISCARD ALL" | "DEALLOCATE ALL")))
                    {
                        self.statements.clear();
                    }
                    return Ok(sets);
                }
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
    }
}
