//! The change stream: reads the server's CopyData, decodes it, answers keepalives and
//! reports its positions.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
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
use super::resume::Resume;
use super::{Gauges, ReplicationStatus, StreamState};
use super::{Lsn, ReplicationEvent};

/// How often the stream reports its positions when the server does not ask.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// A slot's changes (see the [module docs](super)).
///
/// Each item is an event, or the error that ended the stream. A transaction's events
/// (from its Begin to its Commit) are held until its Commit has arrived, then delivered
/// together: a transaction is delivered whole or not at all. A large transaction the
/// server streams while it is in progress (`StreamStart` ... `StreamCommit`) is delivered
/// block by block instead.
///
/// A lost connection (a network failure, the walsender terminated, a server restart) does
/// not end the stream: it reconnects on the pool's schedule (1, 2, 4, 8, 16 s, then every
/// 16 s) and resumes from the last position confirmed, so every transaction not yet
/// confirmed is delivered again, with the same commit LSN. A streamed transaction starts
/// over (a `StreamStart` with `first_segment` for the same `xid`). Other errors (the slot
/// dropped, a role that may not replicate, a malformed message) end it.
pub struct ReplicationStream {
    /// The connection and the decoding state; a read under way holds the lock, and
    /// dropping it (a `next()` future dropped) gives it back with nothing lost.
    inner: Arc<tokio::sync::Mutex<Inner>>,
    /// The read under way.
    step: Option<Step>,
    ended: bool,
    status: Arc<Gauges>,
    commits: Commits,
}

/// The transactions delivered and not yet confirmed: commit LSN and end LSN. The server
/// counts a transaction as done once the flushed position reaches its end; the application
/// confirms it by its commit LSN.
type Commits = Arc<parking_lot::Mutex<std::collections::VecDeque<(Lsn, Lsn)>>>;

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("state", &self.state())
            .field("confirmed", &self.confirmed_lsn())
            .field("server", &self.server_lsn())
            .finish()
    }
}

type Step = Pin<Box<dyn Future<Output = Option<Result<ReplicationEvent>>> + Send>>;

struct Inner {
    conn: Option<Connection>,
    resume: Resume,
    /// Where the stream started, for a reconnection before anything was confirmed.
    start: Option<Lsn>,
    decoder: PgOutputDecoder,
    relations: Relations,
    status: Arc<Gauges>,
    commits: Commits,
    next_status: Instant,
    /// The open transaction's events, from its Begin.
    pending: Vec<ReplicationEvent>,
    in_transaction: bool,
    /// Events ready to be delivered.
    ready: std::collections::VecDeque<ReplicationEvent>,
}

fn now_pg() -> PgTimestamp {
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECONDS);
    SystemTime::now()
        .duration_since(epoch)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `object_in_use`: the slot is held by another walsender.
const SLOT_IN_USE: &str = "55006";

/// How long the slot may stay held by another walsender after a lost connection: the
/// server's default `wal_sender_timeout`, after which an old walsender is gone.
const SLOT_RELEASE: Duration = Duration::from_secs(60);

/// An error after which the stream connects again rather than ends: the connection or
/// the server went away, or the slot is still held by the walsender that was ended.
fn worth_reconnecting(e: &Error) -> bool {
    e.is_transient()
        || matches!(e.kind(), crate::ErrorKind::Closed | crate::ErrorKind::Io)
        || e.code() == Some(SLOT_IN_USE)
}

impl Inner {
    /// Reports: written = the server's position, flushed and applied = what the
    /// application confirmed. With every delivered transaction confirmed and none under
    /// way, that is the server's position itself: its WAL since then holds nothing for this
    /// stream (a quiet publication), and the slot may move on, as PostgreSQL's own
    /// subscriber lets it.
    async fn send_status(&mut self) -> Result<()> {
        if self.idle() {
            let server = self.status.server.load(Ordering::Acquire);
            self.status.confirmed.fetch_max(server, Ordering::AcqRel);
        }
        let confirmed = Lsn(self.status.confirmed.load(Ordering::Acquire));
        let written = Lsn(self.status.server.load(Ordering::Acquire)).max(confirmed);
        let msg = standby_status_update(written, confirmed, confirmed, now_pg(), false);
        self.next_status = Instant::now() + STATUS_INTERVAL;
        match &mut self.conn {
            Some(c) => c.copy_both_write(&msg).await,
            None => Ok(()),
        }
    }

    /// Nothing delivered waits for its confirmation, and nothing is under way.
    fn idle(&self) -> bool {
        !self.in_transaction
            && !self.decoder.in_stream()
            && self.pending.is_empty()
            && self.ready.is_empty()
            && self.commits.lock().is_empty()
    }

    async fn next(&mut self) -> Option<Result<ReplicationEvent>> {
        let r = self.next_event().await;
        let item = match r {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        if !matches!(item, Some(Ok(_))) {
            self.status.set_state(StreamState::Ended);
        }
        item
    }

    /// The connection is gone: what was under way is forgotten (it comes again).
    fn lost(&mut self, e: Error) -> Result<()> {
        if !worth_reconnecting(&e) {
            return Err(e);
        }
        tracing::warn!(
            target: "wirepool::replication",
            "Replication connection lost: {}; reconnecting",
            crate::error::chain(&e)
        );
        self.conn = None;
        self.pending.clear();
        self.in_transaction = false;
        self.decoder = PgOutputDecoder::new();
        self.relations = Relations::default();
        self.status.set_state(StreamState::Reconnecting);
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<()> {
        let defaults = crate::PoolConfig::default();
        let backoff = crate::backoff::Backoff::new(defaults.reconnect_delays, true);
        let mut attempt = 0u32;
        // The slot held by another reader: retried while the walsender of our lost
        // connection may still hold it, then an error.
        let mut in_use_since: Option<Instant> = None;
        loop {
            attempt += 1;
            tokio::time::sleep(backoff.delay(attempt, crate::random::fraction())).await;
            let confirmed = Lsn(self.status.confirmed.load(Ordering::Acquire));
            let from = if confirmed > Lsn::INVALID {
                Some(confirmed)
            } else {
                self.start
            };
            match self.resume.connect(from).await {
                Ok(c) => {
                    self.conn = Some(c);
                    self.status.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.status.set_state(StreamState::Streaming);
                    tracing::info!(
                        target: "wirepool::replication",
                        attempt,
                        "Replication stream resumed from {}",
                        from.unwrap_or(Lsn::INVALID)
                    );
                    return Ok(());
                }
                Err(e)
                    if e.code() == Some(SLOT_IN_USE)
                        && in_use_since.get_or_insert_with(Instant::now).elapsed()
                            > SLOT_RELEASE =>
                {
                    return Err(e)
                }
                Err(e) if worth_reconnecting(&e) => {
                    tracing::info!(
                        target: "wirepool::replication",
                        attempt,
                        "Replication reconnection attempt {attempt} failed: {}",
                        crate::error::chain(&e)
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn next_event(&mut self) -> Result<Option<ReplicationEvent>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let Some(conn) = &mut self.conn else {
                self.reconnect().await?;
                continue;
            };
            let read = tokio::select! {
                r = conn.copy_both_read() => r,
                _ = tokio::time::sleep_until(self.next_status) => {
                    if let Err(e) = self.send_status().await {
                        self.lost(e)?;
                    }
                    continue;
                }
            };
            let data = match read {
                Ok(CopyBothIn::Data(d)) => d,
                // The server ended the copy without our asking (a fast shutdown ends it
                // with CommandComplete): a lost connection like any other.
                Ok(CopyBothIn::End) => {
                    self.lost(Error::closed("the server ended the replication stream"))?;
                    continue;
                }
                Err(e) => {
                    self.lost(e)?;
                    continue;
                }
            };
            match ReplicationMessage::parse(data)? {
                ReplicationMessage::XLogData { wal_end, data, .. } => {
                    self.status.server.fetch_max(wal_end.0, Ordering::AcqRel);
                    let m = self.decoder.decode(data)?;
                    let event = self.relations.event(m)?;
                    self.place(event);
                }
                ReplicationMessage::Keepalive {
                    wal_end,
                    reply_requested,
                    ..
                } => {
                    self.status.server.fetch_max(wal_end.0, Ordering::AcqRel);
                    if reply_requested {
                        if let Err(e) = self.send_status().await {
                            self.lost(e)?;
                        }
                    }
                }
            }
        }
    }

    /// Holds a transaction's events until its Commit; the rest go out at once.
    fn place(&mut self, event: ReplicationEvent) {
        match &event {
            ReplicationEvent::Begin { .. } => self.in_transaction = true,
            ReplicationEvent::Commit {
                commit_lsn,
                end_lsn,
                ..
            }
            | ReplicationEvent::StreamCommit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                self.commits.lock().push_back((*commit_lsn, *end_lsn));
                if self.in_transaction {
                    self.in_transaction = false;
                    self.pending.push(event);
                    self.ready.extend(self.pending.drain(..));
                    return;
                }
            }
            _ => {}
        }
        if self.in_transaction {
            self.pending.push(event);
        } else {
            self.ready.push_back(event);
        }
    }
}

impl ReplicationStream {
    pub(crate) fn new(conn: Connection, resume: Resume, start: Option<Lsn>) -> ReplicationStream {
        let status = Arc::new(Gauges::new(resume.slot()));
        let commits = Commits::default();
        ReplicationStream {
            commits: commits.clone(),
            step: None,
            ended: false,
            inner: Arc::new(tokio::sync::Mutex::new(Inner {
                conn: Some(conn),
                resume,
                start,
                decoder: PgOutputDecoder::new(),
                relations: Relations::default(),
                status: status.clone(),
                commits,
                next_status: Instant::now() + STATUS_INTERVAL,
                pending: Vec::new(),
                in_transaction: false,
                ready: std::collections::VecDeque::new(),
            })),
            status,
        }
    }

    /// Says that every transaction delivered with a commit LSN up to `lsn` is durably
    /// processed: the next status update reports the end of the last of them as flushed,
    /// and after a restart the slot resumes after it. A position before one already
    /// confirmed changes nothing.
    pub fn confirm(&self, lsn: Lsn) {
        // Never past what was delivered: a position ahead would skip transactions not yet
        // seen, for good.
        let mut to = Lsn::INVALID;
        let mut commits = self.commits.lock();
        while let Some(&(commit, end)) = commits.front() {
            if commit > lsn {
                break;
            }
            to = to.max(end);
            commits.pop_front();
        }
        drop(commits);
        self.status.confirmed.fetch_max(to.0, Ordering::AcqRel);
    }

    /// The position reported as flushed: the end of the last transaction confirmed.
    pub fn confirmed_lsn(&self) -> Lsn {
        Lsn(self.status.confirmed.load(Ordering::Acquire))
    }

    /// The server's WAL position, as its last message said.
    pub fn server_lsn(&self) -> Lsn {
        Lsn(self.status.server.load(Ordering::Acquire))
    }

    /// How far the application is behind the server, in bytes of WAL: the server's
    /// position less the confirmed one (0 before the server said where it is).
    pub fn lag_bytes(&self) -> u64 {
        self.server_lsn().0.saturating_sub(self.confirmed_lsn().0)
    }

    /// What the stream is doing.
    pub fn state(&self) -> StreamState {
        self.status.snapshot().state
    }

    /// The stream's figures: state, positions, lag, reconnections. As of the stream's
    /// last read: it reads its connection only while the application awaits its next
    /// message, so a connection lost while nobody awaits it still shows as streaming
    /// (here, in the pool's health report and in its metrics) until the next await finds
    /// it gone.
    pub fn status(&self) -> ReplicationStatus {
        self.status.snapshot()
    }

    pub(crate) fn gauges(&self) -> &Arc<Gauges> {
        &self.status
    }

    /// Connections opened again after one was lost.
    pub fn reconnects(&self) -> u64 {
        self.status.reconnects.load(Ordering::Relaxed)
    }

    /// Reports the confirmed position to the server now, then ends the stream (CopyDone)
    /// and its connection. Dropping the stream closes the connection without the last
    /// report; the server keeps the position reported before (the status updates go out
    /// every 10 seconds and whenever the server asks).
    ///
    /// # Errors
    ///
    /// The connection's error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection, perhaps before the last report: the
    /// server keeps the position reported before, and what was delivered after it comes
    /// again.
    pub async fn close(mut self) -> Result<()> {
        self.status.set_state(StreamState::Ended);
        // A read under way (its `next()` dropped) gives the connection back.
        self.step = None;
        let mut inner = self.inner.lock().await;
        inner.send_status().await?;
        match inner.conn.take() {
            Some(mut c) => c.copy_both_finish().await,
            None => Ok(()),
        }
    }
}

impl Stream for ReplicationStream {
    type Item = Result<ReplicationEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let inner = self.inner.clone();
        let step = self
            .step
            .get_or_insert_with(|| Box::pin(async move { inner.lock_owned().await.next().await }));
        match step.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(item) => {
                self.step = None;
                // An error or the end: the stream is over.
                self.ended = !matches!(item, Some(Ok(_)));
                Poll::Ready(item)
            }
        }
    }
}
