//! `wirepool serve` as a process against a throwaway PostgreSQL: the health endpoint's
//! schema and status codes through an outage, metrics that pass promtool, the drain on
//! SIGTERM, JSON logs without secrets.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use wirepool_testkit::{cluster, Role};

use common::{command, get, request, Proc};

fn serve(url: &str, extra: &[(&str, &str)]) -> Proc {
    let mut env = vec![
        ("DATABASE_URL", url),
        ("WIREPOOL_BIND", "127.0.0.1:0"),
        ("POOL_MIN_SIZE", "2"),
        ("POOL_MAX_SIZE", "5"),
        ("POOL_TIMEOUT", "2"),
    ];
    env.extend_from_slice(extra);
    Proc::spawn(command(&["serve"], &env))
}

fn is_rfc3339_millis(s: &str) -> bool {
    // 2025-10-13T14:30:00.000Z
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

/// Checks the guide's schema field by field and returns the document.
fn health_doc(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        sorted(top),
        vec!["database", "state", "status", "timestamp", "uptime_seconds"],
        "{body}"
    );
    assert!(
        [
            "INITIALIZING",
            "HEALTHY",
            "DEGRADED",
            "UNHEALTHY",
            "RECOVERING",
            "SHUTTING_DOWN",
            "TERMINATED"
        ]
        .contains(&v["state"].as_str().unwrap()),
        "{body}"
    );
    assert!(
        ["healthy", "degraded", "unhealthy"].contains(&v["status"].as_str().unwrap()),
        "{body}"
    );
    assert!(
        is_rfc3339_millis(v["timestamp"].as_str().unwrap()),
        "{body}"
    );
    assert!(v["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let db = &v["database"];
    let keys: Vec<&str> = db.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        sorted(keys),
        vec!["host", "last_error", "latency_ms", "pool", "status"],
        "{body}"
    );
    assert!(db["status"].is_string());
    assert!(db["latency_ms"].is_number() || db["latency_ms"].is_null());
    assert!(db["last_error"].is_string() || db["last_error"].is_null());
    assert!(db["host"].is_string() || db["host"].is_null());
    let pool = &db["pool"];
    let keys: Vec<&str> = pool
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        sorted(keys),
        vec!["active", "idle", "total", "waiting"],
        "{body}"
    );
    for k in ["active", "idle", "total", "waiting"] {
        assert!(pool[k].is_u64(), "{k} in {body}");
    }
    v
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

#[test]
fn health_follows_the_database_through_an_outage() {
    let mut pg = cluster();
    let mut p = serve(&pg.url(Role::Scram), &[("LOG_LEVEL", "INFO")]);
    let addr = p.wait_listening();
    let r = get(addr, "/health", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = health_doc(&r.body);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["database"]["status"], "connected");
    assert_eq!(v["database"]["pool"]["total"], 2);
    assert!(v["database"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(v["database"]["last_error"].is_null());

    pg.kill().unwrap();
    let down = p.eventually(
        Duration::from_secs(20),
        "503 while the database is down",
        || {
            let r = get(addr, "/health", &[]);
            (r.status == 503).then_some(r)
        },
    );
    let v = health_doc(&down.body);
    assert_eq!(v["status"], "unhealthy", "{}", down.body);
    assert_eq!(v["database"]["pool"]["total"], 0);
    assert!(v["database"]["last_error"].is_string());

    assert!(
        ["UNHEALTHY", "RECOVERING"].contains(&v["state"].as_str().unwrap()),
        "{}",
        down.body
    );
    let cause = v["database"]["last_error"].as_str().unwrap();
    assert!(cause.starts_with("Database connection "), "{cause}");

    pg.start_again().unwrap();
    // Back to serving, and HEALTHY: the outage's errors stop counting once min_size
    // connections are back.
    let up = p.eventually(Duration::from_secs(30), "healthy after the restart", || {
        let r = get(addr, "/health", &[]);
        (r.status == 200 && health_doc(&r.body)["status"] == "healthy").then_some(r)
    });
    let v = health_doc(&up.body);
    assert_eq!(v["state"], "HEALTHY", "{}", up.body);
    assert_eq!(v["database"]["pool"]["total"], 2, "{}", up.body);
    let logs = p.stderr_text();
    for line in [
        "Health status: HEALTHY -> UNHEALTHY",
        "Reconnection attempt 1/5 (delay: 1s)",
        "Connection pool recovered",
        "Health status: RECOVERING -> HEALTHY",
    ] {
        assert!(logs.contains(line), "{line:?} in\n{logs}");
    }
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn serve_starts_before_its_database_and_turns_healthy_without_a_restart() {
    let mut pg = cluster();
    pg.kill().unwrap();
    // As today, for those who want it: exit at once.
    let mut p = Proc::spawn(command(
        &["serve", "--fail-fast-start"],
        &[
            ("DATABASE_URL", &pg.url(Role::Trust)),
            ("WIREPOOL_BIND", "127.0.0.1:0"),
        ],
    ));
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", p.stderr_text());

    // By default: serve 503 with the reason, reconnect, turn healthy.
    let mut p = serve(&pg.url(Role::Trust), &[]);
    let addr = p.wait_listening();
    let r = get(addr, "/health", &[]);
    assert_eq!(r.status, 503, "{r:?}");
    let v = health_doc(&r.body);
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(v["database"]["status"], "disconnected");
    let cause = v["database"]["last_error"].as_str().unwrap();
    assert!(cause.contains("Connection refused"), "{cause}");
    p.wait_for_log(
        "Reconnection attempt 1/5 (delay: 1s)",
        Duration::from_secs(10),
    );
    pg.start_again().unwrap();
    let up = p.eventually(
        Duration::from_secs(30),
        "healthy once the database is up",
        || {
            let r = get(addr, "/health", &[]);
            (r.status == 200 && health_doc(&r.body)["status"] == "healthy").then_some(r)
        },
    );
    assert_eq!(health_doc(&up.body)["database"]["pool"]["total"], 2);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

/// The metric names (prefix `codebase_mcp_pool_`) a dashboard or rule file mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("codebase_mcp_pool_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The rule group's name is not a metric.
        if name != "codebase_mcp_pool_alerts" {
            out.insert(name.clone());
        }
        rest = &rest[i + name.len()..];
    }
    out
}

#[test]
fn metrics_pass_promtool_in_both_formats() {
    let pg = cluster();
    let mut p = serve(
        &pg.url(Role::Trust),
        &[("WIREPOOL_METRICS_BIND", "127.0.0.1:0")],
    );
    let addr = p.wait_listening();
    // Some traffic so that counters and the histogram are not all zero.
    for _ in 0..5 {
        assert_eq!(get(addr, "/health", &[]).status, 200);
    }
    let r = get(addr, "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for name in [
        "codebase_mcp_pool_connections ",
        "codebase_mcp_pool_connections_idle ",
        "codebase_mcp_pool_connections_active ",
        "codebase_mcp_pool_waiting_requests ",
        "codebase_mcp_pool_health_status 0",
        "codebase_mcp_pool_acquisition_duration_seconds_bucket{le=\"0.001\"}",
        "codebase_mcp_pool_acquisition_duration_seconds_bucket{le=\"+Inf\"}",
        "codebase_mcp_pool_acquisitions_total ",
        "codebase_mcp_pool_releases_total ",
        "codebase_mcp_pool_errors_total{error_type=\"connect\"}",
        "codebase_mcp_pool_connections_max 5",
        "codebase_mcp_pool_connections_min 2",
        "codebase_mcp_pool_acquire_timeouts_total ",
        "codebase_mcp_pool_leaks_detected_total ",
        "codebase_mcp_pool_reconnect_attempts_total ",
        "codebase_mcp_pool_connections_created_total 2",
        "codebase_mcp_pool_connections_closed_total{reason=\"broken\"}",
        "codebase_mcp_pool_uptime_seconds ",
    ] {
        assert!(r.body.contains(name), "{name:?} in\n{}", r.body);
    }
    // Every name the dashboard and the alert rules query is exported.
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for file in [
        "grafana/connection-pool-dashboard.json",
        "prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(docs.join(file)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 8, "{file}: {names:?}");
        for name in names {
            assert!(
                r.body
                    .lines()
                    .any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                "{file} queries {name}, which is not exported"
            );
        }
    }
    wirepool_testkit::assert_promtool_passes(&r.body);

    let om = get(
        addr,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text; version=1.0.0, text/plain;q=0.5",
        )],
    );
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om
        .body
        .contains("# TYPE codebase_mcp_pool_acquisitions counter\n"));
    assert!(om.body.contains("\ncodebase_mcp_pool_acquisitions_total "));
    assert!(!om
        .body
        .contains("# TYPE codebase_mcp_pool_acquisitions_total"));

    // The separate metrics listener serves the same text.
    let line = p.wait_for_log("Metrics also on http://", Duration::from_secs(5));
    let maddr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    let m = get(maddr, "/metrics", &[]);
    assert_eq!(m.status, 200);
    assert!(m.body.contains("codebase_mcp_pool_connections_active "));
    assert_eq!(get(maddr, "/health", &[]).status, 404, "only metrics there");
}

#[test]
fn sigterm_drains_and_exits_zero_with_the_guides_lines() {
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust), &[]);
    let addr = p.wait_listening();
    assert_eq!(get(addr, "/health", &[]).status, 200);
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(35));
    assert!(status.success(), "{status}: {}", p.stderr_text());
    let logs = p.stderr_text();
    let messages: Vec<String> = logs
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            for k in ["timestamp", "level", "component", "message", "context"] {
                assert!(v.get(k).is_some(), "{k} in {l}");
            }
            v["message"].as_str().unwrap().to_string()
        })
        .collect();
    let pos = |needle: &str| {
        messages
            .iter()
            .position(|m| m.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle:?} in {messages:#?}"))
    };
    let order = [
        pos("Connection pool initialized: min_size=2, max_size=5"),
        pos("Received SIGTERM"),
        pos("Graceful shutdown initiated"),
        pos("All connections closed gracefully in"),
        pos("Connection pool terminated"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{messages:#?}");
}

#[test]
fn sigint_also_drains() {
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust), &[]);
    p.wait_listening();
    p.signal("INT");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
    assert!(p.stderr_text().contains("Connection pool terminated"));
}

#[test]
fn no_secret_in_logs_health_or_metrics() {
    let mut pg = cluster();
    let role = Role::Password;
    let secret = role.password().unwrap();
    let mut p = serve(&pg.url(role), &[("LOG_LEVEL", "DEBUG")]);
    let addr = p.wait_listening();
    let mut bodies = String::new();
    bodies.push_str(&get(addr, "/health", &[]).body);
    bodies.push_str(&get(addr, "/metrics", &[]).body);
    // Errors too: the database goes away and comes back.
    pg.kill().unwrap();
    p.eventually(Duration::from_secs(20), "unhealthy", || {
        let r = get(addr, "/health", &[]);
        bodies.push_str(&r.body);
        (r.status == 503).then_some(())
    });
    pg.start_again().unwrap();
    p.eventually(Duration::from_secs(40), "serving again", || {
        (get(addr, "/health", &[]).status == 200).then_some(())
    });
    bodies.push_str(&get(addr, "/metrics", &[]).body);
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(35));
    let logs = p.stderr_text();
    assert!(
        logs.contains("Database connection lost"),
        "the outage was logged"
    );
    assert!(!logs.contains(secret), "a password in the logs:\n{logs}");
    assert!(!bodies.contains(secret), "a password in a response");
}

#[test]
fn log_file_receives_the_json_lines() {
    let pg = cluster();
    let dir = std::env::temp_dir().join(format!("wirepool-logfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pool.log");
    let file_s = file.to_str().unwrap().to_string();
    let mut p = Proc::spawn(command(
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", &pg.url(Role::Trust)),
            ("LOG_FILE", &file_s),
        ],
    ));
    let text = p.eventually(Duration::from_secs(30), "the log file fills", || {
        let t = std::fs::read_to_string(&file).unwrap_or_default();
        t.contains("Listening on http://").then_some(t)
    });
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string());
    }
    assert!(text.contains("\"component\":\"connection_pool\""));
    assert!(p.stderr_text().is_empty(), "logs go to the file only");
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mcp_accepts_only_the_hosts_it_was_told() {
    let pg = cluster();
    let mut p = serve(
        &pg.url(Role::Trust),
        &[(
            "WIREPOOL_MCP_ALLOWED_HOSTS",
            "pool.internal, other.internal:9999",
        )],
    );
    let addr = p.wait_listening();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let post = |host: &str| {
        request(
            addr,
            "POST",
            "/mcp",
            &[
                ("Host", host),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ],
            init,
        )
        .status
    };
    let port = addr.port().to_string();
    assert_eq!(post(&format!("127.0.0.1:{port}")), 200);
    assert_eq!(post(&format!("localhost:{port}")), 200);
    assert_eq!(post(&format!("pool.internal:{port}")), 200);
    assert_eq!(post("other.internal:9999"), 200);
    assert_eq!(
        post("other.internal:1234"),
        403,
        "the port is part of that entry"
    );
    assert_eq!(post(&format!("evil.example:{port}")), 403);
    // /health and /metrics do not depend on the Host header.
    assert_eq!(
        request(addr, "GET", "/health", &[("Host", "evil.example")], "").status,
        200
    );
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn mcp_refuses_foreign_origins_on_both_transports() {
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust), &[]);
    let addr = p.wait_listening();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let post_mcp = |origin: Option<&str>| {
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        request(addr, "POST", "/mcp", &h, init).status
    };
    assert_eq!(post_mcp(None), 200, "a client without Origin is served");
    assert_eq!(post_mcp(Some("http://localhost:5173")), 200);
    assert_eq!(post_mcp(Some("http://evil.example")), 403);
    assert_eq!(post_mcp(Some("null")), 403);
    // /sse: a foreign Origin or Host is refused before any session opens.
    let sse = |headers: &[(&str, &str)]| sse_status(addr, headers);
    assert_eq!(sse(&[]), 200);
    assert_eq!(sse(&[("Origin", "http://evil.example")]), 403);
    assert_eq!(sse(&[("Host", "evil.example")]), 403);
    assert_eq!(
        request(
            addr,
            "POST",
            "/messages?session_id=x",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json")
            ],
            init
        )
        .status,
        403
    );
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

/// The status of `GET /sse` (the connection is dropped after the status line).
fn sse_status(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> u16 {
    use std::io::{BufRead, BufReader, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = String::from("GET /sse HTTP/1.1\r\nAccept: text/event-stream\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_closed_sse_session_is_gone() {
    use std::io::{BufRead, BufReader, Write as _};
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust), &[]);
    let addr = p.wait_listening();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut endpoint = None;
    let mut line = String::new();
    while endpoint.is_none() {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(rest) = line.trim().strip_prefix("data: ") {
            if rest.starts_with("/messages?session_id=") {
                endpoint = Some(rest.to_string());
            }
        }
    }
    let endpoint = endpoint.unwrap();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let post = |path: &str, body: &str| {
        request(
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body,
        )
        .status
    };
    assert_eq!(
        post(&endpoint, init),
        202,
        "accepted while the stream is open"
    );
    assert_eq!(post(&endpoint, "not json"), 400);
    // The answer arrives on the stream.
    let mut answered = false;
    while !answered {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
        answered =
            line.starts_with("data: ") && line.contains("\"id\":1") && line.contains("serverInfo");
    }
    drop(r);
    p.eventually(Duration::from_secs(10), "the session is gone", || {
        (post(&endpoint, init) == 404).then_some(())
    });
    assert_eq!(post("/messages?session_id=nosuchsession", init), 404);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn the_health_probe_exit_codes() {
    let mut pg = cluster();
    let probe = |url: &str| {
        let out = command(&["health", "--url", url, "--timeout", "2"], &[])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut p = serve(&pg.url(Role::Trust), &[]);
    let addr = p.wait_listening();
    let url = format!("http://{addr}");
    let (code, out, err) = probe(&url);
    assert_eq!(code, 0, "{out}{err}");
    health_doc(&out);
    pg.kill().unwrap();
    let (out, err) = p.eventually(
        Duration::from_secs(20),
        "exit 1 once the pool cannot serve",
        || {
            let (code, out, err) = probe(&url);
            (code == 1).then_some((out, err))
        },
    );
    assert_eq!(health_doc(&out)["status"], "unhealthy");
    assert!(err.contains("cannot serve"), "{err}");
    pg.start_again().unwrap();
    p.eventually(Duration::from_secs(30), "exit 0 again", || {
        (probe(&url).0 == 0).then_some(())
    });
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
    // Nothing listening.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, err) = probe(&format!("http://{gone}"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cannot reach"), "{err}");
    // Something that is not a health endpoint.
    let (code, _, err) = probe(&format!("http://{addr}/nowhere"));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = probe("https://127.0.0.1:1");
    assert_eq!(code, 2, "{err}");
}
