//! COPY both ways, as a logical replication stream runs it: `START_REPLICATION` answered
//! by CopyBothResponse, then the server's CopyData (WAL data, keepalives) and ours (status
//! updates) cross until either side ends the copy.

use super::*;
use bytes::Bytes;

use crate::protocol::copy::{write_copy_data, write_copy_done};

/// What the server sent next during a COPY both ways.
#[derive(Debug)]
pub(crate) enum CopyBothIn {
    /// A CopyData's payload.
    Data(Bytes),
    /// The server ended the copy (CopyDone, or the command's end).
    End,
}

impl Connection {
    /// Sends `sql` as a simple query and reads up to its CopyBothResponse; any other answer
    /// is read to its end and reported.
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<()> {
        self.finish_pending().await?;
        crate::protocol::SimpleQuery::start(sql, &mut self.write_buf)?;
        self.owe_ready(false);
        self.in_flight = true;
        self.flush().await?;
        let mut error = None;
        loop {
            match self.next_message().await? {
                BackendMessage::CopyBothResponse if error.is_none() => return Ok(()),
                BackendMessage::ErrorResponse(e) => {
                    error.get_or_insert(e);
                }
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::ReadyForQuery(_) => {
                    self.in_flight = false;
                    return Err(match error {
                        Some(e) => Error::db_boxed(e),
                        None => Error::protocol(
                            "the server answered START_REPLICATION without a CopyBothResponse",
                        ),
                    });
                }
                BackendMessage::CopyInResponse | BackendMessage::CopyOutResponse => {
                    self.broken = true;
                    return Err(Error::protocol(
                        "the server answered START_REPLICATION with another kind of COPY",
                    ));
                }
                _ => {}
            }
        }
    }

    /// The server's next CopyData payload, or the end of the copy. Cancel-safe: what was
    /// read stays buffered for the next call.
    pub(crate) async fn copy_both_read(&mut self) -> Result<CopyBothIn> {
        loop {
            match self.next_message().await? {
                BackendMessage::CopyData(d) => return Ok(CopyBothIn::Data(d)),
                BackendMessage::CopyDone => return Ok(CopyBothIn::End),
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::ErrorResponse(e) => {
                    // The walsender failed: the rest of the answer is its end.
                    self.broken = true;
                    return Err(Error::db_boxed(e));
                }
                BackendMessage::CommandComplete(_) => return Ok(CopyBothIn::End),
                other => {
                    self.broken = true;
                    return Err(Error::protocol(format!(
                        "unexpected {} during a replication stream",
                        other.name()
                    )));
                }
            }
        }
    }

    /// Sends one CopyData with `payload` (a status update).
    pub(crate) async fn copy_both_write(&mut self, payload: &[u8]) -> Result<()> {
        write_copy_data(payload, &mut self.write_buf)?;
        self.flush().await
    }

    /// Ends the copy from our side: CopyDone, then the server's end of it is read up to
    /// ReadyForQuery (the connection can run commands again).
    pub(crate) async fn copy_both_finish(&mut self) -> Result<()> {
        write_copy_done(&mut self.write_buf);
        self.flush().await?;
        let mut error = None;
        loop {
            match self.next_message().await? {
                BackendMessage::ReadyForQuery(_) => {
                    self.in_flight = false;
                    return match error {
                        Some(e) => Err(Error::db_boxed(e)),
                        None => Ok(()),
                    };
                }
                BackendMessage::ErrorResponse(e) => {
                    error.get_or_insert(e);
                }
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                // The server's last WAL data and its CopyDone, CommandComplete.
                _ => {}
            }
        }
    }
}
