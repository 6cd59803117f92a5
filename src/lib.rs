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
//! - [`protocol`]: the wire protocol without I/O: bounded framing, startup and
//!   authentication (trust, password, md5, SCRAM-SHA-256), the simple and extended query
//!   protocols.
//! - [`conn`]: one [`Connection`] over TCP or a Unix socket: `simple_query`; typed
//!   `query` / `query_one` / `query_opt` / `execute` / `prepare` with a statement cache;
//!   [`Transaction`]s.
//! - [`core`]: the pool core, generic and free of I/O: FIFO direct hand-off, capacity
//!   accounting, cancel-safe waiters, checked with loom; and the hashed timing wheel.
//! - [`pool`]: [`Pool`], binding the core to PostgreSQL and tokio.
//! - [`observe`]: statistics, health classification, the health report, Prometheus text,
//!   the leak detector's logic.
//!
//! # Choices where the monitoring guide is silent
//!
//! - **Acquire timeouts**: every waiter gets the same `acquire_timeout`, so the queue's
//!   head always has the earliest deadline; one task per pool sleeps until it and ends the
//!   waits that are due, instead of a timer per waiting caller. A timed-out caller is
//!   woken within the runtime's timer resolution (1 ms) of its deadline.
//! - **Fairness**: waiters are served strictly in arrival order; a returned connection goes
//!   straight to the oldest waiter. Idle connections are handed out last-in first-out, so
//!   the working set stays warm and surplus connections age out through `idle_timeout`.
//! - **Statistics**: `active_connections` counts connections held by callers;
//!   `total_connections` also counts those the pool holds briefly for reset or validation
//!   (`maintenance_connections`).
//!   An acquisition served from the idle list is counted in the lowest histogram bucket
//!   without reading a clock (it takes a lock and a pop); only waits are timed.
//! - **Health**: the guide's rules, in [`observe::classify`], with one reading made
//!   explicit: "idle connections as a share of the total" is taken as the *headroom*, the
//!   share of `max_size` a new caller can have without waiting,
//!   `(idle + max_size - open - opening) / max_size` (see [`observe::headroom`]). At
//!   `max_size` the two agree; below it, two busy connections out of two open on a pool of
//!   ten are not a "severe capacity shortage". The literal share is exported too
//!   (`idle_ratio`). "Peak wait > 100 ms" and "errors in the last 60 s" both use the same
//!   60 s window. After an outage the pool is RECOVERING until the reconnector has restored
//!   `min_size` validated connections; from then on, errors and slow acquisitions whose
//!   operation began before the recovery no longer hold it DEGRADED, so it is HEALTHY
//!   within seconds of the database's return. [`HealthReport::ready`] is false only when
//!   no caller can be served now (nothing open and the database unreachable, or shutting
//!   down): an HTTP health endpoint answers 503 then, and only then, so a saturated pool
//!   (status `unhealthy`) is not pulled from its load balancer. `latency_ms` is the round
//!   trip of the latest validation or keepalive (at least one every `keepalive_interval`),
//!   `null` while no connection is open; while the database is unreachable `last_error` is
//!   the connect error, not the callers' timeouts.
//! - **Dead idle connections**: every checkout checks that the server has not written to
//!   or closed the idle connection (a FATAL from `pg_terminate_backend`,
//!   `idle_session_timeout`, a restart): one atomic load when nothing arrived, about 7 ns.
//!   A dead one is discarded (`server_closed`) and the caller gets the next one, without
//!   an error.
//! - **Writes**: a query whose future is dropped while its request is being written keeps
//!   the unsent rest, which goes out before anything else: the server never sees half a
//!   message followed by another. A query over the protocol's 1 GiB message limit is
//!   refused before anything is written.
//! - **Encoding**: connections speak UTF-8; a `SET client_encoding` to anything else ends
//!   that query with an error and closes the connection rather than corrupt text.
//! - **TCP**: keepalives on by default with the system's timings, as in libpq; the
//!   `keepalives*` and `tcp_user_timeout` parameters set them.
//! - **Build**: `build()` fails with the real error (wrong password, database down) if the
//!   first `min_size` connections cannot be opened, unless
//!   [`PoolConfig::start_without_database`] is set: then the pool starts UNHEALTHY and
//!   reconnects on its schedule (what `wirepool serve` does).
//! - **Reconnection**: while the database is unreachable only the monitor opens
//!   connections, on the schedule 1, 2, 4, 8, 16 s, then every 16 s; callers that time out
//!   get an error whose source is the last connect error. Refusals that pass by themselves
//!   (socket errors, SQLSTATE 57P01-57P03 shutting down or starting up, 53300 too many
//!   connections) follow the schedule from its start; refusals that do not (wrong password,
//!   unknown role or database) are retried at the schedule's slowest pace, logged at ERROR
//!   each time, so a fixed password is picked up without a restart and the server is never
//!   hammered.
//! - **Leak detection** (on by default, 30 s): a checkout held past the timeout is
//!   reported once, at WARN, with the connection id, how long it has been held and the
//!   file:line:column of the `acquire()` call (full backtraces with `leak_backtrace`, as
//!   they cost microseconds per acquire); its eventual return is logged at INFO. A hashed
//!   timing wheel holds one entry per connection; a checkout is two atomic stores, measured
//!   at about 2 ns on the acquire+release path. A report comes no earlier than the timeout
//!   and at most one wheel tick (a sixteenth of the timeout, 10-100 ms) later.
//! - **Command timeout**: a query past the timeout is cancelled with a CancelRequest (after
//!   sending whatever of the request was still unsent); if the server does not end it
//!   within 5 s the connection is discarded. The caller gets a command-timeout error
//!   either way. The pool sets it on every connection, so it bounds every query method:
//!   on the guard's `Deref`, inside transactions, and `simple_query` as much as `query`.
//! - **Between callers**: nothing one caller does reaches the next. A returned
//!   connection's session is reset under [`SessionReset`] (`session_reset` on the
//!   builder, `POOL_SESSION_RESET`): by default only when its answers showed a change of
//!   session state (`SET`, `SET ROLE`, `LISTEN`, `DECLARE CURSOR`, `PREPARE`, a reported
//!   setting changing, ...), which costs nothing on a clean return and one round trip on a
//!   dirty one; `Always` resets every return, for what a tag cannot show
//!   (`pg_advisory_lock()` or `set_config()` inside a `SELECT`). The reset is `DISCARD
//!   ALL` but for prepared statements (the statement cache survives), then the pool's
//!   `init_sql` and `after_connect` run again. The pool's settings on a connection (command
//!   timeout, statement cache) changed through a guard are the pool's again at its
//!   return. (asyncpg resets every return; PgBouncer runs `DISCARD ALL`.)
//! - **Cancelled `transaction()`**: BEGIN is queued and the [`Transaction`] made before
//!   anything is awaited, so a `transaction()` future dropped at any point rolls back, as
//!   tokio-postgres does: the connection is never left in a transaction its caller does
//!   not know of.
//! - **Close**: [`Pool::close`] is idempotent and cancel-safe (the drain runs in a pool
//!   task); durations too long to add to a clock (`Duration::MAX`) mean "never".
//! - **TLS** (feature `tls`, on by default): rustls with the ring provider, no OpenSSL.
//!   `sslmode` means what it means in libpq: `prefer` (the default) sends SSLRequest and
//!   goes on in plain text only if the server answers `N` (or the handshake fails);
//!   `require` checks nothing but insists on TLS; `verify-ca` checks the chain against
//!   `sslrootcert` (a PEM file, `system` for the platform's roots, or libpq's default file);
//!   `verify-full` also checks the host name (`hostaddr` connects to an address while
//!   `host` names the server). After SSLRequest exactly one byte is read. SCRAM binds to
//!   the channel (SCRAM-SHA-256-PLUS, `tls-server-end-point`) whenever the server offers
//!   it over TLS; `channel_binding=require` fails before any password is sent if it
//!   cannot, and so does the default `prefer` when the server offers binding over TLS but
//!   its certificate's signature (Ed25519, RSASSA-PSS) has no hash to bind with, as in
//!   libpq. A CancelRequest goes over TLS when its connection does. Certificate paths
//!   never appear in errors or `Debug`. Over TLS, throughput of `SELECT 1` is about 0.75x
//!   of plain text and a pool builds about 15 % slower (`cargo bench --bench tls`).
//! - **Typed queries**: the extended protocol with binary parameters and results through
//!   `postgres-types` ([`ToSql`], [`FromSql`], [`Type`], re-exported), the API of
//!   tokio-postgres. A query's first exchange (Parse, Describe) ends in Flush, not Sync, so
//!   its second (Bind, Execute, Sync) runs in the same session: through PgBouncer in
//!   transaction mode on the same server. Statements are cached per connection (LRU, 100
//!   by default, `statement_cache_capacity`; `0` for PgBouncer), under names unique to the
//!   connection; one the server no longer knows (`DISCARD ALL`, SQLSTATE 26000) or whose
//!   result type changed (0A000) is prepared again once, outside explicit transactions.
//!   Custom types (enums, domains) come back as their OID-named type; cast them to text in
//!   SQL. A [`Transaction`] dropped uncommitted queues a ROLLBACK; the pool's return
//!   hygiene covers guards dropped mid-query or mid-transaction.
//! - **Errors**: `{}` of a server error prints its severity, SQLSTATE and message
//!   (`ERROR 42P01: relation "x" does not exist`).
//! - **Several hosts**: libpq's host lists, `target_session_attrs`, `load_balance_hosts`
//!   and a connect timeout per host. The pool logs which server each new connection went
//!   to (with several hosts) and `Connection pool switched from A to B` on a failover;
//!   a write refused as read-only (25006) on a read-write pool discards the connection;
//!   `database.host` in the health JSON and `connections_by_host` in the metrics show the
//!   server.
//! - **Dependencies**: besides tokio, postgres-protocol, bytes, crossbeam, parking_lot and
//!   tracing, the library uses `postgres-types` (typed values), `fallible-iterator`, the
//!   trait postgres-protocol's message iterators implement (needed to read them), and
//!   `socket2` (already under tokio) for the TCP keepalive and user-timeout options.
//!
//! # Performance
//!
//! `Pool::acquire().await` + drop on a warm pool, one task, against a real server: about
//! 75 ns on a 2-core machine (`cargo bench --bench query`, `pool_acquire`), of which the
//! checkout's dead-connection check is about 6 ns. The pool core alone with in-memory
//! connections takes about 25 ns (40 ns with the statistics and leak-detection calls;
//! `cargo bench --bench acquire`). README.md has the table, with its same-run baselines;
//! `docs/benchmarks.md` compares wirepool with deadpool-postgres, bb8, sqlx and pgbench.
//!
//! On the query path, a connection keeps two things between queries: the timer of its
//! command timeout (moving a pending timer's deadline is one compare-and-swap; a new timer
//! per query would take the runtime's timer lock twice), and the last RowDescription a
//! simple query received, up to 4 KiB, whose columns are reused when the next one has the
//! same bytes (the same statement run again) instead of being parsed again. A row's values
//! stay in the buffer the message arrived in; the places of up to four values are held in
//! the row itself, so a narrow row takes no allocation of its own.
//!
//! # Feature flags
//!
//! - `tls` (default): TLS connections; without it `sslmode` require and stricter are
//!   configuration errors.
//! - `with-uuid-1`, `with-chrono-0_4`, `with-time-0_3`, `with-serde_json-1`: those crates'
//!   types as query parameters and column values.
//! - `internals`: unstable and hidden from these docs; what this crate's own benchmarks,
//!   fuzz targets and loom models drive (the pool core, the counters, the protocol's test
//!   encoders). Not part of the API.
//!
//! Test support (throwaway PostgreSQL clusters, PgBouncer) is not in this crate: it is the
//! workspace's `wirepool-testkit`, which is not published.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// A module public only with the `internals` feature (hidden from the docs, unstable: for
/// this crate's own benchmarks and loom models), crate-private otherwise.
macro_rules! internal_mod {
    ($(#[$m:meta])* $name:ident) => {
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        $(#[$m])*
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(unreachable_pub, dead_code)]
        $(#[$m])*
        pub(crate) mod $name;
    };
}
pub(crate) use internal_mod;

pub mod config;
pub mod conn;
pub mod error;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
pub mod observe;
pub mod pool;
internal_mod! {
    /// The pool core: FIFO hand-off, capacity permits, cancel-safe waiters, the timing wheel.
    pool_core
}
pub mod protocol;
mod random;
mod sync;

/// The README's examples, compiled as doc tests so they keep working as pasted.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use config::ConnectConfig;
pub use conn::{CancelToken, Connection, Statement, ToStatement, Transaction};
pub use error::{DbError, Error, ErrorKind, Result, TimeoutPhase};
pub use observe::{HealthReport, HealthStatus, LifecycleState, PoolStatistics};
pub use pool::{Pool, PoolConfig, PooledConnection, SessionReset};
pub use postgres_types::{FromSql, ToSql, Type};
pub use protocol::{Column, Row, RowIndex, SimpleRow, TransactionStatus};
