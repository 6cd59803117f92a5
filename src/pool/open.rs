//! Opening a connection for the pool: connect, apply the pool's settings, validate with
//! `SELECT 1` and two questions about the session's roles (bounded like the connect), run
//! the connect hooks; and the operator's wording of what failed.

use super::*;
use crate::conn::OriginEnd;

/// The bound of the validation `SELECT 1` when the connection has no connect timeout.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The pool's validation query: `1`; whether the session's login role may call the
/// replication origin functions (then the session reset ends an origin the session set
/// up, as that role; see `OriginEnd`), asked about the role by name, which needs no
/// privilege; whether the session starts as its login role; and the schema of the
/// database's dblink extension, quoted, if it has one the login may call (then the
/// session reset closes dblink's named connections; see `dblink_close_sql`).
const VALIDATION: &str = "SELECT 1, \
     pg_catalog.has_function_privilege(session_user, \
     'pg_catalog.pg_replication_origin_session_reset()', 'EXECUTE') \
     AND pg_catalog.has_function_privilege(session_user, \
     'pg_catalog.pg_replication_origin_session_is_setup()', 'EXECUTE'), \
     current_user = session_user, \
     (SELECT pg_catalog.quote_ident(n.nspname) \
     FROM pg_catalog.pg_extension e \
     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
     WHERE e.extname = 'dblink' \
     AND pg_catalog.has_schema_privilege(session_user, n.oid, 'USAGE') \
     AND pg_catalog.has_function_privilege(session_user, pg_catalog.to_regprocedure(\
     pg_catalog.format('%I.dblink_get_connections()', n.nspname))::pg_catalog.oid, \
     'EXECUTE') \
     AND pg_catalog.has_function_privilege(session_user, pg_catalog.to_regprocedure(\
     pg_catalog.format('%I.dblink_disconnect(text)', n.nspname))::pg_catalog.oid, \
     'EXECUTE'))";

/// Opens one connection and validates it with [`VALIDATION`], recording latency and errors.
pub(crate) async fn open_validated(shared: &Shared) -> Result<Connection> {
    open_or_say_why(shared).await.map_err(|f| f.error)
}

/// Why the pool could not open a connection.
pub(crate) struct OpenFailed {
    pub(crate) error: Error,
    /// The server accepted the session, then ended it while the pool validated or set it
    /// up (it was terminated, say): the database is there.
    pub(crate) session_ended: bool,
}

/// [`open_validated`], saying whether the server ended a session it had accepted.
pub(crate) async fn open_or_say_why(
    shared: &Shared,
) -> std::result::Result<Connection, OpenFailed> {
    let refused = |error| OpenFailed {
        error,
        session_ended: false,
    };
    let began = SystemTime::now();
    #[cfg(feature = "otel")]
    let began_at = Instant::now();
    let mut conn =
        match Connection::connect_noticed(&shared.connect, shared.trace.notices.clone()).await {
            Ok(c) => c,
            Err(e) => {
                shared
                    .counters
                    .record_error(ErrorType::Connect, connect_error_message(&e), began);
                return Err(refused(e));
            }
        };
    shared.configure(&mut conn);
    let t = Instant::now();
    // Validation is the pool's own query: bounded like the connect, not by the callers'
    // command timeout (which may be shorter than a round trip).
    let limit = conn.replace_command_timeout(Some(
        shared
            .connect
            .connect_timeout()
            .unwrap_or(VALIDATION_TIMEOUT),
    ));
    let validated = conn.simple_query_untraced(VALIDATION).await;
    conn.replace_command_timeout(limit);
    match validated {
        Ok(rows) if rows.first().and_then(|r| r.get(0)) == Some("1") => {
            shared.counters.record_latency(t.elapsed());
            conn.set_origin_end(match (rows[0].get(1), rows[0].get(2)) {
                (Some("t"), Some("t")) => OriginEnd::AsLogin,
                (Some("t"), _) => OriginEnd::ThroughRoleNone,
                _ => OriginEnd::Never,
            });
            conn.set_dblink_schema(rows[0].get(3));
            if let Err(e) = shared.run_hooks(&mut conn).await {
                shared.counters.record_error(
                    ErrorType::Connect,
                    format!("Connection setup failed: {}", error_text(&e)),
                    began,
                );
                return Err(OpenFailed {
                    error: e,
                    session_ended: conn.is_broken(),
                });
            }
            shared.counters.created.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "otel")]
            if let Some(o) = &shared.otel {
                o.created(began_at.elapsed());
            }
            Ok(conn)
        }
        Ok(_) => {
            let e = Error::protocol("validation query SELECT 1 returned an unexpected result");
            shared.counters.record_error(
                ErrorType::Validation,
                "Connection validation failed".into(),
                began,
            );
            Err(refused(e))
        }
        Err(e) => {
            shared.counters.record_error(
                ErrorType::Validation,
                format!("Connection validation failed: {}", error_chain(&e)),
                began,
            );
            Err(OpenFailed {
                error: e,
                session_ended: conn.is_broken(),
            })
        }
    }
}

/// Counts command timeouts of the pool's connections, without keeping the pool alive.
pub(super) fn timeout_hook(pool: std::sync::Weak<Shared>) -> TimeoutHook {
    Arc::new(move |limit: Duration| {
        if let Some(s) = pool.upgrade() {
            s.counters.record_error(
                ErrorType::CommandTimeout,
                format!(
                    "Query cancelled after the command timeout of {} s",
                    limit.as_secs_f64()
                ),
                SystemTime::now() - limit,
            );
        }
    })
}

/// An error as the pool's own record and log show it (the health report, the status
/// page, the pool's log lines). A server error raised by a statement, a connect hook's,
/// may quote a value the statement sent in its message: only its SQLSTATE and severity are
/// shown. Server errors of the connection's start-up (SQLSTATE classes 08, 28, 3D, 53, 57:
/// refused, authentication, no such database, too many connections, shutting down) speak
/// of the role and the database, and are shown whole.
pub(crate) fn error_text(e: &Error) -> String {
    match e.as_db_error() {
        Some(db) if !matches!(db.code().get(..2), Some("08" | "28" | "3D" | "53" | "57")) => {
            format!(
                "{} {} from the server (its message is left out: it may quote a value)",
                db.severity(),
                db.code()
            )
        }
        _ => error_chain(e),
    }
}

pub(super) fn connect_error_message(e: &Error) -> String {
    let refused = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    if refused {
        format!("Database connection refused: {}", error_chain(e))
    } else {
        format!("Database connection failed: {}", error_chain(e))
    }
}
