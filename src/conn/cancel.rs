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
    /// `hostaddr`, when the connection went to an address rather than a name.
    pub(crate) addr: Option<std::net::IpAddr>,
    pub(crate) port: u16,
    pub(crate) process_id: i32,
    pub(crate) secret_key: Bytes,
    pub(crate) timeout: Duration,
    /// The TLS connector of an encrypted connection: its CancelRequest is encrypted too.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<super::tls::Connector>,
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
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the CancelRequest's own connection; the request may or may
    /// not have reached the server. The connection it cancels for is not touched.
    pub async fn cancel(&self) -> Result<()> {
        let work = async {
            let mut stream =
                Stream::connect(&self.host, self.addr, self.port, &TcpSettings::default())
                    .await
                    .map_err(|e| Error::io_context("connecting to send CancelRequest", e))?;
            #[cfg(feature = "tls")]
            if let Some(connector) = &self.tls {
                stream = encrypted(stream, connector).await?;
            }
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

/// The same kind of channel as the connection's: SSLRequest, `S`, handshake.
#[cfg(feature = "tls")]
async fn encrypted(stream: Stream, connector: &super::tls::Connector) -> Result<Stream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = stream
        .into_tcp()
        .ok_or_else(|| Error::tls("an encrypted connection's CancelRequest needs a TCP socket"))?;
    tcp.write_all(&super::negotiate::ssl_request())
        .await
        .map_err(Error::io)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(Error::io)?;
    if crate::protocol::ssl_answer(answer[0])? != crate::protocol::SslAnswer::Tls {
        return Err(Error::tls(
            "the server refused TLS for the CancelRequest of an encrypted connection",
        ));
    }
    Ok(Stream::Tls(Box::new(connector.handshake(tcp).await?)))
}
