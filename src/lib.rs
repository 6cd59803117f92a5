//! A PostgreSQL connection pool written from scratch on the wire protocol, with production
//! observability built in: a three-tier health status, real-time statistics, a
//! latency histogram, leak-free accounting, reconnection with backoff, graceful shutdown,
//! Prometheus text and a health report in the JSON schema operators already monitor.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let rt = tokio::runtime::Runtime::new()?;
//! # rt.block_on(async {
//! use std::time::Duration;
//! use wirepool::{Pool, HealthStatus};
//! // e.g. postgres://app:secret@127.0.0.1:5432/app (scripts/test sets it to a throwaway
//! // server for the doc tests)
//! let url = std::env::var("DATABASE_URL")?;
//! let pool = Pool::builder(url.parse()?)
//!     .min_size(2)
//!     .max_size(10)
//!     .acquire_timeout(Duration::from_secs(30))
//!     .build()
//!     .await?;
//!
//! let mut conn = pool.acquire().await?;
//! // Parameters are bound as values, columns read as Rust types.
//! let row = conn.query_one("SELECT $1::int4 + 1 AS answer", &[&41i32]).await?;
//! let answer: i32 = row.get("answer");
//! assert_eq!(answer, 42);
//! // The simple protocol: SQL text in, text rows out.
//! let rows = conn.simple_query("SELECT 1 AS one").await?;
//! assert_eq!(rows[0].get(0), Some("1"));
//! drop(conn); // back to the pool
//!
//! let stats = pool.statistics();
//! assert_eq!(stats.total_acquisitions, stats.total_releases);
//! assert_eq!(pool.health().status, HealthStatus::Healthy);
//! println!("{}", pool.health().to_json());
//! pool.close().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! # Layers
//!
//! - `protocol` (crate-private): the wire protocol without I/O: bounded framing, startup and
//!   authentication (trust, password, md5, SCRAM-SHA-256), the simple and extended query
//!   protocols. It knows nothing of sockets, pools or timeouts and has its own error type,
//!   which the connection layer turns into [`Error`].
//! - [`conn`]: one [`Connection`] over TCP or a Unix socket: `simple_query`; typed
//!   `query` / `query_one` / `query_opt` / `execute` / `prepare` with a statement cache;
//!   [`Transaction`]s; rows streamed ([`RowStream`]), portals ([`Portal`]), COPY
//!   ([`CopyInSink`], [`CopyOutStream`], [`binary_copy`]).
//! - [`pool`]: [`Pool`], binding the pool core (generic and free of I/O: FIFO direct
//!   hand-off, capacity accounting, cancel-safe waiters, checked with loom; the hashed
//!   timing wheel of the leak detector) to PostgreSQL and tokio.
//! - [`observe`]: statistics, health classification, the health report, Prometheus text,
//!   the leak detector's logic.
//!
//! # What wirepool does for you
//!
//! - **Fair**: callers are served in arrival order; a returned connection goes to the
//!   oldest waiter.
//! - **Safe between callers**: a returned connection is rolled back, drained or
//!   discarded as needed, its session is reset when a caller changed it
//!   ([`SessionReset`]), and the pool's settings are applied again.
//! - **Honest about its health**: [`Pool::health`] (status, lifecycle state, statistics,
//!   the last error), [`Pool::statistics`], [`Pool::render_prometheus`]; leak reports
//!   name the line that acquired the connection; [`Pool::statement_metrics`] says which
//!   statements are slow, failing or frequent.
//! - **Quick to recover**: one reconnector on the schedule 1, 2, 4, 8, 16 s, healthy again
//!   as soon as `min_size` connections are back.
//! - **Connects as libpq does**: the same URL and key=value keywords and `PG*` variables,
//!   the password file and the service file, `require_auth`, `min_protocol_version` /
//!   `max_protocol_version` (protocol 3.2 with PostgreSQL 18), Kerberos (feature
//!   `gssapi`: `krbsrvname`, the user's ticket), and for credentials that rotate, a
//!   [`PasswordProvider`] called for each new connection
//!   (`Pool::builder(cfg).password_provider(...)`); see [`config`].
//!
//! # Cancel safety
//!
//! Every future of the crate may be dropped at any await point (a `tokio::time::timeout`,
//! a `select!`, an HTTP handler whose client went away) without leaving a connection in a
//! state the next user would see:
//!
//! - `acquire()`: the caller leaves the queue; a connection already handed to it goes to
//!   the next waiter.
//! - a query: what was sent is finished (never resent), its answer read before the next
//!   query; on a pooled connection the return cancels it (CancelRequest) first.
//! - `transaction()`: BEGIN and the [`Transaction`] are made together, so a dropped future
//!   or an uncommitted transaction is rolled back.
//! - `close()`: the drain runs in a pool task and finishes regardless.
//!
//! # In an application
//!
//! The pool's health, metrics and MCP resources are library parts, so the application
//! that runs its queries on the pool also answers for it:
//!
//! - [`http::router`] (feature `axum`): `/health` and `/metrics` as an axum router to
//!   `merge` into the application's own.
//! - [`mcp::PoolResources`] (feature `mcp`): `health://connection-pool` and
//!   `statistics://connection-pool`, as an rmcp server handler or inside the
//!   application's own beside its tools; [`mcp::McpRoutes`] serves a handler over
//!   streamable HTTP (`/mcp`) and HTTP+SSE (`/sse`) behind a Host/Origin guard.
//! - [`otel`] (feature `otel`): the pool's metrics under OpenTelemetry's database semantic
//!   conventions, into the application's meter.
//!
//! The examples `axum_app` (a JSON API that drains its pool on SIGTERM) and
//! `codebase_mcp` (an MCP server that indexes and searches source code, with the pool's
//! health beside its tools) put these together.
//!
//! # Query tracing
//!
//! Every statement a caller runs (`query*`, `execute`, `simple_query*` on a connection,
//! the pool's pipelined `query*` and `execute`, and the pool's `init_sql`) is a `tracing`
//! span named `query`, target `wirepool::query`, with the fields
//! of OpenTelemetry's database semantic conventions:
//!
//! | field | value |
//! |---|---|
//! | `db.system.name` | `postgresql` |
//! | `db.namespace` | the database |
//! | `db.operation.name` | the statement's first keyword (`SELECT`, `INSERT`, ...; `OTHER` when it is none PostgreSQL knows) |
//! | `db.query.text` | the SQL with its constants as `?` (string and number constants; comments removed, spaces collapsed), with its `$1` placeholders, never a parameter's value nor a secret written into the text; left out with [`pool::Builder::query_text_in_spans`]`(false)` |
//! | `server.address`, `server.port` | the server (for a Unix socket, its directory) |
//! | `db.response.status_code` | the SQLSTATE of a server error |
//! | `error.type` | the SQLSTATE of a server error, else the error's kind (`command_timeout`, `io`, `closed`, ...) |
//! | `otel.name`, `otel.kind` | `db.operation.name` and `client`, for `tracing-opentelemetry` |
//! | `wirepool.lane_wait_ms` | pipelined statements: the time spent waiting for room on a lane |
//!
//! The spans are at DEBUG unless [`pool::Builder::query_span_level`] says otherwise, so a
//! subscriber at INFO builds none and the query path pays nothing for them; an application
//! that exports traces sets `wirepool::query=debug` in its filter, or INFO on the builder.
//! The pool's own statements (validation, keepalive, the rollback and reset of a returned
//! connection) have no span.
//!
//! With [`pool::Builder::slow_query_threshold`] (`POOL_SLOW_QUERY_THRESHOLD`, in
//! milliseconds) a statement at least that slow is logged at WARN, target
//! `wirepool::slow_query`, with `duration_ms`, `sql` (cut to
//! [`conn::SLOW_QUERY_SQL_LIMIT`] bytes, its constants as `?`), `connection_id` and `acquired_at` (the line of
//! the `acquire()` call), or for a pipelined statement `lane_wait_ms`.
//!
//! # The shared path: pipelined statements
//!
//! [`Pool::query`], [`Pool::query_one`], [`Pool::query_opt`] and [`Pool::execute`] run one
//! autocommit statement with no checkout: it is written onto one of the pool's connections
//! behind other callers' statements, each with its own Sync, and its answer is read back in
//! order, up to [`pool::Builder::pipeline_depth`] in flight per connection (FIFO beyond).
//! What is chosen, where tokio-postgres (whose `Client` pipelines one client's futures)
//! has no counterpart:
//!
//! - Statements that change or depend on the session (SET, transactions, LISTEN, cursors,
//!   PREPARE, temporary objects, advisory locks, `lastval()`, COPY, DO, CALL, more than one
//!   statement) are refused with an [`ErrorKind::InvalidInput`] error naming `acquire()`.
//!   The text is read by a scanner that follows PostgreSQL's own token for token (so
//!   `;BEGIN`, comments, `U&"..."` names and quoted or qualified spellings are seen for
//!   what they are), once per distinct text.
//! - Beneath the refusal, the server's answers decide: a statement that leaves a transaction
//!   open is rolled back, and the statements that ran inside it fail with
//!   [`ErrorKind::TransactionRolledBack`] (`may_have_run() == Some(false)`), never `Ok`; a
//!   reported setting that changes takes the connection out for a reset; and a statement
//!   the scanner cannot prove harmless (one that names a table, whose views, triggers or
//!   defaults may run the application's functions) is followed, in the same write, by a
//!   session reset, so the next caller's statement runs in the session as it started.
//!   Rows are decoded only with the description of the connection that runs the statement.
//! - Pipelined callers and callers of [`Pool::acquire`] wait in one FIFO: a returned
//!   connection serves the oldest of either kind.
//! - A dropped future or a command timeout abandons the statement: not sent if it was not,
//!   its answer discarded if it was; a CancelRequest goes out only when every statement in
//!   flight on that connection is abandoned, so no other caller's statement is cancelled;
//!   until the abandoned statement is off its connection, nothing new is placed behind it.
//! - After a lost connection, [`Error::may_have_run`] says whether the statement had been
//!   sent; nothing is resent.
//! - A connection serving the shared path counts as active; its free share of the depth
//!   counts as idle capacity for the health classification. It returns to the pool after
//!   20 ms without statements, or at once when a caller of [`Pool::acquire`] waits.
//! - tokio-postgres's `pipelined_prepare` (two `prepare` futures of one `Client`, joined)
//!   has no counterpart on a [`Connection`]: its methods take `&mut self`, so one request
//!   is in flight at a time, and `Connection::prepare` is a round trip of its own. What a
//!   tokio-postgres user does instead: hand the statements to the shared path, which needs
//!   no `prepare` at all (joined `pool.query(...)` futures are pipelined onto the pool's
//!   connections; a text the pool has not seen yet is described once, that description
//!   itself pipelined behind other statements, then kept by text); prepare in sequence on
//!   one connection (a round trip each, once per text while the connection's statement
//!   cache keeps it); or prepare on two connections at once, each its own.
//!
//! # Types that are not built in
//!
//! An enum, composite, domain, range, an array of one, or an extension's type (`hstore`,
//! `citext`, PostGIS `geometry`, pgvector's `vector`) is looked up in the catalog the
//! first time a statement meets it, as a parameter or a result column, so that it reaches
//! [`FromSql`] / [`ToSql`] as a [`Type`] with its real name, schema and [`Kind`] (enum
//! labels, composite fields, the base type of a domain, the element of an array, the
//! subtype of a range). What is chosen, where tokio-postgres leaves room:
//!
//! - One query a statement: every type the statement needs and every type those depend
//!   on come in one recursive catalog query (tokio-postgres runs one per type and per
//!   level). It is an unnamed statement with its own Sync, so it works with
//!   `statement_cache_capacity(0)` and behind PgBouncer in transaction mode.
//! - One cache for the pool: its connections share what was looked up, keyed by server
//!   and database (two servers' OIDs never mix), at most 1,024 types, cleared when the
//!   pool switches servers and by [`Pool::clear_type_cache`] (after `ALTER TYPE ... ADD
//!   VALUE`, which keeps the OID). A type dropped and created again has a new OID: a cached
//!   statement that used it (the server answers XX000 `cache lookup failed for type`, or
//!   0A000) is prepared again once, outside a transaction.
//! - The server describes a column of a domain as the domain's base type (a parameter as
//!   the domain); multiranges of custom ranges come as [`Kind::Simple`], as in
//!   tokio-postgres; `simple_query` rows are text and need no types.
//!
//! With the feature `derive`, `#[derive(ToSql, FromSql)]` comes as `wirepool::{ToSql,
//! FromSql}`; the derives expand to `::postgres_types` paths, so the application also
//! depends on `postgres-types = "0.2"` (README shows both lines).
//!
//! # Where to read more
//!
//! - `docs/operators-guide.md`: running `wirepool serve`, the environment variables
//!   ([`pool::ENVIRONMENT`]), metrics, alerts, TLS, high availability, PgBouncer.
//! - `docs/health-model.md`: the health classification, lifecycle states, reconnection and
//!   recovery.
//! - `docs/design.md`: the choices where the specification is silent, and the
//!   performance measurements behind them.
//! - `docs/benchmarks.md`: wirepool against deadpool-postgres, bb8, sqlx and pgbench.
//!
//! # Feature flags
//!
//! - `tls` (default): TLS connections; without it `sslmode` require and stricter are
//!   configuration errors.
//! - `axum`: [`http`], the health and metrics routes for an axum application.
//! - `mcp` (with `axum`): [`mcp`], the pool's MCP resources and their HTTP transports.
//! - `otel`: [`otel`], the pool's metrics through the OpenTelemetry API.
//! - `gssapi`: GSSAPI (Kerberos) authentication through the system's MIT Kerberos
//!   library (building needs its headers: Debian's `libkrb5-dev`). Without it, a server
//!   that asks for GSSAPI gets an authentication error naming the feature.
//! - `derive`: postgres-types' `#[derive(ToSql, FromSql)]` (see above).
//! - `with-uuid-1`, `with-chrono-0_4`, `with-time-0_3`, `with-serde_json-1`: those crates'
//!   types as query parameters and column values.
//! - `internals`: unstable and hidden from these docs; what this crate's own benchmarks,
//!   fuzz targets and loom models drive (the pool core, the counters, the protocol's test
//!   encoders). Not part of the API.
//!
//! Test support (throwaway PostgreSQL clusters, PgBouncer) is not in this crate: it is the
//! workspace's `wirepool-testkit`, which is not published.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
pub mod binary_copy;
pub mod config;
pub mod conn;
mod copy_row;
pub mod error;
#[cfg(feature = "axum")]
pub mod http;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod listener;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod observe;
#[cfg(feature = "otel")]
pub mod otel;
pub mod pool;
pub mod replication;
// Modules public only with the `internals` feature (hidden from the docs, unstable: for
// this crate's own benchmarks and loom models), crate-private otherwise. Declared plainly
// (not through a macro) so that rustfmt reaches their files.
/// The pool core: FIFO hand-off, capacity permits, cancel-safe waiters, the timing wheel.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod pool_core;
/// The pool core: FIFO hand-off, capacity permits, cancel-safe waiters, the timing wheel.
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code, unused_imports)]
pub(crate) mod pool_core;
/// The wire protocol without I/O (framing, startup, the query protocols): the crate
/// `wirepool-protocol`. Its types that applications see are re-exported at the root.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use wirepool_protocol as protocol;
#[cfg(not(feature = "internals"))]
pub(crate) use wirepool_protocol as protocol;
mod random;
mod row;
pub(crate) mod sql;
mod sync;
mod text_map;

/// The README's examples, compiled as doc tests so they keep working as pasted.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use config::{ConnectConfig, PasswordProvider, ProtocolVersion, RequireAuth};
pub use conn::{
    Batch, BatchResult, CancelToken, Connection, CopyInSink, CopyOutStream, IsolationLevel,
    Notification, Portal, RowParams, RowStream, Statement, ToStatement, Transaction,
    TransactionBuilder,
};
pub use error::{DbError, Error, ErrorKind, Result, TimeoutPhase};
pub use listener::{Listener, ListenerEvent};
pub use observe::{HealthReport, HealthStatus, LifecycleState, PoolStatistics};
pub use pool::{Pool, PoolConfig, PooledConnection, SessionReset};
/// postgres-types, whose `ToSql` and `FromSql` wirepool uses: for `IsNull`, `to_sql_checked!`
/// and the like in hand-written implementations.
pub use postgres_types;
pub use postgres_types::{Field, FromSql, Kind, ToSql, Type};
pub use protocol::{AuthMethod, Column, ResultSet, RowIndex, SimpleRow, TransactionStatus};
pub use row::Row;
