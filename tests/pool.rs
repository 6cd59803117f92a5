//! Pool behaviour against a real, throwaway PostgreSQL server.

use std::sync::Arc;
use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::observe::{CloseReason, ErrorType};
use wirepool::{ErrorKind, HealthStatus, LifecycleState, Pool, TimeoutPhase, TransactionStatus};
use wirepool_testkit::{cluster, eventually, fast_config, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_opens_and_validates_min_size() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Scram, 3, 5).await;
    let s = pool.statistics();
    assert_eq!(
        (
            s.total_connections,
            s.idle_connections,
            s.active_connections
        ),
        (3, 3, 0)
    );
    assert_eq!(s.connections_created, 3);
    assert!(s.latency_ms.is_some(), "validation measured a round trip");
    assert_eq!(pool.state(), LifecycleState::Healthy);
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Healthy);
    let json = h.to_json();
    assert!(
        json.starts_with(r#"{"status":"healthy","state":"HEALTHY","timestamp":""#),
        "{json}"
    );
    assert!(
        json.contains(r#""pool":{"total":3,"idle":3,"active":0,"waiting":0}"#),
        "{json}"
    );
    assert!(json.contains(r#""last_error":null"#), "{json}");
    let metrics = pool.render_prometheus();
    assert!(
        metrics.contains("codebase_mcp_pool_connections 3\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("scram_secret"));
    pool.close().await;
}

#[tokio::test]
async fn build_fails_with_the_real_error() {
    let pg = cluster();
    let cfg = pg.config(Role::Scram).with_password(Some("wrong"));
    let err = Pool::builder(cfg).build().await.unwrap_err();
    assert_eq!(err.code(), Some(sqlstate::INVALID_PASSWORD), "{err:?}");
    let err = Pool::builder(pg.config(Role::Trust))
        .min_size(5)
        .max_size(2)
        .build()
        .await
        .unwrap_err();
    assert!(err.is_config());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tasks_on_ten_connections() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .max_size(10)
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let mut c = pool.acquire().await.unwrap();
                let rows = c.simple_query("SELECT 1").await.unwrap();
                assert_eq!(rows[0].get(0), Some("1"));
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("no deadlock")
            .unwrap();
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, 2000);
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert!(s.peak_active_connections <= 10);
    assert!(s.total_connections <= 10);
    assert!(
        s.acquisitions_waited > 0,
        "100 tasks on 10 connections must queue"
    );
    assert_eq!(s.leak_count(), 0);
    assert!(s.acquisition_quantile_ms(0.99).is_some());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Trust, 1, 1).await;
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.acquire().await.unwrap();
            order.lock().push(i);
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(c);
        }));
        // Each waiter is queued before the next one starts.
        let p = pool.clone();
        eventually("waiter queued", move || {
            p.statistics().waiting_requests == i + 1
        })
        .await;
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4, 5]);
    pool.close().await;
}

/// A pool of one connection whose callers wait 200 ms for it at most.
async fn one_connection_timing_out(pg: &wirepool_testkit::Cluster) -> Pool {
    Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn acquire_timeout_says_which_phase_ran_out() {
    let pg = cluster();
    let pool = one_connection_timing_out(&pg).await;
    let _held = pool.acquire().await.unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PoolTimeout, "{err:?}");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait));
    let s = pool.statistics();
    assert_eq!(s.acquire_timeouts, 1);
    assert!(s
        .last_error
        .as_deref()
        .unwrap()
        .contains("Connection acquisition timeout"));
    assert_eq!(pool.health().status, HealthStatus::Unhealthy, "0 of 1 idle");
}

/// A `pool.query*` caller that times out waiting for room on the shared path leaves the
/// queue: its timeout is counted once (as one caller's, in both counts), it is no longer
/// waiting, and nothing keeps asking for a lane on its behalf.
#[tokio::test]
async fn a_shared_path_timeout_is_counted_once_and_leaves_no_waiter() {
    let pg = cluster();
    let pool = one_connection_timing_out(&pg).await;
    let held = pool.acquire().await.unwrap();
    let err = pool.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PoolTimeout, "{err:?}");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait), "{err}");
    let s = pool.statistics();
    assert_eq!(
        (s.waiting_requests, s.pipeline_waiting),
        (0, 0),
        "no one waits"
    );
    assert_eq!(s.acquire_timeouts, 1);
    assert_eq!(s.errors_of(ErrorType::AcquireTimeout), 1);
    // Five acquire timeouts later: still one, and the connection given back goes idle, not
    // to a lane asked for by a caller who left.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.statistics().acquire_timeouts, 1);
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = pool.statistics();
    assert_eq!(
        (s.pipelined_connections, s.idle_connections),
        (0, 1),
        "{s:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_size_is_refilled_after_backends_are_killed() {
    let pg = cluster();
    let mut cfg = fast_config();
    cfg.keepalive_interval = Some(Duration::from_millis(100));
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(cfg)
        .min_size(3)
        .max_size(5)
        .build()
        .await
        .unwrap();
    let killed = pg
        .psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'trust_user'")
        .unwrap();
    assert_eq!(killed, "3");
    let p = pool.clone();
    eventually("three replacements", move || {
        let s = p.statistics();
        s.closed(CloseReason::ServerClosed) >= 3
            && s.connections_created >= 6
            && s.total_connections == 3
    })
    .await;
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        c.simple_query("SELECT 1").await.unwrap()[0].get(0),
        Some("1")
    );
    drop(c);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_connections_are_cleaned_or_discarded_never_handed_out() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .min_size(1)
        .max_size(1)
        .build()
        .await
        .unwrap();
    pg.psql("CREATE TABLE hygiene(i int); GRANT ALL ON hygiene TO trust_user")
        .unwrap();

    // Left inside a transaction: rolled back.
    let mut c = pool.acquire().await.unwrap();
    c.simple_query("BEGIN; INSERT INTO hygiene VALUES (1)")
        .await
        .unwrap();
    assert_eq!(c.transaction_status(), TransactionStatus::InTransaction);
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.transaction_status(), TransactionStatus::Idle);
    assert_eq!(
        c.simple_query("SELECT count(*) FROM hygiene")
            .await
            .unwrap()[0]
            .get(0),
        Some("0")
    );

    // Left in a failed transaction: rolled back.
    let _ = c.simple_query("BEGIN; SELECT 1/0").await.unwrap_err();
    assert_eq!(c.transaction_status(), TransactionStatus::Failed);
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.transaction_status(), TransactionStatus::Idle);
    c.simple_query("SELECT 1").await.unwrap();

    // A query future dropped mid-flight: cancelled and drained.
    let pid = c.process_id();
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        c.simple_query("SELECT pg_sleep(30)"),
    )
    .await;
    assert!(r.is_err());
    assert!(c.is_busy());
    drop(c);
    let t = std::time::Instant::now();
    let mut c = pool.acquire().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the sleep was cancelled, not waited out"
    );
    assert!(!c.is_busy());
    assert_eq!(c.process_id(), pid, "the same connection, cleaned");
    assert_eq!(
        c.simple_query("SELECT 2").await.unwrap()[0].get(0),
        Some("2")
    );

    // Broken (backend killed while checked out): discarded and replaced.
    pg.psql(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    let _ = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(c.is_broken());
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_ne!(c.process_id(), pid);
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    let s = pool.statistics();
    assert_eq!(s.closed(CloseReason::Broken), 1);
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_timeout_cancels_the_query() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .command_timeout(Some(Duration::from_millis(300)))
        .build()
        .await
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let err = c.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandTimeout, "{err:?}");
    assert!(!c.is_broken());
    assert_eq!(
        c.simple_query("SELECT 3").await.unwrap()[0].get(0),
        Some("3")
    );
    drop(c);
    assert_eq!(
        pool.statistics()
            .errors_of(wirepool::observe::ErrorType::CommandTimeout),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_checked_out_connections() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Trust, 2, 2).await;
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|_| ()) })
    };
    let p = pool.clone();
    eventually("queued", move || p.statistics().waiting_requests == 1).await;
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(a);
        drop(b);
    });
    let closer = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.close().await })
    };
    let err = waiter.await.unwrap().unwrap_err();
    assert!(err.is_pool_closed(), "{err:?}");
    closer.await.unwrap();
    holder.await.unwrap();
    assert_eq!(pool.state(), LifecycleState::Terminated);
    let s = pool.statistics();
    assert_eq!(s.total_connections, 0);
    assert_eq!(s.closed(CloseReason::Shutdown), 2);
    assert!(pool.acquire().await.unwrap_err().is_pool_closed());
    pool.close().await; // idempotent
    assert_eq!(pool.health().status, HealthStatus::Unhealthy);
    let active = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'trust_user'")
        .unwrap();
    assert_eq!(active, "0", "Terminate was sent on every connection");
}
