//! Pool settings and their defaults (the environment variables: `environment.rs`).

use std::time::Duration;

use crate::config::{parse_keyword, Keyword};
use crate::error::{Error, Result};
use crate::observe::HealthThresholds;

/// How the pool behaves. Every field has the default named in its doc.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Connections opened (and validated with `SELECT 1`) at build time and kept open
    /// afterwards. Default: 2. `POOL_MIN_SIZE`.
    pub min_size: usize,
    /// The most connections open (or being opened) at once. Default: 10. `POOL_MAX_SIZE`.
    pub max_size: usize,
    /// How long `acquire()` may take in all. Default: 30 s. `POOL_TIMEOUT`.
    pub acquire_timeout: Duration,
    /// How long one query may run on a pooled connection (every query method: `query`,
    /// `execute`, `simple_query`, ... and inside transactions) before it is cancelled.
    /// Default: 60 s. `POOL_COMMAND_TIMEOUT`.
    pub command_timeout: Option<Duration>,
    /// Prepared statements kept per connection, least recently used evicted first. `0`
    /// prepares an unnamed statement for every query: set it behind PgBouncer in
    /// transaction mode. Default: 100. `POOL_STATEMENT_CACHE_CAPACITY`.
    pub statement_cache_capacity: usize,
    /// Statements of the shared path (`pool.query`, `pool.execute`, ...) placed on one
    /// connection at most, sent or waiting there to be sent with the next ones; more callers
    /// wait, in arrival order. Default: 16.
    /// `POOL_PIPELINE_DEPTH`.
    pub pipeline_depth: usize,
    /// Connections older than this are retired when idle or returned (each gets up to 5 %
    /// less, at random, so they do not all expire at once). Default: 3600 s.
    /// `POOL_MAX_CONNECTION_LIFETIME`.
    pub max_lifetime: Option<Duration>,
    /// Idle connections beyond `min_size` are closed after this long unused (by a caller: the
    /// pool's keepalive checks do not count as use). Default: 600 s.
    pub idle_timeout: Option<Duration>,
    /// Idle connections unused this long are validated in the background, so a dead one is
    /// found before a caller gets it; so is, within a monitor tick, any idle connection the
    /// server has sent something to or closed. `None` turns both off. Default: 30 s.
    pub keepalive_interval: Option<Duration>,
    /// How long `close()` waits for checked-out connections. Default: 30 s.
    pub drain_timeout: Duration,
    /// Warn about connections held past `leak_detection_timeout`. Default: true.
    /// `POOL_ENABLE_LEAK_DETECTION`.
    pub leak_detection: bool,
    /// Default: 30 s. `POOL_LEAK_DETECTION_TIMEOUT`.
    pub leak_detection_timeout: Duration,
    /// Also capture a full backtrace at each acquisition for leak reports (costly: several
    /// microseconds per acquire). Default: false (`POOL_LEAK_BACKTRACE`). The acquisition
    /// site (file:line:column of the `acquire()` call) is reported either way.
    pub leak_backtrace: bool,
    /// Reconnection delays after consecutive connect failures; the last repeats.
    /// Default: 1, 2, 4, 8, 16 s.
    pub reconnect_delays: Vec<Duration>,
    /// Spread each reconnection delay at random over [delay/2, delay]. Default: false.
    pub reconnect_jitter: bool,
    /// While the database is unreachable and a caller waits for a connection, try one
    /// connection at a time at this interval (a *probe*), besides the schedule of
    /// `reconnect_delays`: the first that succeeds serves the oldest waiter and starts the
    /// refill at once, so a restart shorter than the acquire timeout costs the waiting
    /// callers nothing. Under `fail_fast`, where nobody waits, a caller refused within the
    /// last interval counts as one that waits. Only while the last connect error says the server is down or
    /// starting (refused, reset, timed out, `57P03`); a server that refuses for another
    /// reason (too many connections, authentication) is tried on the schedule alone.
    /// `None` turns probes off. Default: 250 ms.
    pub reconnect_probe_interval: Option<Duration>,
    /// While the database is unreachable, fail callers that would have to wait at once
    /// with the last connect error instead of letting them wait out `acquire_timeout`.
    /// Callers already waiting when a connect fails fail then; so do `pool.query*`
    /// statements waiting for a connection of the shared path (not sent). Default: false.
    pub fail_fast: bool,
    /// When the first `min_size` connections cannot be opened, `build()` still returns the
    /// pool instead of the error: it starts UNHEALTHY, with the connect error as its last
    /// error, and the reconnector opens the connections on its schedule. For a service
    /// that may start before its database. Default: false (`build()` fails with the real
    /// error).
    pub start_without_database: bool,
    /// How often the pool's monitor runs (refill, retirement, health). Default: 250 ms.
    pub monitor_interval: Duration,
    /// Health classification thresholds. Default: see `docs/health-model.md`.
    pub health: HealthThresholds,
    /// Prefix of the Prometheus metric names. Default: `codebase_mcp_pool`.
    pub metrics_prefix: String,
    /// When a returned connection's session is put back as it started, so that nothing
    /// one caller set reaches the next. Default: [`SessionReset::UnlessProvenClean`].
    /// `POOL_SESSION_RESET` (`when_dirty`, `always`, `never`).
    pub session_reset: SessionReset,
    /// A statement that takes at least this long is logged at WARN (target
    /// `wirepool::slow_query`) with its duration, its SQL cut to
    /// [`SLOW_QUERY_SQL_LIMIT`](crate::conn::SLOW_QUERY_SQL_LIMIT) bytes, the connection's id
    /// and the line that acquired it; never a parameter's value. Default: none.
    /// `POOL_SLOW_QUERY_THRESHOLD` (milliseconds; 0: none).
    pub slow_query_threshold: Option<Duration>,
    /// How many statement texts get a row of their own in the statement metrics
    /// ([`Pool::statement_metrics`](crate::Pool::statement_metrics), the `statement_*`
    /// families of `/metrics`); the rest are counted as `other`. 0 turns them off.
    /// Default: 100. `POOL_STATEMENT_METRICS_LIMIT`.
    pub statement_metrics_limit: usize,
    /// The level of the query spans (target `wirepool::query`). Default: DEBUG, so a
    /// subscriber at INFO builds none.
    pub query_span_level: tracing::Level,
    /// Whether query spans carry the SQL (`db.query.text`, with its `$1` placeholders,
    /// never the values). Default: true.
    pub query_text_in_spans: bool,
    /// The pool's name in OpenTelemetry metrics (`db.client.connection.pool.name`).
    /// Default: `host:port/database` of the first host.
    pub pool_name: Option<String>,
}

/// When the pool resets the session of a returned connection (the role, settings,
/// LISTENs, cursors, temporary tables, advisory locks a caller left), before anyone else
/// can get it. A reset that fails discards the connection. After a reset the pool runs its
/// connect hooks ([`init_sql`](crate::pool::Builder::init_sql),
/// [`after_connect`](crate::pool::Builder::after_connect)) again.
///
/// The reset is one round trip: `CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; SELECT
/// pg_advisory_unlock_all(); RESET ALL; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES`, which is
/// `DISCARD ALL` but for prepared statements, so the statement cache survives it; after an
/// SQL-level `PREPARE` it is `DISCARD ALL` itself, and the statement cache is emptied. For
/// a session whose login role may call the replication origin functions (a superuser, or a
/// role granted them) it also ends a replication origin the session set up
/// (`pg_replication_origin_session_setup`), which no `DISCARD` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SessionReset {
    /// Never reset: a caller's session state reaches the next caller. For applications
    /// that never change session state, or that reset it themselves.
    Never,
    /// Reset a session unless every statement it ran was *proven clean* and the server
    /// saw no change. The server's answers say what changed: the command tags `SET` (with
    /// `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET LOCAL`), `RESET`, `LISTEN`,
    /// `UNLISTEN`, `DECLARE CURSOR`, `PREPARE`, `CREATE TABLE`, `LOAD`, `DISCARD`, and any
    /// change of a setting the server reports (`is_superuser`, `session_authorization`,
    /// `TimeZone`, `DateStyle`, `application_name`, ...). A statement is proven clean when
    /// it is one `SELECT`, `VALUES`, `SHOW` or transaction-control statement that names no
    /// relation and only what PostgreSQL itself defines (built-in functions known to leave
    /// the session alone, qualified with `pg_catalog` or called without arguments;
    /// built-in types and operators), read by a scanner that follows PostgreSQL's own (see
    /// the operator's guide). A statement that names a table is not: a view, a trigger, a
    /// rule, a default, a check, a domain, a cast or an operator may run the application's
    /// functions where the text shows none. So a checkout that ran the application's
    /// queries is reset on return (one round trip, in a pool task: the next caller does not
    /// wait for it), and one that ran only statements like `SELECT 1` costs nothing. On the
    /// shared path (`pool.query`, ...) the same reading decides which statements are
    /// followed by the session reset, pipelined behind them.
    ///
    /// The default: no session change of any kind reaches the next caller, whatever
    /// function ran it (dblink's named connections are closed), but for what no reset
    /// undoes (`LOAD`, `setseed()`, dblink's unnamed connection): that closes the
    /// connection instead, under every policy, when the statement's text shows it. See
    /// `docs/benchmarks.md` for the cost.
    #[default]
    UnlessProvenClean,
    /// Reset a session whose answers showed a change (the tags and reported settings
    /// above), or that ran a statement calling what the scanner does not know: a function
    /// that is not on the clean list of built-ins (unqualified or in `pg_catalog`), a `DO`
    /// block, a temporary object. Statements that read and write tables through built-in
    /// functions leave the connection as clean, and on the shared path go out with no
    /// reset behind them: cheaper than [`SessionReset::UnlessProvenClean`] where
    /// statements take microseconds.
    ///
    /// Its blind spots: a function of the application reached without being named in the
    /// statement (through a view, a trigger, a rule, a default, a check, a domain, a cast
    /// or an operator), and a built-in name overloaded by an application function (same
    /// name, other argument types). A session change made there reaches the next caller
    /// (on the shared path, the next statement) unless the server reports it.
    WhenDirty,
    /// Reset every returned connection (one round trip per return).
    Always,
}

impl Keyword for SessionReset {
    const SETTING: &'static str = "session reset policy";
    const TABLE: &'static [(Self, &'static str)] = &[
        (SessionReset::UnlessProvenClean, "unless_proven_clean"),
        (SessionReset::WhenDirty, "when_dirty"),
        (SessionReset::Always, "always"),
        (SessionReset::Never, "never"),
    ];
}

impl SessionReset {
    /// The name used by `POOL_SESSION_RESET`: `never`, `when_dirty`,
    /// `unless_proven_clean` or `always`.
    pub fn as_str(self) -> &'static str {
        Keyword::as_str(self)
    }

    /// Whether a statement of this class leaves the session as it found it, in this
    /// policy's reading: proven clean for `UnlessProvenClean` and `Always`, calling only
    /// known built-ins for `WhenDirty` and `Never`.
    pub(crate) fn takes_as_clean(self, class: &crate::sql::Class) -> bool {
        match self {
            SessionReset::UnlessProvenClean | SessionReset::Always => class.session_clean,
            SessionReset::WhenDirty | SessionReset::Never => class.known_calls_only,
        }
    }
}

impl std::str::FromStr for SessionReset {
    type Err = Error;
    /// Any case, surrounding blanks ignored.
    fn from_str(s: &str) -> Result<SessionReset> {
        parse_keyword(&s.trim().to_ascii_lowercase()).map_err(Error::config)
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_size: 2,
            max_size: 10,
            acquire_timeout: Duration::from_secs(30),
            command_timeout: Some(Duration::from_secs(60)),
            statement_cache_capacity: 100,
            pipeline_depth: super::pipelined::DEFAULT_PIPELINE_DEPTH,
            max_lifetime: Some(Duration::from_secs(3600)),
            idle_timeout: Some(Duration::from_secs(600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            drain_timeout: Duration::from_secs(30),
            leak_detection: true,
            leak_detection_timeout: Duration::from_secs(30),
            leak_backtrace: false,
            reconnect_delays: [1, 2, 4, 8, 16].map(Duration::from_secs).to_vec(),
            reconnect_jitter: false,
            reconnect_probe_interval: Some(Duration::from_millis(250)),
            fail_fast: false,
            start_without_database: false,
            monitor_interval: Duration::from_millis(250),
            health: HealthThresholds::default(),
            metrics_prefix: "codebase_mcp_pool".to_string(),
            session_reset: SessionReset::UnlessProvenClean,
            slow_query_threshold: None,
            statement_metrics_limit: 100,
            query_span_level: tracing::Level::DEBUG,
            query_text_in_spans: true,
            pool_name: None,
        }
    }
}

/// The largest `POOL_MIN_SIZE` / `POOL_MAX_SIZE` (and `min_size` / `max_size`) accepted:
/// far more connections than one PostgreSQL server serves.
pub const MAX_POOL_SIZE: usize = 10_000;

/// The most shared-path statements in flight per connection accepted.
pub(crate) const MAX_PIPELINE_DEPTH: usize = 1024;

impl PoolConfig {
    /// Checks that the settings fit together.
    ///
    /// # Errors
    ///
    /// A configuration error saying which settings conflict.
    pub fn validate(&self) -> Result<()> {
        if self.max_size == 0 {
            return Err(Error::config("max_size (POOL_MAX_SIZE) must be at least 1"));
        }
        if self.max_size > MAX_POOL_SIZE {
            return Err(Error::config(format!(
                "max_size (POOL_MAX_SIZE={}) is more than the largest accepted, {}",
                self.max_size, MAX_POOL_SIZE
            )));
        }
        if self.min_size > self.max_size {
            return Err(Error::config(format!(
                "min_size (POOL_MIN_SIZE={}) is larger than max_size (POOL_MAX_SIZE={})",
                self.min_size, self.max_size
            )));
        }
        if self.pipeline_depth == 0 || self.pipeline_depth > MAX_PIPELINE_DEPTH {
            return Err(Error::config(format!(
                "pipeline_depth (POOL_PIPELINE_DEPTH={}) must be from 1 to {}",
                self.pipeline_depth, MAX_PIPELINE_DEPTH
            )));
        }
        if self.acquire_timeout.is_zero() {
            return Err(Error::config(
                "acquire_timeout (POOL_TIMEOUT) must be more than 0",
            ));
        }
        if self.leak_detection && self.leak_detection_timeout.is_zero() {
            return Err(Error::config(
                "leak_detection_timeout (POOL_LEAK_DETECTION_TIMEOUT) must be more than 0",
            ));
        }
        if self.monitor_interval.is_zero() {
            return Err(Error::config("monitor_interval must be more than 0"));
        }
        if self.reconnect_delays.is_empty() {
            return Err(Error::config("reconnect_delays must not be empty"));
        }
        check_metrics_prefix(&self.metrics_prefix)
    }
}

/// A metrics prefix must be a Prometheus name: letters, digits and `_`, not starting with a
/// digit.
pub(crate) fn check_metrics_prefix(prefix: &str) -> Result<()> {
    let ok = prefix
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if prefix.is_empty() || !ok {
        return Err(Error::config(format!(
            "metrics prefix `{prefix}` is not a valid Prometheus name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_the_guides() {
        let c = PoolConfig::from_env_with(|_| None).unwrap();
        assert_eq!((c.min_size, c.max_size), (2, 10));
        assert_eq!(c.acquire_timeout, Duration::from_secs(30));
        assert_eq!(c.command_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.max_lifetime, Some(Duration::from_secs(3600)));
        assert!(c.leak_detection);
        assert_eq!(c.leak_detection_timeout, Duration::from_secs(30));
        assert_eq!(c.session_reset, SessionReset::UnlessProvenClean);
    }

    #[test]
    fn session_reset_from_the_environment() {
        for (v, want) in [
            ("when_dirty", SessionReset::WhenDirty),
            ("unless_proven_clean", SessionReset::UnlessProvenClean),
            ("always", SessionReset::Always),
            ("NEVER", SessionReset::Never),
        ] {
            let c = PoolConfig::from_env_with(env(&[("POOL_SESSION_RESET", v)])).unwrap();
            assert_eq!(c.session_reset, want, "{v}");
            assert_eq!(want.as_str().parse::<SessionReset>().unwrap(), want);
        }
    }

    #[test]
    fn variables_override() {
        let c = PoolConfig::from_env_with(env(&[
            ("POOL_MIN_SIZE", "1"),
            ("POOL_MAX_SIZE", "20"),
            ("POOL_TIMEOUT", "2.5"),
            ("POOL_ENABLE_LEAK_DETECTION", "false"),
            ("POOL_LEAK_DETECTION_TIMEOUT", "120"),
        ]))
        .unwrap();
        assert_eq!((c.min_size, c.max_size), (1, 20));
        assert_eq!(c.acquire_timeout, Duration::from_millis(2500));
        assert!(!c.leak_detection);
        assert_eq!(c.leak_detection_timeout, Duration::from_secs(120));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (pairs, var) in [
            (vec![("POOL_MAX_SIZE", "ten")], "POOL_MAX_SIZE"),
            (vec![("POOL_MIN_SIZE", "-1")], "POOL_MIN_SIZE"),
            (vec![("POOL_TIMEOUT", "soon")], "POOL_TIMEOUT"),
            (vec![("POOL_TIMEOUT", "-3")], "POOL_TIMEOUT"),
            (
                vec![("POOL_ENABLE_LEAK_DETECTION", "maybe")],
                "POOL_ENABLE_LEAK_DETECTION",
            ),
            (
                vec![("POOL_MIN_SIZE", "5"), ("POOL_MAX_SIZE", "2")],
                "POOL_MIN_SIZE",
            ),
            (vec![("POOL_MAX_SIZE", "0")], "POOL_MAX_SIZE"),
            (
                vec![("POOL_STATEMENT_CACHE_CAPACITY", "lots")],
                "POOL_STATEMENT_CACHE_CAPACITY",
            ),
            (
                vec![("POOL_SESSION_RESET", "sometimes")],
                "POOL_SESSION_RESET",
            ),
        ] {
            let e = PoolConfig::from_env_with(env(&pairs)).unwrap_err();
            assert!(e.is_config());
            assert!(e.to_string().contains(var), "{e}");
        }
    }
}
