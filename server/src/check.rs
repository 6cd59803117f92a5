//! `wirepool check`: connect once with the configured settings and say what happened.
//!
//! On success: the server's version, the authentication method used, the encryption (TLS
//! protocol version and cipher, or none), and the round trip of `SELECT 1`. On failure: the error and its likely cause (refused, authentication,
//! missing role or database, timeout). Exit code 0 or 1.

use std::time::{Duration, Instant};

use wirepool::error::sqlstate;
use wirepool::{ConnectConfig, Connection, Error, ErrorKind};

use crate::settings::chain;

/// Round trips measured.
const SAMPLES: usize = 10;

/// Runs the check, printing to stdout; `Err` carries the lines to print on failure.
pub(crate) async fn run(cfg: &ConnectConfig) -> Result<(), String> {
    let target = describe(cfg);
    if cfg.hosts().len() > 1 {
        // Each server of the list on its own: reachable, and what it is.
        for i in 0..cfg.hosts().len() {
            let one = cfg.for_host(i);
            let name = format!("{}:{}", one.hosts()[0], one.port());
            match Connection::connect(&one).await {
                Ok(c) => {
                    let kind = match c.in_recovery() {
                        Some(true) => "standby (in recovery, read-only)",
                        Some(false)
                            if c.parameter("default_transaction_read_only") == Some("on") =>
                        {
                            "primary, read-only by default"
                        }
                        Some(false) => "primary",
                        None => "server (its role is not reported before PostgreSQL 14)",
                    };
                    outln!("host {name}: {kind}");
                    let _ = c.close().await;
                }
                Err(e) => outln!("host {name}: not usable: {}", chain(&e)),
            }
        }
        outln!(
            "target_session_attrs={}, load_balance_hosts={}",
            cfg.target_session_attrs().as_str(),
            cfg.load_balance_hosts().as_str()
        );
    }
    let t = Instant::now();
    let mut conn = Connection::connect(cfg)
        .await
        .map_err(|e| failure(&target, &e))?;
    let connect_time = t.elapsed();
    let mut rtts = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let rows = conn
            .simple_query("SELECT 1")
            .await
            .map_err(|e| failure(&target, &e))?;
        rtts.push(t.elapsed());
        if rows.first().and_then(|r| r.get(0)) != Some("1") {
            return Err(format!(
                "check failed: {target}: SELECT 1 returned an unexpected result"
            ));
        }
    }
    rtts.sort_unstable();
    outln!("connected: {target} (to {})", conn.server_addr());
    outln!(
        "server version: {}",
        conn.parameter("server_version").unwrap_or("(not reported)")
    );
    outln!("authentication: {}", conn.auth_method().as_str());
    match conn.tls_info() {
        Some(tls) => outln!(
            "encryption: {} {} (sslmode={})",
            tls.protocol,
            tls.cipher,
            cfg.ssl_mode().as_str()
        ),
        None => outln!("encryption: none (sslmode={})", cfg.ssl_mode().as_str()),
    }
    outln!("connect time: {}", ms(connect_time));
    outln!(
        "round trip (SELECT 1 x {SAMPLES}): min {}, median {}, max {}",
        ms(rtts[0]),
        ms(rtts[SAMPLES / 2]),
        ms(rtts[SAMPLES - 1])
    );
    let _ = conn.close().await;
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `user@host:port,host2:port2/db`, never the password.
fn describe(cfg: &ConnectConfig) -> String {
    let hosts: Vec<String> = cfg
        .hosts()
        .iter()
        .zip(cfg.ports())
        .map(|(h, p)| format!("{h}:{p}"))
        .collect();
    format!("{}@{}/{}", cfg.user(), hosts.join(","), cfg.dbname())
}

fn failure(target: &str, e: &Error) -> String {
    format!(
        "check failed: {target}: {}\nlikely cause: {}",
        chain(e),
        likely_cause(e)
    )
}

/// A sentence an operator can act on.
pub(crate) fn likely_cause(e: &Error) -> &'static str {
    match e.code() {
        Some(sqlstate::INVALID_PASSWORD) => "wrong password for this role (check DATABASE_URL, PGPASSWORD or the password file)",
        Some(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION) => {
            "the role does not exist or pg_hba.conf does not allow it from this host"
        }
        Some(sqlstate::INVALID_CATALOG_NAME) => "the database does not exist (create it, or fix the name in DATABASE_URL)",
        Some(sqlstate::TOO_MANY_CONNECTIONS) => "the server has no connection slots left (max_connections or the role's limit)",
        Some(sqlstate::CANNOT_CONNECT_NOW) => "the server is starting up or shutting down; try again shortly",
        Some(_) => "the server refused the connection; see the message above",
        None if e.is_timeout() => {
            "no answer in time: the host is unreachable, firewalled, or overloaded"
        }
        None if e.kind() == ErrorKind::ServerMismatch => {
            "the server is not of the kind target_session_attrs asks for (a standby where a primary is wanted?)"
        }
        None if e.kind() == ErrorKind::AllHostsFailed => {
            "no host of the list could be used; each host's reason is above"
        }
        None if e.is_io() => {
            "nothing accepted the connection: is PostgreSQL running and listening on that host and port?"
        }
        None if e.kind() == ErrorKind::MissingPassword => {
            "the role needs a password and none is configured: put it in DATABASE_URL, set PGPASSWORD, or add it to the password file (~/.pgpass or PGPASSFILE, readable by its owner only)"
        }
        None if e.kind() == ErrorKind::Encoding => {
            "the role or database sets client_encoding to something other than UTF8"
        }
        None if e.kind() == ErrorKind::Tls => {
            "TLS could not be set up: check sslmode, sslrootcert and the server's certificate"
        }
        None if e.is_authentication() => {
            "authentication could not proceed: an unsupported method, or channel_binding=require without SCRAM-SHA-256-PLUS over TLS"
        }
        None if e.is_config() => "the connection settings are not valid",
        None => "the server closed the connection or spoke an unexpected protocol",
    }
}
