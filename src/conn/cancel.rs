//! CancelRequest: asks the server, over a new socket, to cancel a connection's running query.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::stream::Stream;
use crate::config::{Host, TcpSettings};
use crate::error::{Error, Result};

/// The request code of CancelRequest.
const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// What it takes to cancel a connection's query from elsewhere; cheap to clone, and usable
/// while the connection itself is busy.
#[derive(Clone)]
pub struct CancelToken {
    pub(crate) host: Host,
    pub(crate) port: u16,
    pub(crate) process_id: i32,
    pub(crate) secret_key: Bytes,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("process_id", &self.process_id)
            .finish_non_exhaustive()
    }
}

impl CancelToken {
    /// The backend process whose query this token cancels.
    pub fn process_id(&self) -> i32 {
        self.process_id
    }

    /// Sends the CancelRequest and waits for the server to close the socket. Success only
    /// means the request was delivered: whether a query was cancelled shows on the
    /// connection itself (SQLSTATE 57014).
    ///
    /// # Errors
    ///
    /// An I/O error if the server cannot be reached, a connect timeout if it does not answer.
    pub async fn cancel(&self) -> Result<()> {
        let work = async {
            let mut stream = Stream::connect(&self.host, self.port, &TcpSettings::default())
                .await
                .map_err(|e| Error::io_context("connecting to send CancelRequest", e))?;
            let mut buf = BytesMut::with_capacity(12 + self.secret_key.len());
            buf.put_u32(12 + self.secret_key.len() as u32);
            buf.put_u32(CANCEL_REQUEST_CODE);
            buf.put_i32(self.process_id);
            buf.extend_from_slice(&self.secret_key);
            stream.write_all(&buf).await.map_err(Error::io)?;
            // The server answers nothing and closes the socket once it has acted.
            let mut sink = BytesMut::with_capacity(16);
            loop {
                sink.clear();
                match stream.read_buf(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| Error::connect_timeout(self.timeout))?
    }
}
