//! The command line: configuration errors stop the program before anything starts, with
//! one line naming the variable; `wirepool check` reports or explains.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use wirepool::error::sqlstate;
use wirepool_testkit::{Cluster, Role};

use common::command;

/// Runs `wirepool args` with `env`, returning (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = command(args, env)
        .output()
        .expect("the wirepool binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn malformed_settings_exit_2_with_one_line_naming_the_variable() {
    // A valid URL to a port nothing listens on: a run that got past the settings would
    // fail differently (and later).
    let url = format!("postgres://app@127.0.0.1:{}/app", closed_port());
    let port = closed_port();
    let bind = format!("127.0.0.1:{port}");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("POOL_MAX_SIZE", "ten")], "POOL_MAX_SIZE"),
        (
            &[("POOL_MIN_SIZE", "5"), ("POOL_MAX_SIZE", "2")],
            "POOL_MIN_SIZE",
        ),
        (&[("POOL_TIMEOUT", "-3")], "POOL_TIMEOUT"),
        (&[("POOL_COMMAND_TIMEOUT", "1m")], "POOL_COMMAND_TIMEOUT"),
        (
            &[("POOL_MAX_CONNECTION_LIFETIME", "forever")],
            "POOL_MAX_CONNECTION_LIFETIME",
        ),
        (
            &[("POOL_ENABLE_LEAK_DETECTION", "perhaps")],
            "POOL_ENABLE_LEAK_DETECTION",
        ),
        (
            &[("POOL_LEAK_DETECTION_TIMEOUT", "x")],
            "POOL_LEAK_DETECTION_TIMEOUT",
        ),
        (
            &[("POOL_STATEMENT_CACHE_CAPACITY", "-1")],
            "POOL_STATEMENT_CACHE_CAPACITY",
        ),
        (&[("LOG_LEVEL", "LOUD")], "LOG_LEVEL"),
        (&[("LOG_FORMAT", "yaml")], "LOG_FORMAT"),
    ];
    for (env, var) in cases {
        let mut env = env.to_vec();
        env.push(("DATABASE_URL", &url));
        env.push(("WIREPOOL_BIND", &bind));
        for cmd in ["serve", "check"] {
            let t = Instant::now();
            let (code, out, err) = run(&[cmd], &env);
            assert_eq!(code, 2, "{cmd} {env:?}: {err}");
            assert_eq!(err.lines().count(), 1, "one line: {err:?}");
            assert!(err.contains(var), "{err:?} names {var}");
            assert!(out.is_empty(), "{out:?}");
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "before anything starts"
            );
        }
    }
    // Nothing was started: the port is still free.
    TcpListener::bind(&bind).expect("serve never bound its port");
}

#[test]
fn a_bad_or_missing_database_url_is_named_without_its_password() {
    for url in [
        "postgres://app:hunter2@127.0.0.1:notaport/app",
        "mysql://app:hunter2@127.0.0.1/app",
        "postgres://app:hunter2@127.0.0.1/app?sslmode=sometimes",
    ] {
        let (code, _, err) = run(&["serve"], &[("DATABASE_URL", url)]);
        assert_eq!(code, 2, "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.contains("DATABASE_URL"), "{err:?}");
        assert!(!err.contains("hunter2"), "{err:?}");
    }
    for cmd in ["serve", "check", "mcp"] {
        let (code, _, err) = run(&[cmd], &[]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(err.contains("DATABASE_URL is not set"), "{err:?}");
    }
    let (code, _, err) = run(&["serve", "--bind", "not-an-address"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--bind"), "{err}");
}

#[test]
fn check_reports_version_auth_and_latency() {
    let pg = wirepool_testkit::cluster();
    let (code, out, err) = run(&["check"], &[("DATABASE_URL", &pg.url(Role::Scram))]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("connected: scram_user@127.0.0.1:"), "{out}");
    let version = out
        .lines()
        .find_map(|l| l.strip_prefix("server version: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{version}"
    );
    assert!(out.contains("authentication: scram-sha-256"), "{out}");
    assert!(out.contains("round trip (SELECT 1 x 10): min "), "{out}");
    assert!(!out.contains("scram_secret") && !err.contains("scram_secret"));

    let (code, out, _) = run(&["check"], &[("DATABASE_URL", &pg.url(Role::Md5))]);
    assert_eq!(code, 0);
    assert!(out.contains("authentication: md5"), "{out}");
}

#[test]
fn check_explains_failures() {
    let pg = wirepool_testkit::cluster();
    let port = pg.port();
    let cases = [
        (
            format!("postgres://scram_user:wrong-guess@127.0.0.1:{port}/postgres"),
            sqlstate::INVALID_PASSWORD,
            "wrong password",
        ),
        (
            format!("postgres://trust_user@127.0.0.1:{port}/no_such_db"),
            sqlstate::INVALID_CATALOG_NAME,
            "database does not exist",
        ),
        (
            format!("postgres://trust_user@127.0.0.1:{}/postgres", closed_port()),
            "Connection refused",
            "is PostgreSQL running",
        ),
    ];
    for (url, what, cause) in cases {
        let (code, out, err) = run(&["check"], &[("DATABASE_URL", &url)]);
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert!(err.contains(what), "{err}");
        assert!(
            err.contains("likely cause: ") && err.contains(cause),
            "{err}"
        );
        assert!(!err.contains("wrong-guess"), "no password in {err}");
    }
}

#[test]
fn check_says_when_the_password_is_missing() {
    let pg = wirepool_testkit::cluster();
    for role in ["scram_user", "md5_user"] {
        let url = format!("postgres://{role}@127.0.0.1:{}/postgres", pg.port());
        let (code, out, err) = run(&["check"], &[("DATABASE_URL", &url)]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("no password configured"), "{err}");
        assert!(
            err.contains("likely cause: the role needs a password and none is configured"),
            "{err}"
        );
        assert!(!err.contains("does not support"), "{err}");
    }
}

#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    let pg = wirepool_testkit::cluster();
    let mut cmd = command(&["check"], &[("DATABASE_URL", &pg.url(Role::Trust))]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // `wirepool check | head -0`: the reader is gone before anything is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn serve_help_lists_the_environment() {
    let (code, out, _) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    for var in common::vars().filter(|v| !v.starts_with("PG")) {
        assert!(out.contains(var), "{var} missing from:\n{out}");
    }
    for var in wirepool::pool::ENVIRONMENT {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(var.name))
            .unwrap_or_else(|| panic!("{} missing from:\n{out}", var.name));
        assert!(line.contains(&format!("({})", var.default)), "{line}");
    }
}

#[test]
fn check_reports_the_encryption() {
    let pg = Cluster::start_tls().unwrap_or_else(|e| panic!("throwaway PostgreSQL with TLS: {e}"));
    let url = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        pg.url(Role::Tls),
        pg.ca_cert().display()
    );
    let (code, out, err) = run(&["check"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("encryption: TLSv1."), "{out}");
    assert!(out.contains("(sslmode=verify-full)"), "{out}");
    assert!(
        out.contains("authentication: scram-sha-256 with channel binding"),
        "{out}"
    );
    let (code, out, _) = run(
        &["check"],
        &[(
            "DATABASE_URL",
            &format!("{}&sslmode=disable", pg.url(Role::Scram)),
        )],
    );
    assert_eq!(code, 0);
    assert!(out.contains("encryption: none (sslmode=disable)"), "{out}");
    // A CA that did not sign the server's certificate: explained.
    let url = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        pg.url(Role::Tls),
        pg.other_ca_cert().display()
    );
    let (code, _, err) = run(&["check"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("likely cause: TLS could not be set up"),
        "{err}"
    );
    assert!(
        !err.contains(&pg.other_ca_cert().display().to_string()),
        "{err}"
    );
}

#[test]
fn check_lists_each_host_and_its_role() {
    let primary = wirepool_testkit::cluster();
    let standby = primary.start_standby().unwrap();
    let gone = closed_port();
    let url = format!(
        "postgres://trust_user@127.0.0.1:{},127.0.0.1:{},127.0.0.1:{gone}/postgres?target_session_attrs=read-write&connect_timeout=2",
        standby.port(),
        primary.port()
    );
    let (code, out, err) = run(&["check"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("host 127.0.0.1:{}: standby", standby.port())),
        "{out}"
    );
    assert!(
        out.contains(&format!("host 127.0.0.1:{}: primary", primary.port())),
        "{out}"
    );
    assert!(
        out.contains(&format!("host 127.0.0.1:{gone}: not usable")),
        "{out}"
    );
    assert!(
        out.contains(&format!("(to 127.0.0.1:{})", primary.port())),
        "{out}"
    );
}
