//! The SQLSTATE codes wirepool itself tests for, by name (PostgreSQL's Appendix A). A
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
