//! A connection at rest (no query in flight): what the server sent since the last
//! exchange, read without waiting, and whether the connection is still usable.

use super::stream::AtRest;
use super::{Connection, IDLE_INPUT_LIMIT, READ_CHUNK};
use crate::protocol::BackendMessage;

impl Connection {
    /// For a connection at rest (no query in flight): reads whatever the server sent
    /// since the last exchange, without waiting, and says whether the connection is still
    /// usable. Notices and parameter reports are taken in stride; an error (the FATAL a
    /// server sends before it ends a session: `pg_terminate_backend`,
    /// `idle_session_timeout`, a shutdown), the end of the stream, a socket error or
    /// anything else makes the connection broken, and this returns false.
    ///
    /// When nothing has arrived (the common case) this costs one atomic load: the runtime
    /// knows the socket has no input, and no system call is made. A pool calls it on every
    /// checkout. The runtime learns of input only when one of its threads next polls for
    /// events, which on a busy runtime may be a while after the server closed the
    /// connection: with `ask_kernel` the socket is read past the runtime's record (one
    /// system call), which the pool does for a connection at rest longer than a few
    /// milliseconds.
    pub(crate) fn check_idle(&mut self, ask_kernel: bool) -> bool {
        if self.broken {
            return false;
        }
        if self.is_busy() {
            return true;
        }
        let mut eof = false;
        if self.read_buf.is_empty() && !self.stream.may_have_input() {
            if !ask_kernel {
                return true;
            }
            match self.stream.read_now(&mut self.read_buf, IDLE_INPUT_LIMIT) {
                Ok(AtRest::Nothing) => return true,
                Ok(AtRest::Read) => {}
                Ok(AtRest::Closed) => eof = true,
                Ok(AtRest::Unread) => {
                    tracing::debug!(target: "wirepool::conn", "input on an idle TLS connection");
                    self.broken = true;
                    return false;
                }
                Err(e) => {
                    tracing::debug!(target: "wirepool::conn", "idle connection failed: {e}");
                    self.broken = true;
                    return false;
                }
            }
        } else {
            self.read_at_rest(&mut eof);
            if self.broken {
                return false;
            }
        }
        self.decode_at_rest(eof)
    }

    /// Reads what the runtime knows has arrived on a connection at rest (bounded).
    fn read_at_rest(&mut self, eof: &mut bool) {
        loop {
            if self.read_buf.capacity() - self.read_buf.len() < 512 {
                self.read_buf.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.read_buf) {
                Ok(0) => {
                    *eof = true;
                    break;
                }
                Ok(_) if self.read_buf.len() < IDLE_INPUT_LIMIT => {}
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(target: "wirepool::conn", "idle connection failed: {e}");
                    self.broken = true;
                    return;
                }
            }
        }
    }

    /// Takes in what arrived at rest: notices and parameter reports in stride, anything
    /// else (a FATAL, the end of the stream) breaks the connection. True if still usable.
    fn decode_at_rest(&mut self, eof: bool) -> bool {
        while !self.read_buf.is_empty() {
            let msg = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(m)) => m,
                // Half a message at rest: the rest may never come. Not worth trusting.
                Ok(None) => {
                    self.broken = true;
                    break;
                }
                Err(_) => {
                    self.broken = true;
                    break;
                }
            };
            match msg {
                BackendMessage::ParameterStatus { name, value } => self.note_parameter(name, value),
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::NotificationResponse {
                    process_id,
                    channel,
                    payload,
                } => self.push_notification(process_id, channel, payload),
                BackendMessage::ErrorResponse(e) => {
                    tracing::debug!(
                        target: "wirepool::conn",
                        code = e.code(),
                        "the server ended an idle session: {}",
                        e.message()
                    );
                    self.broken = true;
                }
                other => {
                    tracing::debug!(target: "wirepool::conn", "unexpected {} on an idle connection", other.name());
                    self.broken = true;
                }
            }
            if self.broken {
                break;
            }
        }
        // A server that reported a change (a promotion, default_transaction_read_only)
        // may no longer be of the kind this connection was opened for.
        if self.kind_reported {
            self.check_kind();
        }
        if eof || self.foreign_encoding.is_some() {
            self.broken = true;
        }
        !self.broken
    }
}
