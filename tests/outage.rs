//! The database killed and restarted under load: no panic, no hang, typed errors, the
//! lifecycle goes through UNHEALTHY/RECOVERING back to HEALTHY, nothing is lost.

mod common;

use std::time::{Duration, Instant};

use wirepool::{LifecycleState, PoolConfig};
use wirepool_testkit::Role;

use common::Logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_under_load() {
    let logs = Logs::capture();
    let mut pg = wirepool_testkit::cluster();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 2;
    cfg.max_size = 10;
    cfg.acquire_timeout = Duration::from_secs(2);
    cfg.monitor_interval = Duration::from_millis(50);
    cfg.keepalive_interval = Some(Duration::from_millis(200));
    cfg.reconnect_delays = [100, 200, 400, 800].map(Duration::from_millis).to_vec();
    cfg.health.error_window = Duration::from_secs(2);
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;

    let deadline = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while Instant::now() < deadline {
                match pool.acquire().await {
                    Ok(mut c) => match c.simple_query("SELECT 1").await {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            assert!(
                                e.is_db() || e.is_closed() || e.is_io() || e.is_protocol(),
                                "{e:?}"
                            );
                            failed += 1;
                        }
                    },
                    Err(e) => {
                        assert!(e.is_timeout(), "{e:?}");
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start_again().unwrap();

    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("no hang")
            .unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");

    // The pool serves again and reports HEALTHY.
    let t = Instant::now();
    loop {
        if let Ok(mut c) = pool.acquire().await {
            if c.simple_query("SELECT 1").await.is_ok() {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pool did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    while pool.state() != LifecycleState::Healthy {
        assert!(
            t.elapsed() < Duration::from_secs(70),
            "state stuck at {:?}",
            pool.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert!(s.reconnect_attempts >= 1);
    pool.close().await;
    let seen = logs.states();
    let pos = |x: &str| seen.iter().position(|s| s == x);
    let unhealthy = pos("UNHEALTHY").unwrap_or_else(|| panic!("went UNHEALTHY: {seen:?}"));
    let recovering = pos("RECOVERING").unwrap_or_else(|| panic!("went RECOVERING: {seen:?}"));
    assert!(unhealthy < recovering, "{seen:?}");
    assert!(
        seen[recovering..].iter().any(|s| s == "HEALTHY"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("TERMINATED"),
        "{seen:?}"
    );
    let text = logs.text();
    assert!(
        text.contains("Reconnection attempt 1/4 (delay: 0.1s)"),
        "{text}"
    );
    if text.contains("Reconnection attempt 5 ") {
        // After the schedule's steps, the line says the last delay repeats.
        assert!(
            text.contains("Reconnection attempt 5 (every 0.8s)"),
            "{text}"
        );
    }
    assert!(text.contains("Connection pool recovered: "), "{text}");

    // The backoff schedule, read from the logged attempts: attempt N announces the Nth
    // delay (the last one repeating), and the next attempt is announced no sooner than
    // that delay later (the attempt waits it out, then fails).
    let schedule = [0.1, 0.2, 0.4, 0.8];
    let attempts: Vec<(Duration, usize, f64)> = logs
        .lines_with("Reconnection attempt ")
        .into_iter()
        .map(|(at, l)| {
            let rest = l.split("Reconnection attempt ").nth(1).unwrap();
            let n: usize = rest.split(['/', ' ']).next().unwrap().parse().unwrap();
            // "N/M (delay: Xs)" for the first attempts, "N (every Xs)" after them.
            let delay: f64 = rest
                .split(['(', ')'])
                .nth(1)
                .and_then(|d| d.split(' ').nth(1))
                .and_then(|d| d.strip_suffix('s'))
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("no delay in {l:?}"));
            (at, n, delay)
        })
        .collect();
    assert!(
        attempts.len() >= 4,
        "a 3 s outage sees several attempts: {text}"
    );
    for (at, n, delay) in &attempts {
        assert_eq!(*delay, schedule[(n - 1).min(3)], "attempt {n} at {at:?}");
    }
    for w in attempts.windows(2) {
        let ((t1, n1, d1), (t2, n2, _)) = (w[0], w[1]);
        if n2 == n1 + 1 {
            assert!(
                t2 - t1 >= Duration::from_secs_f64(d1),
                "attempt {n2} came {:?} after attempt {n1}, whose delay was {d1}s",
                t2 - t1
            );
        }
    }
}
