//! `wirepool demo`: the README's main command, start to finish, and Ctrl-C part-way.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{command, Proc};

fn demo(args: &[&str]) -> Proc {
    let mut all = vec!["demo", "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Proc::spawn(command(&all, &[]))
}

/// The throwaway server's port, from "PostgreSQL is up on 127.0.0.1:PORT".
fn pg_port(p: &Proc) -> u16 {
    let out = p.stdout_text();
    out.lines()
        .find_map(|l| l.strip_prefix("PostgreSQL is up on 127.0.0.1:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no PostgreSQL line in\n{out}"))
}

/// Status lines of a phase: from its banner to the next.
fn phase_lines(out: &str, name: &str) -> Vec<String> {
    out.split(&format!("--- phase {name}:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no phase {name} in\n{out}"))
        .split("--- phase ")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_demo_walks_through_every_phase_and_cleans_up() {
    let mut p = demo(&["--once", "--phase-seconds", "2"]);
    let status = p.wait_exit(Duration::from_secs(150));
    let out = p.stdout_text();
    let logs = p.stderr_text();
    assert!(status.success(), "{status}\n{out}\n{logs}");
    for url in ["/health", "/metrics", "/mcp"] {
        assert!(out.contains(url), "{url} printed:\n{out}");
    }
    // The burst: callers queue and the pool reports it.
    let burst = phase_lines(&out, "burst");
    assert!(
        burst
            .iter()
            .any(|l| (l.contains("UNHEALTHY") || l.contains("DEGRADED"))
                && !l.contains("waiting   0")),
        "queueing visible in the burst:\n{out}"
    );
    // The leak: one warning naming the site of the connection the leak phase holds, then
    // the return. (On a machine slow enough to hold a burst worker's connection past the
    // leak timeout, that worker is reported too, at its own site: not counted here.)
    let site = out
        .lines()
        .find_map(|l| l.strip_prefix("holding a connection acquired at "))
        .unwrap_or_else(|| panic!("no held connection in\n{out}"))
        .trim()
        .to_string();
    assert!(site.starts_with("server/src/demo.rs:"), "{site}");
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("Potential connection leak detected: conn_")
                && l.contains(&format!("acquired at {site})")))
            .count(),
        1,
        "{logs}"
    );
    assert!(
        logs.contains("Previously reported connection leak returned"),
        "{logs}"
    );
    // The status line counts it (and any slow burst worker reported as well).
    let leaks_counted = |l: &String| {
        l.split("leaks ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
    };
    assert!(
        phase_lines(&out, "recovery").iter().any(leaks_counted),
        "{out}"
    );
    // The outage: unhealthy, the reconnection schedule, recovery.
    let at = |needle: &str| {
        logs.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in\n{logs}"))
    };
    at("-> UNHEALTHY");
    at("Reconnection attempt 1/5 (delay: 1s)");
    assert!(
        at("-> RECOVERING") < at("Connection pool recovered: "),
        "RECOVERING, then recovered:\n{logs}"
    );
    let outage = phase_lines(&out, "outage");
    assert!(outage.iter().any(|l| l.contains("RECOVERING")), "{out}");
    // Back to HEALTHY once the outage's errors leave the (demo-short) error window.
    assert!(
        phase_lines(&out, "recovery")
            .iter()
            .any(|l| l.contains(" HEALTHY ")),
        "HEALTHY again:\n{out}"
    );
    assert!(out.contains("Demo finished."), "{out}");
    assert!(logs.contains("Connection pool terminated"), "{logs}");
    // The throwaway database is gone.
    let port = pg_port(&p);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still up"
    );
}

#[test]
fn ctrl_c_stops_the_demo_cleanly() {
    let mut p = demo(&["--phase-seconds", "3"]);
    // Wait for the burst, then interrupt in the middle of it.
    let t = std::time::Instant::now();
    while !p.stdout_text().contains("--- phase burst") {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", p.stdout_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    p.signal("INT");
    let status = p.wait_exit(Duration::from_secs(40));
    let out = p.stdout_text();
    assert!(status.success(), "{status}\n{out}\n{}", p.stderr_text());
    assert!(out.contains("SIGINT: stopping the demo"), "{out}");
    assert!(out.contains("Demo finished."), "{out}");
    assert!(p.stderr_text().contains("Graceful shutdown initiated"));
    let port = pg_port(&p);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still up"
    );
}
