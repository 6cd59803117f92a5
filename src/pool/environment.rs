//! The pool's environment variables: one table, read by [`PoolConfig::from_env`], listed
//! by `wirepool serve --help`, and checked against README.md and the operator's guide by a
//! test, so the list is written once.

use std::time::Duration;

use super::config::{PoolConfig, SessionReset, MAX_PIPELINE_DEPTH, MAX_POOL_SIZE};
use crate::error::{Error, Result};

/// One environment variable the pool reads (see [`ENVIRONMENT`]).
#[derive(Debug)]
pub struct EnvVar {
    /// The variable's name, e.g. `POOL_MAX_SIZE`.
    pub name: &'static str,
    /// Its default, written as the variable would be.
    pub default: &'static str,
    /// What it sets, in a few words.
    pub meaning: &'static str,
    apply: fn(&mut PoolConfig, &str, &str) -> Result<()>,
}

impl EnvVar {
    /// Sets what this variable sets from `value`.
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable, for a malformed or out-of-range value.
    pub fn apply(&self, cfg: &mut PoolConfig, value: &str) -> Result<()> {
        (self.apply)(cfg, self.name, value)
    }
}

/// The largest statement cache accepted per connection.
const MAX_STATEMENT_CACHE: usize = 100_000;

/// Every `POOL_*` variable [`PoolConfig::from_env`] reads, with its default.
pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar {
        name: "POOL_MIN_SIZE",
        default: "2",
        meaning: "connections kept open",
        apply: |c, var, v| {
            c.min_size = parse_count(var, v, MAX_POOL_SIZE)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_MAX_SIZE",
        default: "10",
        meaning: "most connections at once",
        apply: |c, var, v| {
            c.max_size = parse_count(var, v, MAX_POOL_SIZE)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_TIMEOUT",
        default: "30",
        meaning: "seconds acquire() may wait",
        apply: |c, var, v| {
            c.acquire_timeout = parse_seconds(var, v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_COMMAND_TIMEOUT",
        default: "60",
        meaning: "seconds a query may run (0: none)",
        apply: |c, var, v| {
            c.command_timeout = Some(parse_seconds(var, v)?).filter(|d| !d.is_zero());
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_MAX_CONNECTION_LIFETIME",
        default: "3600",
        meaning: "seconds before a connection is replaced (0: never)",
        apply: |c, var, v| {
            c.max_lifetime = Some(parse_seconds(var, v)?).filter(|d| !d.is_zero());
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_ENABLE_LEAK_DETECTION",
        default: "true",
        meaning: "report connections held too long",
        apply: |c, var, v| {
            c.leak_detection = parse_bool(var, v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_LEAK_DETECTION_TIMEOUT",
        default: "30",
        meaning: "seconds held before a report",
        apply: |c, var, v| {
            c.leak_detection_timeout = parse_seconds(var, v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_LEAK_BACKTRACE",
        default: "false",
        meaning: "capture the full stack at each acquire",
        apply: |c, var, v| {
            c.leak_backtrace = parse_bool(var, v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_STATEMENT_CACHE_CAPACITY",
        default: "100",
        meaning: "prepared statements per connection (0 behind PgBouncer)",
        apply: |c, var, v| {
            c.statement_cache_capacity = parse_count(var, v, MAX_STATEMENT_CACHE)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_PIPELINE_DEPTH",
        default: "16",
        meaning: "statements of pool.query/execute in flight per connection",
        apply: |c, var, v| {
            c.pipeline_depth = parse_count(var, v, MAX_PIPELINE_DEPTH)?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_SESSION_RESET",
        default: "unless_proven_clean",
        meaning: "reset a returned session: unless_proven_clean, when_dirty, always or never",
        apply: |c, var, v| {
            c.session_reset = v
                .parse::<SessionReset>()
                .map_err(|e| Error::config(format!("{var}: {e}")))?;
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_SLOW_QUERY_THRESHOLD",
        default: "0",
        meaning: "milliseconds from which a query is logged as slow (0: never)",
        apply: |c, var, v| {
            let ms = parse_count(var, v, 86_400_000)?;
            c.slow_query_threshold =
                Some(Duration::from_millis(ms as u64)).filter(|d| !d.is_zero());
            Ok(())
        },
    },
    EnvVar {
        name: "POOL_STATEMENT_METRICS_LIMIT",
        default: "100",
        meaning: "statement texts with metrics of their own, the rest counted as other (0: no statement metrics)",
        apply: |c, var, v| {
            c.statement_metrics_limit = parse_count(var, v, 100_000)?;
            Ok(())
        },
    },
];

fn parse_count(var: &str, v: &str, max: usize) -> Result<usize> {
    let n = v.trim().parse::<usize>().map_err(|_| {
        Error::config(format!(
            "{var}: `{v}` is not a whole number (e.g. {var}=10)"
        ))
    })?;
    if n > max {
        return Err(Error::config(format!(
            "{var}: {n} is more than the largest accepted, {max}"
        )));
    }
    Ok(n)
}

fn parse_seconds(var: &str, v: &str) -> Result<Duration> {
    let secs = v.trim().parse::<f64>().map_err(|_| {
        Error::config(format!(
            "{var}: `{v}` is not a number of seconds (e.g. {var}=30)"
        ))
    })?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(Error::config(format!(
            "{var}: `{v}` is out of range (0 to 1e9 seconds)"
        )));
    }
    // A value that is not 0 but rounds to less than a millisecond would become "none" or
    // "at once" without a word.
    if secs > 0.0 && secs < 0.001 {
        return Err(Error::config(format!(
            "{var}: `{v}` is less than a millisecond (the smallest is 0.001; 0 where it means none)"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_bool(var: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(format!(
            "{var}: `{v}` is not a boolean (true or false)"
        ))),
    }
}

impl PoolConfig {
    /// The defaults, overridden by the `POOL_*` environment variables that are set (the
    /// list, with each default: [`ENVIRONMENT`](crate::pool::ENVIRONMENT)).
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable whose value is malformed.
    pub fn from_env() -> Result<PoolConfig> {
        Self::from_env_with(|k| std::env::var(k).ok())
    }

    /// As [`PoolConfig::from_env`], reading variables through `env`.
    ///
    /// # Errors
    ///
    /// A configuration error naming the variable whose value is malformed.
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Result<PoolConfig> {
        let mut c = PoolConfig::default();
        for var in ENVIRONMENT {
            if let Some(v) = env(var.name) {
                var.apply(&mut c, &v)?;
            }
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_default_is_the_configs_own() {
        let defaults = PoolConfig::default();
        for var in ENVIRONMENT {
            let mut c = PoolConfig::default();
            var.apply(&mut c, var.default).unwrap();
            assert_eq!(c, defaults, "{} = {}", var.name, var.default);
        }
    }

    #[test]
    fn each_variable_is_listed_once() {
        let mut names: Vec<_> = ENVIRONMENT.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENVIRONMENT.len());
    }

    #[test]
    fn readme_and_the_operators_guide_list_each_variable_with_its_default() {
        let readme = include_str!("../../README.md");
        let guide = include_str!("../../docs/operators-guide.md");
        for var in ENVIRONMENT {
            assert!(
                readme.contains(&format!("`{}`", var.name)),
                "{} missing from README.md",
                var.name
            );
            let row = format!("| `{}` | {} |", var.name, var.default);
            assert!(
                guide.lines().any(|l| l.starts_with(&row)),
                "no row `{row}` in docs/operators-guide.md"
            );
        }
    }

    #[test]
    fn absurd_values_are_refused() {
        for (name, v) in [
            ("POOL_MAX_SIZE", "10000000000"),
            ("POOL_MAX_SIZE", "18446744073709551615"),
            ("POOL_MIN_SIZE", "18446744073709551615"),
            ("POOL_MAX_SIZE", "10001"),
            ("POOL_COMMAND_TIMEOUT", "1e-10"),
            ("POOL_TIMEOUT", "0.0001"),
            ("POOL_STATEMENT_CACHE_CAPACITY", "1000000000"),
            ("POOL_PIPELINE_DEPTH", "100000"),
        ] {
            let var = ENVIRONMENT.iter().find(|e| e.name == name).unwrap();
            let e = var.apply(&mut PoolConfig::default(), v).unwrap_err();
            assert!(
                e.is_config() && e.to_string().contains(name),
                "{name}={v}: {e}"
            );
        }
        let var = ENVIRONMENT
            .iter()
            .find(|e| e.name == "POOL_MAX_SIZE")
            .unwrap();
        let mut c = PoolConfig::default();
        var.apply(&mut c, "10000").unwrap();
        assert_eq!(c.max_size, MAX_POOL_SIZE);
    }
}
