//! Leak detection against a real server: a connection held past the leak timeout is
//! reported exactly once, naming the line that acquired it; its return is logged; the
//! counter moves once. Short checkouts are never reported.

mod common;

use std::time::{Duration, Instant};

use wirepool::Pool;
use wirepool_testkit::Role;

use common::Logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_connection_is_reported_once_with_its_acquisition_site() {
    let logs = Logs::capture();
    let pg = wirepool_testkit::cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .max_size(4)
        .leak_detection(true, Duration::from_millis(300))
        .build()
        .await
        .unwrap();

    // Busy but short checkouts: never reported.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(800) {
        let mut c = pool.acquire().await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    }
    assert_eq!(pool.statistics().leaks_detected, 0);

    let (mut held, line) = (pool.acquire().await.unwrap(), line!());
    let id = held.id();
    let site = format!("{}:{line}:", file!());
    assert!(held.acquired_at().to_string().starts_with(&site));
    held.simple_query("SELECT 1").await.unwrap();
    // Three timeouts' worth: one report, not three.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let warnings = logs.lines_with(&format!("Potential connection leak detected: conn_{id} "));
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    let (_, w) = &warnings[0];
    assert!(w.contains("WARN"), "{w}");
    assert!(w.contains(&site), "names the test's own line {site}: {w}");
    assert!(w.contains("held_duration_seconds="), "{w}");
    assert_eq!(pool.statistics().leaks_detected, 1);

    drop(held);
    let returned = logs.lines_with(&format!(
        "Previously reported connection leak returned: conn_{id} "
    ));
    assert_eq!(returned.len(), 1, "{}", logs.text());
    assert!(returned[0].1.contains("INFO"), "{}", returned[0].1);

    // Back in use normally afterwards: no new report for the same connection.
    for _ in 0..20 {
        let mut c = pool.acquire().await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = pool.statistics();
    assert_eq!(s.leaks_detected, 1);
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(
        logs.lines_with("Potential connection leak detected").len(),
        1
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reports_when_detection_is_off() {
    let _logs = Logs::capture();
    let pg = wirepool_testkit::cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .leak_detection(false, Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(pool.statistics().leaks_detected, 0);
    drop(held);
    pool.close().await;
}
