//! The MCP resources read by a real MCP client, the official Python SDK, over streamable
//! HTTP (`wirepool serve`, `/mcp`) and over stdio (`wirepool mcp`).
//!
//! The SDK lives in a virtualenv: `WIREPOOL_TEST_PYTHON` names its interpreter, by default
//! `target/mcp-venv/bin/python` (which `scripts/test` creates with `pip install mcp`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wirepool::PoolStatistics;
use wirepool_testkit::{Cluster, Role};

use common::{command, Proc};

fn python() -> PathBuf {
    wirepool_testkit::mcp_python()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py")
}

/// Runs the client and returns its JSON report and its stderr (which, over stdio, carries
/// the server's log).
fn read_with_sdk(mut cmd: Command) -> (Value, String) {
    let out = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "MCP client failed: {stdout}\n{stderr}"
    );
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (v, stderr)
}

fn check_report(v: &Value) {
    let health = &v["resources"]["health://connection-pool"];
    assert_eq!(health["mimeType"], "application/json", "{v}");
    assert!(
        health["description"].as_str().unwrap().contains("Health"),
        "{v}"
    );
    let stats = &v["resources"]["statistics://connection-pool"];
    assert_eq!(stats["mimeType"], "application/json", "{v}");
    assert!(stats["description"].is_string());

    let h = &v["read"]["health://connection-pool"];
    assert_eq!(h["mimeType"], "application/json");
    let doc: Value = serde_json::from_str(h["text"].as_str().unwrap()).unwrap();
    assert_eq!(doc["status"], "healthy", "{doc}");
    assert_eq!(doc["database"]["status"], "connected");
    assert_eq!(doc["database"]["pool"]["total"], 2);
    assert!(doc["uptime_seconds"].is_number());

    let s = &v["read"]["statistics://connection-pool"];
    let doc: Value = serde_json::from_str(s["text"].as_str().unwrap()).unwrap();
    let extras = [
        "leaks_detected",
        "reconnect_attempts",
        "connections_closed",
        "errors",
    ];
    for k in PoolStatistics::GUIDE_FIELDS.iter().chain(&extras) {
        assert!(doc.get(k).is_some(), "{k} in {doc}");
    }
    assert_eq!(doc["max_size"], 5);
    assert!(
        v["missing"].as_str().unwrap() != "no error",
        "an unknown resource is an error: {v}"
    );
}

/// A throwaway cluster and `wirepool serve` on a free port with a pool of 5 against it.
fn serving() -> (Cluster, Proc, std::net::SocketAddr) {
    let pg = wirepool_testkit::cluster();
    let mut p = Proc::spawn(command(
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", &pg.url(Role::Trust)),
            ("POOL_MAX_SIZE", "5"),
        ],
    ));
    let addr = p.wait_listening();
    (pg, p, addr)
}

#[test]
fn python_sdk_reads_the_resources_over_streamable_http() {
    let py = python();
    let (_pg, mut p, addr) = serving();
    let mut cmd = Command::new(&py);
    cmd.arg(script())
        .arg("http")
        .arg(format!("http://{addr}/mcp"));
    check_report(&read_with_sdk(cmd).0);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn python_sdk_reads_the_resources_over_sse() {
    let py = python();
    let (_pg, mut p, addr) = serving();
    let mut cmd = Command::new(&py);
    cmd.arg(script())
        .arg("sse")
        .arg(format!("http://{addr}/sse"));
    let (report, _) = read_with_sdk(cmd);
    check_report(&report);
    // Two sessions at once, each answered; the same schema as over /mcp.
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let mut cmd = Command::new(&py);
    cmd.arg(script())
        .arg("http")
        .arg(format!("http://{addr}/mcp"));
    let (over_mcp, _) = read_with_sdk(cmd);
    let keys = |text: &str| -> Vec<String> {
        fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    let path = format!("{prefix}.{k}");
                    out.push(path.clone());
                    walk(v, &path, out);
                }
            }
        }
        let v: Value = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        walk(&v, "", &mut out);
        out.sort();
        out
    };
    let mcp_health = over_mcp["read"]["health://connection-pool"]["text"]
        .as_str()
        .unwrap();
    for s in sessions {
        assert_eq!(keys(s.as_str().unwrap()), keys(mcp_health));
    }
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn python_sdk_reads_the_resources_over_stdio() {
    let py = python();
    let pg = wirepool_testkit::cluster();
    // The SDK launches `wirepool mcp` itself, with the settings in its env block (the
    // client script copies DATABASE_URL, POOL_* and LOG_* into it).
    let mut cmd = Command::new(&py);
    cmd.arg(script())
        .arg("stdio")
        .arg(env!("CARGO_BIN_EXE_wirepool"))
        .arg("mcp")
        .env("DATABASE_URL", pg.url(Role::Trust))
        .env("POOL_MAX_SIZE", "5")
        .env("LOG_LEVEL", "INFO");
    let (report, log) = read_with_sdk(cmd);
    check_report(&report);
    // The server's own lines, and none of the MCP library's internal chatter (its
    // "response error" warning for the unknown resource, session notices).
    assert!(log.contains("Connection pool initialized"), "{log}");
    assert!(!log.contains("\"component\":\"rmcp"), "{log}");
}
