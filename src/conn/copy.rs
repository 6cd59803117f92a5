//! COPY: [`Connection::copy_in`] with its [`CopyInSink`], [`Connection::copy_out`] with its
//! [`CopyOutStream`], and [`Connection::batch_execute`].
//!
//! Both run the COPY statement through the simple query protocol, as psql does (so they
//! work through PgBouncer in transaction mode). Data goes in and out as the caller gives
//! and takes it: nothing is collected in memory beyond a 64 KiB write buffer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;

use super::wait_timer::WaitTimer;
use super::{bounded, Connection};
use crate::error::{Error, Result};
use crate::protocol::copy::{copy_rows, write_copy_data, write_copy_done, write_copy_fail};
use crate::protocol::BackendMessage;

/// A [`CopyInSink`] writes to the socket once this much is buffered.
const COPY_BUFFER: usize = 64 * 1024;

/// Which COPY a statement must start.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    In,
    Out,
}

impl Connection {
    /// Runs several statements, separated by `;`, in one round trip (the simple query
    /// protocol) and returns nothing; as tokio-postgres's `batch_execute`. The statements
    /// run in one implicit transaction unless they manage their own.
    ///
    /// # Errors
    ///
    /// The first statement's error that failed (the rest are not run); the others as
    /// [`Connection::simple_query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::simple_query`]: the answer left unread is read by the next call
    /// first; the statements after the one running when it was dropped still run.
    pub async fn batch_execute(&mut self, sql: &str) -> Result<()> {
        self.simple_query_sets(sql).await.map(|_| ())
    }

    /// Starts `COPY ... FROM STDIN` and returns the sink its data goes into; end it with
    /// [`CopyInSink::finish`], which returns the number of rows copied.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// use futures_util::SinkExt;
    ///
    /// let mut sink = conn.copy_in("COPY items (id, name) FROM STDIN (FORMAT csv)").await?;
    /// sink.send(bytes::Bytes::from_static(b"1,apple\n2,pear\n")).await?;
    /// let rows = sink.finish().await?;
    /// assert_eq!(rows, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// A sink dropped without `finish` sends CopyFail: the COPY is rolled back (with the
    /// transaction it is in), and the connection is usable again once that is answered.
    /// The command timeout bounds the start and `finish`, not the time data takes to
    /// arrive from the caller.
    ///
    /// # Errors
    ///
    /// The server's error (a missing table, no permission); an invalid-input error when
    /// `sql` is not a `COPY ... FROM STDIN` (it was run, and its answer read).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the sink is returned leaves the connection consistent: a
    /// COPY the server already started is failed (nothing copied) by the connection's next
    /// call, before its own statement.
    pub async fn copy_in(&mut self, sql: &str) -> Result<CopyInSink<'_>> {
        bounded!(self, self.start_copy(sql, Direction::In))?;
        Ok(CopyInSink {
            conn: self,
            done: false,
        })
    }

    /// Starts `COPY ... TO STDOUT` and returns its data as a [`Stream`] of chunks (one
    /// row each in the text and CSV formats), read from the socket as they are consumed.
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// use futures_util::StreamExt;
    ///
    /// let mut out = conn.copy_out("COPY (SELECT * FROM items) TO STDOUT (FORMAT csv)").await?;
    /// while let Some(chunk) = out.next().await {
    ///     std::io::Write::write_all(&mut std::io::stdout(), &chunk?).unwrap();
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// The command timeout bounds each wait for the server, not the whole transfer. A
    /// stream dropped before its end has its COPY cancelled before the connection's next
    /// use (a pooled connection: before anyone else gets it).
    ///
    /// # Errors
    ///
    /// The server's error; an invalid-input error when `sql` is not a `COPY ... TO
    /// STDOUT`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the stream is returned leaves the connection consistent:
    /// the next call reads past what the COPY sends, to its end, before its own statement.
    pub async fn copy_out(&mut self, sql: &str) -> Result<CopyOutStream<'_>> {
        bounded!(self, self.start_copy(sql, Direction::Out))?;
        let limit = self.command_timeout;
        Ok(CopyOutStream {
            conn: self,
            done: false,
            rows: None,
            timer: WaitTimer::new(limit),
        })
    }

    /// Sends `sql` as a simple query and reads up to the CopyInResponse or
    /// CopyOutResponse; any other answer is read to its end and reported.
    async fn start_copy(&mut self, sql: &str, want: Direction) -> Result<()> {
        self.finish_pending().await?;
        self.start_simple_query(sql)?;
        self.flush().await?;
        let (name, wrong) = match want {
            Direction::In => ("copy_in", "COPY ... FROM STDIN"),
            Direction::Out => ("copy_out", "COPY ... TO STDOUT"),
        };
        let mut error = None;
        // The other COPY: its input is failed (the server's error then is ours, not
        // worth reporting) or its output read past.
        let mut other_copy = false;
        loop {
            match self.next_message().await? {
                BackendMessage::CopyInResponse if want == Direction::In => return Ok(()),
                BackendMessage::CopyOutResponse if want == Direction::Out => return Ok(()),
                BackendMessage::CopyInResponse | BackendMessage::CopyOutResponse => {
                    other_copy = true;
                    if want == Direction::Out {
                        self.refuse_copy_in().await?;
                    }
                }
                BackendMessage::ErrorResponse(e) => {
                    error.get_or_insert(e);
                }
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::ReadyForQuery(_) => {
                    self.in_flight = false;
                    self.check_encoding()?;
                    return Err(match error {
                        _ if other_copy => Error::invalid_input(format!(
                            "{name} runs {wrong}; this statement is another kind of COPY"
                        )),
                        Some(e) => Error::db_boxed(e),
                        None => Error::invalid_input(format!(
                            "{name} runs {wrong}; this statement is not a COPY (it was run)"
                        )),
                    });
                }
                // Rows, tags, the other COPY's data: read past to the end.
                _ => {}
            }
        }
    }

    /// Writes a Query message for `sql`.
    fn start_simple_query(&mut self, sql: &str) -> Result<()> {
        crate::protocol::SimpleQuery::start(sql, &mut self.write_buf)?;
        self.owe_ready(false);
        self.in_flight = true;
        Ok(())
    }

    /// One poll of the write of what is buffered. Cancel-safe (what was written is gone
    /// from the buffer), so a new write each poll loses nothing.
    fn poll_flush_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let fut = self.flush();
        let mut fut = std::pin::pin!(fut);
        fut.as_mut().poll(cx)
    }

    /// Reads the next chunk of a COPY TO STDOUT; `None` at its end (with the row count).
    async fn next_copy_data(&mut self) -> Result<CopyOut> {
        let mut error = None;
        loop {
            match self.next_message().await? {
                BackendMessage::CopyData(data) if error.is_none() => {
                    return Ok(CopyOut::Data(data));
                }
                BackendMessage::CopyData(_) | BackendMessage::CopyDone => {}
                BackendMessage::CommandComplete(tag) => {
                    return Ok(CopyOut::End(copy_rows(&tag)?));
                }
                BackendMessage::ErrorResponse(e) => {
                    error.get_or_insert(e);
                }
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::ReadyForQuery(_) => {
                    self.in_flight = false;
                    return match error {
                        Some(e) => Err(Error::db_boxed(e)),
                        None => Err(Error::protocol("COPY ended without CommandComplete")),
                    };
                }
                other => {
                    self.broken = true;
                    return Err(Error::protocol(format!(
                        "unexpected {} during COPY TO STDOUT",
                        other.name()
                    )));
                }
            }
        }
    }

    /// After CommandComplete: the ReadyForQuery that ends the COPY.
    async fn end_copy(&mut self) -> Result<()> {
        loop {
            match self.next_message().await? {
                BackendMessage::ReadyForQuery(_) => {
                    self.in_flight = false;
                    return self.check_encoding();
                }
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::ErrorResponse(e) => return Err(Error::db_boxed(e)),
                _ => {}
            }
        }
    }
}

enum CopyOut {
    Data(Bytes),
    End(u64),
}

/// The data of a `COPY ... FROM STDIN`, as a [`Sink`] of [`Bytes`]; see
/// [`Connection::copy_in`]. The chunks need not be whole rows: the server parses the
/// concatenation.
///
/// # Cancel safety
///
/// A chunk taken by `start_send` is whole in the connection's buffer: a `flush` or `close`
/// future dropped while waiting for the socket loses nothing, the bytes go out with the
/// next call. A `SinkExt::send` future holds its chunk until the sink has room: dropped
/// before that, the chunk is dropped with it, as with any `Sink` (`feed` hands it over
/// in the same way). The sink dropped without [`finish`](CopyInSink::finish) sends
/// CopyFail: the COPY is rolled back.
#[must_use = "the COPY is rolled back unless finish() is awaited"]
pub struct CopyInSink<'a> {
    conn: &'a mut Connection,
    done: bool,
}

impl std::fmt::Debug for CopyInSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyInSink")
            .field("done", &self.done)
            .finish()
    }
}

impl CopyInSink<'_> {
    /// Sends what is buffered and CopyDone, and returns the number of rows copied.
    ///
    /// # Errors
    ///
    /// The server's error about the data (`invalid input syntax for type integer`, with
    /// its line in [`DbError::where_`](crate::DbError::where_): `COPY t, line 3`); the
    /// connection stays usable.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the server's answer leaves the COPY's outcome unknown to
    /// this caller; the connection's next call reads the answer first.
    pub async fn finish(mut self) -> Result<u64> {
        self.done = true;
        let conn = &mut *self.conn;
        bounded!(conn, async {
            write_copy_done(&mut conn.write_buf);
            conn.flush().await?;
            let mut error = None;
            let mut rows = None;
            loop {
                match conn.next_message().await? {
                    BackendMessage::CommandComplete(tag) => rows = Some(copy_rows(&tag)?),
                    BackendMessage::ErrorResponse(e) => {
                        error.get_or_insert(e);
                    }
                    BackendMessage::NoticeResponse(n) => conn.notice(&n),
                    BackendMessage::ReadyForQuery(_) => {
                        conn.in_flight = false;
                        conn.check_encoding()?;
                        return match (error, rows) {
                            (Some(e), _) => Err(Error::db_boxed(e)),
                            (None, Some(n)) => Ok(n),
                            (None, None) => {
                                Err(Error::protocol("COPY ended without CommandComplete"))
                            }
                        };
                    }
                    _ => {}
                }
            }
        })
    }

    /// Appends `data` to the buffer (not yet sent).
    fn push(&mut self, data: &[u8]) -> Result<()> {
        write_copy_data(data, &mut self.conn.write_buf).map_err(Error::from)
    }
}

impl Sink<Bytes> for CopyInSink<'_> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.conn.write_buf.len() < COPY_BUFFER {
            return Poll::Ready(Ok(()));
        }
        this.conn.poll_flush_buf(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<()> {
        self.get_mut().push(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().conn.poll_flush_buf(cx)
    }

    /// Flushes; the COPY itself ends with [`CopyInSink::finish`].
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().conn.poll_flush_buf(cx)
    }
}

impl Drop for CopyInSink<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Goes out before anything else on the connection; the server rolls the COPY
            // back and answers with an error and ReadyForQuery, read by the next use.
            write_copy_fail(
                "the copy_in sink was dropped before finish()",
                &mut self.conn.write_buf,
            );
            // The CopyFail ends the statement: no CancelRequest is needed.
            self.conn.in_flight = false;
        }
    }
}

/// The data of a `COPY ... TO STDOUT`, as a [`Stream`] of [`Bytes`]; see
/// [`Connection::copy_out`].
#[must_use = "a stream does nothing unless polled"]
pub struct CopyOutStream<'a> {
    conn: &'a mut Connection,
    done: bool,
    rows: Option<u64>,
    timer: WaitTimer,
}

impl std::fmt::Debug for CopyOutStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOutStream")
            .field("done", &self.done)
            .field("rows", &self.rows)
            .finish()
    }
}

impl CopyOutStream<'_> {
    /// The rows copied, once the stream has ended; `None` before.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }
}

impl Stream for CopyOutStream<'_> {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let polled = if this.rows.is_none() {
            let fut = this.conn.next_copy_data();
            let mut fut = std::pin::pin!(fut);
            fut.as_mut().poll(cx).map(|r| r.map(Some))
        } else {
            // CommandComplete came: the ReadyForQuery after it.
            let fut = this.conn.end_copy();
            let mut fut = std::pin::pin!(fut);
            fut.as_mut().poll(cx).map(|r| r.map(|()| None))
        };
        match polled {
            Poll::Pending => match this.timer.poll_expired(cx) {
                Some(limit) => {
                    this.done = true;
                    this.conn.stream_timed_out(limit);
                    Poll::Ready(Some(Err(Error::command_timeout(limit))))
                }
                None => Poll::Pending,
            },
            Poll::Ready(r) => {
                this.timer.arrived();
                match r {
                    Ok(Some(CopyOut::Data(d))) => Poll::Ready(Some(Ok(d))),
                    Ok(Some(CopyOut::End(n))) => {
                        this.rows = Some(n);
                        // Read the ReadyForQuery now, so the stream ends with the COPY.
                        Pin::new(this).poll_next(cx)
                    }
                    Ok(None) => {
                        this.done = true;
                        Poll::Ready(None)
                    }
                    Err(e) => {
                        this.done = true;
                        this.rows = None;
                        Poll::Ready(Some(Err(e)))
                    }
                }
            }
        }
    }
}

impl Drop for CopyOutStream<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.abandoned = true;
        }
    }
}
