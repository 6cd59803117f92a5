//! A restart shorter than the acquire timeout is invisible to callers waiting for a
//! connection: while the database is down and callers wait, the pool probes it one
//! connection at a time (every 250 ms by default) besides the guide's schedule (1, 2, 4,
//! 8, 16 s), and the first probe that succeeds serves the oldest waiter and starts the
//! refill; the listener comes back on the same signal. A restart longer than the acquire
//! timeout fails the waiting callers with the connect error, as the guide describes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wirepool::{ErrorKind, ListenerEvent, Pool, TimeoutPhase};
use wirepool_testkit::{cluster, Cluster, Role};

const TASKS: usize = 50;

/// What the callers saw: failed acquires (never allowed while the outage is shorter than
/// the acquire timeout), queries cut mid-flight (allowed), and when each query succeeded.
#[derive(Default)]
struct Seen {
    acquire_errors: Mutex<Vec<wirepool::Error>>,
    cut: AtomicU64,
    successes: Mutex<Vec<Instant>>,
}

async fn pool(pg: &Cluster) -> Pool {
    Pool::builder(pg.config(Role::Admin))
        .min_size(10)
        .max_size(10)
        .acquire_timeout(Duration::from_secs(5))
        .monitor_interval(Duration::from_millis(250))
        .build()
        .await
        .unwrap()
}

/// A pool of at most two connections whose callers wait `acquire_timeout` at most.
async fn small_pool(pg: &Cluster, acquire_timeout: Duration) -> Pool {
    Pool::builder(pg.config(Role::Admin))
        .min_size(1)
        .max_size(2)
        .acquire_timeout(acquire_timeout)
        .build()
        .await
        .unwrap()
}

fn callers(
    pool: &Pool,
    seen: &Arc<Seen>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..TASKS)
        .map(|_| {
            let (pool, seen, stop) = (pool.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut c = match pool.acquire().await {
                        Ok(c) => c,
                        Err(e) => {
                            seen.acquire_errors.lock().unwrap().push(e);
                            continue;
                        }
                    };
                    match c.query_one("SELECT 1", &[]).await {
                        Ok(row) => {
                            assert_eq!(row.get::<_, i32>(0), 1);
                            seen.successes.lock().unwrap().push(Instant::now());
                        }
                        Err(_) => {
                            seen.cut.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(c);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect()
}

/// The first success at or after `t`.
fn first_after(seen: &Seen, t: Instant) -> Option<Duration> {
    seen.successes
        .lock()
        .unwrap()
        .iter()
        .filter(|s| **s >= t)
        .min()
        .map(|s| *s - t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_shorter_than_the_acquire_timeout_fails_no_waiting_caller() {
    let mut pg = cluster();
    let pool = pool(&pg).await;
    let mut listener = pool.listener().await.unwrap();
    listener.listen("probe_events").await.unwrap();
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = callers(&pool, &seen, &stop);
    // The listener is polled with a short tick, as an application with other work polls it.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let listen_stop = stop.clone();
    let listening = tokio::spawn(async move {
        while !listen_stop.load(Ordering::Relaxed) {
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), listener.recv()).await {
                let _ = events_tx.send((Instant::now(), r.unwrap()));
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pool.statistics();
    tokio::task::block_in_place(|| pg.kill().unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| pg.start_again().unwrap());
    let accepting = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Notifications after the restart reach the listener.
    for i in 0..5 {
        pool.notify("probe_events", &i.to_string()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    listening.await.unwrap();
    let after = pool.statistics();

    let errors = seen.acquire_errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} waiting callers failed, e.g. {}",
        errors.len(),
        errors[0]
    );
    let first = first_after(&seen, accepting).expect("queries succeed after the restart");
    let attempts = (after.reconnect_attempts - before.reconnect_attempts)
        + (after.reconnect_probes - before.reconnect_probes);
    println!(
        "first query {first:?} after the server accepted connections; {} queries cut mid-flight; \
         {} connection attempts during the outage ({} probes, {} on the schedule)",
        seen.cut.load(Ordering::Relaxed),
        attempts,
        after.reconnect_probes - before.reconnect_probes,
        after.reconnect_attempts - before.reconnect_attempts
    );
    assert!(first < Duration::from_secs(1), "{first:?}");
    // One at a time, every 250 ms, for about 3 s (and the schedule's own): bounded.
    assert!(after.reconnect_probes > before.reconnect_probes);
    assert!(attempts <= 30, "{attempts} attempts");
    // The listener came back on the same signal, and got what was sent after.
    let mut reconnected = None;
    let mut payloads = Vec::new();
    while let Ok((at, ev)) = events.try_recv() {
        match ev {
            ListenerEvent::Reconnected => {
                reconnected.get_or_insert(at);
            }
            ListenerEvent::Notification(n) => payloads.push(n.payload().to_string()),
            _ => {}
        }
    }
    let back = reconnected.expect("the listener reconnected") - accepting;
    println!("listener back {back:?} after the server accepted connections");
    assert!(back < Duration::from_secs(1), "{back:?}");
    assert_eq!(payloads, ["0", "1", "2", "3", "4"]);
}

/// A `pool.query*` caller that times out while the database is down is told the connect
/// phase ran out, with the connect error as its cause, as an `acquire()` caller is: not to
/// wait for a connection to be returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_path_timeout_during_an_outage_names_the_connect_error() {
    let mut pg = cluster();
    let pool = small_pool(&pg, Duration::from_secs(2)).await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    tokio::task::block_in_place(|| pg.kill().unwrap());
    let mut phases = Vec::new();
    for _ in 0..3 {
        match pool.query_one("SELECT 1", &[]).await {
            Err(e) if e.kind() == ErrorKind::PoolTimeout => {
                let chain = wirepool::error::chain(&e);
                assert!(std::error::Error::source(&e).is_some(), "{chain}");
                phases.push(e.timeout_phase());
            }
            // The lane's connection lost with the server: the next statement waits.
            Err(e) => assert_eq!(e.kind(), ErrorKind::Closed, "{e}"),
            Ok(_) => panic!("answered with the server down"),
        }
    }
    assert!(!phases.is_empty(), "no statement waited");
    assert!(
        phases.iter().all(|p| *p == Some(TimeoutPhase::Connect)),
        "{phases:?}"
    );
    pool.close().await;
}

/// `pool.query*` callers that leave while the database is down (their futures dropped)
/// leave nothing behind: they count as cancelled, and the shared path gives up its request
/// for a connection, so the database is no longer probed for nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_path_callers_that_leave_during_an_outage_stop_the_probes() {
    let mut pg = cluster();
    let pool = small_pool(&pg, Duration::from_secs(30)).await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    tokio::task::block_in_place(|| pg.kill().unwrap());
    let cancelled = pool.statistics().acquires_cancelled;
    let mut waited = 0;
    for _ in 0..3 {
        if tokio::time::timeout(Duration::from_millis(500), pool.query_one("SELECT 1", &[]))
            .await
            .is_err()
        {
            waited += 1;
        }
    }
    assert!(waited > 0, "no caller waited");
    let s = pool.statistics();
    assert_eq!(
        (s.waiting_requests, s.pipeline_waiting),
        (0, 0),
        "no one waits"
    );
    assert_eq!(
        s.acquires_cancelled - cancelled,
        waited,
        "each caller that left"
    );
    // Probes run every 250 ms while someone waits: over 3 s, with nobody, none (one may
    // have been under way).
    let before = s.reconnect_probes;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pool.statistics().reconnect_probes;
    assert!(
        after <= before + 1,
        "probed {} times for nobody",
        after - before
    );
    tokio::task::block_in_place(|| pg.start_again().unwrap());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_longer_than_the_acquire_timeout_fails_waiting_callers_with_the_connect_error() {
    let mut pg = cluster();
    let pool = pool(&pg).await;
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    tokio::task::block_in_place(|| pg.kill().unwrap());
    let tasks = callers(&pool, &seen, &stop);
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| pg.start_again().unwrap());
    let accepting = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let errors = seen.acquire_errors.lock().unwrap();
    assert!(
        !errors.is_empty(),
        "callers waited longer than the acquire timeout"
    );
    for e in errors.iter() {
        assert_eq!(e.kind(), ErrorKind::PoolTimeout, "{e}");
        assert_eq!(e.timeout_phase(), Some(TimeoutPhase::Connect), "{e}");
        let chain = wirepool::error::chain(e);
        assert!(
            chain.contains("waiting for a new connection to be opened after"),
            "{chain}"
        );
        // The cause is the connect error, as the guide's troubleshooting says.
        assert!(std::error::Error::source(e).is_some(), "{chain}");
    }
    let first = first_after(&seen, accepting).expect("queries succeed after the restart");
    println!(
        "{} callers timed out during a 10 s outage; first query {first:?} after the server accepted connections",
        errors.len()
    );
    assert!(first < Duration::from_secs(1), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_can_be_turned_off() {
    let mut pg = cluster();
    let pool = Pool::builder(pg.config(Role::Admin))
        .min_size(2)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(3))
        .reconnect_probe_interval(None)
        .build()
        .await
        .unwrap();
    tokio::task::block_in_place(|| pg.kill().unwrap());
    // The monitor notices the closed idle connections within a tick or two.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = pool.acquire().await;
    assert!(r.is_err());
    tokio::task::block_in_place(|| pg.start_again().unwrap());
    assert_eq!(pool.statistics().reconnect_probes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_the_password_is_not_probed() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    // The password changes and the pool's session ends: every new connection is refused
    // (28P01), which no faster retry helps.
    pg.psql("ALTER ROLE scram_user PASSWORD 'rotated'").unwrap();
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'scram_user'")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let p = pool.clone();
            tokio::spawn(async move { p.acquire().await.map(drop) })
        })
        .collect();
    for w in waiting {
        let e = w.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PoolTimeout, "{e}");
    }
    let s = pool.statistics();
    assert_eq!(s.reconnect_probes, 0, "{s:?}");
    pg.psql("ALTER ROLE scram_user PASSWORD 'scram_secret'")
        .unwrap();
}

/// A database killed under load is met by one failed connect, not by one per lost
/// connection: until a connect succeeds after a loss, the pool opens replacements one at a
/// time, and once one fails only the reconnector retries (its schedule and its probes). A
/// restart then brings every connection back, in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_database_is_met_by_one_connect_not_one_per_lost_connection() {
    let mut pg = cluster();
    let pool = pool(&pg).await;
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = callers(&pool, &seen, &stop);
    // Callers of the shared path lose their lanes' connections too.
    for _ in 0..TASKS {
        let (pool, stop) = (pool.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = pool.query_one("SELECT 1", &[]).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pool.statistics();
    assert_eq!(before.connect_failures, 0);
    tokio::task::block_in_place(|| pg.kill().unwrap());
    // Every failed connect past the first is the reconnector's (each probe and scheduled
    // attempt is counted before it runs).
    let mut worst = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let s = pool.statistics();
        let reconnector = (s.reconnect_probes - before.reconnect_probes)
            + (s.reconnect_attempts - before.reconnect_attempts);
        worst = worst.max(s.connect_failures.saturating_sub(reconnector));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let down = pool.statistics();
    assert!(down.connect_failures > 0, "the outage was not seen");
    assert!(
        worst <= 1,
        "{worst} connects failed outside the reconnector's schedule and probes"
    );
    tokio::task::block_in_place(|| pg.start_again().unwrap());
    let t = Instant::now();
    while pool.statistics().total_connections < 10 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the pool was not refilled: {:?}",
            pool.statistics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(pool.statistics().connect_failures, 0);
    pool.close().await;
}
