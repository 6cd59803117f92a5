//! Query tracing: one `tracing` span per statement, with the fields of OpenTelemetry's
//! database semantic conventions, and a warning for a statement slower than a threshold.
//!
//! The span's fields and levels are in the crate docs ("Query tracing").
//!
//! Both paths trace alike: a checked-out connection's statements, and the pool's
//! pipelined ones (`pool.query*`), whose span also says how long the statement waited for
//! room on a lane (`wirepool.lane_wait_ms`). The pool's own statements (validation,
//! keepalive, rollback and reset of a returned connection) have no span.

use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{Level, Span};

use super::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::observe::statement_metrics::StatementMetrics;
use crate::sql::normalize::normalize;

/// The longest SQL text a slow-query line carries, in bytes; longer text is cut at a
/// character boundary and marked `…`.
pub const SLOW_QUERY_SQL_LIMIT: usize = 1024;

/// What one statement did, for a metrics sink (the `otel` feature's
/// `db.client.operation.duration`).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) struct Operation<'a> {
    pub(crate) duration: Duration,
    pub(crate) name: &'static str,
    pub(crate) namespace: &'a Arc<str>,
    pub(crate) server_address: &'a Arc<str>,
    pub(crate) server_port: u16,
    /// The SQLSTATE of a server error.
    pub(crate) status_code: Option<&'a str>,
    /// `error.type`, on failure.
    pub(crate) error_type: Option<&'a str>,
    /// `db.query.summary`: the statement's label in the statement metrics (its text, or
    /// `other` past their bound), when they are on.
    pub(crate) summary: Option<&'a Arc<str>>,
}

/// Receives every traced statement's [`Operation`].
pub(crate) type OperationSink = Arc<dyn Fn(&Operation<'_>) + Send + Sync>;

/// Where the server's notices go instead of the log (see `Builder::notice_handler`).
#[derive(Clone)]
pub(crate) struct NoticeHandler(pub(crate) Arc<dyn Fn(&crate::DbError) + Send + Sync>);

impl std::fmt::Debug for NoticeHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeHandler")
    }
}

/// How statements are traced and what becomes of the server's notices: a pool's settings,
/// shared by its connections.
#[derive(Clone)]
pub(crate) struct TraceSettings {
    /// The query spans' level.
    pub(crate) span_level: Level,
    /// Leave `db.query.text` out of the spans.
    pub(crate) hide_query_text: bool,
    /// Log a WARN for a statement that took at least this long.
    pub(crate) slow_query: Option<Duration>,
    pub(crate) operations: Option<OperationSink>,
    /// The pool's statement metrics.
    pub(crate) statements: Option<Arc<StatementMetrics>>,
    /// Notices go here, not to the log.
    pub(crate) notices: Option<NoticeHandler>,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            span_level: Level::DEBUG,
            hide_query_text: false,
            slow_query: None,
            operations: None,
            statements: None,
            notices: None,
        }
    }
}

impl std::fmt::Debug for TraceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSettings")
            .field("span_level", &self.span_level)
            .field("hide_query_text", &self.hide_query_text)
            .field("slow_query", &self.slow_query)
            .field("operations", &self.operations.is_some())
            .field("statements", &self.statements.is_some())
            .field("notices", &self.notices.is_some())
            .finish()
    }
}

/// Who holds a pooled connection: for the slow-query line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkout {
    pub(crate) id: u64,
    pub(crate) site: &'static Location<'static>,
}

/// A statement under way: its span and when it started (when something needs its
/// duration: the slow-query log or a metrics sink).
pub(crate) struct Traced {
    span: Span,
    /// Something sees the span: a subscriber enabled it, or a `log` logger takes its level
    /// (tracing's `log` feature writes a span's life to one). When nothing does, its
    /// fields are not recorded and its statement's future does not enter and leave it at
    /// every poll: each would still look its field up by name, or test the logger.
    seen: bool,
    started: Option<Instant>,
    operation: &'static str,
}

impl Traced {
    /// The span to run the statement's future in: its own when something sees it, else
    /// none.
    pub(crate) fn running_span(&self) -> Span {
        if self.seen {
            self.span.clone()
        } else {
            Span::none()
        }
    }
}

/// Whether a `log` logger takes records at `level` (where tracing's `log` feature sends a
/// span's life when no subscriber has been set, or always with its `log-always`).
fn log_takes(level: Level) -> bool {
    let level = match level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    };
    level <= log::max_level()
}

/// `error.type` of an error: its SQLSTATE for a server error, else its kind.
pub(crate) fn error_type(e: &Error) -> &str {
    if let Some(db) = e.as_db_error() {
        return db.code();
    }
    match e.kind() {
        ErrorKind::Config => "config",
        ErrorKind::Io => "io",
        ErrorKind::ConnectTimeout => "connect_timeout",
        ErrorKind::Db => "db",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Authentication => "authentication",
        ErrorKind::Closed => "closed",
        ErrorKind::CopyUnsupported => "copy_unsupported",
        ErrorKind::CommandTimeout => "command_timeout",
        ErrorKind::PoolTimeout => "pool_timeout",
        ErrorKind::PoolClosed => "pool_closed",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Encoding => "encoding",
        ErrorKind::MissingPassword => "missing_password",
        ErrorKind::Conversion => "conversion",
        ErrorKind::RowCount => "row_count",
        ErrorKind::Tls => "tls",
        ErrorKind::ServerMismatch => "server_mismatch",
        ErrorKind::AllHostsFailed => "all_hosts_failed",
        ErrorKind::TransactionRolledBack => "transaction_rolled_back",
    }
}

/// `sql` cut to at most [`SLOW_QUERY_SQL_LIMIT`] bytes at a character boundary.
fn truncated(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.len() <= SLOW_QUERY_SQL_LIMIT {
        return sql.into();
    }
    let mut end = SLOW_QUERY_SQL_LIMIT;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &sql[..end]).into()
}

/// Where a statement runs: the database and the server, for its span and the metrics sink.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) namespace: Arc<str>,
    pub(crate) address: Arc<str>,
    pub(crate) port: u16,
}

/// Who ran a statement, for the slow-query line: the checkout of the exclusive path, or
/// the time a pipelined statement waited for room on a lane.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Runner {
    /// A checked-out connection's statement, with the wait of its checkout when it is the
    /// first statement run on it.
    Checkout(Option<Checkout>, Duration),
    Lane {
        wait: Duration,
    },
}

impl TraceSettings {
    /// Opens the span of a statement with the database semantic conventions' fields.
    /// `server` is where it runs, when already known (a pipelined statement learns it
    /// when it is placed: [`Traced::placed`]).
    pub(crate) fn start(
        &self,
        sql: &str,
        operation: &'static str,
        namespace: &str,
        server: Option<(&str, u16)>,
    ) -> Traced {
        // The text with its constants as `?` (a secret written into a statement stays out
        // of traces); computed only when the span is built, and only for a subscriber or a
        // `log` logger that takes the span's level: with neither, tracing's `log` feature
        // (which other crates turn on) still evaluates a disabled span's fields, for every
        // statement.
        let level = self.span_level;
        let text = || {
            (!self.hide_query_text && (tracing::dispatcher::has_been_set() || log_takes(level)))
                .then(|| normalize(sql))
        };
        let (address, port) = server.unzip();
        // One callsite per level (a callsite's level is fixed); every field known now is
        // given at creation, so a subscriber formats the span once.
        macro_rules! query_span {
            ($level:expr) => {
                tracing::span!(
                    target: "wirepool::query",
                    $level,
                    "query",
                    otel.name = operation,
                    otel.kind = "client",
                    db.system.name = "postgresql",
                    db.namespace = namespace,
                    db.operation.name = operation,
                    db.query.text = text().as_deref(),
                    server.address = address,
                    server.port = port,
                    db.response.status_code = Empty,
                    error.type = Empty,
                    wirepool.lane_wait_ms = Empty,
                )
            };
        }
        let span = if level == Level::DEBUG {
            query_span!(Level::DEBUG)
        } else if level == Level::INFO {
            query_span!(Level::INFO)
        } else if level == Level::TRACE {
            query_span!(Level::TRACE)
        } else if level == Level::WARN {
            query_span!(Level::WARN)
        } else {
            query_span!(Level::ERROR)
        };
        Traced {
            seen: !span.is_disabled() || log_takes(level),
            span,
            started: (self.slow_query.is_some()
                || self.operations.is_some()
                || self.statements.is_some())
            .then(Instant::now),
            operation,
        }
    }

    /// Closes the span of a statement with its outcome: the error fields, the slow-query
    /// line, the statement metrics (with `rows`, the rows it returned or affected, where
    /// known), the operation for a metrics sink.
    pub(crate) fn end<T>(
        &self,
        t: Traced,
        sql: &str,
        r: &Result<T>,
        rows: Option<u64>,
        at: &Target,
        by: Runner,
    ) {
        let (status, error_type) = match r {
            Ok(_) => (None, None),
            Err(e) => (e.as_db_error().map(|db| db.code()), Some(error_type(e))),
        };
        if t.seen {
            if let Some(code) = status {
                t.span.record("db.response.status_code", code);
            }
            if let Some(ty) = error_type {
                t.span.record("error.type", ty);
            }
        }
        let Some(started) = t.started else {
            return;
        };
        let duration = started.elapsed();
        if let Some(limit) = self.slow_query {
            if duration >= limit {
                let (id, site, wait) = match by {
                    Runner::Checkout(Some(c), _) => (Some(c.id), Some(c.site.to_string()), None),
                    Runner::Checkout(None, _) => (None, None, None),
                    Runner::Lane { wait } => (None, None, Some(wait.as_secs_f64() * 1e3)),
                };
                let ms = duration.as_secs_f64() * 1e3;
                let _in_span = t.span.enter();
                tracing::warn!(
                    target: "wirepool::slow_query",
                    duration_ms = ms,
                    threshold_ms = limit.as_millis() as u64,
                    connection_id = id,
                    acquired_at = site.as_deref(),
                    lane_wait_ms = wait,
                    sql = %truncated(&normalize(sql)),
                    "Slow query: {ms:.1} ms (threshold {} ms)",
                    limit.as_millis()
                );
            }
        }
        let wait = match by {
            Runner::Lane { wait } => wait,
            Runner::Checkout(_, waited) => waited,
        };
        let summary = self
            .statements
            .as_ref()
            .map(|m| m.record(sql, duration, wait, rows, error_type));
        if let Some(sink) = &self.operations {
            sink(&Operation {
                summary: summary.as_ref(),
                duration,
                name: t.operation,
                namespace: &at.namespace,
                server_address: &at.address,
                server_port: at.port,
                status_code: status,
                error_type,
            });
        }
    }
}

impl Traced {
    /// A pipelined statement was placed on a lane: where it runs, and how long it waited
    /// for room there.
    pub(crate) fn placed(&self, at: &Target, wait: Duration) {
        if !self.seen {
            return;
        }
        self.span.record("server.address", &*at.address);
        self.span.record("server.port", at.port);
        self.span
            .record("wirepool.lane_wait_ms", wait.as_secs_f64() * 1e3);
    }
}

impl Connection {
    /// Where this connection's statements run.
    pub(crate) fn trace_target(&self) -> Target {
        Target {
            namespace: self.dbname.clone(),
            address: self.host_name.clone(),
            port: self.cancel.port,
        }
    }

    /// Opens the span of a statement (and notes what it does to the session: see
    /// [`Connection::note_statement`]).
    pub(crate) fn trace_start(&mut self, sql: &str) -> Traced {
        let class = self.note_statement(sql);
        // `db.operation.name`: the keyword the statement starts with (the main statement's
        // for `WITH ...`), a static string, never the caller's text.
        let operation = class.operation.unwrap_or("OTHER");
        self.trace.start(
            sql,
            operation,
            &self.dbname,
            Some((&self.host_name, self.cancel.port)),
        )
    }

    /// Closes the span of a statement with its outcome (see [`TraceSettings::end`]).
    pub(crate) fn trace_end<T>(&self, t: Traced, sql: &str, r: &Result<T>) {
        self.trace_end_counted(t, sql, r, None);
    }

    /// As [`Connection::trace_end`], with the rows the statement returned or affected.
    pub(crate) fn trace_end_counted<T>(
        &self,
        t: Traced,
        sql: &str,
        r: &Result<T>,
        rows: Option<u64>,
    ) {
        let at = self.trace_target();
        // Only the statement metrics read the checkout's wait.
        let waited = match self.trace.statements {
            Some(_) => self.take_checkout_wait(),
            None => Duration::ZERO,
        };
        self.trace.end(
            t,
            sql,
            r,
            rows,
            &at,
            Runner::Checkout(self.checkout, waited),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_nothing_sees_is_not_run_in_and_one_a_logger_takes_is() {
        let settings = TraceSettings::default();
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            let before = log::max_level();
            log::set_max_level(log::LevelFilter::Info);
            // The spans are at DEBUG: no subscriber enables them, the logger stops at INFO.
            let t = settings.start("SELECT 1", "SELECT", "db", None);
            assert!(!t.seen);
            assert!(t.running_span().is_none());
            log::set_max_level(log::LevelFilter::Debug);
            let t = settings.start("SELECT 1", "SELECT", "db", None);
            assert!(t.seen);
            log::set_max_level(before);
        });
    }

    #[test]
    fn operation_names() {
        for (sql, op) in [
            ("SELECT 1", "SELECT"),
            ("  select $1::int", "SELECT"),
            (
                "-- a comment\n/* another */ insert into t values (1)",
                "INSERT",
            ),
            ("WITH x AS (SELECT 1) SELECT * FROM x", "SELECT"),
            ("(SELECT 1)", "SELECT"),
            ("", "OTHER"),
            ("robert'); DROP TABLE students; --", "OTHER"),
        ] {
            let name = crate::sql::class(sql).operation.unwrap_or("OTHER");
            assert_eq!(name, op, "{sql}");
        }
    }

    #[test]
    fn long_sql_is_cut_at_a_character_boundary() {
        let sql = "é".repeat(SLOW_QUERY_SQL_LIMIT);
        let cut = truncated(&sql);
        assert!(cut.len() <= SLOW_QUERY_SQL_LIMIT + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncated("SELECT 1"), "SELECT 1");
    }
}
