//! The health signal against a real server: a normally busy pool reads HEALTHY; after an
//! outage the pool is HEALTHY again soon after the database returns (the guide's 30 s), with
//! the connect error shown while it was down; a pool can start before its database.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use wirepool::observe::ErrorType;
use wirepool::{HealthStatus, LifecycleState, Pool, PoolConfig};
use wirepool_testkit::{cluster, eventually, Role};

use common::Logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_busy_callers_on_min_2_max_10_stay_healthy() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Trust, 2, 10).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                while Instant::now() < deadline {
                    let mut c = pool.acquire().await.unwrap();
                    c.simple_query("SELECT pg_sleep(0.02)").await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let (mut samples, mut busy_samples) = (0, 0);
    while Instant::now() < deadline {
        let h = pool.health();
        assert_eq!(
            h.status,
            HealthStatus::Healthy,
            "two callers busy on a pool of ten: {}",
            h.to_json()
        );
        assert!(h.ready);
        samples += 1;
        // Both callers' connections checked out at once (the pool may have opened more,
        // idle, beside them: a caller that waited a moment makes it grow).
        if h.active == 2 {
            busy_samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        assert!(w.await.unwrap() > 10);
    }
    assert!(samples > 100, "{samples}");
    assert!(
        busy_samples > 10,
        "the samples caught both connections in use: {busy_samples} of {samples}"
    );
    assert_eq!(pool.state(), LifecycleState::Healthy);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_within_30_s_of_the_databases_return_with_the_cause_shown_meanwhile() {
    let logs = Logs::capture();
    // The capture is the test binary's: this test reads what was written after it began.
    let from = logs.text().len();
    let mut pg = cluster();
    // The guide's schedule (1, 2, 4, 8, 16 s) and 60 s error window, as by default.
    let mut cfg = PoolConfig::default();
    cfg.acquire_timeout = Duration::from_secs(2);
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    let stop = Instant::now() + Duration::from_secs(60);
    let load: Vec<_> = (0..10)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                while Instant::now() < stop {
                    if let Ok(mut c) = pool.acquire().await {
                        let _ = c.simple_query("SELECT 1").await;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| pg.kill()).unwrap();

    // While the database is down: the connect error, not the acquire timeout, is the
    // last error; the state says RECOVERING; no stale latency.
    let t = Instant::now();
    let mut seen_recovering = false;
    while t.elapsed() < Duration::from_secs(5) {
        let v: Value = serde_json::from_str(&pool.health().to_json()).unwrap();
        if v["state"] == "RECOVERING" {
            seen_recovering = true;
            // Unhealthy, unless the pool still holds an idle connection it has not yet
            // found dead (the next checkout does): then the error keeps it degraded.
            let stale_idle = v["database"]["pool"]["idle"].as_u64().unwrap_or(0) > 0;
            if !(stale_idle && v["status"] == "degraded") {
                assert_eq!(v["status"], "unhealthy", "{v}");
            }
            let err = v["database"]["last_error"].as_str().unwrap_or_default();
            // The connect error (refused, or reset while the server went down), never the
            // callers' acquisition timeouts.
            assert!(err.starts_with("Database connection "), "{v}");
            assert!(!err.contains("acquisition timeout"), "{v}");
            if v["database"]["pool"]["total"] == 0 {
                assert!(v["database"]["latency_ms"].is_null(), "{v}");
                assert_eq!(v["database"]["status"], "disconnected", "{v}");
                assert!(!pool.health().ready);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_recovering, "{}", logs.text());

    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    let back = Instant::now();
    while pool.state() != LifecycleState::Healthy {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "not HEALTHY 30 s after the database returned: {}",
            pool.health().to_json()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = back.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The load stops before the reading below, which is about the errors' rule: with 10
    // callers on 10 connections, a reading can be degraded for its capacity alone (four
    // held at once, right after the restart, is headroom 0.6).
    for l in &load {
        l.abort();
    }
    let p = pool.clone();
    eventually("the pool at rest", move || {
        let s = p.statistics();
        s.active_connections == 0
            && s.maintenance_connections == 0
            && s.opening_connections == 0
            && s.waiting_requests == 0
    })
    .await;
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Healthy, "{}", h.to_json());
    // Still within the 60 s error window of the outage's errors: they no longer count.
    assert!(h.last_error.is_some(), "{}", h.to_json());

    // The guide's log: recovered, then out of RECOVERING (the pool is HEALTHY, above).
    // With the 10 callers queued through the outage, the first classification after the
    // recovery can be DEGRADED or UNHEALTHY for capacity alone, for the milliseconds the
    // pool takes to open the connections they wait for. Without a load the line is
    // `RECOVERING -> HEALTHY` (server/tests/serve.rs). The other tests of this binary
    // write to the same capture meanwhile, and another pool's close can log
    // `RECOVERING -> SHUTTING_DOWN` first: the line out of RECOVERING is looked for after
    // the recovery's.
    let text = &logs.text()[from..];
    let recovered = text
        .find("Connection pool recovered: ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        text[recovered..].contains("Health status: RECOVERING -> "),
        "{text}"
    );
    let s = pool.statistics();
    assert!(s.recovered_at.is_some());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_can_start_before_its_database() {
    let mut pg = cluster();
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    let mut cfg = PoolConfig::default();
    cfg.reconnect_delays = [100, 200].map(Duration::from_millis).to_vec();
    cfg.acquire_timeout = Duration::from_millis(300);
    let err = Pool::builder(pg.config(Role::Trust))
        .config(cfg.clone())
        .build()
        .await
        .expect_err("by default build() fails with the real error");
    assert!(err.is_io(), "{err:?}");

    let pool = Pool::builder(pg.config(Role::Trust))
        .config(cfg)
        .start_without_database(true)
        .build()
        .await
        .unwrap();
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Unhealthy);
    assert!(!h.ready);
    assert!(
        h.last_error
            .as_deref()
            .is_some_and(|e| e.contains("Connection refused")),
        "{}",
        h.to_json()
    );
    let e = pool.acquire().await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    let t = Instant::now();
    while pool.state() != LifecycleState::Healthy {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            pool.health().to_json()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        c.simple_query("SELECT 1").await.unwrap()[0].get(0),
        Some("1")
    );
    drop(c);
    assert_eq!(pool.statistics().total_connections, 2);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_found_broken_during_the_outage_leaves_the_connect_error_shown() {
    let mut pg = cluster();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 1;
    cfg.max_size = 2;
    cfg.acquire_timeout = Duration::from_millis(500);
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    let mut held = pool.acquire().await.unwrap();
    held.simple_query("SELECT 1").await.unwrap();
    tokio::task::block_in_place(|| pg.kill()).unwrap();

    // A second caller asks for a connection the pool cannot open: the connects fail.
    let e = pool.acquire().await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let p = pool.clone();
    eventually("the connects failing", move || {
        p.statistics().connect_failures > 0
    })
    .await;
    let connect_error = pool.health().last_error.unwrap();
    assert!(
        connect_error.starts_with("Database connection "),
        "{connect_error}"
    );

    // Then the held connection is found broken and returned.
    let broken_before = pool.statistics().errors_of(ErrorType::Broken);
    held.simple_query("SELECT 1").await.unwrap_err();
    drop(held);
    let p = pool.clone();
    eventually("the broken connection counted", move || {
        p.statistics().errors_of(ErrorType::Broken) == broken_before + 1
    })
    .await;
    // Counted, but the connect error is still what the pool shows: it says why.
    let h = pool.health();
    assert_eq!(
        h.last_error.as_deref(),
        Some(connect_error.as_str()),
        "{}",
        h.to_json()
    );
    assert_eq!(h.status, HealthStatus::Unhealthy, "{}", h.to_json());
    pool.close().await;
}
