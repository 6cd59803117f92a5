//! Settings from the environment, checked before
//! anything starts: a malformed value is one line naming the variable.
//!
//! `DATABASE_URL` (libpq URL or key=value string; required by `serve`, `mcp`, `check`), the
//! pool's `POOL_*` variables (their table: `wirepool::pool::ENVIRONMENT`, read by
//! `PoolConfig::from_env_with`), and the binary's own (`LOG_LEVEL`, `LOG_FILE`,
//! `LOG_FORMAT`; `demo` logs text by default).

use std::path::PathBuf;

use tracing_subscriber::filter::LevelFilter;
use wirepool::{ConnectConfig, PoolConfig};

use crate::logging::{self, LogFormat, LogSettings};

pub(crate) const LOG_LEVEL: &str = "LOG_LEVEL";
pub(crate) const LOG_FILE: &str = "LOG_FILE";
pub(crate) const LOG_FORMAT: &str = "LOG_FORMAT";
pub(crate) const BIND: &str = "WIREPOOL_BIND";
pub(crate) const METRICS_BIND: &str = "WIREPOOL_METRICS_BIND";
pub(crate) const MCP_ALLOWED_HOSTS: &str = "WIREPOOL_MCP_ALLOWED_HOSTS";
pub(crate) const FAIL_FAST_START: &str = "WIREPOOL_FAIL_FAST_START";

/// The variables the binary reads besides `DATABASE_URL` and the pool's own
/// ([`wirepool::pool::ENVIRONMENT`]): name, default (empty: none), meaning. The `--help` of
/// `serve` and `mcp` and the operator's guide list them (a test checks the guide).
pub(crate) const SERVER_ENVIRONMENT: &[(&str, &str, &str)] = &[
    (LOG_LEVEL, "INFO", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    (LOG_FILE, "stderr", "append logs to this file"),
    (LOG_FORMAT, "json", "json or text"),
    (BIND, "127.0.0.1:3000", "same as --bind"),
    (METRICS_BIND, "", "same as --metrics-bind"),
    (MCP_ALLOWED_HOSTS, "", "same as --mcp-allowed-hosts"),
    (FAIL_FAST_START, "false", "same as --fail-fast-start"),
];

/// Everything read from the environment.
#[derive(Debug)]
pub(crate) struct Settings {
    /// `None` when `DATABASE_URL` is not set.
    pub(crate) connect: Option<ConnectConfig>,
    pub(crate) pool: PoolConfig,
    pub(crate) log: LogSettings,
}

/// Reads the settings through `env` (a lookup, so tests need not touch the process
/// environment). `default_format` is the log format when `LOG_FORMAT` is unset.
pub(crate) fn read(
    env: impl Fn(&str) -> Option<String>,
    default_format: LogFormat,
) -> Result<Settings, String> {
    let level = match env(LOG_LEVEL) {
        Some(v) => logging::parse_level(&v)?,
        None => LevelFilter::INFO,
    };
    let format = match env(LOG_FORMAT) {
        Some(v) => logging::parse_format(&v)?,
        None => default_format,
    };
    let file = match env(LOG_FILE) {
        Some(v) if v.trim().is_empty() => return Err("LOG_FILE: empty path".into()),
        Some(v) => Some(PathBuf::from(v)),
        None => None,
    };
    let connect = match env("DATABASE_URL") {
        // Parsing fills the gaps from PG* variables, through the same lookup.
        Some(url) => Some(
            ConnectConfig::parse_with_env(&url, &env)
                .map_err(|e| format!("DATABASE_URL: {}", chain(&e)))?,
        ),
        None => None,
    };
    let pool = PoolConfig::from_env_with(&env).map_err(|e| chain(&e))?;
    Ok(Settings {
        connect,
        pool,
        log: LogSettings {
            level,
            file,
            format,
        },
    })
}

/// The error and its causes on one line, without the kind's generic prefix for
/// configuration errors (their detail already names the variable).
pub(crate) fn chain(e: &wirepool::Error) -> String {
    let full = wirepool::error::chain(e);
    match full.strip_prefix("invalid configuration: ") {
        Some(rest) if e.is_config() => rest.to_string(),
        _ => full,
    }
}

#[cfg(test)]
mod tests {
    /// The operator's guide has a row per variable of the binary, with its default.
    #[test]
    fn the_operators_guide_lists_each_variable_with_its_default() {
        let guide = include_str!("../../docs/operators-guide.md");
        for (name, default, _) in super::SERVER_ENVIRONMENT {
            let default = if default.is_empty() { "none" } else { default };
            let row = format!("| `{name}` | {default} |");
            assert!(
                guide.lines().any(|l| l.starts_with(&row)),
                "no row `{row}` in docs/operators-guide.md"
            );
        }
    }

    use super::*;

    fn read_with(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        read(
            |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            },
            LogFormat::Json,
        )
    }

    #[test]
    fn defaults_without_anything_set() {
        let s = read_with(&[]).unwrap();
        assert!(s.connect.is_none());
        assert_eq!(s.pool.max_size, 10);
        assert_eq!(s.log.level, LevelFilter::INFO);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.file, None);
    }

    #[test]
    fn each_malformed_value_names_its_variable() {
        for (pairs, var) in [
            (&[("POOL_MAX_SIZE", "ten")][..], "POOL_MAX_SIZE"),
            (
                &[("POOL_MIN_SIZE", "5"), ("POOL_MAX_SIZE", "2")][..],
                "POOL_MIN_SIZE",
            ),
            (&[("POOL_TIMEOUT", "soon")][..], "POOL_TIMEOUT"),
            (
                &[("POOL_ENABLE_LEAK_DETECTION", "maybe")][..],
                "POOL_ENABLE_LEAK_DETECTION",
            ),
            (&[("LOG_LEVEL", "loud")][..], "LOG_LEVEL"),
            (&[("LOG_FORMAT", "xml")][..], "LOG_FORMAT"),
            (
                &[("DATABASE_URL", "postgres://u@h:notaport/db")][..],
                "DATABASE_URL",
            ),
        ] {
            let e = read_with(pairs).unwrap_err();
            assert!(e.contains(var), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn a_bad_url_error_does_not_echo_the_password() {
        let e = read_with(&[("DATABASE_URL", "postgres://u:hunter2@h:99999999/db")]).unwrap_err();
        assert!(e.starts_with("DATABASE_URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
