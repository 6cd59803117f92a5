//! Helpers for the `wirepool` binary's tests: start it as a process, read its logs, talk
//! HTTP to it on loopback.

#![allow(dead_code, unused_imports)] // each test binary uses a part

use std::process::Command;

pub(crate) use wirepool_testkit::http::{get, request, Response};
pub(crate) use wirepool_testkit::process::Proc;

/// The variables the binary reads besides the pool's own (`wirepool::pool::ENVIRONMENT`);
/// all are cleared so the caller's environment does not leak in.
const OTHER_VARS: &[&str] = &[
    "DATABASE_URL",
    "LOG_LEVEL",
    "LOG_FILE",
    "LOG_FORMAT",
    "WIREPOOL_BIND",
    "WIREPOOL_METRICS_BIND",
    "WIREPOOL_MCP_ALLOWED_HOSTS",
    "WIREPOOL_FAIL_FAST_START",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
];

/// Every variable the binary reads.
pub(crate) fn vars() -> impl Iterator<Item = &'static str> {
    wirepool::pool::ENVIRONMENT
        .iter()
        .map(|v| v.name)
        .chain(OTHER_VARS.iter().copied())
}

/// A `wirepool` command with a clean environment plus `env`.
pub(crate) fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wirepool"));
    c.args(args);
    for v in vars() {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}
