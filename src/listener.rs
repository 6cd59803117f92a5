//! [`Listener`]: LISTEN on a connection of its own that survives a reconnect.
//!
//! A listener learns of a connection loss from its connection, so at a call: a listener
//! nobody polls still shows as connected (in [`Listener::process_id`] and the pool's
//! `listeners_connected`) until its next call. From then on it reconnects on the pool's
//! reconnection schedule, in a task of its own (so it goes on while nobody polls
//! [`Listener::recv`], and a `recv()` dropped by a `select!` or a timeout does not start the
//! schedule again), and sooner when the pool it came from has just reached the database
//! again. It listens to every channel
//! again and yields [`ListenerEvent::Reconnected`]: the
//! notifications sent while it was away are lost (PostgreSQL keeps none for a session that
//! is gone), so the application resynchronises then (re-reads what it caches, re-scans a
//! job table).
//!
//! A listener made by [`Pool::listener`](crate::Pool::listener) ends with its pool:
//! once [`Pool::close`](crate::Pool::close) is called, a `recv()` under way returns
//! `PoolClosed` at once and closes the listener's connection, a reconnect under way stops,
//! and every later call returns `PoolClosed` (a listener nobody polls closes its connection
//! at its next call or when dropped).
//!
//! The listener's connection is its own, outside the pool: it does not count against
//! `max_size` (a listener waits for hours; it must not hold a pool slot that callers need),
//! and it needs a session of its own, so it does not work through PgBouncer in
//! transaction or statement mode (point it at PostgreSQL, or at PgBouncer in session
//! mode).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backoff::Backoff;
use crate::config::ConnectConfig;
use crate::conn::{check_channel, quote_ident, Connection, Notification};
use crate::error::{Error, Result};

/// What [`Listener::recv`] brings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A notification on one of the channels.
    Notification(Notification),
    /// The connection was lost and is back, listening to every channel again;
    /// notifications sent meanwhile are lost.
    Reconnected,
}

/// Counts of a pool's listeners, for its statistics and metrics.
#[derive(Debug, Default)]
pub(crate) struct ListenerCounts {
    pub(crate) open: AtomicUsize,
    pub(crate) connected: AtomicUsize,
    pub(crate) reconnects: AtomicU64,
    pub(crate) notifications: AtomicU64,
    /// The pool opened a connection after connect failures: the database is back, so a
    /// listener waiting out its schedule tries at once.
    pub(crate) database_back: tokio::sync::Notify,
    /// The pool closed: its listeners end.
    closed: AtomicBool,
    closing: tokio::sync::Notify,
}

impl ListenerCounts {
    /// Ends the listeners counted here (their pool closed).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once [`ListenerCounts::close`] was called.
    async fn closed(&self) {
        let closing = self.closing.notified();
        tokio::pin!(closing);
        // Registered before the flag is read: a close in between is not missed.
        closing.as_mut().enable();
        if !self.is_closed() {
            closing.await;
        }
    }
}

/// A reconnect under way: the connection (listening to the channels it names) once made,
/// or `None` if the pool closed first.
type Reconnecting = tokio::task::JoinHandle<Option<(Connection, BTreeSet<String>)>>;

/// Listens to channels on a dedicated connection; see the module docs. Made by
/// [`Pool::listener`](crate::Pool::listener) or [`Listener::connect`].
pub struct Listener {
    config: ConnectConfig,
    conn: Option<Connection>,
    channels: BTreeSet<String>,
    backoff: Backoff,
    counts: Arc<ListenerCounts>,
    reconnecting: Option<Reconnecting>,
    /// A `listen` or `unlisten` was dropped before its answer: `channels` may not be what
    /// the server has until it is asked again.
    unsure: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("channels", &self.channels)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Listener {
    /// A listener on a connection made with `config`, reconnecting on the default
    /// schedule (1, 2, 4, 8, 16 s, then every 16 s).
    ///
    /// # Errors
    ///
    /// The connect error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the connection being opened (its socket is closed);
    /// nothing is left behind.
    pub async fn connect(config: ConnectConfig) -> Result<Listener> {
        let delays = crate::PoolConfig::default().reconnect_delays;
        Listener::open(config, Backoff::new(delays, false), Arc::default()).await
    }

    pub(crate) async fn open(
        config: ConnectConfig,
        backoff: Backoff,
        counts: Arc<ListenerCounts>,
    ) -> Result<Listener> {
        if counts.is_closed() {
            return Err(Error::pool_closed());
        }
        let conn = Connection::connect(&config).await?;
        if counts.is_closed() {
            let _ = conn.close().await;
            return Err(Error::pool_closed());
        }
        counts.open.fetch_add(1, Ordering::Relaxed);
        counts.connected.fetch_add(1, Ordering::Relaxed);
        Ok(Listener {
            config,
            conn: Some(conn),
            channels: BTreeSet::new(),
            backoff,
            counts,
            reconnecting: None,
            unsure: false,
        })
    }

    /// Listens to `channel` (any text of at most
    /// [`MAX_CHANNEL_NAME`](crate::conn::MAX_CHANNEL_NAME) bytes: it is quoted as an
    /// identifier). While the connection is down, the channel is noted and listened to at
    /// the reconnect.
    ///
    /// # Errors
    ///
    /// The server's error (the channel is not added then); an invalid-input error, with
    /// nothing sent, for a name of more than 63 bytes (the server would cut it, and two
    /// names would become one channel) or with a NUL byte.
    ///
    /// # Cancel safety
    ///
    /// Dropped before the server's answer, it is unknown whether the LISTEN ran: the next
    /// call on this listener first asks the server which channels its session listens to
    /// (`pg_listening_channels()`), so [`Listener::channels`] and the reconnect agree with
    /// the server. A notification already delivered is never lost to a drop.
    pub async fn listen(&mut self, channel: &str) -> Result<()> {
        check_channel(channel)?;
        self.settle().await?;
        self.unsure = true;
        let r = self.run(&format!("LISTEN {}", quote_ident(channel))).await;
        self.unsure = false;
        r?;
        self.channels.insert(channel.to_string());
        Ok(())
    }

    /// Stops listening to `channel`.
    ///
    /// # Errors
    ///
    /// As [`Listener::listen`]; after an error the channel is still listened to (and still
    /// in [`Listener::channels`]).
    ///
    /// # Cancel safety
    ///
    /// As [`Listener::listen`]: after a drop, the next call takes the channels from the
    /// server again.
    pub async fn unlisten(&mut self, channel: &str) -> Result<()> {
        check_channel(channel)?;
        self.settle().await?;
        self.unsure = true;
        let r = self
            .run(&format!("UNLISTEN {}", quote_ident(channel)))
            .await;
        self.unsure = false;
        r?;
        self.channels.remove(channel);
        Ok(())
    }

    /// Stops listening to every channel.
    ///
    /// # Errors
    ///
    /// As [`Listener::listen`]; after an error the channels are kept.
    ///
    /// # Cancel safety
    ///
    /// As [`Listener::listen`]: after a drop, the next call takes the channels from the
    /// server again.
    pub async fn unlisten_all(&mut self) -> Result<()> {
        self.settle().await?;
        self.unsure = true;
        let r = self.run("UNLISTEN *").await;
        self.unsure = false;
        r?;
        self.channels.clear();
        Ok(())
    }

    /// The channels its session listens to, as the server says (`pg_listening_channels()`).
    ///
    /// # Errors
    ///
    /// The query's error; a closed error while the listener is reconnecting.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves its answer unread; the next call on the listener reads it
    /// first, as for any query.
    pub async fn listening_channels(&mut self) -> Result<Vec<String>> {
        self.ensure_open().await?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::closed("the listener is reconnecting"));
        };
        let rows = conn.simple_query("SELECT pg_listening_channels()").await?;
        let names: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get(0).map(str::to_string))
            .collect();
        if self.unsure {
            self.channels = names.iter().cloned().collect();
            self.unsure = false;
        }
        Ok(names)
    }

    /// After a `listen` or `unlisten` whose future was dropped before its answer (the
    /// statement may or may not have run), takes the channels from the server again, so
    /// that [`Listener::channels`] and the reconnect agree with it.
    async fn settle(&mut self) -> Result<()> {
        self.ensure_open().await?;
        if self.unsure && self.conn.is_some() {
            match self.listening_channels().await {
                Err(e) if lost(&e) => self.down(&e),
                r => {
                    r?;
                }
            }
        }
        Ok(())
    }

    /// `PoolClosed` once the pool it came from closed, after closing its connection and
    /// stopping a reconnect under way.
    async fn ensure_open(&mut self) -> Result<()> {
        if !self.counts.is_closed() {
            return Ok(());
        }
        if let Some(task) = self.reconnecting.take() {
            task.abort();
        }
        if let Some(conn) = self.conn.take() {
            self.counts.connected.fetch_sub(1, Ordering::Relaxed);
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.close()).await;
        }
        Err(Error::pool_closed())
    }

    /// The process id of its session's backend; `None` while reconnecting.
    pub fn process_id(&self) -> Option<i32> {
        self.conn.as_ref().map(Connection::process_id)
    }

    /// The channels listened to: those the server listens to (`pg_listening_channels()`),
    /// or, while the connection is down, those the reconnect will listen to.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(String::as_str)
    }

    /// Runs `sql` if connected; down, the reconnect will restore the channels.
    async fn run(&mut self, sql: &str) -> Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        match conn.batch_execute(sql).await {
            Err(e) if lost(&e) => {
                self.down(&e);
                Ok(())
            }
            r => r,
        }
    }

    fn down(&mut self, why: &Error) {
        if self.conn.take().is_some() {
            self.counts.connected.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                target: "wirepool::listener",
                "Listener connection lost: {}; reconnecting",
                crate::error::chain(why)
            );
        }
    }

    /// The next notification, or [`ListenerEvent::Reconnected`] after a connection loss
    /// once the listener is back and listening again. Waits as long as it takes; reconnects
    /// on the schedule meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a notification is taken from the connection only when this future
    /// returns it; a reconnect runs in a task of its own, which goes on (on its schedule)
    /// when this future is dropped, and the next `recv()` waits for that same task. So
    /// `recv()` under a `select!` or a `timeout` with any tick loses nothing and does not
    /// start the schedule again.
    ///
    /// # Errors
    ///
    /// None for a lost connection (that is a reconnect); an error the listener cannot
    /// recover from (a protocol error) ends it. `PoolClosed` once the pool it came from
    /// closed (see the module docs).
    pub async fn recv(&mut self) -> Result<ListenerEvent> {
        loop {
            self.ensure_open().await?;
            let counts = self.counts.clone();
            let Some(conn) = self.conn.as_mut() else {
                let task = self.reconnecting.get_or_insert_with(|| {
                    reconnect(
                        self.config.clone(),
                        self.channels.clone(),
                        self.backoff.clone(),
                        self.counts.clone(),
                    )
                });
                // The task goes on if this future is dropped here; the next recv() waits
                // for the same task.
                let joined = tokio::select! {
                    joined = task => joined,
                    () = counts.closed() => continue,
                };
                self.reconnecting = None;
                let (conn, listened) = match joined {
                    Ok(Some(x)) => x,
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(Error::closed(format!(
                            "the listener's reconnect task ended: {e}"
                        )))
                    }
                };
                self.conn = Some(conn);
                self.counts.connected.fetch_add(1, Ordering::Relaxed);
                // Channels listened to or left while it reconnected.
                let mut sql = Vec::new();
                for c in self.channels.difference(&listened) {
                    sql.push(format!("LISTEN {}", quote_ident(c)));
                }
                for c in listened.difference(&self.channels) {
                    sql.push(format!("UNLISTEN {}", quote_ident(c)));
                }
                if !sql.is_empty() {
                    self.run(&sql.join("; ")).await?;
                }
                return Ok(ListenerEvent::Reconnected);
            };
            let next = tokio::select! {
                next = conn.next_notification() => next,
                () = counts.closed() => continue,
            };
            match next {
                Ok(n) => {
                    self.counts.notifications.fetch_add(1, Ordering::Relaxed);
                    return Ok(ListenerEvent::Notification(n));
                }
                Err(e) if lost(&e) => self.down(&e),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Connects and listens to `channels` again, trying on the schedule (and at once when the
/// pool says the database is back) until it works, in a task of its own.
fn reconnect(
    config: ConnectConfig,
    channels: BTreeSet<String>,
    backoff: Backoff,
    counts: Arc<ListenerCounts>,
) -> Reconnecting {
    tokio::spawn(async move {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let delay = backoff.delay(attempt, crate::random::fraction());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = counts.database_back.notified() => {}
                () = counts.closed() => return None,
            }
            counts.reconnects.fetch_add(1, Ordering::Relaxed);
            let tried = tokio::select! {
                tried = try_reconnect(&config, &channels) => tried,
                () = counts.closed() => return None,
            };
            match tried {
                Ok(conn) => {
                    tracing::info!(
                        target: "wirepool::listener",
                        channels = channels.len(),
                        "Listener reconnected after {attempt} attempt(s); listening to {} channel(s) again",
                        channels.len()
                    );
                    return Some((conn, channels));
                }
                Err(e) => tracing::warn!(
                    target: "wirepool::listener",
                    attempt,
                    "Listener reconnection attempt {attempt} failed: {}",
                    crate::error::chain(&e)
                ),
            }
        }
    })
}

async fn try_reconnect(config: &ConnectConfig, channels: &BTreeSet<String>) -> Result<Connection> {
    let mut conn = Connection::connect(config).await?;
    if !channels.is_empty() {
        let sql: Vec<String> = channels
            .iter()
            .map(|c| format!("LISTEN {}", quote_ident(c)))
            .collect();
        conn.batch_execute(&sql.join("; ")).await?;
    }
    Ok(conn)
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.reconnecting.take() {
            task.abort();
        }
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
        if self.conn.is_some() {
            self.counts.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How long a listener ended by its pool's close waits for its goodbye to be written.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `e` means the connection is gone (to be reconnected), not a refused statement.
fn lost(e: &Error) -> bool {
    e.is_io() || e.is_closed() || e.as_db_error().is_some_and(|d| d.is_fatal()) || e.is_timeout()
}
