//! The change stream: reads the server's CopyData, decodes it, answers keepalives and
//! reports its positions.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_core::Stream;
use tokio::time::Instant;

use crate::conn::{Connection, CopyBothIn};
use crate::error::{Error, Result};
use wirepool_protocol::pgoutput::PgOutputDecoder;
use wirepool_protocol::replication::{
    standby_status_update, PgTimestamp, ReplicationMessage, PG_EPOCH_UNIX_SECONDS,
};

use super::event::Relations;
use super::{Lsn, ReplicationEvent};

/// How often the stream reports its positions when the server does not ask.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// A slot's changes (see the [module docs](super)). Each item is an event or the error
/// that ended the stream; after an error or the server's end of the stream, it yields
/// `None`.
pub struct ReplicationStream {
    state: State,
    confirmed: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    commits: Commits,
}

/// The transactions delivered and not yet confirmed: commit LSN and end LSN. The server
/// counts a transaction as done once the flushed position reaches its end; the application
/// confirms it by its commit LSN.
type Commits = Arc<parking_lot::Mutex<std::collections::VecDeque<(Lsn, Lsn)>>>;

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("confirmed", &self.confirmed_lsn())
            .field("received", &self.received_lsn())
            .finish()
    }
}

type Step = Pin<Box<dyn Future<Output = (Box<Inner>, Option<Result<ReplicationEvent>>)> + Send>>;

enum State {
    Idle(Box<Inner>),
    Reading(Step),
    Done,
}

struct Inner {
    commits: Commits,
    conn: Connection,
    decoder: PgOutputDecoder,
    relations: Relations,
    confirmed: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    next_status: Instant,
}

fn now_pg() -> PgTimestamp {
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECONDS);
    SystemTime::now()
        .duration_since(epoch)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Inner {
    /// Reports: written = what was received, flushed and applied = what the application
    /// confirmed.
    async fn send_status(&mut self, reply: bool) -> Result<()> {
        let confirmed = Lsn(self.confirmed.load(Ordering::Acquire));
        let received = Lsn(self.received.load(Ordering::Acquire)).max(confirmed);
        let msg = standby_status_update(received, confirmed, confirmed, now_pg(), reply);
        self.next_status = Instant::now() + STATUS_INTERVAL;
        self.conn.copy_both_write(&msg).await
    }

    async fn next(mut self: Box<Self>) -> (Box<Self>, Option<Result<ReplicationEvent>>) {
        let r = self.next_event().await;
        let item = match r {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        (self, item)
    }

    async fn next_event(&mut self) -> Result<Option<ReplicationEvent>> {
        loop {
            let read = tokio::select! {
                r = self.conn.copy_both_read() => r?,
                _ = tokio::time::sleep_until(self.next_status) => {
                    self.send_status(false).await?;
                    continue;
                }
            };
            let data = match read {
                CopyBothIn::Data(d) => d,
                CopyBothIn::End => return Ok(None),
            };
            match ReplicationMessage::parse(data)? {
                ReplicationMessage::XLogData { start, data, .. } => {
                    self.received.fetch_max(start.0, Ordering::AcqRel);
                    let m = self.decoder.decode(data)?;
                    let event = self.relations.event(m)?;
                    if let ReplicationEvent::Commit {
                        commit_lsn,
                        end_lsn,
                        ..
                    }
                    | ReplicationEvent::StreamCommit {
                        commit_lsn,
                        end_lsn,
                        ..
                    } = &event
                    {
                        self.commits.lock().push_back((*commit_lsn, *end_lsn));
                    }
                    return Ok(Some(event));
                }
                ReplicationMessage::Keepalive {
                    wal_end,
                    reply_requested,
                    ..
                } => {
                    self.received.fetch_max(wal_end.0, Ordering::AcqRel);
                    if reply_requested {
                        self.send_status(false).await?;
                    }
                }
            }
        }
    }
}

impl ReplicationStream {
    pub(crate) fn new(conn: Connection) -> ReplicationStream {
        let confirmed = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let commits = Commits::default();
        ReplicationStream {
            commits: commits.clone(),
            state: State::Idle(Box::new(Inner {
                commits,
                conn,
                decoder: PgOutputDecoder::new(),
                relations: Relations::default(),
                confirmed: confirmed.clone(),
                received: received.clone(),
                next_status: Instant::now() + STATUS_INTERVAL,
            })),
            confirmed,
            received,
        }
    }

    /// Says that every transaction delivered with a commit LSN up to `lsn` is durably
    /// processed: the next status update reports the end of the last of them as flushed,
    /// and after a restart the slot resumes after it. A position before one already
    /// confirmed changes nothing.
    pub fn confirm(&self, lsn: Lsn) {
        let mut to = lsn;
        let mut commits = self.commits.lock();
        while let Some(&(commit, end)) = commits.front() {
            if commit > lsn {
                break;
            }
            to = to.max(end);
            commits.pop_front();
        }
        drop(commits);
        self.confirmed.fetch_max(to.0, Ordering::AcqRel);
    }

    /// The position reported as flushed: the end of the last transaction confirmed.
    pub fn confirmed_lsn(&self) -> Lsn {
        Lsn(self.confirmed.load(Ordering::Acquire))
    }

    /// The furthest WAL position the server has sent or reported.
    pub fn received_lsn(&self) -> Lsn {
        Lsn(self.received.load(Ordering::Acquire))
    }

    /// Reports the confirmed position to the server now, then ends the stream (CopyDone)
    /// and closes the connection. Dropping the stream closes it without the last report;
    /// the server keeps the last position reported before.
    ///
    /// # Errors
    ///
    /// The connection's error; the stream was in use (a `next` under way was dropped).
    pub async fn close(mut self) -> Result<()> {
        let State::Idle(mut inner) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(Error::closed(
                "the replication stream ended or is being read",
            ));
        };
        inner.send_status(false).await?;
        inner.conn.copy_both_finish().await
    }
}

impl Stream for ReplicationStream {
    type Item = Result<ReplicationEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Idle(inner) => self.state = State::Reading(Box::pin(inner.next())),
                State::Reading(mut step) => match step.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Reading(step);
                        return Poll::Pending;
                    }
                    Poll::Ready((inner, item)) => {
                        match &item {
                            Some(Ok(_)) => self.state = State::Idle(inner),
                            // An error or the end: the stream is over.
                            _ => self.state = State::Done,
                        }
                        return Poll::Ready(item);
                    }
                },
            }
        }
    }
}
