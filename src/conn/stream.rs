//! The socket under a connection: TCP or a Unix-domain socket.

use std::io;
#[cfg(unix)]
use std::path::Path;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use crate::config::{Host, TcpSettings};

/// What [`Stream::read_now`] found on a connection at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtRest {
    /// Nothing: the connection is as it was left.
    Nothing,
    /// Bytes, now in the buffer.
    Read,
    /// Bytes under TLS, left to its reader.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Unread,
    /// The end of the stream: the server closed the connection.
    Closed,
}

/// A connected socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `host` (at `addr` instead of resolving its name, when given).
    pub(crate) async fn connect(
        host: &Host,
        addr: Option<std::net::IpAddr>,
        port: u16,
        tcp: &TcpSettings,
    ) -> io::Result<Stream> {
        match host {
            Host::Tcp(h) => {
                let s = match addr {
                    Some(ip) => TcpStream::connect((ip, port)).await?,
                    None => TcpStream::connect((h.as_str(), port)).await?,
                };
                s.set_nodelay(true)?;
                apply_tcp_settings(&s, tcp)?;
                Ok(Stream::Tcp(s))
            }
            #[cfg(unix)]
            Host::Unix(dir) => {
                let path = socket_path(dir, port);
                Ok(Stream::Unix(UnixStream::connect(path).await?))
            }
            #[cfg(not(unix))]
            Host::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "Unix-domain sockets are not available on this platform",
            )),
        }
    }

    /// Reads what is available, at least one byte; 0 means end of stream.
    pub(crate) async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_buf(buf).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.read_buf(buf).await,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read_buf(buf).await,
        }
    }

    /// Reads what has arrived without waiting: `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is there. When the runtime has seen no input since the last read, this is
    /// one atomic load, not a system call.
    /// False when the runtime knows the socket has no input and no end of stream to
    /// report (one atomic load, no system call, no error value); true when a read may find
    /// something, and always over TLS, whose reader holds decrypted bytes of its own.
    #[inline]
    pub(crate) fn may_have_input(&self) -> bool {
        let probe = match self {
            Stream::Tcp(s) => s.try_io(tokio::io::Interest::READABLE, || Ok(())),
            #[cfg(unix)]
            Stream::Unix(s) => s.try_io(tokio::io::Interest::READABLE, || Ok(())),
            #[cfg(feature = "tls")]
            Stream::Tls(_) => return true,
        };
        probe.is_ok()
    }

    /// Reads what the kernel holds for the socket now, past the runtime's record of its
    /// readiness (a system call: the runtime learns of new input only when one of its
    /// threads next polls for events, which a busy runtime may not have done since the
    /// server closed the connection). Stops once `buf` holds `limit` bytes.
    pub(crate) fn read_now(&self, buf: &mut BytesMut, limit: usize) -> io::Result<AtRest> {
        use std::io::Read;
        let sock = match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            #[cfg(unix)]
            Stream::Unix(s) => socket2::SockRef::from(s),
            // Bytes under TLS cannot be taken past its reader: a look without taking them.
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                let mut one = [std::mem::MaybeUninit::<u8>::uninit(); 1];
                return match socket2::SockRef::from(s.get_ref().0).peek(&mut one) {
                    Ok(0) => Ok(AtRest::Closed),
                    Ok(_) => Ok(AtRest::Unread),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(AtRest::Nothing),
                    Err(e) => Err(e),
                };
            }
        };
        let mut got = false;
        let mut chunk = [0u8; 4096];
        loop {
            match (&*sock).read(&mut chunk) {
                Ok(0) => return Ok(AtRest::Closed),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    got = true;
                    if buf.len() >= limit {
                        return Ok(AtRest::Read);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if got { AtRest::Read } else { AtRest::Nothing })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.try_read_buf(buf),
            // One poll of the TLS reader: it looks at what rustls holds decrypted, then at
            // the socket's readiness (an atomic load when nothing arrived).
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                use std::pin::Pin;
                use std::task::{Context, Poll, Waker};
                use tokio::io::{AsyncRead, ReadBuf};
                let mut cx = Context::from_waker(Waker::noop());
                let mut chunk = [0u8; 4096];
                let mut rb = ReadBuf::new(&mut chunk);
                match Pin::new(&mut **s).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(rb.filled());
                        Ok(rb.filled().len())
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Writes from the front of `buf` and removes what was written. Cancel-safe: if the
    /// future is dropped, every byte that reached the socket is gone from `buf` and the
    /// rest is still there, so nothing is lost and nothing is sent twice.
    pub(crate) async fn write_from(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        while !buf.is_empty() {
            let n = match self {
                Stream::Tcp(s) => s.write(buf).await?,
                #[cfg(unix)]
                Stream::Unix(s) => s.write(buf).await?,
                #[cfg(feature = "tls")]
                Stream::Tls(s) => s.write(buf).await?,
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf.advance(n);
        }
        // rustls holds encrypted records until flushed; a dropped flush leaves them there,
        // to go out with the next one.
        #[cfg(feature = "tls")]
        if let Stream::Tls(s) = self {
            s.flush().await?;
        }
        Ok(())
    }

    /// Reads what is there into `buf`'s spare capacity, registering the task for more
    /// (the pipelined connection's reads and writes in one task, without borrowing the
    /// stream twice). `Ready(Ok(0))` at the end of the stream.
    pub(crate) fn poll_read_buf(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut BytesMut,
    ) -> std::task::Poll<io::Result<usize>> {
        use std::pin::Pin;
        use std::task::Poll;
        use tokio::io::{AsyncRead, ReadBuf};
        if buf.capacity() == buf.len() {
            buf.reserve(8 * 1024);
        }
        let spare = buf.spare_capacity_mut();
        let mut rb = ReadBuf::uninit(spare);
        let r = match self {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, &mut rb),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_read(cx, &mut rb),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, &mut rb),
        };
        match r {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                // SAFETY: `ReadBuf` reports how many bytes of the spare capacity the read
                // initialised and filled; those follow the buffer's current length.
                unsafe { buf.set_len(buf.len() + n) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes from the front of `buf` what the socket takes now (flushing a TLS session
    /// once `buf` is empty), registering the task for more. `Ready(Ok(()))` once all is
    /// written and flushed.
    pub(crate) fn poll_write_buf(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut BytesMut,
    ) -> std::task::Poll<io::Result<()>> {
        use std::pin::Pin;
        use std::task::Poll;
        use tokio::io::AsyncWrite;
        while !buf.is_empty() {
            let r = match self {
                Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                #[cfg(unix)]
                Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
                #[cfg(feature = "tls")]
                Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            };
            match r {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => buf.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        #[cfg(feature = "tls")]
        if let Stream::Tls(s) = self {
            return Pin::new(&mut **s).poll_flush(cx);
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(buf).await,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }

    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown().await,
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown().await,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.shutdown().await,
        }
    }

    /// Makes the socket's close a reset (SO_LINGER 0) rather than an orderly end: the
    /// peer's next write fails at once. A Unix socket's peer sees its writes fail anyway.
    pub(crate) fn reset_on_close(&self) {
        let tcp = match self {
            Stream::Tcp(s) => s,
            #[cfg(unix)]
            Stream::Unix(_) => return,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.get_ref().0,
        };
        let _ = socket2::SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO));
    }

    /// The TCP socket, for the TLS handshake.
    #[cfg(feature = "tls")]
    pub(crate) fn into_tcp(self) -> Option<TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            _ => None,
        }
    }
}

/// Keepalives and the user timeout, as libpq sets them: keepalives on unless turned off,
/// the system's timings unless given.
fn apply_tcp_settings(s: &TcpStream, tcp: &TcpSettings) -> io::Result<()> {
    let sock = socket2::SockRef::from(s);
    if tcp.keepalives {
        let mut ka = socket2::TcpKeepalive::new();
        if let Some(t) = tcp.keepalives_idle {
            ka = ka.with_time(t);
        }
        if let Some(t) = tcp.keepalives_interval {
            ka = ka.with_interval(t);
        }
        if let Some(n) = tcp.keepalives_count {
            ka = ka.with_retries(n);
        }
        sock.set_tcp_keepalive(&ka)?;
    } else {
        sock.set_keepalive(false)?;
    }
    // TCP_USER_TIMEOUT is Linux's; elsewhere libpq ignores the setting, and so do we.
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    if let Some(t) = tcp.tcp_user_timeout {
        sock.set_tcp_user_timeout(Some(t))?;
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn socket_path(dir: &Path, port: u16) -> std::path::PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}
