//! The crate's one error type, and the server's own errors as [`DbError`].
//!
//! [`Error`] is opaque: what went wrong is asked through predicates (`is_io()`, `is_db()`,
//! `is_timeout()`, ...) and [`Error::kind`]. `Display` prints this level only; the cause (an
//! `io::Error`, the last connect error behind a pool timeout) is reached through
//! `source()`, so error reporters do not repeat themselves. A server error prints the
//! server's words in full, `ERROR 42P01: relation "x" does not exist`, since that is what
//! `{}` is used for; its fields are in [`Error::as_db_error`].

pub(crate) use crate::protocol::Escaped;
pub use crate::protocol::{sqlstate, DbError, ErrorPosition};

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// One line for an error and its causes, `a: b: c`. [`Error`]'s `Display` prints its own
/// level only (the cause is its `source()`); this is the whole story, for logs and
/// messages to people.
///
/// A level whose text the level above already shows (a conversion error prints its cause,
/// as tokio-postgres's does, and also gives it as its `source()`) is not repeated.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut above = s.clone();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !above.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        above = text;
        cur = c.source();
    }
    s
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration value (URL, key=value string, environment variable) is malformed.
    Config,
    /// A socket operation failed: refused, reset, unreachable, ...
    Io,
    /// Opening a connection (socket plus authentication) took longer than the connect timeout.
    ConnectTimeout,
    /// The server answered with an ErrorResponse; see [`Error::as_db_error`].
    Db,
    /// The server sent bytes that are not valid protocol here; the connection is unusable.
    Protocol,
    /// Authentication could not proceed: an unsupported method, a missing password, or a
    /// server signature that did not verify.
    Authentication,
    /// The connection was closed (by the server, or earlier by an error) and cannot be used.
    Closed,
    /// A COPY was run through a method that does not serve it (`query`, `simple_query`,
    /// ...): it was aborted and the connection stays usable; `copy_in` and `copy_out` run
    /// COPY.
    CopyUnsupported,
    /// A query ran past the command timeout and was abandoned; a CancelRequest was sent
    /// if it was still running. It may have finished first: [`Error::may_have_run`] is
    /// `Some(true)`.
    CommandTimeout,
    /// `acquire()` ran out of time; [`Error::timeout_phase`] says in which phase.
    PoolTimeout,
    /// The pool is closed or closing and hands out no more connections.
    PoolClosed,
    /// What the caller asked to send cannot be sent: a NUL byte in the text, a message
    /// over the protocol's size limit. Nothing was sent; the connection stays usable.
    InvalidInput,
    /// The session's `client_encoding` was changed away from UTF8 (wirepool reads and
    /// writes UTF-8 only); the connection is closed rather than corrupt text.
    Encoding,
    /// The server asks for a password and none is configured.
    MissingPassword,
    /// A value could not be converted between Rust and PostgreSQL: a parameter of the
    /// wrong type, a column read as a type it cannot be, a NULL read as a non-`Option`.
    Conversion,
    /// `query_one` found no row or several, `query_opt` several.
    RowCount,
    /// TLS could not be set up: the server does not offer it where it is required, the
    /// handshake failed, or the certificate did not verify.
    Tls,
    /// The server is not of the kind `target_session_attrs` asks for (a standby where a
    /// primary is wanted, say); it may become one (a failover), so this is transient.
    ServerMismatch,
    /// None of several hosts could be used; the detail lists each and why, the source is
    /// the last one's error.
    AllHostsFailed,
    /// `commit()` of a transaction that had failed: the server rolled it back instead (its
    /// answer to COMMIT was ROLLBACK). Nothing of it was committed.
    TransactionRolledBack,
}

/// The phase of `acquire()` in which the acquire timeout ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting in the queue for a connection that another caller holds.
    Wait,
    /// Waiting for a new connection to be opened (the database may be slow or down).
    Connect,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Wait => "waiting for a connection to be returned",
            TimeoutPhase::Connect => "waiting for a new connection to be opened",
        })
    }
}

/// An error from wirepool: a connection, the protocol, the server or the pool.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    detail: Option<String>,
    phase: Option<TimeoutPhase>,
    waited: Option<Duration>,
    source: Option<BoxError>,
    /// For `AllHostsFailed`: whether any host's failure may pass.
    transient: bool,
    /// For a statement of the pool's shared path whose connection was lost: whether it was
    /// sent (and may have run) or not.
    sent: Option<bool>,
    /// For a statement of a batch: its place in the batch.
    batch_index: Option<usize>,
    /// For a conversion error reading a column: its 0-based index.
    column: Option<usize>,
}

impl Error {
    fn new(kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            kind,
            detail: None,
            phase: None,
            waited: None,
            source: None,
            transient: false,
            sent: None,
            batch_index: None,
            column: None,
        }))
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    pub(crate) fn config(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config).with_detail(detail)
    }

    pub(crate) fn io(e: io::Error) -> Self {
        Error::new(ErrorKind::Io).with_source(e)
    }

    pub(crate) fn io_context(context: impl Into<String>, e: io::Error) -> Self {
        Error::new(ErrorKind::Io)
            .with_detail(context)
            .with_source(e)
    }

    pub(crate) fn connect_timeout(after: Duration) -> Self {
        let mut e = Error::new(ErrorKind::ConnectTimeout);
        e.0.waited = Some(after);
        e
    }

    pub(crate) fn db(e: DbError) -> Self {
        Error::new(ErrorKind::Db).with_source(e)
    }

    /// As [`Error::db`], for an error already boxed (as it came off the wire).
    pub(crate) fn db_boxed(e: Box<DbError>) -> Self {
        let source: BoxError = e;
        Error::new(ErrorKind::Db).with_source(source)
    }

    pub(crate) fn protocol(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Protocol).with_detail(detail)
    }

    pub(crate) fn auth(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Authentication).with_detail(detail)
    }

    /// The password provider failed: the attempt ends before the startup message.
    pub(crate) fn password_provider(e: BoxError) -> Self {
        Error::new(ErrorKind::Authentication)
            .with_detail("the password provider failed")
            .with_source(e)
    }

    pub(crate) fn closed(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Closed).with_detail(detail)
    }

    pub(crate) fn copy_unsupported() -> Self {
        Error::new(ErrorKind::CopyUnsupported)
    }

    /// A command timeout: the statement was abandoned, and cancelled if it was still
    /// running, but it may have finished (committed) before the cancel reached it, so it
    /// may have run.
    pub(crate) fn command_timeout(after: Duration) -> Self {
        let mut e = Error::new(ErrorKind::CommandTimeout);
        e.0.waited = Some(after);
        e.0.sent = Some(true);
        e.with_detail("abandoned, and cancelled if it was still running; it may have run")
    }

    pub(crate) fn pool_timeout(phase: TimeoutPhase, waited: Duration, last: Option<Error>) -> Self {
        let mut e = Error::new(ErrorKind::PoolTimeout);
        e.0.phase = Some(phase);
        e.0.waited = Some(waited);
        if let Some(last) = last {
            e.0.source = Some(Box::new(last));
        }
        e
    }

    pub(crate) fn pool_closed() -> Self {
        Error::new(ErrorKind::PoolClosed)
    }

    pub(crate) fn invalid_input(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput).with_detail(detail)
    }

    pub(crate) fn encoding(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Encoding).with_detail(detail)
    }

    pub(crate) fn conversion(detail: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Conversion)
            .with_detail(detail)
            .with_source(source)
    }

    /// Column `idx` could not be read: `error deserializing column {idx}: {cause}`, as
    /// tokio-postgres says it, then `({about})` (the column's name, the Rust type).
    pub(crate) fn from_sql(
        idx: usize,
        about: impl Into<String>,
        cause: impl Into<BoxError>,
    ) -> Self {
        let mut e = Error::conversion(about, cause);
        e.0.column = Some(idx);
        e
    }

    pub(crate) fn conversion_msg(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conversion).with_detail(detail)
    }

    pub(crate) fn server_mismatch(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::ServerMismatch).with_detail(detail)
    }

    /// Every host failed: `failures` lists each (`host:port`, why), in the order tried.
    pub(crate) fn all_hosts_failed(mut failures: Vec<(String, Error)>) -> Self {
        let detail = failures
            .iter()
            .map(|(host, e)| format!("{host}: {}", chain(e)))
            .collect::<Vec<_>>()
            .join("; ");
        let transient = failures.iter().any(|(_, e)| e.is_transient());
        let mut e = Error::new(ErrorKind::AllHostsFailed).with_detail(detail);
        e.0.transient = transient;
        if let Some((_, last)) = failures.pop() {
            e.0.source = Some(Box::new(last));
        }
        e
    }

    pub(crate) fn tls(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Tls).with_detail(detail)
    }

    pub(crate) fn rolled_back() -> Self {
        Error::new(ErrorKind::TransactionRolledBack)
    }

    /// A statement that ran inside a transaction the pool then rolled back.
    pub(crate) fn rolled_back_because(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::TransactionRolledBack).with_detail(detail)
    }

    pub(crate) fn row_count(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::RowCount).with_detail(detail)
    }

    pub(crate) fn missing_password(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::MissingPassword).with_detail(detail)
    }

    /// A copy of this error for handing to several waiters: kind, detail and phase are
    /// kept; a source that is itself an [`Error`] or a [`DbError`] is copied, any other
    /// source is kept as its message.
    pub(crate) fn duplicate(&self) -> Error {
        let source: Option<BoxError> = self.0.source.as_ref().map(|s| -> BoxError {
            if let Some(e) = s.downcast_ref::<Error>() {
                Box::new(e.duplicate())
            } else if let Some(db) = s.downcast_ref::<DbError>() {
                Box::new(db.clone())
            } else if let Some(io) = s.downcast_ref::<io::Error>() {
                Box::new(io::Error::new(io.kind(), io.to_string()))
            } else {
                s.to_string().into()
            }
        });
        Error(Box::new(Inner {
            kind: self.0.kind,
            detail: self.0.detail.clone(),
            phase: self.0.phase,
            waited: self.0.waited,
            source,
            transient: self.0.transient,
            sent: self.0.sent,
            batch_index: self.0.batch_index,
            column: self.0.column,
        }))
    }

    /// The connection of a statement of the pool's shared path (`pool.query`, ...) was lost
    /// before its answer: marks whether the statement had been sent.
    pub(crate) fn with_sent(mut self, sent: bool) -> Self {
        self.0.sent = Some(sent);
        self
    }

    /// The statement of a batch this error is about: its index in the batch (0 for the
    /// first statement added; for [`Connection::execute_many`](crate::Connection::execute_many),
    /// the index of the row). `None` for an error not about one statement of a batch.
    pub fn batch_index(&self) -> Option<usize> {
        self.0.batch_index
    }

    pub(crate) fn with_batch_index(mut self, i: usize) -> Self {
        self.0.batch_index = Some(i);
        self
    }

    /// For a statement run through the pool's shared path (`pool.query`, `query_one`,
    /// `query_opt`, `execute`) whose connection was lost or broken before its answer:
    /// `Some(true)` if it had been sent, so it may have run (an INSERT may be there, or
    /// not: look before trying again); `Some(false)` if it was never sent, so it did not run
    /// and can be retried as it is. The same for a batch as a whole (`pool.batch()`, and on
    /// a connection `batch()`, `execute_many`): `Some(true)` once the Sync that commits it
    /// was written (for an independent batch, the first statement's), `Some(false)` before
    /// (the server rolls back what it did not see committed). The same for a transaction's
    /// [`commit`](crate::Transaction::commit): `Some(true)` once COMMIT was queued,
    /// `Some(false)` before. A FATAL error from the server counts as a lost connection
    /// here: the server may send it after the commit, before the answer ends (a backend
    /// terminated as it commits).
    ///
    /// A command timeout ([`ErrorKind::CommandTimeout`], on any path) is `Some(true)`: the
    /// statement may have finished before the cancel reached it. So is the error of an
    /// atomic batch on a connection one of whose statements committed before another
    /// failed (a `COMMIT` in the batch).
    ///
    /// `None` for every other error, including the server's errors that end a statement
    /// (an ERROR: the statement ran and failed, and nothing of it stays). For a single
    /// statement on a checked-out connection, a lost connection or a FATAL error is `None`
    /// too: whether it ran is not tracked there (only a batch's and a COMMIT's are). Nothing
    /// is ever resent by itself.
    pub fn may_have_run(&self) -> Option<bool> {
        self.0.sent
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// True for a malformed configuration value.
    pub fn is_config(&self) -> bool {
        self.0.kind == ErrorKind::Config
    }

    /// True for a socket-level failure (refused, reset, ...); the `io::Error` is the source.
    pub fn is_io(&self) -> bool {
        self.0.kind == ErrorKind::Io
    }

    /// True when the server answered with an ErrorResponse.
    pub fn is_db(&self) -> bool {
        self.0.kind == ErrorKind::Db
    }

    /// True for a protocol violation by the server.
    pub fn is_protocol(&self) -> bool {
        self.0.kind == ErrorKind::Protocol
    }

    /// True when authentication could not proceed on our side (unsupported method, ...).
    /// A wrong password is a [`DbError`] with SQLSTATE 28P01, not this.
    pub fn is_authentication(&self) -> bool {
        self.0.kind == ErrorKind::Authentication
    }

    /// True when the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.0.kind == ErrorKind::Closed
    }

    /// True for any timeout: connect, command, or pool acquire.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::ConnectTimeout | ErrorKind::CommandTimeout | ErrorKind::PoolTimeout
        )
    }

    /// True when the pool is closed.
    pub fn is_pool_closed(&self) -> bool {
        self.0.kind == ErrorKind::PoolClosed
    }

    /// For a pool timeout: the phase that ran out.
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        self.0.phase
    }

    /// The server's error, when this is (or was caused by) an ErrorResponse.
    pub fn as_db_error(&self) -> Option<&DbError> {
        let mut cur = Some(self);
        while let Some(e) = cur {
            let source = e.0.source.as_deref();
            if let Some(db) = source.and_then(|s| s.downcast_ref::<DbError>()) {
                return Some(db);
            }
            cur = source.and_then(|s| s.downcast_ref::<Error>());
        }
        None
    }

    /// The SQLSTATE code of the server's error, if any.
    pub fn code(&self) -> Option<&str> {
        self.as_db_error().map(DbError::code)
    }

    /// True if the error means the database could not be reached or refused us for a
    /// reason that may pass: socket errors, timeouts, SQLSTATE 57P01/57P02/57P03 (shutdown,
    /// starting up) and 53300 (too many connections). Authentication failures are not.
    pub fn is_transient(&self) -> bool {
        match self.0.kind {
            ErrorKind::Io
            | ErrorKind::ConnectTimeout
            | ErrorKind::Closed
            | ErrorKind::ServerMismatch => true,
            ErrorKind::AllHostsFailed => self.0.transient,
            ErrorKind::Db => matches!(
                self.code(),
                Some(
                    sqlstate::ADMIN_SHUTDOWN
                        | sqlstate::CRASH_SHUTDOWN
                        | sqlstate::CANNOT_CONNECT_NOW
                        | sqlstate::TOO_MANY_CONNECTIONS
                        | sqlstate::CONNECTION_FAILURE
                        | sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
                        | sqlstate::CONNECTION_EXCEPTION
                )
            ),
            _ => false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind);
        if let Some(detail) = &self.0.detail {
            d.field("detail", detail);
        }
        if let Some(phase) = &self.0.phase {
            d.field("phase", phase);
        }
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// A protocol-layer failure keeps its kind and its words; a server error is the crate's
/// [`ErrorKind::Db`].
impl From<crate::protocol::ProtocolError> for Error {
    fn from(e: crate::protocol::ProtocolError) -> Error {
        use crate::protocol::ProtocolError as P;
        match e {
            P::Violation(d) => Error::protocol(d),
            P::Server(db) => Error::db_boxed(db),
            P::Authentication(d) => Error::auth(d),
            P::MissingPassword(d) => Error::missing_password(d),
            P::InvalidInput(d) => Error::invalid_input(d),
            P::Conversion(d, Some(source)) => Error::conversion(d, source),
            P::Conversion(d, None) => Error::conversion_msg(d),
            P::Tls(d) => Error::tls(d),
            P::CopyRefused => Error::copy_unsupported(),
            P::Setting(d) => Error::config(d),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (ErrorKind::Conversion, Some(idx)) = (self.0.kind, self.0.column) {
            // tokio-postgres's words, which applications match on.
            write!(f, "error deserializing column {idx}")?;
            if let Some(cause) = &self.0.source {
                write!(f, ": {cause}")?;
            }
            if let Some(about) = &self.0.detail {
                write!(f, " ({about})")?;
            }
            return Ok(());
        }
        match self.0.kind {
            ErrorKind::Config => f.write_str("invalid configuration")?,
            ErrorKind::Io => f.write_str("i/o error")?,
            ErrorKind::ConnectTimeout => f.write_str("timed out connecting to the database")?,
            // The server's own words: `ERROR 42P01: relation "x" does not exist`.
            ErrorKind::Db => match self.as_db_error() {
                Some(db) => write!(f, "{db}")?,
                None => f.write_str("database error")?,
            },
            ErrorKind::Protocol => f.write_str("protocol error")?,
            ErrorKind::Authentication => f.write_str("authentication failed")?,
            ErrorKind::Closed => f.write_str("connection closed")?,
            ErrorKind::CopyUnsupported => f.write_str(
                "COPY runs through copy_in or copy_out, not this method; the copy was aborted",
            )?,
            ErrorKind::CommandTimeout => f.write_str("query timed out")?,
            ErrorKind::PoolTimeout => f.write_str("connection acquisition timeout")?,
            ErrorKind::PoolClosed => f.write_str("pool closed")?,
            ErrorKind::InvalidInput => f.write_str("invalid input")?,
            ErrorKind::Encoding => f.write_str("unsupported client encoding")?,
            ErrorKind::MissingPassword => f.write_str("no password configured")?,
            ErrorKind::Conversion => f.write_str("type conversion failed")?,
            ErrorKind::RowCount => f.write_str("unexpected number of rows")?,
            ErrorKind::Tls => f.write_str("TLS error")?,
            ErrorKind::ServerMismatch => f.write_str("server not used")?,
            ErrorKind::AllHostsFailed => f.write_str("no host could be used")?,
            ErrorKind::TransactionRolledBack => {
                f.write_str("the transaction had failed and was rolled back, not committed")?
            }
        }
        if let Some(phase) = self.0.phase {
            write!(f, " {phase}")?;
        }
        if let Some(waited) = self.0.waited {
            write!(f, " after {} ms", waited.as_millis())?;
        }
        if let Some(detail) = &self.0.detail {
            write!(f, ": {detail}")?;
        }
        // A conversion's cause is what went wrong (`value too large to decode`): printed
        // here, as tokio-postgres prints it, and also its `source()` (`chain` does not
        // repeat it).
        if self.0.kind == ErrorKind::Conversion {
            if let Some(cause) = &self.0.source {
                write!(f, ": {cause}")?;
            }
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        // A server error prints itself in full (see Display), reached through
        // `as_db_error`, and is not repeated as a source. A conversion's cause (a
        // `WrongType`, the FromSql error) is its source, as in tokio-postgres.
        if self.0.kind == ErrorKind::Db {
            return None;
        }
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_and_one_pointer_wide() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_does_not_repeat_the_source() {
        let e = Error::io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "refused by peer",
        ));
        assert_eq!(e.to_string(), "i/o error");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("refused by peer")
        );
        let t = Error::pool_timeout(TimeoutPhase::Connect, Duration::from_millis(250), Some(e));
        assert_eq!(
            t.to_string(),
            "connection acquisition timeout waiting for a new connection to be opened after 250 ms"
        );
        assert_eq!(
            t.source().map(|s| s.to_string()).as_deref(),
            Some("i/o error")
        );
        assert!(t.is_timeout());
        assert_eq!(t.timeout_phase(), Some(TimeoutPhase::Connect));
    }

    #[test]
    fn db_error_fields_round_trip_and_are_found_through_the_chain() {
        let fields: Vec<(u8, &[u8])> = vec![
            (b'S', b"FATAL"),
            (b'V', b"FATAL"),
            (b'C', b"28P01"),
            (b'M', b"password authentication failed for user \"x\""),
            (b'H', b"check it"),
            (b'P', b"12"),
            (b'L', b"330"),
            (b'Z', b"unknown field, ignored"),
            (b'D', b"\xff invalid utf8"),
        ];
        let db = DbError::from_fields(fields);
        assert_eq!(db.code(), "28P01");
        assert!(db.is_fatal());
        assert_eq!(db.position(), Some(&ErrorPosition::Original(12)));
        assert_eq!(db.line(), Some(330));
        assert_eq!(db.detail(), Some("\u{fffd} invalid utf8"));
        let again = DbError::from_fields(db.to_fields().iter().map(|(t, v)| (*t, v.as_bytes())));
        assert_eq!(again, db);
        let e = Error::pool_timeout(TimeoutPhase::Wait, Duration::ZERO, Some(Error::db(db)));
        assert_eq!(e.code(), Some("28P01"));
        assert!(!e.duplicate().is_transient());
        assert_eq!(e.duplicate().code(), Some("28P01"));
    }
}
