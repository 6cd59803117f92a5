//! Pipelining on one connection: requests written back to back, each ending in its own
//! Sync (so an error in one does not abort the next), their answers read in order. The
//! pool's shared path (`pool::lane`) drives it: it owns the connection meanwhile, writes
//! what its callers queued and reads in the same task, so neither side can block the
//! other.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;

use super::{Answers, Connection, READ_CHUNK, SHRINK_ABOVE};
use crate::error::{DbError, Error, Result};
use crate::protocol::extended::{Described, Prepare, Step};
use crate::protocol::Column;
use crate::protocol::{self, BackendMessage, ProtocolError};
use crate::row::{Execute, Executed};
use postgres_types::Type;

/// The named statements pipelined requests prepared on a connection, by SQL. They outlive
/// one run of the shared path on the connection (the connection keeps them), so a statement
/// is parsed once per connection, not once per burst.
#[derive(Debug, Default)]
pub(crate) struct PipelineNames {
    names: crate::text_map::TextMap<Named>,
    /// The SQL in the order the names were made: the oldest is closed first.
    order: VecDeque<Arc<str>>,
    next: u64,
    /// The shared path's session reset is prepared on the connection (see
    /// `pool/pipelined/lane_watch.rs`).
    pub(crate) reset_parsed: bool,
}

/// A statement prepared on the connection: its name, and its parameter and result types as
/// this connection's server took them (`None` until the server has said).
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub(crate) name: Arc<str>,
    /// The parameter types it was prepared with (given in its Parse, or described).
    pub(crate) params: Option<Arc<[Type]>>,
    /// Its result columns, from a Describe of it or of a portal bound to it.
    pub(crate) columns: Option<Arc<[Column]>>,
}

impl PipelineNames {
    pub(crate) fn get(&self, sql: &str) -> Option<Arc<str>> {
        self.names.get(sql).map(|n| n.name.clone())
    }

    /// `sql`'s statement on the connection, with what the server said of it here.
    pub(crate) fn lookup(&self, sql: &str) -> Option<Named> {
        self.names.get(sql).cloned()
    }

    /// The server described statement `name` on this connection: its parameter types
    /// (a Describe of the statement) and its result columns.
    pub(crate) fn confirm(
        &mut self,
        name: &str,
        params: Option<&Arc<[Type]>>,
        columns: Option<&Arc<[Column]>>,
    ) {
        if let Some(n) = self.names.values_mut().find(|n| &*n.name == name) {
            if let Some(p) = params {
                n.params = Some(p.clone());
            }
            if let Some(c) = columns {
                n.columns = Some(c.clone());
            }
        }
    }

    /// A new name for `sql`, and the name to close first if that makes more than
    /// `capacity` (`capacity` 0: none is made, the unnamed statement is used).
    /// `params`: the parameter types its Parse gives (`None`: left to the server).
    pub(crate) fn make(
        &mut self,
        sql: &Arc<str>,
        capacity: usize,
        params: Option<Arc<[Type]>>,
    ) -> (Arc<str>, Option<Arc<str>>) {
        if capacity == 0 {
            return (Arc::from(""), None);
        }
        let mut evicted = None;
        while self.names.len() >= capacity {
            match self.order.pop_front() {
                Some(old) => {
                    if let Some(n) = self.names.remove(&old) {
                        evicted = Some(n.name);
                        break;
                    }
                }
                None => break,
            }
        }
        self.next += 1;
        let name: Arc<str> = Arc::from(format!("wirepool_pipe_{}", self.next));
        self.names.insert(
            sql.clone(),
            Named {
                name: name.clone(),
                params,
                columns: None,
            },
        );
        self.order.push_back(sql.clone());
        (name, evicted)
    }

    /// Forgets `sql`'s statement if it is still `name` (its Parse failed, or the server
    /// no longer knows it).
    pub(crate) fn forget(&mut self, sql: &str, name: &str) {
        if self.names.get(sql).is_some_and(|n| &*n.name == name) {
            self.names.remove(sql);
        }
    }

    /// Forgets the statement named `name`, whatever its SQL.
    pub(crate) fn forget_name(&mut self, name: &str) {
        self.names.retain(|_, n| &*n.name != name);
    }

    /// Forgets every name and gives them (the server may have dropped some, or all).
    pub(crate) fn take_all(&mut self) -> Vec<Arc<str>> {
        let names = self.names.drain().map(|(_, n)| n.name).collect();
        self.clear();
        names
    }

    /// Forgets every name (the server dropped its prepared statements).
    pub(crate) fn clear(&mut self) {
        self.names.clear();
        self.order.clear();
        self.reset_parsed = false;
    }
}

/// What a pipelined request's answer is assembled into.
#[derive(Debug)]
pub(crate) enum Assembler {
    /// Parse, Describe (of the statement), Sync.
    Describe {
        prepare: Prepare,
        outcome: Option<std::result::Result<Described, Box<DbError>>>,
    },
    /// [Parse,] Bind, Execute, Sync.
    Execute(Execute),
    /// Statements the pool sent on its own between two callers' statements, under one Sync
    /// (the session reset of the shared path): its answer is only whether they succeeded.
    Reset { error: Option<Box<DbError>> },
    /// An atomic batch: `statements` times [Parse,] Bind, Execute, then one Sync.
    Batch {
        answers: Option<Box<Answers>>,
        statements: usize,
    },
}

/// A request's answer, complete.
#[derive(Debug)]
pub(crate) enum Outcome {
    Described(std::result::Result<Described, Box<DbError>>),
    Executed(Executed),
    /// The answer to [`Assembler::Reset`].
    Reset {
        error: Option<Box<DbError>>,
    },
    /// The answers to [`Assembler::Batch`].
    Batch(Box<Answers>),
}

/// What one message did to a request's answer.
#[derive(Debug)]
pub(crate) enum Fed {
    Continue,
    Notice(Box<DbError>),
    Done(Outcome),
}

impl Assembler {
    pub(crate) fn reset() -> Assembler {
        Assembler::Reset { error: None }
    }

    pub(crate) fn batch(answers: Answers, statements: usize) -> Assembler {
        Assembler::Batch {
            answers: Some(Box::new(answers)),
            statements,
        }
    }

    pub(crate) fn describe() -> Assembler {
        Assembler::Describe {
            prepare: Prepare::new(),
            outcome: None,
        }
    }

    /// Feeds one message of this request's answer.
    ///
    /// # Errors
    ///
    /// A protocol error for a message that does not belong (a COPY, which the shared path
    /// refuses before sending, among them): the connection is broken then.
    pub(crate) fn feed(&mut self, msg: BackendMessage) -> protocol::Result<Fed> {
        match self {
            Assembler::Describe { prepare, outcome } => {
                if let BackendMessage::ReadyForQuery(_) = msg {
                    return match outcome.take() {
                        Some(o) => Ok(Fed::Done(Outcome::Described(o))),
                        None => Err(ProtocolError::protocol(
                            "ReadyForQuery before the statement was described",
                        )),
                    };
                }
                if outcome.is_some() {
                    // After the description or the error, only what is not part of an
                    // answer can come before ReadyForQuery.
                    return match msg {
                        BackendMessage::NoticeResponse(n) => Ok(Fed::Notice(n)),
                        BackendMessage::ParameterStatus { .. }
                        | BackendMessage::NotificationResponse { .. } => Ok(Fed::Continue),
                        other => Err(ProtocolError::protocol(format!(
                            "unexpected {} after a pipelined statement's description",
                            other.name()
                        ))),
                    };
                }
                match prepare.handle(msg)? {
                    Step::Continue => Ok(Fed::Continue),
                    Step::Notice(n) => Ok(Fed::Notice(n)),
                    Step::Done(d) => {
                        *outcome = Some(d);
                        Ok(Fed::Continue)
                    }
                    Step::RefuseCopyIn => Err(ProtocolError::protocol(
                        "a COPY in the answer to a Describe",
                    )),
                }
            }
            Assembler::Reset { error } => match msg {
                BackendMessage::ReadyForQuery(_) => Ok(Fed::Done(Outcome::Reset {
                    error: error.take(),
                })),
                BackendMessage::ErrorResponse(e) => {
                    error.get_or_insert(e);
                    Ok(Fed::Continue)
                }
                BackendMessage::NoticeResponse(n) => Ok(Fed::Notice(n)),
                BackendMessage::RowDescription(_)
                | BackendMessage::DataRow(_)
                | BackendMessage::CommandComplete(_)
                | BackendMessage::ParseComplete
                | BackendMessage::BindComplete
                | BackendMessage::CloseComplete
                | BackendMessage::NoData
                | BackendMessage::EmptyQueryResponse
                | BackendMessage::ParameterStatus { .. }
                | BackendMessage::NotificationResponse { .. } => Ok(Fed::Continue),
                other => Err(ProtocolError::protocol(format!(
                    "unexpected {} in the answer to the pool's session reset",
                    other.name()
                ))),
            },
            Assembler::Batch {
                answers,
                statements,
            } => {
                let Some(a) = answers.as_mut() else {
                    return Err(ProtocolError::protocol("a message after a batch's answer"));
                };
                let ready = match msg {
                    BackendMessage::NoticeResponse(n) => return Ok(Fed::Notice(n)),
                    BackendMessage::CopyInResponse => {
                        return Err(ProtocolError::protocol(
                            "a COPY started in a pipelined batch",
                        ))
                    }
                    BackendMessage::ReadyForQuery(_) => true,
                    _ => false,
                };
                a.feed(msg)
                    .map_err(|e| ProtocolError::protocol(e.to_string()))?;
                if ready && a.complete(*statements) {
                    let done = answers.take().expect("checked above");
                    return Ok(Fed::Done(Outcome::Batch(done)));
                }
                Ok(Fed::Continue)
            }
            Assembler::Execute(e) => match e.handle(msg)? {
                Step::Continue => Ok(Fed::Continue),
                Step::Notice(n) => Ok(Fed::Notice(n)),
                Step::Done(x) => Ok(Fed::Done(Outcome::Executed(x))),
                Step::RefuseCopyIn => Err(ProtocolError::protocol(
                    "a COPY started in a pipelined statement",
                )),
            },
        }
    }
}

/// True for the message that ends a pipelined request's answer (ReadyForQuery).
pub(crate) fn ends_request(msg: &BackendMessage) -> bool {
    matches!(msg, BackendMessage::ReadyForQuery(_))
}

impl Connection {
    /// Writes what is buffered and reads what arrived, registering the task for more of
    /// both. `Ready(Ok(()))` when something was read, or the buffer was written out.
    pub(crate) fn poll_pipeline(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut progress = false;
        if !self.write_buf.is_empty() {
            match self.stream.poll_write_buf(cx, &mut self.write_buf) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(e)) => {
                    self.broken = true;
                    return Poll::Ready(Err(Error::io(e)));
                }
                Poll::Pending => {}
            }
        }
        let wanted = self.decoder.wanted(&self.read_buf).unwrap_or(READ_CHUNK);
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK {
            self.read_buf.reserve(wanted.clamp(READ_CHUNK, 1024 * 1024));
        }
        match self.stream.poll_read_buf(cx, &mut self.read_buf) {
            Poll::Ready(Ok(0)) => {
                self.broken = true;
                Poll::Ready(Err(Error::closed("the server closed the connection")))
            }
            Poll::Ready(Ok(_)) => {
                if self.read_buf.len() > SHRINK_ABOVE {
                    self.big_buffers = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.broken = true;
                Poll::Ready(Err(Error::io(e)))
            }
            Poll::Pending if progress => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next whole message already read, with what it changes on the connection
    /// (a FATAL error breaks it; ReadyForQuery sets the transaction status).
    pub(crate) fn pipeline_message(&mut self) -> Result<Option<BackendMessage>> {
        let m = self.decode_buffered()?;
        if let Some(msg) = &m {
            self.note_message(msg);
        }
        Ok(m)
    }

    /// A message the server sent while no pipelined request was in flight: between
    /// requests the server speaks only to end the session (a FATAL error:
    /// pg_terminate_backend, a shutdown) or to warn. A notice goes to the connection's
    /// handler; anything else ends the lane's run with an error.
    pub(crate) fn unrequested(&mut self, msg: BackendMessage) -> Result<()> {
        match msg {
            BackendMessage::NoticeResponse(n) => {
                self.notice(&n);
                Ok(())
            }
            BackendMessage::ErrorResponse(e) if e.is_fatal() => Err(Error::db_boxed(e)),
            other => {
                self.mark_broken();
                Err(Error::protocol(format!(
                    "{} with no pipelined request in flight",
                    other.name()
                )))
            }
        }
    }

    /// What to send next: requests are appended here.
    pub(crate) fn pipeline_out(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    /// The connection's pipelined statement names, taken for a run of the shared path
    /// (and given back after it with [`Connection::restore_pipeline_names`]).
    pub(crate) fn take_pipeline_names(&mut self) -> PipelineNames {
        std::mem::take(&mut self.pipeline_names)
    }

    pub(crate) fn restore_pipeline_names(&mut self, names: PipelineNames) {
        self.pipeline_names = names;
    }

    /// After a request's ReadyForQuery: the session must still speak UTF-8.
    pub(crate) fn pipeline_check(&mut self) -> Result<()> {
        self.check_encoding()
    }

    /// Marks the connection unusable (a pipelined request was cancelled and did not end).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Makes the close of this connection a TCP reset (see `Stream::reset_on_close`).
    pub(crate) fn reset_on_drop(&mut self) {
        self.stream.reset_on_close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_forgotten() {
        let mut n = PipelineNames::default();
        let a: Arc<str> = Arc::from("SELECT 1");
        let b: Arc<str> = Arc::from("SELECT 2");
        let (na, ev) = n.make(&a, 1, None);
        assert!(ev.is_none());
        assert_eq!(n.get("SELECT 1"), Some(na.clone()));
        let (nb, ev) = n.make(&b, 1, None);
        assert_eq!(ev, Some(na));
        assert!(n.get("SELECT 1").is_none());
        n.forget("SELECT 2", "other");
        assert_eq!(n.get("SELECT 2"), Some(nb.clone()));
        n.forget("SELECT 2", &nb);
        assert!(n.get("SELECT 2").is_none());
        assert_eq!(&*n.make(&a, 0, None).0, "");
    }
}
