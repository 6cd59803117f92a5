//! Rows as they arrive: [`Connection::query_raw`] and its [`RowStream`].
//!
//! The stream reads the socket only when it is polled for the next row, so a result of
//! any size takes the memory of one row (and the read buffer) at a time, and a slow
//! consumer slows the server down (TCP backpressure) rather than filling memory.

use futures_core::Stream;
use postgres_types::ToSql;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::query::{stale, ToStatement};
use super::trace::Traced;
use super::wait_timer::WaitTimer;
use super::{bounded, Connection};
use crate::error::{Error, Result};
use crate::protocol::extended::Step;
use crate::row::{Execute, Executed, Row};

/// The rows of a statement, read from the socket as they are consumed; see
/// [`Connection::query_raw`].
///
/// Dropping it before the end leaves the rest of its answer to be dealt with before the
/// connection's next use. Inside a transaction the rest is read and discarded (bounded by
/// the command timeout of that next use), so the transaction goes on, as in
/// tokio-postgres: a cancel would fail the statement and, with it, the transaction.
/// Outside one the statement is cancelled (CancelRequest) and what it had sent drained. A
/// pooled connection returned with a stream left unfinished is cancelled and drained (and
/// its transaction rolled back) before anyone else gets it.
#[must_use = "a stream does nothing unless polled"]
pub struct RowStream<'a> {
    conn: &'a mut Connection,
    answer: Execute,
    done: bool,
    rows_affected: Option<u64>,
    /// The command timeout, which bounds each wait for the server (not the whole stream).
    timer: WaitTimer,
    /// The statement was taken from the cache (a stale one is dropped from it on error).
    cached: bool,
    sql: String,
    traced: Option<Traced>,
}

impl std::fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream")
            .field("done", &self.done)
            .field("rows_affected", &self.rows_affected)
            .finish()
    }
}

/// What the next message brought.
enum Next {
    Row(Row),
    Done(Executed),
}

impl Connection {
    /// Runs `statement` and returns its rows as a [`Stream`], read from the socket as the
    /// caller consumes them: the way to read a result too large to hold (`query` collects
    /// every row into a `Vec`). As tokio-postgres's `query_raw`, with the parameters as a
    /// slice, as [`Connection::query`] takes them.
    ///
    /// The command timeout bounds each wait for the server (for the first row, and for
    /// each later one), not the whole transfer: a stream of an hour runs as long as rows
    /// keep coming. A stream that runs past it ends with a command-timeout error, and the
    /// statement is cancelled before the connection's next use.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// use futures_util::StreamExt;
    ///
    /// let mut rows = conn
    ///     .query_raw("SELECT g, md5(g::text) FROM generate_series(1, $1) g", &[&10_000_000i32])
    ///     .await?;
    /// let mut n = 0u64;
    /// while let Some(row) = rows.next().await {
    ///     let _hash: &str = row?.get(1);
    ///     n += 1;
    /// }
    /// assert_eq!(rows.rows_affected(), Some(n));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Connection::query`]; the server's error may also come as the stream's item,
    /// after some rows. A cached statement that went stale (its table altered) is not
    /// prepared again here: the error is the stream's, and the next call prepares anew.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the stream is returned, or the stream part-way, leaves
    /// the connection consistent: the rest of the statement's answer is dealt with before
    /// the connection's next use, as [`RowStream`] says (read inside a transaction,
    /// cancelled outside one).
    pub async fn query_raw<T>(
        &mut self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream<'_>>
    where
        T: ?Sized + ToStatement,
    {
        let sql = statement.sql();
        let traced = self.trace_start(sql);
        let cached = self.statements.contains(sql);
        let sent = bounded!(self, async {
            self.finish_pending().await?;
            self.send_bound(sql, statement.described(), params).await
        });
        let (_, described) = match sent {
            Ok(s) => s,
            Err(e) => {
                let r = Err(e);
                self.trace_end(traced, sql, &r);
                return r;
            }
        };
        let limit = self.command_timeout;
        Ok(RowStream {
            answer: Execute::new(described.columns.clone()),
            conn: self,
            done: false,
            rows_affected: None,
            timer: WaitTimer::new(limit),
            cached,
            sql: sql.to_string(),
            traced: Some(traced),
        })
    }

    /// The next row or the end of the answer from what is already buffered, without a
    /// read: `None` when the buffer holds no whole message that decides it.
    fn next_buffered(&mut self, answer: &mut Execute) -> Option<Result<Next>> {
        loop {
            let msg = match self.decode_buffered() {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            self.note_message(&msg);
            match answer.handle(msg) {
                Ok(Step::Continue) => {
                    if let Some(row) = answer.take_row() {
                        return Some(Ok(Next::Row(row)));
                    }
                }
                Ok(Step::Notice(n)) => self.notice(&n),
                // Queued here, sent by the next read's flush (or the next request's).
                Ok(Step::RefuseCopyIn) => {
                    if let Err(e) = self.queue_refuse_copy_in() {
                        return Some(Err(e));
                    }
                }
                Ok(Step::Done(executed)) => {
                    self.in_flight = false;
                    return Some(Ok(Next::Done(executed)));
                }
                Err(e) => {
                    self.broken = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }

    /// Reads messages until the next row or the end of the answer. Cancel-safe: it may
    /// be dropped at its await (a socket read; what arrived stays in the read buffer).
    async fn next_answer(&mut self, answer: &mut Execute) -> Result<Next> {
        if !self.write_buf.is_empty() {
            self.flush().await?;
        }
        loop {
            let msg = self.next_message().await?;
            match answer.handle(msg) {
                Ok(Step::Continue) => {
                    if let Some(row) = answer.take_row() {
                        return Ok(Next::Row(row));
                    }
                }
                Ok(Step::Notice(n)) => self.notice(&n),
                Ok(Step::RefuseCopyIn) => self.refuse_copy_in().await?,
                Ok(Step::Done(executed)) => {
                    self.in_flight = false;
                    return Ok(Next::Done(executed));
                }
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }
}

impl RowStream<'_> {
    /// The rows the statement returned or affected, once the stream has ended; `None`
    /// before (or when it ended in an error).
    pub fn rows_affected(&self) -> Option<u64> {
        self.rows_affected
    }

    fn end(&mut self, outcome: Result<()>) -> Poll<Option<Result<Row>>> {
        self.done = true;
        if let Some(t) = self.traced.take() {
            let rows = self.rows_affected;
            self.conn.trace_end_counted(t, &self.sql, &outcome, rows);
        }
        match outcome {
            Ok(()) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

impl Stream for RowStream<'_> {
    type Item = Result<Row>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // Rows already buffered come without a future; otherwise a new read each poll:
        // the read is cancel-safe, and no future has to outlive the borrow of the
        // connection.
        let polled = match this.conn.next_buffered(&mut this.answer) {
            Some(r) => Poll::Ready(r),
            None => {
                let fut = this.conn.next_answer(&mut this.answer);
                let mut fut = std::pin::pin!(fut);
                fut.as_mut().poll(cx)
            }
        };
        match polled {
            Poll::Pending => match this.timer.poll_expired(cx) {
                Some(limit) => {
                    this.conn.stream_timed_out(limit);
                    this.end(Err(Error::command_timeout(limit)))
                }
                None => Poll::Pending,
            },
            Poll::Ready(r) => {
                this.timer.arrived();
                match r {
                    Ok(Next::Row(row)) => Poll::Ready(Some(Ok(row))),
                    Ok(Next::Done(executed)) => {
                        if let Err(e) = this.conn.check_encoding() {
                            return this.end(Err(e));
                        }
                        if executed.copy_refused {
                            return this.end(Err(Error::copy_unsupported()));
                        }
                        match executed.error {
                            Some(err) => {
                                if this.cached && stale(&err) {
                                    this.conn.statements.remove(&this.sql);
                                }
                                this.end(Err(Error::db_boxed(err)))
                            }
                            None => {
                                this.rows_affected = Some(executed.rows_affected());
                                this.end(Ok(()))
                            }
                        }
                    }
                    Err(e) => this.end(Err(e)),
                }
            }
        }
    }
}

impl Drop for RowStream<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The rest of the answer is not wanted. Outside a transaction, cancel the
            // statement rather than read it all; inside one, a cancel would abort the
            // transaction: the next use reads the rest instead (the answer stays pending).
            if self.conn.transaction_status() == crate::protocol::TransactionStatus::Idle {
                self.conn.abandoned = true;
            }
            if let Some(t) = self.traced.take() {
                let r: Result<()> = Err(Error::closed("the row stream was dropped"));
                self.conn.trace_end(t, &self.sql, &r);
            }
        }
    }
}
