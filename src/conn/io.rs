//! The connection's socket I/O: writing what is buffered, reading and decoding whole
//! messages, and the buffers' bounds.

use super::*;

impl Connection {
    /// Sends what the write buffer holds. Cancel-safe: dropped part-way, the buffer keeps
    /// exactly the bytes not yet sent, which go out first on the next flush, so a message
    /// is never sent twice nor left half-sent before another.
    pub(super) async fn flush(&mut self) -> Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        if self.write_buf.len() > SHRINK_ABOVE {
            self.big_buffers = true;
        }
        match self.stream.write_from(&mut self.write_buf).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(Error::io(e))
            }
        }
    }

    /// Bytes of a request not yet sent (its future was dropped while writing).
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn unsent_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Sends the rest of a request whose future was dropped while it was being written;
    /// nothing else can go out on the connection before it. Does nothing if all was sent.
    ///
    /// # Errors
    ///
    /// An I/O error; the connection is broken then.
    pub(crate) async fn finish_write(&mut self) -> Result<()> {
        if self.broken {
            return Err(Error::closed("the connection is broken"));
        }
        self.flush().await
    }

    /// Records a ParameterStatus. A `client_encoding` other than UTF8 is noted: wirepool
    /// writes and reads UTF-8 only, so such a session must end rather than corrupt text.
    pub(super) fn note_parameter(&mut self, name: String, value: String) {
        if name == "client_encoding" && !value.eq_ignore_ascii_case("UTF8") {
            self.foreign_encoding = Some(value.clone());
        }
        // A reported setting changed after startup (SET ROLE reports is_superuser, SET
        // TimeZone reports TimeZone, ...): the session is no longer as it started.
        self.dirt.note_parameter();
        self.last_reported = Some(name.clone());
        if name == "in_hot_standby" || name == "default_transaction_read_only" {
            self.kind_reported = true;
        }
        self.parameters.insert(name, value);
    }

    /// After a ReadyForQuery: fails, and breaks the connection, if the session's
    /// client_encoding is no longer UTF8.
    pub(super) fn check_encoding(&mut self) -> Result<()> {
        match &self.foreign_encoding {
            None => Ok(()),
            Some(enc) => {
                self.broken = true;
                Err(Error::encoding(format!(
                    "client_encoding was set to {}; wirepool reads and writes only UTF8, so the connection is closed rather than corrupt text",
                    crate::error::Escaped(enc)
                )))
            }
        }
    }

    pub(super) async fn read_message(&mut self) -> Result<BackendMessage> {
        loop {
            if let Some(m) = self.decode_buffered()? {
                return Ok(m);
            }
            self.read_more().await?;
        }
    }

    /// The next message already in the read buffer, if a whole one is there; what is not
    /// part of an answer (ParameterStatus, NotificationResponse) is taken in on the way.
    #[inline]
    pub(super) fn decode_buffered(&mut self) -> Result<Option<BackendMessage>> {
        loop {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(BackendMessage::ParameterStatus { name, value })) => {
                    // At startup, after SET, or after a configuration reload.
                    self.note_parameter(name, value);
                }
                Ok(Some(BackendMessage::NotificationResponse {
                    process_id,
                    channel,
                    payload,
                })) => {
                    // Kept for next_notification, whatever the query under way.
                    self.push_notification(process_id, channel, payload);
                }
                Ok(m) => return Ok(m),
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }

    /// Reads what the server sent next into the read buffer (at least one byte).
    pub(super) async fn read_more(&mut self) -> Result<()> {
        let wanted = self.decoder.wanted(&self.read_buf).unwrap_or(READ_CHUNK);
        self.read_buf.reserve(wanted.clamp(READ_CHUNK, 1024 * 1024));
        match self.stream.read_buf(&mut self.read_buf).await {
            Ok(0) => {
                self.broken = true;
                Err(if self.read_buf.is_empty() {
                    Error::closed("the server closed the connection")
                } else {
                    Error::closed("the server closed the connection in the middle of a message")
                })
            }
            Ok(_) => {
                if self.read_buf.len() > SHRINK_ABOVE {
                    self.big_buffers = true;
                }
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(Error::io(e))
            }
        }
    }
}

/// The first bytes of what a server sent, printable, for an error message.
pub(super) fn preview(buf: &[u8]) -> String {
    if buf.is_empty() {
        return "nothing".to_string();
    }
    let shown: String = buf
        .iter()
        .take(24)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    format!("`{shown}`")
}
