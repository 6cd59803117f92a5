//! One PostgreSQL connection over TCP or a Unix socket: the simple query protocol
//! (`simple.rs`), the extended protocol with typed values and a statement cache
//! (`query.rs`, `cache.rs`), transactions (`transaction.rs`).

mod at_rest;
mod auth_step;
mod batch;
mod batch_answers;
mod cache;
mod cancel;
mod connect;
mod copy;
mod copy_both;
mod gss;
mod hosts;
mod io;
mod many_copy;
use io::preview;
mod negotiate;
mod notices;
mod notify;
mod pipeline;
mod portal;
mod query;
pub(crate) mod request;
mod row_stream;
mod session;
mod simple;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod tls_info;
#[cfg(feature = "tls")]
mod tls_provider;
mod trace;
mod transaction;
mod type_cache;
pub(crate) mod type_lookup;
mod wait_timer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

pub(crate) use batch::Item as BatchItem;
pub use batch::{Batch, BatchResult, RowParams};
pub(crate) use batch_answers::Answers;
pub use cache::CacheStats;
pub use cancel::CancelToken;
pub use copy::{CopyInSink, CopyOutStream};
pub(crate) use copy_both::CopyBothIn;
pub use notices::STARTUP_NOTICES;
pub(crate) use notify::check_channel;
pub(crate) use notify::quote_ident;
pub use notify::{Notification, MAX_CHANNEL_NAME, NOTIFICATION_QUEUE};
pub(crate) use pipeline::{ends_request, Assembler, Fed, Named, Outcome, PipelineNames};
pub use portal::Portal;
pub(crate) use query::{
    at_most_one_row, check_parameter_count, only_row, stale as stale_statement,
};
pub use query::{Statement, ToStatement};
pub use row_stream::RowStream;
pub(crate) use session::OriginEnd;
use stream::Stream;
pub use tls_info::TlsInfo;
pub use trace::SLOW_QUERY_SQL_LIMIT;
pub(crate) use trace::{Checkout, NoticeHandler, Runner, Target, TraceSettings, Traced};
#[cfg(feature = "otel")]
pub(crate) use trace::{Operation, OperationSink};
pub use transaction::{IsolationLevel, Transaction, TransactionBuilder};
pub(crate) use type_cache::TypeCache;

use crate::config::{ConnectConfig, Host, SslMode};
use crate::error::{sqlstate, DbError, Error, Result};
use crate::protocol::{
    AuthMethod, BackendMessage, BindingMode, FrameDecoder, Startup, StartupParams, StartupStatus,
    TransactionStatus,
};

/// How long a query cut off by the command timeout gets to end after its CancelRequest
/// before the connection is given up as broken.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Called when a query runs past the command timeout (the pool counts these).
pub(crate) type TimeoutHook = Arc<dyn Fn(Duration) + Send + Sync>;

/// How much to read at a time when the frame in progress does not say more.
const READ_CHUNK: usize = 8 * 1024;

/// The write buffer's usual capacity.
const WRITE_CHUNK: usize = 1024;

/// A read or write buffer that grew past this for one large message is given back at the
/// next ReadyForQuery (a new one of the usual size takes its place), so a connection does
/// not keep its peak for life. Messages under it never cause a reallocation.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// How much unsolicited input an idle check reads before deciding.
const IDLE_INPUT_LIMIT: usize = 64 * 1024;

/// An open, authenticated session with the server.
///
/// A `Connection` is used by one task at a time (`&mut self`). Its futures are cancel-safe
/// in this sense: if a query's future is dropped before its answer is complete, the
/// connection remembers it ([`Connection::is_busy`]): the rest of its request is sent (never
/// resent), its answer is read to the end before the next query, and a query left half-way
/// through the extended protocol is closed with a Sync. [`Connection::cancel_token`] can be
/// used to cut a long query short; [`Connection::set_command_timeout`] does it for every
/// query.
pub struct Connection {
    stream: Stream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    decoder: FrameDecoder,
    transaction_status: TransactionStatus,
    /// ReadyForQuery messages the server still owes (one per Query or Sync sent).
    pending: u32,
    /// A buffer held more than [`SHRINK_ABOVE`] bytes: both are trimmed at the next
    /// ReadyForQuery.
    big_buffers: bool,
    /// Which of the owed ReadyForQuery messages answer an extended-protocol Sync (bit 0:
    /// the oldest): a COPY FROM STDIN refused there needs a Sync after its CopyFail.
    extended: u64,
    /// A first extended exchange (ending in Flush) was sent; a Sync must follow.
    owes_sync: bool,
    /// An atomic batch was written without its Sync (its caller left): the next request
    /// aborts it before the Sync, so none of it takes effect.
    batch_open: bool,
    /// Whether and how the session reset ends a replication origin the session set up
    /// (see [`session::OriginEnd`]). Learnt by the pool's validation query.
    origin_end: session::OriginEnd,
    /// The statement with which the session reset closes the session's named dblink
    /// connections, where the database has dblink and the login may call it (see
    /// [`session::dblink_close_sql`]). Learnt by the pool's validation query.
    dblink_close: Option<Arc<str>>,
    /// A batch's (or `execute_many`'s) Sync that may commit it was written: if the
    /// connection is lost before its answer, the batch may have taken effect.
    batch_commit_sent: bool,
    /// COPY FROM STDIN statements sent with their data (`execute_many`): their
    /// CopyInResponse is expected, not refused. Cleared at ReadyForQuery.
    copies_owed: u32,
    /// A caller's query is under way (a queued ROLLBACK is not): a reset cancels it.
    in_flight: bool,
    broken: bool,
    /// What the session has seen that changes its state for the next user (see
    /// [`session::Dirt`]); a pool resets the session when this is not clean.
    dirt: session::Dirt,
    /// The last setting the server reported changed (its name only).
    last_reported: Option<String>,
    /// A setting the pool applies (command timeout, statement cache) was changed on this
    /// connection; a pool applies its own again when the connection comes back.
    settings_changed: bool,
    /// The statement that applies again what the pool's connect hooks set, after a `RESET ALL`
    /// (see [`Connection::capture_session_restore`]).
    session_restore: Option<std::sync::Arc<str>>,
    /// [`Connection::capture_session_restore`] ran (once per connection: the hooks set the
    /// same again after every reset).
    restore_captured: bool,
    /// While the pool's connect hooks run: the custom settings (`app.tenant`) their
    /// statements set, which `pg_settings` does not list.
    hook_settings: Option<Vec<String>>,
    /// The server reported `in_hot_standby` or `default_transaction_read_only` since the
    /// last ReadyForQuery: its kind is checked against `target` there.
    kind_reported: bool,
    /// The server is no longer of the kind `target` asks for (the connection is broken).
    kind_changed: bool,
    command_timeout: Option<Duration>,
    /// The command timeout's timer, kept from one query to the next (see [`CommandTimer`]).
    timer: Option<CommandTimer>,
    on_timeout: Option<TimeoutHook>,
    statements: cache::StatementCache,
    /// Statements the pool's shared path prepared on this connection.
    pipeline_names: pipeline::PipelineNames,
    /// Types looked up in the catalog (the pool's, shared by its connections).
    types: Arc<type_cache::TypeCache>,
    /// Whose OIDs these are: `host:port/database`, the key of `types`.
    type_scope: Arc<str>,
    /// The last RowDescription a simple query received (its bytes) and its columns.
    last_description: Option<simple::KnownDescription>,
    /// The server reported a `client_encoding` other than UTF8 (after `SET`): the next
    /// answer ends in an error and the connection is broken.
    foreign_encoding: Option<String>,
    /// The TLS session, if the connection is encrypted.
    tls_info: Option<TlsInfo>,
    /// `host:port` of the server.
    server_addr: String,
    /// The kind of server the connection was asked to reach; a server that stops being
    /// one (a write refused as read-only on a read-write connection) breaks it.
    target: crate::config::TargetSessionAttrs,
    auth_method: AuthMethod,
    protocol_version: crate::protocol::ProtocolVersion,
    parameters: HashMap<String, String>,
    cancel: CancelToken,
    /// The database and the server's host, for the query spans and metrics.
    dbname: std::sync::Arc<str>,
    host_name: std::sync::Arc<str>,
    /// How statements are traced (a pool's settings, or the defaults).
    trace: std::sync::Arc<TraceSettings>,
    /// The pool's checkout this connection is in, for the slow-query line.
    checkout: Option<Checkout>,
    /// Nanoseconds the checkout waited for this connection, not yet counted against a
    /// statement: the first statement run on the checkout takes them (statement metrics).
    checkout_wait: std::sync::atomic::AtomicU64,
    /// A stream (rows, COPY) was dropped or timed out before its end: the statement is
    /// cancelled before its answer is drained.
    abandoned: bool,
    /// Portals bound so far (for their names), and those dropped, to close.
    portal_seq: u64,
    dropped_portals: portal::DroppedPortals,
    /// Notifications not yet read.
    notifications: notify::Notifications,
    /// Notices of the startup, kept until a handler is set (see [`notices`]).
    startup_notices: Vec<DbError>,
}

impl Connection {
    /// Finishes what a dropped query future left: sends the rest of its request, a Sync if
    /// it stopped between the two exchanges of the extended protocol, and reads its answer
    /// up to the last ReadyForQuery. Does nothing if nothing is pending.
    ///
    /// # Errors
    ///
    /// An I/O, closed or protocol error; the connection is broken then.
    pub(crate) async fn finish_pending(&mut self) -> Result<()> {
        if self.broken {
            return Err(Error::closed("the connection is broken"));
        }
        if self.dropped_portals.any() {
            self.close_dropped_portals();
        }
        if std::mem::take(&mut self.abandoned) && self.query_in_flight() {
            // What is left of an abandoned stream may be large: stop the server first.
            // If the cancel does not get through, the drain reads the rest.
            self.finish_write().await?;
            if let Err(e) = self.cancel.cancel().await {
                tracing::debug!(target: "wirepool::conn", "cancel of an abandoned stream failed: {e}");
            }
        }
        while self.is_busy() {
            if self.owes_sync {
                if std::mem::take(&mut self.batch_open) {
                    crate::protocol::extended::write_abort(&mut self.write_buf);
                }
                crate::protocol::extended::write_sync(&mut self.write_buf);
                self.owes_sync = false;
                self.owe_ready(true);
            }
            // The request may not have been fully written when its future was dropped; the
            // buffer still holds the rest then.
            if !self.write_buf.is_empty() {
                self.flush().await?;
            }
            match self.read_message().await? {
                BackendMessage::ReadyForQuery(status) => {
                    self.transaction_status = status;
                    self.ready_received();
                    self.copies_owed = 0;
                    self.check_encoding()?;
                }
                BackendMessage::CopyInResponse if self.copies_owed > 0 => self.copies_owed -= 1,
                BackendMessage::CopyInResponse => self.refuse_copy_in().await?,
                BackendMessage::NoticeResponse(n) => self.notice(&n),
                BackendMessage::ErrorResponse(e) if e.is_fatal() => {
                    self.broken = true;
                    return Err(Error::db(*e));
                }
                // An abandoned statement that completed may have changed the session.
                BackendMessage::CommandComplete(tag) => self.dirt.note_tag(&tag),
                _ => {}
            }
        }
        self.in_flight = false;
        Ok(())
    }

    /// Sends Terminate and closes the socket.
    ///
    /// # Errors
    ///
    /// An I/O error if the goodbye could not be written (the socket is closed regardless).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection: its socket is closed without the
    /// Terminate message, which the server treats the same way.
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
    ///
    /// # Cancel safety
    ///
    /// As [`CancelToken::cancel`]: dropping the future abandons the CancelRequest's own
    /// connection; the request may or may not have reached the server.
    pub async fn cancel(&self) -> Result<()> {
        self.cancel.cancel().await
    }

    /// How many prepared statements this connection keeps (see
    /// [`Connection::set_statement_cache_capacity`]).
    pub fn statement_cache_capacity(&self) -> usize {
        self.statements.capacity()
    }

    /// Keeps up to `n` prepared statements, keyed by their SQL text, least recently used
    /// evicted first (default 100). `0` prepares an unnamed statement for every query,
    /// which is what PgBouncer in transaction mode needs. Lowering it closes the surplus on
    /// the server with the next query.
    pub fn set_statement_cache_capacity(&mut self, n: usize) {
        self.statements.set_capacity(n);
        self.settings_changed = true;
    }

    /// Counts hits and misses of the statement cache into `stats` (a pool shares one
    /// across its connections).
    pub(crate) fn set_statement_cache_stats(&mut self, stats: Arc<CacheStats>) {
        self.statements.set_stats(stats);
    }

    /// The statement cache's hit and miss counts.
    pub fn statement_cache_stats(&self) -> &CacheStats {
        self.statements.stats()
    }

    /// Reads the next message, noting FATAL errors (the server closes the session after
    /// one) and ReadyForQuery (one fewer owed).
    async fn next_message(&mut self) -> Result<BackendMessage> {
        let msg = self.read_message().await?;
        self.note_message(&msg);
        Ok(msg)
    }

    /// What a message of an answer changes on the connection: FATAL and refused writes
    /// break it, ReadyForQuery ends a request, a command tag may dirty the session.
    #[inline]
    fn note_message(&mut self, msg: &BackendMessage) {
        match msg {
            BackendMessage::ErrorResponse(e) if e.is_fatal() => self.broken = true,
            // A write refused as read-only on a connection that was to accept writes: the
            // server was demoted or failed over; this connection must not be reused.
            BackendMessage::ErrorResponse(e)
                if e.code() == sqlstate::READ_ONLY_SQL_TRANSACTION
                    && hosts::needs_writes(self.target) =>
            {
                self.broken = true
            }
            BackendMessage::ReadyForQuery(status) => {
                self.transaction_status = *status;
                self.ready_received();
            }
            BackendMessage::CommandComplete(tag) => self.dirt.note_tag(tag),
            _ => {}
        }
    }

    /// One more ReadyForQuery owed: a Query was queued, or a Sync (`extended`).
    #[inline]
    pub(crate) fn owe_ready(&mut self, extended: bool) {
        if extended && self.pending < u64::BITS {
            self.extended |= 1 << self.pending;
        }
        self.pending += 1;
    }

    /// A ReadyForQuery arrived: the oldest request is answered.
    #[inline]
    fn ready_received(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        self.extended >>= 1;
        if self.big_buffers {
            self.trim_buffers();
        }
        if self.kind_reported {
            self.check_kind();
        }
    }

    /// The server reported a change of kind (PostgreSQL 14 and later report `in_hot_standby`
    /// when a standby is promoted, just before the ReadyForQuery of the next answer): if it
    /// is no longer what `target_session_attrs` asked for, the connection is broken. The
    /// answer that carried the report is the caller's; no later one comes from it.
    fn check_kind(&mut self) {
        self.kind_reported = false;
        if !hosts::still_matches(self) {
            tracing::debug!(
                target: "wirepool::conn",
                "the server at {} is no longer of the kind target_session_attrs asks for",
                self.server_addr
            );
            self.kind_changed = true;
            self.broken = true;
        }
    }

    /// True once the server reported that it is no longer of the kind
    /// `target_session_attrs` asked for (a standby promoted, a primary demoted to a
    /// read-only server); the connection is broken then.
    pub(crate) fn server_kind_changed(&self) -> bool {
        self.kind_changed
    }

    /// Gives back buffers that grew for a large message: what they still hold moves to new
    /// buffers of the usual size (rows already returned keep their own bytes).
    pub(crate) fn trim_buffers(&mut self) {
        self.big_buffers = false;
        for (buf, usual) in [
            (&mut self.read_buf, READ_CHUNK),
            (&mut self.write_buf, WRITE_CHUNK),
        ] {
            let mut fresh = BytesMut::with_capacity(usual.max(buf.len()));
            fresh.extend_from_slice(buf);
            *buf = fresh;
        }
    }

    /// The server started a COPY FROM STDIN for the oldest request, which nothing here
    /// serves: CopyFail ends it with an error. Under the extended protocol the server
    /// ignored the Sync already sent (it does during COPY) and now waits for another; the
    /// number of ReadyForQuery owed is the same either way.
    pub(crate) async fn refuse_copy_in(&mut self) -> Result<()> {
        self.queue_refuse_copy_in()?;
        self.flush().await
    }

    /// Writes the CopyFail (and the Sync an extended exchange then waits for), not sent.
    pub(crate) fn queue_refuse_copy_in(&mut self) -> Result<()> {
        frontend::copy_fail("COPY is not supported here", &mut self.write_buf)
            .map_err(Error::io)?;
        if self.extended & 1 != 0 {
            crate::protocol::extended::write_sync(&mut self.write_buf);
        }
        Ok(())
    }

    /// True once an I/O error, a protocol error or a FATAL server error has made the
    /// connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether `e` says the connection was lost before the answer: an I/O error, the end of
    /// the stream, a broken exchange, or a FATAL error (the server ends the session with
    /// it, and it may come after a commit and before the ReadyForQuery: a backend
    /// terminated as it commits).
    pub(crate) fn lost_by(&self, e: &Error) -> bool {
        matches!(e.kind(), crate::ErrorKind::Io | crate::ErrorKind::Closed)
            || (self.broken && e.kind() == crate::ErrorKind::Protocol)
            || e.as_db_error().is_some_and(|d| d.is_fatal())
    }

    /// True while a query's answer has not been read to the end (its future was dropped),
    /// or a queued ROLLBACK (a [`Transaction`] dropped without commit) is still to be sent
    /// and answered.
    pub fn is_busy(&self) -> bool {
        self.pending > 0 || self.owes_sync
    }

    /// True while a caller's query is under way or was abandoned part-way: a CancelRequest
    /// would end it. A queued ROLLBACK is not such a query.
    pub(crate) fn query_in_flight(&self) -> bool {
        self.in_flight && self.is_busy()
    }

    /// Bounds every query on this connection: past `limit` the query is cancelled with a
    /// CancelRequest and fails with a command-timeout error; if the server does not end it
    /// within 5 s more, the connection is marked broken. `None` (the default for a plain
    /// connection) waits as long as the query takes. A pool sets its `command_timeout` on
    /// each of its connections.
    pub fn set_command_timeout(&mut self, limit: Option<Duration>) {
        self.command_timeout = limit;
        self.settings_changed = true;
    }

    /// Sets the command timeout for a statement of the pool's own (validation, keepalive,
    /// reset), which has a bound of its own, and returns the one it replaces; not a change
    /// of the caller's settings.
    pub(crate) fn replace_command_timeout(&mut self, limit: Option<Duration>) -> Option<Duration> {
        std::mem::replace(&mut self.command_timeout, limit)
    }

    /// How the session reset ends a replication origin (see [`session::OriginEnd`]).
    pub(crate) fn origin_end(&self) -> session::OriginEnd {
        self.origin_end
    }

    pub(crate) fn set_origin_end(&mut self, end: session::OriginEnd) {
        self.origin_end = end;
    }

    /// Forgets every statement the connection prepared (its cache's and the shared path's
    /// names): the server no longer has them.
    pub(crate) fn forget_prepared(&mut self) {
        self.statements.clear();
        self.pipeline_names.clear();
    }

    /// How the session reset closes dblink's named connections, if it does (see
    /// [`session::dblink_close_sql`]).
    pub(crate) fn dblink_close(&self) -> Option<&Arc<str>> {
        self.dblink_close.as_ref()
    }

    /// The database's dblink is in `schema` (quoted), or it has none the login may call.
    pub(crate) fn set_dblink_schema(&mut self, schema: Option<&str>) {
        self.dblink_close = schema.map(|s| Arc::from(session::dblink_close_sql(s)));
    }

    /// The command timeout in force (see [`Connection::set_command_timeout`]).
    pub fn command_timeout(&self) -> Option<Duration> {
        self.command_timeout
    }

    pub(crate) fn set_timeout_hook(&mut self, hook: Option<TimeoutHook>) {
        self.on_timeout = hook;
    }

    /// A stream's wait ran past the command timeout: the statement is cancelled and its
    /// answer drained before the connection's next use, and the pool counts the timeout.
    pub(crate) fn stream_timed_out(&mut self, limit: Duration) {
        self.abandoned = true;
        if let Some(hook) = &self.on_timeout {
            hook(limit);
        }
    }

    pub(crate) fn set_trace(&mut self, trace: std::sync::Arc<TraceSettings>) {
        self.trace = trace;
        self.deliver_startup_notices();
    }

    pub(crate) fn set_checkout(&mut self, checkout: Option<Checkout>) {
        if checkout.is_none() {
            // Returned without a statement: the wait is no statement's.
            *self.checkout_wait.get_mut() = 0;
        }
        self.checkout = checkout;
    }

    /// The checkout waited `waited` for this connection.
    pub(crate) fn set_checkout_wait(&mut self, waited: Duration) {
        *self.checkout_wait.get_mut() = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
    }

    /// The checkout's wait, once: the first statement after the checkout takes it.
    pub(crate) fn take_checkout_wait(&self) -> Duration {
        let nanos = self
            .checkout_wait
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        Duration::from_nanos(nanos)
    }

    /// The query ran past the command timeout and its future was dropped: finish what was
    /// sent, cancel it, read its answer; if that does not end within the grace period the
    /// connection is broken. Returns the caller's error.
    async fn timed_out(&mut self, limit: Duration) -> Error {
        let ended = tokio::time::timeout(CANCEL_GRACE, async {
            self.finish_write().await?;
            if self.query_in_flight() {
                self.cancel().await?;
            }
            self.finish_pending().await
        })
        .await;
        if !matches!(ended, Ok(Ok(()))) {
            self.broken = true;
        }
        if let Some(hook) = &self.on_timeout {
            hook(limit);
        }
        Error::command_timeout(limit)
    }

    /// The transaction status reported by the last ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.transaction_status
    }

    /// The server's `host:port` (as configured; for a Unix socket, its directory).
    pub fn server_addr(&self) -> &str {
        &self.server_addr
    }

    /// True if the server reports being in recovery (a hot standby), false if it reports
    /// not; `None` for a server that does not report it (before PostgreSQL 14).
    pub fn in_recovery(&self) -> Option<bool> {
        self.parameter("in_hot_standby").map(|v| v == "on")
    }

    /// True if the connection is encrypted (TLS).
    pub fn is_encrypted(&self) -> bool {
        self.tls_info.is_some()
    }

    /// The TLS session's protocol version and cipher, if the connection is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }

    /// How the server authenticated this connection.
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
    }

    /// The protocol version in use: `max_protocol_version`, or the older one the server
    /// answered with.
    pub fn protocol_version(&self) -> crate::protocol::ProtocolVersion {
        self.protocol_version
    }

    /// The backend's process id.
    pub fn process_id(&self) -> i32 {
        self.cancel.process_id
    }

    /// A run-time parameter the server reported (`server_version`, `TimeZone`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("tls", &self.tls_info)
            .field("process_id", &self.cancel.process_id)
            .field("transaction_status", &self.transaction_status)
            .field("pending", &self.pending)
            .field("broken", &self.broken)
            .field("command_timeout", &self.command_timeout)
            .field("statements", &self.statements)
            .finish_non_exhaustive()
    }
}

/// Runs a query future under the connection's command timeout.
macro_rules! bounded {
    ($conn:ident, $fut:expr) => {{
        match $conn
            .command_timeout
            .and_then(|limit| Some((limit, $conn.arm_timer(limit)?)))
        {
            None => $fut.await,
            Some((limit, mut timer)) => {
                // The future (and its borrow of the connection) ends with this statement.
                let r = $crate::conn::BeforeDeadline::new(&mut timer, $fut).await;
                $conn.timer = Some(timer);
                match r {
                    Some(r) => r,
                    None => Err($conn.timed_out(limit).await),
                }
            }
        }
    }};
}

/// The timer that bounds a query, kept by the connection from one query to the next:
/// moving the deadline of a timer that has not fired yet is one compare-and-swap, where a
/// new timer for every query takes the runtime's timer lock once to register it and once
/// more to cancel it. A timer belongs to the runtime it was made in, so it is remade when
/// the connection is used in another one.
pub(crate) struct CommandTimer {
    runtime: tokio::runtime::Id,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Connection {
    /// The timer for a query starting now, `limit` from now (taken out of the connection
    /// while the query runs; `bounded!` puts it back). `None` if the deadline is past what
    /// a clock can hold, which is no limit at all.
    pub(crate) fn arm_timer(&mut self, limit: Duration) -> Option<CommandTimer> {
        let deadline = tokio::time::Instant::now().checked_add(limit)?;
        let runtime = tokio::runtime::Handle::current().id();
        Some(match self.timer.take() {
            Some(mut t) if t.runtime == runtime => {
                t.sleep.as_mut().reset(deadline);
                t
            }
            _ => CommandTimer {
                runtime,
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
            },
        })
    }
}

pin_project_lite::pin_project! {
    /// Runs `fut` until `timer` fires: its output, or `None` past the deadline. A struct
    /// rather than an `async fn`, so the query's future is built in place, not moved again.
    pub(crate) struct BeforeDeadline<'t, F> {
        #[pin]
        fut: F,
        timer: &'t mut CommandTimer,
    }
}

impl<'t, F> BeforeDeadline<'t, F> {
    pub(crate) fn new(timer: &'t mut CommandTimer, fut: F) -> Self {
        BeforeDeadline { fut, timer }
    }
}

impl<F: std::future::Future> std::future::Future for BeforeDeadline<'_, F> {
    type Output = Option<F::Output>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if let std::task::Poll::Ready(r) = this.fut.poll(cx) {
            return std::task::Poll::Ready(Some(r));
        }
        this.timer.sleep.as_mut().poll(cx).map(|()| None)
    }
}
pub(crate) use bounded;
