//! The status page of `wirepool serve` in a real browser through an outage: headless
//! Chromium (Debian's, driven by Playwright from `status_page_browser.py`) loads `/`, sees
//! HEALTHY, then RECOVERING with the reconnection schedule while the database is down, then
//! HEALTHY again once it is back. Screenshots of HEALTHY and RECOVERING are saved under
//! `target/tmp/status-page/`. The page may request nothing outside the server it came
//! from.
//!
//! Playwright lives in the test virtualenv (`WIREPOOL_TEST_PYTHON`, made by
//! `scripts/setup`); Chromium at `/usr/bin/chromium` (or `CHROMIUM`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use wirepool_testkit::http::get;
use wirepool_testkit::Role;

use common::{command, Proc};

/// Waits for the driver's next line.
fn next_line(lines: &mpsc::Receiver<String>, want: &str, p: &Proc) -> String {
    match lines.recv_timeout(Duration::from_secs(240)) {
        Ok(l) if want.is_empty() || l == want => l,
        Ok(l) => panic!("the browser driver said {l:?}, expected {want:?}"),
        Err(_) => panic!(
            "the browser driver stopped before {want:?}; the server's log:\n{}",
            p.stderr_text()
        ),
    }
}

#[test]
fn the_status_page_follows_the_pool_through_an_outage_in_a_browser() {
    let mut pg = wirepool_testkit::cluster();
    let mut serve = Proc::spawn(command(
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", &pg.url(Role::Trust)),
            ("POOL_MIN_SIZE", "2"),
            ("POOL_MAX_SIZE", "5"),
        ],
    ));
    let addr = serve.wait_listening();

    // Served from `/` behind the Host/Origin guard, with its data under /status/.
    let page = get(addr, "/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    for attr in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!page.body.contains(attr), "the page loads {attr}...");
    }
    for (headers, what) in [
        (&[("Host", "evil.example")][..], "a foreign Host"),
        (&[("Origin", "http://evil.example")][..], "a foreign Origin"),
    ] {
        assert_eq!(get(addr, "/", headers).status, 403, "{what}");
        assert_eq!(get(addr, "/status/data", headers).status, 403, "{what}");
    }
    // Two Hosts, two Origins, a target naming another host, a port with a sign.
    for (path, headers) in [
        (
            "/status/data",
            &[("Host", "localhost"), ("Host", "evil.example")][..],
        ),
        (
            "/status/data",
            &[
                ("Origin", "http://localhost"),
                ("Origin", "http://evil.example"),
            ][..],
        ),
        (
            "http://evil.example/status/data",
            &[("Host", "localhost")][..],
        ),
        ("/status/data", &[("Host", "[::1]evil.example")][..]),
        ("/status/data", &[("Host", "localhost:+80")][..]),
    ] {
        assert_eq!(get(addr, path, headers).status, 403, "{path} {headers:?}");
    }
    let allowed = get(
        addr,
        "http://localhost/status/data",
        &[("Host", "localhost")],
    );
    assert_eq!(
        allowed.status, 200,
        "an absolute target naming an allowed host"
    );
    // /health stays open to any Host (load balancers use the address).
    assert_eq!(
        get(addr, "/health", &[("Host", "10.1.2.3:3000")]).status,
        200
    );
    let data: Value = serde_json::from_str(&get(addr, "/status/data", &[]).body).unwrap();
    assert_eq!(data["state"], "HEALTHY", "{data}");
    assert!(
        data["reason"].as_str().unwrap().contains("full capacity"),
        "{data}"
    );
    assert!(data["reconnect"].is_null(), "{data}");

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    let _ = std::fs::remove_dir_all(&out);
    let mut driver = Command::new(wirepool_testkit::mcp_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/status_page_browser.py"))
        .arg(format!("http://{addr}/"))
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the browser driver starts");
    let mut to_driver = driver.stdin.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = driver.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });

    next_line(&lines, "healthy", &serve);
    pg.kill().unwrap();
    writeln!(to_driver, "stopped").unwrap();
    next_line(&lines, "recovering", &serve);
    // The feed agrees with the page: the schedule's next attempt, the lost connection.
    let data: Value = serde_json::from_str(&get(addr, "/status/data", &[]).body).unwrap();
    assert_eq!(data["state"], "RECOVERING", "{data}");
    assert_eq!(data["status"], "unhealthy", "{data}");
    let plan = &data["reconnect"];
    assert!(plan["attempt"].as_u64().unwrap() >= 1, "{data}");
    assert_eq!(
        plan["schedule_s"],
        serde_json::json!([1, 2, 4, 8, 16]),
        "{data}"
    );
    assert!(!data["errors"].as_array().unwrap().is_empty(), "{data}");
    pg.start_again().unwrap();
    writeln!(to_driver, "started").unwrap();
    next_line(&lines, "healthy again", &serve);
    let report: Value = serde_json::from_str(&next_line(&lines, "", &serve)).unwrap();
    assert!(driver.wait().unwrap().success());

    assert_eq!(report["foreign"], serde_json::json!([]), "{report}");
    assert!(report["requests"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["page_errors"], serde_json::json!([]), "{report}");
    let states: Vec<&str> = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let at = |s: &str, from: usize| {
        states[from..]
            .iter()
            .position(|x| *x == s)
            .map(|i| i + from)
    };
    let recovering = at("RECOVERING", 0).expect("RECOVERING shown");
    assert!(at("HEALTHY", 0).unwrap() < recovering, "{states:?}");
    assert!(at("HEALTHY", recovering).is_some(), "{states:?}");
    let tiers = report["tiers"].as_array().unwrap();
    assert!(tiers.contains(&Value::from("unhealthy")), "{report}");
    assert!(
        report["points"]["connections"].as_u64().unwrap() >= 5,
        "{report}"
    );
    assert!(
        report["reconnect_text"]
            .as_str()
            .unwrap()
            .contains("next attempt"),
        "{report}"
    );
    assert!(report["errors_listed"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["sorted_by_calls"].as_str().unwrap().contains("desc"),
        "{report}"
    );
    for shot in ["healthy.png", "recovering.png"] {
        let png = std::fs::read(out.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot}");
    }
    eprintln!("screenshots: {}", out.display());
    serve.signal("TERM");
    serve.wait_exit(Duration::from_secs(30));
}
