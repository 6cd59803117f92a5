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
    let level = match env("LOG_LEVEL") {
        Some(v) => logging::parse_level(&v)?,
        None => LevelFilter::INFO,
    };
    let format = match env("LOG_FORMAT") {
        Some(v) => logging::parse_format(&v)?,
        None => default_format,
    };
    let file = match env("LOG_FILE") {
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
