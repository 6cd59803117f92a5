//! The socket under a connection: TCP or a Unix-domain socket.

use std::io;
use std::path::Path;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::config::Host;

/// A connected socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) async fn connect(host: &Host, port: u16) -> io::Result<Stream> {
        match host {
            Host::Tcp(h) => {
                let s = TcpStream::connect((h.as_str(), port)).await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Host::Unix(dir) => {
                let path = socket_path(dir, port);
                Ok(Stream::Unix(UnixStream::connect(path).await?))
            }
        }
    }

    /// Reads what is available, at least one byte; 0 means end of stream.
    pub(crate) async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_buf(buf).await,
            Stream::Unix(s) => s.read_buf(buf).await,
        }
    }

    /// Reads what has arrived without waiting: `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is there.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
        }
    }

    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf).await,
            Stream::Unix(s) => s.write_all(buf).await,
        }
    }

    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
        }
    }
}

pub(crate) fn socket_path(dir: &Path, port: u16) -> std::path::PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}
