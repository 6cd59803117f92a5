//! The pool's less-travelled paths against a real server: retirement by idle timeout and
//! lifetime, detach and discard, cancelled acquires, a reset that fails, the drain timeout,
//! a cancelled close() and one with the shared path busy, fail_fast, and the rule that only
//! the reconnector opens connections while the database is unreachable.

mod common;

use std::time::{Duration, Instant};

use wirepool::observe::{CloseReason, ErrorType};
use wirepool::{LifecycleState, Pool};
use wirepool_testkit::{cluster, eventually, fast_config, Cluster, Role};

use common::proxy::{Mode, Proxy};
use common::Logs;

/// A pool of at most `max_size` under `fail_fast`, whose callers would wait 30 s.
fn fail_fast_config(max_size: usize) -> wirepool::PoolConfig {
    let mut cfg = fast_config();
    cfg.fail_fast = true;
    cfg.acquire_timeout = Duration::from_secs(30);
    cfg.min_size = 1;
    cfg.max_size = max_size;
    cfg
}

/// Waits until a `pool.query_one` is answered (every 100 ms), within `limit`; each refusal
/// meanwhile is the connect error, never a timeout.
async fn until_served(pool: &Pool, limit: Duration) {
    let t = Instant::now();
    loop {
        match pool.query_one("SELECT 42::int4", &[]).await {
            Ok(row) => {
                assert_eq!(row.get::<_, i32>(0), 42);
                return;
            }
            Err(e) => {
                assert!(!e.is_timeout(), "{e:?}");
                assert!(t.elapsed() < limit, "not served again: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The server process ids of the pool's role that are connected now.
fn backends(pg: &Cluster) -> Vec<i32> {
    pg.psql("SELECT pid FROM pg_stat_activity WHERE usename = 'trust_user'")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_min_size_retire_after_idle_timeout() {
    retire_after_idle_timeout(None).await;
}

/// A keepalive check is not a use: connections checked every 50 ms still retire after
/// 300 ms unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_retire_after_idle_timeout_through_keepalive_checks() {
    retire_after_idle_timeout(Some(Duration::from_millis(50))).await;
}

async fn retire_after_idle_timeout(keepalive_interval: Option<Duration>) {
    let pg = cluster();
    let mut cfg = fast_config();
    cfg.idle_timeout = Some(Duration::from_millis(300));
    cfg.keepalive_interval = keepalive_interval;
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(cfg)
        .min_size(1)
        .max_size(4)
        .build()
        .await
        .unwrap();
    let held: Vec<_> = futures_all(&pool, 4).await;
    assert_eq!(pool.statistics().total_connections, 4);
    drop(held);
    let p = pool.clone();
    eventually("surplus idle connections closed", move || {
        p.statistics().closed(CloseReason::IdleTimeout) == 3
    })
    .await;
    let s = pool.statistics();
    assert_eq!(s.total_connections, 1, "min_size is kept: {s:?}");
    assert_eq!(s.closed(CloseReason::MaxLifetime), 0);
    let p = pool.clone();
    eventually("the server sees one connection", move || {
        let _ = &p;
        backends(&pg).len() == 1
    })
    .await;
    pool.close().await;
}

/// Holds `n` connections at once.
async fn futures_all(pool: &Pool, n: usize) -> Vec<wirepool::PooledConnection> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_lifetime_are_replaced() {
    let pg = cluster();
    let mut cfg = fast_config();
    cfg.max_lifetime = Some(Duration::from_millis(400));
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(cfg)
        .min_size(2)
        .max_size(4)
        .build()
        .await
        .unwrap();
    let first = backends(&pg);
    assert_eq!(first.len(), 2);
    // Idle ones retire in the monitor; one held past its lifetime retires on return.
    let held = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(held);
    let p = pool.clone();
    eventually("both first connections retired and replaced", move || {
        let s = p.statistics();
        s.closed(CloseReason::MaxLifetime) >= 2 && s.total_connections == 2
    })
    .await;
    let p = pool.clone();
    eventually("new backends", move || {
        let _ = &p;
        let now = backends(&pg);
        now.len() == 2 && now.iter().all(|pid| !first.contains(pid))
    })
    .await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_and_discard_take_the_connection_out_of_the_pool() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .min_size(1)
        .max_size(2)
        .build()
        .await
        .unwrap();
    let g = pool.acquire().await.unwrap();
    let detached_pid = g.process_id();
    let mut conn = g.detach();
    let s = pool.statistics();
    assert_eq!(s.closed(CloseReason::Caller), 1, "{s:?}");
    assert_eq!(s.total_acquisitions, s.total_releases);
    // The detached connection is the caller's now, and works on its own.
    assert_eq!(
        conn.simple_query("SELECT 2").await.unwrap()[0].get(0),
        Some("2")
    );
    // The pool refills to min_size without it.
    let p = pool.clone();
    eventually("min_size refilled", move || {
        p.statistics().total_connections == 1
    })
    .await;
    let g = pool.acquire().await.unwrap();
    assert_ne!(g.process_id(), detached_pid);
    let discarded_pid = g.process_id();
    g.discard();
    assert_eq!(pool.statistics().closed(CloseReason::Caller), 2);
    eventually("the discarded backend is gone", || {
        !backends(&pg).contains(&discarded_pid)
    })
    .await;
    assert!(
        backends(&pg).contains(&detached_pid),
        "the detached one lives on"
    );
    conn.close().await.unwrap();
    let mut g = pool.acquire().await.unwrap();
    assert_ne!(g.process_id(), discarded_pid);
    g.simple_query("SELECT 1").await.unwrap();
    drop(g);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquire_is_counted_and_passes_its_place_on() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .min_size(1)
        .max_size(1)
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| c.id()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The second waiter gives up (its future is dropped) while queued.
    let r = tokio::time::timeout(Duration::from_millis(50), pool.acquire()).await;
    assert!(r.is_err(), "the only connection is held");
    let third = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| c.id()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.statistics().waiting_requests, 2);
    let id = held.id();
    drop(held);
    assert_eq!(first.await.unwrap().unwrap(), id);
    assert_eq!(third.await.unwrap().unwrap(), id, "nobody kept the place");
    let s = pool.statistics();
    assert_eq!(s.acquires_cancelled, 1, "{s:?}");
    assert_eq!(s.waiting_requests, 0);
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.total_acquisitions, 3);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_that_cannot_finish_discards_the_connection() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let cfg = pg
        .config(Role::Trust)
        .with_port(proxy.port())
        .with_connect_timeout(Some(Duration::from_secs(1)));
    let pool = Pool::builder(cfg)
        .config(fast_config())
        .min_size(1)
        .max_size(2)
        .build()
        .await
        .unwrap();
    let mut g = pool.acquire().await.unwrap();
    g.simple_query("BEGIN").await.unwrap();
    let id = g.id();
    // The ROLLBACK on return never gets an answer.
    proxy.set(Mode::Stall);
    drop(g);
    let p = pool.clone();
    eventually("the reset gave up", move || {
        p.statistics().closed(CloseReason::ResetFailed) == 1
    })
    .await;
    proxy.set(Mode::Pass);
    let mut g = pool.acquire().await.unwrap();
    assert_ne!(g.id(), id, "the dirty connection is never handed out");
    assert_eq!(
        g.transaction_status(),
        wirepool::TransactionStatus::Idle,
        "a clean one instead"
    );
    g.simple_query("SELECT 1").await.unwrap();
    drop(g);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_up_on_held_connections_after_the_drain_timeout() {
    let logs = Logs::capture();
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .drain_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), pool.close())
        .await
        .expect("close() ends after the drain timeout, though a connection is out");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(pool.state(), LifecycleState::Terminated);
    assert!(
        logs.text()
            .contains("1 connections still in use after the drain timeout"),
        "{}",
        logs.text()
    );
    let pid = held.process_id();
    drop(held);
    eventually("closed when it came back", || !backends(&pg).contains(&pid)).await;
    assert_eq!(pool.statistics().closed(CloseReason::Shutdown), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_close_still_terminates_and_a_second_close_returns() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .drain_timeout(Duration::MAX)
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    // The first close() is abandoned while it waits for the held connection.
    let r = tokio::time::timeout(Duration::from_millis(100), pool.close()).await;
    assert!(r.is_err());
    assert_eq!(pool.state(), LifecycleState::ShuttingDown);
    assert!(pool.acquire().await.unwrap_err().is_pool_closed());
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), pool.close())
        .await
        .expect("the second close() returns once the drain is done");
    assert_eq!(pool.state(), LifecycleState::Terminated);
    // And again, at once.
    tokio::time::timeout(Duration::from_secs(1), pool.close())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_too_long_to_add_mean_never() {
    let pg = cluster();
    let mut cfg = fast_config();
    cfg.max_lifetime = Some(Duration::MAX);
    cfg.idle_timeout = Some(Duration::MAX);
    cfg.keepalive_interval = Some(Duration::MAX);
    cfg.acquire_timeout = Duration::MAX;
    cfg.drain_timeout = Duration::MAX;
    cfg.reconnect_delays = vec![Duration::MAX];
    cfg.leak_detection_timeout = Duration::MAX;
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    let mut g = pool.acquire().await.unwrap();
    g.simple_query("SELECT 1").await.unwrap();
    drop(g);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = pool.statistics();
    assert_eq!(s.total_connections, 2, "nothing retired: {s:?}");
    tokio::time::timeout(Duration::from_secs(10), pool.close())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_returns_the_connect_error_at_once() {
    let mut pg = cluster();
    let cfg = fail_fast_config(1);
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    // The first caller finds the dead connection, and a connect fails.
    let p = pool.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), async move {
        if let Ok(mut c) = p.acquire().await {
            let _ = c.simple_query("SELECT 1").await;
        }
    })
    .await;
    let p = pool.clone();
    eventually("the pool knows the database is unreachable", move || {
        p.statistics().connect_failures > 0
    })
    .await;
    let t = Instant::now();
    let e = pool.acquire().await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "not the 30 s acquire timeout"
    );
    assert!(!e.is_timeout(), "{e:?}");
    assert!(e.is_io(), "the connect error itself: {e:?}");
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    pool.close().await;
}

/// A new connection the server ends while the pool sets it up (a second wave of
/// terminations, right after the first) is not a database gone: the server had accepted
/// it. The next open starts at once, `connect_failures` stays 0, and the caller waiting
/// for it is served, not left to the reconnection schedule (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_ended_as_it_is_set_up_is_replaced_at_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pg = cluster();
    // The first replacement waits in its setup until the test ends its session.
    let stall = Arc::new(AtomicBool::new(false));
    let hook_stall = stall.clone();
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(fast_config())
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(20))
        .reconnect_delays(vec![Duration::from_secs(60)])
        .after_connect(move |c| {
            let stall = hook_stall.swap(false, Ordering::AcqRel);
            Box::pin(async move {
                if stall {
                    c.simple_query("SELECT pg_sleep(60) /* setup */").await?;
                }
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    pool.acquire()
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();
    stall.store(true, Ordering::Release);
    // The first wave: the pool's connection.
    for pid in backends(&pg) {
        pg.psql(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
    }
    let p = pool.clone();
    let waiting = tokio::spawn(async move {
        let mut c = p.acquire().await?;
        c.simple_query("SELECT 1").await.map(drop)
    });
    // The second: its replacement, in its setup.
    let setup = "SELECT pid FROM pg_stat_activity WHERE query LIKE '%/* setup */' AND pid <> pg_backend_pid()";
    let t = Instant::now();
    loop {
        let pids = pg.psql(setup).unwrap();
        if let Some(pid) = pids.lines().find_map(|l| l.trim().parse::<i32>().ok()) {
            pg.psql(&format!("SELECT pg_terminate_backend({pid})"))
                .unwrap();
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the replacement never reached its setup"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiting caller was left to the schedule")
        .unwrap()
        .unwrap();
    let s = pool.statistics();
    assert_eq!(
        (s.connect_failures, s.reconnect_attempts, s.reconnect_probes),
        (0, 0, 0),
        "{s:?}"
    );
    pool.close().await;
}

/// Under `fail_fast`, a caller already waiting when the database becomes unreachable fails
/// with the connect error once a connect fails, as a caller arriving then would, instead
/// of waiting out the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_fails_the_callers_already_waiting() {
    let mut pg = cluster();
    let cfg = fail_fast_config(1);
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    let mut held = pool.acquire().await.unwrap();
    let p = pool.clone();
    let waiting = tokio::spawn(async move { p.acquire().await.map(drop) });
    let p = pool.clone();
    eventually("a caller waits", move || {
        p.statistics().waiting_requests == 1
    })
    .await;
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    // The held connection is found broken and given back: its replacement fails.
    assert!(held.simple_query("SELECT 1").await.is_err());
    drop(held);
    let e = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("not the 30 s acquire timeout")
        .unwrap()
        .unwrap_err();
    assert!(!e.is_timeout(), "{e:?}");
    assert!(e.is_io(), "the connect error itself: {e:?}");
    let s = pool.statistics();
    assert_eq!(
        (s.waiting_requests, s.acquire_timeouts, s.acquires_cancelled),
        (0, 0, 0)
    );
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    pool.close().await;
}

/// Under `fail_fast` nobody waits during an outage, yet callers want connections: the
/// reconnector probes for the callers it refused as for callers that wait, so the pool
/// serves again within a probe or two of the database's return, not at the schedule's
/// next step (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_callers_get_the_probes_that_waiting_callers_get() {
    let mut pg = cluster();
    let mut cfg = fail_fast_config(2);
    cfg.reconnect_delays = vec![Duration::from_secs(60)];
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        // Refused at once (after the first finds the connection gone).
        let _ = pool.query_one("SELECT 1", &[]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pool.statistics().connect_failures > 0);
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    until_served(&pool, Duration::from_secs(5)).await;
    let s = pool.statistics();
    assert!(s.reconnect_probes > 0, "{s:?}");
    assert_eq!(s.reconnect_attempts, 0, "not the schedule's: {s:?}");
    pool.close().await;
}

/// `fail_fast` holds for the shared path too: a `pool.query*` statement that would wait for
/// a connection while the database is unreachable fails at once with the connect error,
/// not sent, instead of waiting out the acquire timeout (and, with no request for a
/// connection left under way, past the database's return); once it is back, statements run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_holds_for_the_shared_path() {
    let mut pg = cluster();
    let cfg = fail_fast_config(2);
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    assert_eq!(
        pool.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    // Statements find their connection gone, and a connect fails.
    let p = pool.clone();
    eventually("the pool knows the database is unreachable", move || {
        let q = p.clone();
        tokio::spawn(async move { q.query_one("SELECT 1", &[]).await });
        p.statistics().connect_failures > 0
    })
    .await;
    let t = Instant::now();
    let e = pool.query_one("SELECT 42::int4", &[]).await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "not the 30 s acquire timeout: {:?}",
        t.elapsed()
    );
    assert!(!e.is_timeout(), "{e:?}");
    assert!(e.is_io(), "the connect error itself: {e:?}");
    assert_eq!(e.may_have_run(), Some(false), "{e:?}");
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    until_served(&pool, Duration::from_secs(20)).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_unreachable_only_the_reconnector_connects() {
    let mut pg = cluster();
    let mut cfg = fast_config();
    cfg.min_size = 1;
    cfg.max_size = 10;
    cfg.acquire_timeout = Duration::from_millis(200);
    cfg.reconnect_delays = [200, 400].map(Duration::from_millis).to_vec();
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), cfg).await;
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    let p = pool.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), async move {
        let _ = p.acquire().await;
    })
    .await;
    let p = pool.clone();
    eventually("the outage is noticed", move || {
        p.statistics().connect_failures > 0
    })
    .await;
    let before = pool.statistics();
    // 50 callers keep asking for 3 s: none of them may open a connection of its own.
    let deadline = Instant::now() + Duration::from_secs(3);
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    let e = pool.acquire().await.unwrap_err();
                    assert!(e.is_timeout(), "{e:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut asked = 0;
    for c in callers {
        asked += c.await.unwrap();
    }
    let after = pool.statistics();
    let connects = after.errors_of(ErrorType::Connect) - before.errors_of(ErrorType::Connect);
    let attempts = after.reconnect_attempts - before.reconnect_attempts;
    // While callers wait, the reconnector also probes, one connection at a time every
    // 250 ms: about 12 in 3 s, never one per caller.
    let probes = after.reconnect_probes - before.reconnect_probes;
    assert!(asked >= 300, "{asked} acquires");
    assert!(probes <= 3_000 / 250 + 2, "{probes} probes in 3 s");
    assert!(
        (1..=attempts + probes + 1).contains(&connects),
        "{connects} connect attempts for {attempts} scheduled ones, {probes} probes and {asked} acquires"
    );
    assert_eq!(
        after.errors_of(ErrorType::AcquireTimeout) - before.errors_of(ErrorType::AcquireTimeout),
        asked as u64
    );
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    // The reconnector alone brings it back.
    let t = Instant::now();
    loop {
        if let Ok(mut g) = pool.acquire().await {
            if g.simple_query("SELECT 1").await.is_ok() {
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "did not recover");
    }
    pool.close().await;
}

/// The ids in `close_log`, as another session sees them.
fn logged(pg: &Cluster) -> Vec<i64> {
    pg.psql("SELECT id FROM close_log ORDER BY id")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_shared_path_within_the_drain_timeout() {
    let pg = cluster();
    pg.psql("CREATE TABLE close_log (id int8)").unwrap();
    let mut cfg = fast_config();
    cfg.min_size = 2;
    cfg.max_size = 2;
    cfg.pipeline_depth = 16;
    cfg.command_timeout = None;
    let drain = Duration::from_millis(500);
    cfg.drain_timeout = drain;
    let pool = wirepool_testkit::pool_from(pg.config(Role::Admin), cfg).await;
    // Each statement logs its id after a second: two lanes of 16 in flight run for 16 s,
    // and 8 more callers wait for room.
    let sql = "INSERT INTO close_log SELECT $1 FROM pg_sleep(1)";
    let callers: Vec<_> = (1..=40i64)
        .map(|id| {
            let pool = pool.clone();
            tokio::spawn(async move { (id, pool.execute(sql, &[&id]).await) })
        })
        .collect();
    // Statements are running once the first has logged its id.
    let deadline = Instant::now() + Duration::from_secs(60);
    while logged(&pg).is_empty() {
        assert!(Instant::now() < deadline, "no statement ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t = Instant::now();
    pool.close().await;
    let took = t.elapsed();
    let at_close = logged(&pg);
    // Serving everything would take 15 s more; the drain timeout is half a second (and
    // the cancels of what the server runs, bounded by a second, come after it).
    assert!(took < Duration::from_secs(8), "close() took {took:?}");
    assert_eq!(pool.state(), LifecycleState::Terminated);

    // Every caller has its answer once close() returned.
    let (mut ok, mut sent, mut unsent) = (Vec::new(), Vec::new(), Vec::new());
    for c in callers {
        let (id, r) = tokio::time::timeout(Duration::from_secs(1), c)
            .await
            .expect("each caller is answered by the time close() returns")
            .unwrap();
        match r {
            Ok(n) => {
                assert_eq!(n, 1);
                ok.push(id);
            }
            Err(e) => {
                assert_eq!(e.kind(), wirepool::ErrorKind::PoolClosed, "{e}");
                match e.may_have_run() {
                    Some(true) => sent.push(id),
                    Some(false) => unsent.push(id),
                    None => panic!("caller {id} cannot tell whether its statement ran: {e}"),
                }
            }
        }
    }
    assert!(
        !sent.is_empty(),
        "statements were in flight at the drain timeout"
    );
    assert!(!unsent.is_empty(), "callers were waiting for room at close");

    // Nothing runs after close() returned: the server logs no more ids (each statement
    // takes a second; three pass).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = logged(&pg);
    assert_eq!(later, at_close, "statements ran after close() returned");
    // What was answered ran; what was not sent did not.
    for id in &ok {
        assert!(later.contains(id), "{id} was answered but is not logged");
    }
    for id in &unsent {
        assert!(!later.contains(id), "{id} was not sent but is logged");
    }
    for id in &later {
        assert!(
            ok.contains(id) || sent.contains(id),
            "{id} is logged but its caller was told it was not sent"
        );
    }
}
