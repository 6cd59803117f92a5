//! One PostgreSQL connection over TCP or a Unix socket.

mod cancel;
mod stream;

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

pub use cancel::CancelToken;
use stream::Stream;

use crate::config::{ConnectConfig, Host};
use crate::error::{DbError, Error, Result};
use crate::protocol::{
    AuthMethod, BackendMessage, FrameDecoder, QueryEvent, ResultSet, Row, SimpleQuery, Startup,
    StartupParams, StartupStatus, TransactionStatus,
};

/// How much to read at a time when the frame in progress does not say more.
const READ_CHUNK: usize = 8 * 1024;

/// An open, authenticated session with the server.
///
/// A `Connection` is used by one task at a time (`&mut self`). Its futures are cancel-safe
/// in this sense: if a `simple_query` future is dropped before the answer is complete, the
/// connection remembers it ([`Connection::is_busy`]) and reads the rest of the answer before
/// the next query; [`Connection::cancel_token`] can be used to cut a long query short.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    decoder: FrameDecoder,
    transaction_status: TransactionStatus,
    busy: bool,
    broken: bool,
    auth_method: AuthMethod,
    parameters: HashMap<String, String>,
    cancel: CancelToken,
}

impl Connection {
    /// Opens a connection: socket, startup, authentication, up to the first ReadyForQuery.
    /// Hosts are tried in order; the whole attempt is bounded by the connect timeout.
    ///
    /// # Errors
    ///
    /// An I/O error (refused, unreachable), a connect timeout, a [`DbError`] from the server
    /// (wrong password 28P01, unknown role 28000, unknown database 3D000, ...), an
    /// authentication error (unsupported method) or a protocol error.
    pub async fn connect(cfg: &ConnectConfig) -> Result<Connection> {
        match cfg.connect_timeout() {
            Some(t) => tokio::time::timeout(t, Self::connect_any(cfg))
                .await
                .map_err(|_| Error::connect_timeout(t))?,
            None => Self::connect_any(cfg).await,
        }
    }

    async fn connect_any(cfg: &ConnectConfig) -> Result<Connection> {
        let mut last = None;
        for host in cfg.hosts() {
            match Self::connect_host(cfg, host).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::config("no host to connect to")))
    }

    async fn connect_host(cfg: &ConnectConfig, host: &Host) -> Result<Connection> {
        let stream = Stream::connect(host, cfg.port())
            .await
            .map_err(|e| Error::io_context(format!("connecting to {host}:{}", cfg.port()), e))?;
        let mut write_buf = BytesMut::with_capacity(1024);
        let mut startup = Startup::start(
            &StartupParams {
                user: cfg.user(),
                database: cfg.dbname(),
                password: cfg.password().map(str::as_bytes),
                application_name: cfg.application_name(),
                options: cfg.options(),
            },
            &mut write_buf,
        )?;
        let mut conn = Connection {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf,
            decoder: FrameDecoder::new(cfg.max_message_size()),
            transaction_status: TransactionStatus::Idle,
            busy: false,
            broken: false,
            auth_method: AuthMethod::Trust,
            parameters: HashMap::new(),
            cancel: CancelToken {
                host: host.clone(),
                port: cfg.port(),
                process_id: 0,
                secret_key: bytes::Bytes::new(),
                timeout: cfg.connect_timeout().unwrap_or(Duration::from_secs(10)),
            },
        };
        conn.flush().await?;
        loop {
            let msg = conn.read_message().await?;
            match startup.handle(msg, &mut conn.write_buf) {
                Ok(StartupStatus::Continue) => conn.flush().await?,
                Ok(StartupStatus::Ready(info)) => {
                    for n in &info.notices {
                        log_notice(n);
                    }
                    conn.transaction_status = info.transaction_status;
                    conn.auth_method = info.auth_method;
                    conn.parameters.extend(info.parameters);
                    conn.cancel.process_id = info.process_id;
                    conn.cancel.secret_key = info.secret_key;
                    return Ok(conn);
                }
                Err(e) => {
                    conn.broken = true;
                    return Err(e);
                }
            }
        }
    }

    /// Runs `sql` with the simple query protocol and returns the rows of all its statements.
    ///
    /// # Errors
    ///
    /// The server's error ([`DbError`]; the rest of a multi-statement string is not run and
    /// the connection stays usable), `CopyUnsupported` for COPY (the connection stays
    /// usable), or an I/O, closed or protocol error (the connection is then broken).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-way leaves the answer unread; the next call reads it first.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>> {
        let sets = self.simple_query_sets(sql).await?;
        Ok(sets.into_iter().flat_map(ResultSet::into_rows).collect())
    }

    /// Like [`Connection::simple_query`], with one [`ResultSet`] per statement, command tags
    /// included.
    ///
    /// # Errors
    ///
    /// As for [`Connection::simple_query`].
    pub async fn simple_query_sets(&mut self, sql: &str) -> Result<Vec<ResultSet>> {
        self.finish_pending().await?;
        let mut query = SimpleQuery::start(sql, &mut self.write_buf)?;
        self.busy = true;
        self.flush().await?;
        loop {
            let msg = match self.read_message().await {
                Ok(m) => m,
                Err(e) => {
                    // A FATAL error is followed by the server closing the socket: report the
                    // server's reason rather than the end of the stream.
                    if let Some(db) = query.server_error().filter(|d| d.is_fatal()) {
                        return Err(Error::db(db.clone()));
                    }
                    return Err(e);
                }
            };
            if let BackendMessage::ErrorResponse(e) = &msg {
                if e.is_fatal() {
                    self.broken = true;
                }
            }
            match query.handle(msg, &mut self.write_buf) {
                Ok(QueryEvent::Continue) => {
                    if !self.write_buf.is_empty() {
                        self.flush().await?;
                    }
                }
                Ok(QueryEvent::Notice(n)) => log_notice(&n),
                Ok(QueryEvent::Done(status)) => {
                    self.transaction_status = status;
                    self.busy = false;
                    return query.finish();
                }
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
    }

    /// Reads and discards the rest of an answer left unread by a dropped query future, up
    /// to its ReadyForQuery. Does nothing if no answer is pending.
    ///
    /// # Errors
    ///
    /// An I/O, closed or protocol error; the connection is broken then.
    pub async fn finish_pending(&mut self) -> Result<()> {
        if self.broken {
            return Err(Error::closed("the connection is broken"));
        }
        while self.busy {
            // The Query may not have been fully written when its future was dropped; the
            // buffer still holds the rest then.
            if !self.write_buf.is_empty() {
                self.flush().await?;
            }
            match self.read_message().await? {
                BackendMessage::ReadyForQuery(status) => {
                    self.transaction_status = status;
                    self.busy = false;
                }
                BackendMessage::CopyInResponse => {
                    frontend::copy_fail("COPY is not supported by wirepool", &mut self.write_buf)
                        .map_err(Error::io)?;
                    self.flush().await?;
                }
                BackendMessage::NoticeResponse(n) => log_notice(&n),
                BackendMessage::ErrorResponse(e) if e.is_fatal() => {
                    self.broken = true;
                    return Err(Error::db(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends Terminate and closes the socket.
    ///
    /// # Errors
    ///
    /// An I/O error if the goodbye could not be written (the socket is closed regardless).
    pub async fn close(mut self) -> Result<()> {
        frontend::terminate(&mut self.write_buf);
        let r = self.flush().await;
        let _ = self.stream.shutdown().await;
        r
    }

    /// A token that cancels this connection's running query from another task.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Sends a CancelRequest for this connection's running query (if any).
    ///
    /// # Errors
    ///
    /// As [`CancelToken::cancel`].
    pub async fn cancel(&self) -> Result<()> {
        self.cancel.cancel().await
    }

    /// For a connection at rest: true if the server has said anything since the last
    /// exchange (a notice, a FATAL before it closed the session, end of stream) or the socket
    /// failed. Does not wait. What arrived stays buffered for the next read, so nothing is
    /// lost; a pool uses this to validate idle connections the server has given up on.
    pub fn has_unsolicited_input(&mut self) -> bool {
        if self.busy || self.broken {
            return false;
        }
        let before = self.read_buf.len();
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => true, // end of stream
            Ok(_) => self.read_buf.len() > before,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => !self.read_buf.is_empty(),
            Err(_) => true,
        }
    }

    /// True once an I/O error, a protocol error or a FATAL server error has made the
    /// connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the connection unusable (e.g. a cancelled query that never ended).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// True while a query's answer has not been read to the end (its future was dropped).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// The transaction status reported by the last ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.transaction_status
    }

    /// How the server authenticated this connection.
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
    }

    /// The backend's process id.
    pub fn process_id(&self) -> i32 {
        self.cancel.process_id
    }

    /// A run-time parameter the server reported (`server_version`, `TimeZone`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    async fn flush(&mut self) -> Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        match self.stream.write_all(&self.write_buf).await {
            Ok(()) => {
                self.write_buf.clear();
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(Error::io(e))
            }
        }
    }

    async fn read_message(&mut self) -> Result<BackendMessage> {
        loop {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(BackendMessage::ParameterStatus { name, value })) => {
                    // At startup, after SET, or after a configuration reload.
                    self.parameters.insert(name, value);
                    continue;
                }
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
            let wanted = self.decoder.wanted(&self.read_buf).unwrap_or(READ_CHUNK);
            self.read_buf.reserve(wanted.clamp(READ_CHUNK, 1024 * 1024));
            match self.stream.read_buf(&mut self.read_buf).await {
                Ok(0) => {
                    self.broken = true;
                    return Err(if self.read_buf.is_empty() {
                        Error::closed("the server closed the connection")
                    } else {
                        Error::closed("the server closed the connection in the middle of a message")
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(Error::io(e));
                }
            }
        }
    }
}

fn log_notice(n: &DbError) {
    tracing::info!(
        target: "wirepool::notice",
        severity = n.severity(),
        code = n.code(),
        "server notice: {}",
        n.message()
    );
}
