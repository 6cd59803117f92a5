//! SQLSTATE codes by name (PostgreSQL's Appendix A): those wirepool itself tests for, and
//! those an application commonly checks (a unique violation, a serialization failure). A
//! server error's code is a string ([`DbError::code`](crate::DbError::code), as in
//! tokio-postgres), so these compare with it directly: `e.code() == Some(sqlstate::...)`.

/// `08000` connection_exception.
pub const CONNECTION_EXCEPTION: &str = "08000";
/// `08001` sqlclient_unable_to_establish_sqlconnection.
pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: &str = "08001";
/// `08006` connection_failure.
pub const CONNECTION_FAILURE: &str = "08006";
/// `0A000` feature_not_supported (also "cached plan must not change result type").
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// `25006` read_only_sql_transaction: a write refused by a read-only server or
/// transaction.
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
/// `26000` invalid_sql_statement_name: a prepared statement the server does not know.
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// `28000` invalid_authorization_specification (no pg_hba.conf entry, unknown role).
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
/// `28P01` invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// `3D000` invalid_catalog_name: the database does not exist.
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// `53300` too_many_connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `57P01` admin_shutdown (a shutdown, or `pg_terminate_backend`).
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// `57P02` crash_shutdown.
pub const CRASH_SHUTDOWN: &str = "57P02";
/// `57P03` cannot_connect_now (starting up or shutting down).
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// The class of `57P01`-`57P05`: operator intervention, sent just before a session ends.
pub const OPERATOR_INTERVENTION_CLASS: &str = "57";
/// `XX000` internal_error (also "cache lookup failed for type": a cached statement's
/// type was dropped and created again).
pub const INTERNAL_ERROR: &str = "XX000";
/// `00000` successful_completion (a notice's or log line's code when nothing failed).
pub const SUCCESSFUL_COMPLETION: &str = "00000";
/// `01000` warning.
pub const WARNING: &str = "01000";
/// `08P01` protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// `22000` data_exception (an extension's type refusing a value: pgvector's dimension
/// check).
pub const DATA_EXCEPTION: &str = "22000";
/// `22012` division_by_zero.
pub const DIVISION_BY_ZERO: &str = "22012";
/// `22P02` invalid_text_representation: a value the type cannot read (`'x'::int`, a COPY field).
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// `23505` unique_violation.
pub const UNIQUE_VIOLATION: &str = "23505";
/// `23514` check_violation.
pub const CHECK_VIOLATION: &str = "23514";
/// `34000` invalid_cursor_name: a portal or cursor the server does not know.
pub const INVALID_CURSOR_NAME: &str = "34000";
/// `40001` serialization_failure: retry the transaction.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// `42601` syntax_error.
pub const SYNTAX_ERROR: &str = "42601";
/// `42704` undefined_object.
pub const UNDEFINED_OBJECT: &str = "42704";
/// `42P01` undefined_table.
pub const UNDEFINED_TABLE: &str = "42P01";
/// `55000` object_not_in_prerequisite_state (`currval` before `nextval`, say).
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// `57014` query_canceled: a CancelRequest or `statement_timeout` ended the statement.
pub const QUERY_CANCELED: &str = "57014";
