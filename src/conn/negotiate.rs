//! Opening the socket and negotiating TLS, before the startup message.
//!
//! With `sslnegotiation=postgres` (the default) the client sends SSLRequest and reads
//! exactly one byte: `S` starts the handshake, `N` goes on in plain text (or fails, when
//! TLS is required). Bytes the server sent with that answer are never read as plain text:
//! they reach the TLS handshake, which refuses them (CVE-2021-23222). With
//! `sslnegotiation=direct` the handshake starts at once, with ALPN `postgresql`. An `E`
//! (an ErrorResponse where the answer belongs) ends the attempt under every sslmode: its
//! text is not read and there is no plain-text retry (libpq 17.2, CVE-2024-10977).

use crate::config::{ConnectConfig, Host};
use crate::error::{Error, Result};

use super::stream::Stream;
use super::tls_info::TlsInfo;

/// What is asked of the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// No TLS.
    Plain,
    /// TLS if the server agrees, plain if it answers `N`.
    TryTls,
    /// TLS or an error.
    Tls,
}

/// An open socket, secured or not.
pub(crate) struct Opened {
    pub(crate) stream: Stream,
    pub(crate) info: Option<TlsInfo>,
    /// The `tls-server-end-point` channel-binding data.
    pub(crate) end_point: Option<Vec<u8>>,
    /// The connector, for the CancelRequest's own TLS session.
    #[cfg(feature = "tls")]
    pub(crate) connector: Option<super::tls::Connector>,
}

impl Opened {
    fn plain(stream: Stream) -> Opened {
        Opened {
            stream,
            info: None,
            end_point: None,
            #[cfg(feature = "tls")]
            connector: None,
        }
    }
}

/// Connects to host `i` and negotiates TLS as `want` says.
pub(crate) async fn open(
    cfg: &ConnectConfig,
    i: usize,
    host: &Host,
    port: u16,
    want: Want,
) -> Result<Opened> {
    let stream = Stream::connect(host, cfg.hostaddr(i), port, cfg.tcp())
        .await
        .map_err(|e| Error::io_context(format!("connecting to {host}:{port}"), e))?;
    if want == Want::Plain {
        return Ok(Opened::plain(stream));
    }
    if let Host::Unix(_) = host {
        // As libpq: no TLS over a Unix-domain socket.
        return match want {
            Want::Tls => Err(Error::tls(format!(
                "sslmode={} requires TLS, which is not used over Unix-domain sockets",
                cfg.tls().mode.as_str()
            ))),
            _ => Ok(Opened::plain(stream)),
        };
    }
    secure(cfg, host, port, want, stream).await
}

#[cfg(feature = "tls")]
async fn secure(
    cfg: &ConnectConfig,
    host: &Host,
    port: u16,
    want: Want,
    stream: Stream,
) -> Result<Opened> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::tls::Connector;
    use crate::config::SslNegotiation;
    use crate::protocol::{ssl_answer, ProtocolError, SslAnswer};

    let connector = Connector::new(cfg.tls(), host)?;
    let mut tcp = stream.into_tcp().expect("a TCP host gives a TCP stream");
    if cfg.tls().negotiation == SslNegotiation::Postgres {
        tcp.write_all(&ssl_request())
            .await
            .map_err(|e| Error::io_context("sending SSLRequest", e))?;
        // Exactly one byte: anything after it belongs to the handshake.
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::closed(format!(
                    "the server at {host}:{port} closed the connection after SSLRequest"
                ))
            } else {
                Error::io_context("reading the answer to SSLRequest", e)
            }
        })?;
        if answer[0] == b'E' {
            // As libpq (17.2 and later, CVE-2024-10977): the server has not authenticated
            // itself, so its message is neither read nor shown, and no sslmode (not
            // `prefer`, not `allow`) goes on in plain text after it.
            return Err(Error::closed(format!(
                "the server at {host}:{port} sent an error response during SSL exchange (its text is not read: the server is not authenticated yet); not retried in plain text"
            )));
        }
        let answer = match ssl_answer(answer[0]) {
            Ok(a) => a,
            Err(ProtocolError::Violation(_)) => {
                // Not a PostgreSQL server: show what it said (what has arrived, for the
                // message only; the connection is given up).
                let mut seen = answer.to_vec();
                let mut more = [0u8; 23];
                if let Ok(n) = tcp.try_read(&mut more) {
                    seen.extend_from_slice(&more[..n]);
                }
                return Err(Error::protocol(format!(
                    "the server at {host}:{port} does not speak the PostgreSQL protocol (it answered SSLRequest with {})",
                    super::preview(&seen)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if answer == SslAnswer::Plain {
            return match want {
                Want::Tls => Err(Error::tls(format!(
                    "the server at {host}:{port} does not support TLS, and sslmode={} requires it",
                    cfg.tls().mode.as_str()
                ))),
                _ => Ok(Opened::plain(Stream::Tcp(tcp))),
            };
        }
    }
    let tls = connector.handshake(tcp).await?;
    if cfg.tls().negotiation == SslNegotiation::Direct
        && tls.get_ref().1.alpn_protocol() != Some(b"postgresql")
    {
        return Err(Error::tls(
            "the server did not agree to ALPN `postgresql` (sslnegotiation=direct needs PostgreSQL 17 or later)",
        ));
    }
    let (info, end_point) = super::tls::session(&tls);
    Ok(Opened {
        stream: Stream::Tls(Box::new(tls)),
        info: Some(info),
        end_point,
        connector: Some(connector),
    })
}

#[cfg(not(feature = "tls"))]
async fn secure(
    cfg: &ConnectConfig,
    _host: &Host,
    _port: u16,
    want: Want,
    stream: Stream,
) -> Result<Opened> {
    // Configurations that need TLS are refused when parsed; `prefer` is plain here.
    match want {
        Want::Tls => Err(Error::config(format!(
            "sslmode={} needs TLS, and this build of wirepool has none",
            cfg.tls().mode.as_str()
        ))),
        _ => Ok(Opened::plain(stream)),
    }
}

/// The SSLRequest message: length 8, code 80877103.
#[cfg(feature = "tls")]
pub(crate) fn ssl_request() -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&8u32.to_be_bytes());
    b[4..].copy_from_slice(&80_877_103u32.to_be_bytes());
    b
}
