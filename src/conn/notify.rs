//! LISTEN/NOTIFY on a connection: notifications that arrive during queries are kept in a
//! bounded queue; [`Connection::next_notification`] waits for one between queries.

use std::collections::VecDeque;

use super::Connection;
use crate::error::{Error, Result};
use crate::protocol::BackendMessage;

/// The most notifications a connection keeps unread; past it, new ones are dropped and
/// counted ([`Connection::notifications_dropped`]).
pub const NOTIFICATION_QUEUE: usize = 10_000;

/// A notification: `NOTIFY channel, 'payload'` (or `pg_notify`) by some session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    process_id: i32,
    channel: String,
    payload: String,
}

impl Notification {
    /// The channel it was sent on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Its payload (empty when none was given).
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// The process id of the sending session's backend.
    pub fn process_id(&self) -> i32 {
        self.process_id
    }
}

/// The unread notifications of a connection and how many did not fit.
#[derive(Debug, Default)]
pub(crate) struct Notifications {
    queue: VecDeque<Notification>,
    dropped: u64,
}

/// The longest channel name, in bytes of UTF-8: the server keeps NAMEDATALEN - 1 = 63
/// bytes of an identifier and cuts the rest, so two longer names that agree in their first
/// 63 bytes would be one channel (and `pg_notify` refuses them with 22023).
pub const MAX_CHANNEL_NAME: usize = 63;

/// Refuses a channel name the server would not keep as it is: over [`MAX_CHANNEL_NAME`]
/// bytes, or holding a NUL byte. Nothing is sent then.
pub(crate) fn check_channel(name: &str) -> crate::error::Result<()> {
    if name.len() > MAX_CHANNEL_NAME {
        return Err(crate::error::Error::invalid_input(format!(
            "a channel name of {} bytes: the server keeps {MAX_CHANNEL_NAME} bytes of a name and would cut the rest, so that two names become one; nothing was sent",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(crate::error::Error::invalid_input(
            "a channel name with a NUL byte; nothing was sent",
        ));
    }
    Ok(())
}

/// `name` as an SQL identifier: in double quotes, inner quotes doubled, so any text is
/// just a name (`"Mixed Case"`, `x"; DROP TABLE t; --`).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Connection {
    pub(crate) fn push_notification(&mut self, process_id: i32, channel: String, payload: String) {
        let n = &mut self.notifications;
        if n.queue.len() >= NOTIFICATION_QUEUE {
            n.dropped += 1;
            if n.dropped == 1 || n.dropped.is_power_of_two() {
                tracing::warn!(
                    target: "wirepool::conn",
                    dropped = n.dropped,
                    "Notification queue full ({NOTIFICATION_QUEUE} unread): {} dropped so far",
                    n.dropped
                );
            }
            return;
        }
        n.queue.push_back(Notification {
            process_id,
            channel,
            payload,
        });
    }

    /// Notifications that arrived while the queue was full, and were dropped.
    pub fn notifications_dropped(&self) -> u64 {
        self.notifications.dropped
    }

    /// How many notifications are queued, unread.
    pub fn queued_notifications(&self) -> usize {
        self.notifications.queue.len()
    }

    /// Unread notifications, oldest first, without waiting.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        self.notifications.queue.drain(..).collect()
    }

    /// Forgets what a caller left unread (a pooled connection's return).
    pub(crate) fn clear_notifications(&mut self) {
        if !self.notifications.queue.is_empty() || self.notifications.dropped > 0 {
            self.notifications = Notifications::default();
        }
    }

    /// The next notification: one that arrived during an earlier query, or the next to
    /// arrive. Listen first (`LISTEN channel`, through any query method).
    ///
    /// ```no_run
    /// # async fn f(conn: &mut wirepool::Connection) -> wirepool::Result<()> {
    /// conn.batch_execute("LISTEN jobs").await?;
    /// let n = conn.next_notification().await?;
    /// println!("{} on {} from {}", n.payload(), n.channel(), n.process_id());
    /// # Ok(()) }
    /// ```
    ///
    /// Not bounded by the command timeout (waiting is its purpose): wrap it in
    /// `tokio::time::timeout` for a limit. Cancel-safe.
    ///
    /// # Errors
    ///
    /// A closed or I/O error when the connection is lost (the server's error, when it
    /// said why: `57P01` after `pg_terminate_backend`).
    pub async fn next_notification(&mut self) -> Result<Notification> {
        loop {
            if let Some(n) = self.notifications.queue.pop_front() {
                return Ok(n);
            }
            if self.is_busy() {
                self.finish_pending().await?;
                continue;
            }
            if self.broken {
                return Err(Error::closed("the connection is broken"));
            }
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(msg)) => self.idle_message(msg)?,
                Ok(None) => self.read_more().await?,
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }

    /// A message that came while no request was out.
    fn idle_message(&mut self, msg: BackendMessage) -> Result<()> {
        match msg {
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            } => self.push_notification(process_id, channel, payload),
            BackendMessage::ParameterStatus { name, value } => self.note_parameter(name, value),
            BackendMessage::NoticeResponse(n) => self.notice(&n),
            BackendMessage::ErrorResponse(e) => {
                self.broken = true;
                return Err(Error::db_boxed(e));
            }
            other => {
                self.broken = true;
                return Err(Error::protocol(format!(
                    "unexpected {} while waiting for a notification",
                    other.name()
                )));
            }
        }
        Ok(())
    }
}
