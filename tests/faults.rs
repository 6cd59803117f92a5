//! Network faults between the pool and a real server, through a loopback TCP proxy:
//! stalls, resets, delays, connections closed part-way; and a password changed while the
//! pool runs. Every failure is a typed error, no broken connection is handed out twice,
//! and the pool recovers.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wirepool::error::sqlstate;
use wirepool::observe::CloseReason;
use wirepool::{ConnectConfig, ErrorKind, Pool, PoolConfig};
use wirepool_testkit::{cluster, Cluster, Role};

use common::proxy::{Mode, Proxy};
use common::Logs;

fn via(pg: &Cluster, proxy: &Proxy) -> ConnectConfig {
    pg.config(Role::Trust)
        .with_port(proxy.port())
        .with_connect_timeout(Some(Duration::from_secs(1)))
}

async fn pool_via(pg: &Cluster, proxy: &Proxy, cfg: PoolConfig) -> Pool {
    wirepool_testkit::pool_from(via(pg, proxy), cfg).await
}

/// Waits until `sql` succeeds through the pool again.
async fn until_serving(pool: &Pool, sql: &str, limit: Duration, what: &str) {
    let t = Instant::now();
    loop {
        if let Ok(mut c) = pool.acquire().await {
            if c.simple_query(sql).await.is_ok() {
                return;
            }
        }
        assert!(t.elapsed() < limit, "{what}");
    }
}

fn base_cfg() -> PoolConfig {
    let mut cfg = PoolConfig::default();
    cfg.min_size = 2;
    cfg.max_size = 4;
    cfg.acquire_timeout = Duration::from_secs(3);
    cfg.monitor_interval = Duration::from_millis(50);
    cfg.keepalive_interval = None;
    cfg.reconnect_delays = [100, 200].map(Duration::from_millis).to_vec();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_server_command_timeout_cancels_and_discards() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.command_timeout = Some(Duration::from_millis(300));
    let pool = pool_via(&pg, &proxy, cfg).await;
    let mut c = pool.acquire().await.unwrap();
    let stalled_id = c.id();
    proxy.set(Mode::Stall);
    let t = Instant::now();
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandTimeout, "{err:?}");
    // The timeout, then the cancel's grace period (the cancel is stalled too), no more.
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        c.is_broken(),
        "a query the server never answered leaves it unusable"
    );
    drop(c);
    proxy.set(Mode::Pass);
    let s = pool.statistics();
    assert_eq!(s.closed(CloseReason::Broken), 1);
    // Never handed out again; the pool serves with other connections.
    for _ in 0..10 {
        let mut c = pool.acquire().await.unwrap();
        assert_ne!(c.id(), stalled_id);
        c.simple_query("SELECT 1").await.unwrap();
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_network_command_timeout_cancels_and_keeps_the_connection() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.command_timeout = Some(Duration::from_millis(200));
    let pool = pool_via(&pg, &proxy, cfg).await;
    let mut c = pool.acquire().await.unwrap();
    let id = c.id();
    // Each hop waits 150 ms: a query needs more than the 200 ms timeout, the cancel still
    // gets through and the answer is drained within the grace period.
    proxy.set(Mode::Delay(Duration::from_millis(150)));
    let err = c.simple_query("SELECT pg_sleep(1)").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandTimeout, "{err:?}");
    assert!(!c.is_broken());
    proxy.set(Mode::Pass);
    let rows = c.simple_query("SELECT 2").await.unwrap();
    assert_eq!(
        rows[0].get(0),
        Some("2"),
        "the connection is clean after the cancel"
    );
    drop(c);
    assert_eq!(pool.statistics().closed(CloseReason::Broken), 0);
    // `pg_sleep(1)` is not proven clean: the connection comes back after its session reset,
    // a round trip in a pool task. Two at a time: the connection a caller returned last is
    // handed out first, and that is the pool's other one.
    let mut seen = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen && std::time::Instant::now() < deadline {
        let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        seen |= a.id() == id || b.id() == id;
        drop((a, b));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the cancelled connection stays in the pool");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_idle_connections_are_found_at_checkout() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.min_size = 4;
    let pool = pool_via(&pg, &proxy, cfg).await;
    proxy.reset_open_connections();
    // Every idle connection was reset (the proxy's tasks share the loaded runtime: no fixed
    // sleep is long enough), then a moment for the resets to reach the pool's sockets.
    let t = Instant::now();
    while proxy.open_connections() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the proxy did not reset"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No keepalive: the checkout itself sees that the idle connections were reset, and no
    // caller meets one. Each round holds the pool's every connection at once, so each reset
    // one is checked out (the idle list hands out the most recently used first: one at a
    // time, the same new connection would come back each time and the others never be met).
    for _ in 0..5 {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.acquire().await.unwrap());
        }
        for c in &mut held {
            c.simple_query("SELECT 1")
                .await
                .expect("no caller meets a connection reset while idle");
        }
    }
    let s = pool.statistics();
    assert_eq!(s.closed(CloseReason::ServerClosed), 4, "{s:?}");
    assert_eq!(s.closed(CloseReason::Broken), 0, "{s:?}");
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_while_checked_out_fail_once_and_never_come_back() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.min_size = 4;
    let pool = pool_via(&pg, &proxy, cfg).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    proxy.reset_open_connections();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Each fails with a typed error once, is discarded, and never comes back.
    let mut failed = HashSet::new();
    for mut c in held {
        let e = c.simple_query("SELECT 1").await.unwrap_err();
        assert!(e.is_io() || e.is_closed(), "{e:?}");
        assert!(c.is_broken());
        failed.insert(c.id());
    }
    for _ in 0..20 {
        let mut c = pool.acquire().await.unwrap();
        assert!(
            !failed.contains(&c.id()),
            "conn_{} handed out again",
            c.id()
        );
        c.simple_query("SELECT 1").await.unwrap();
    }
    let s = pool.statistics();
    assert_eq!(s.closed(CloseReason::Broken), 4, "{s:?}");
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_finds_reset_connections_before_a_caller_does() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.min_size = 4;
    cfg.keepalive_interval = Some(Duration::from_millis(100));
    let pool = pool_via(&pg, &proxy, cfg).await;
    proxy.reset_open_connections();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s = pool.statistics();
    assert!(
        s.closed(CloseReason::ServerClosed) >= 4,
        "every reset connection was found idle: {:?}",
        s.connections_closed
    );
    for _ in 0..20 {
        let mut c = pool.acquire().await.unwrap();
        c.simple_query("SELECT 1")
            .await
            .expect("no caller meets a dead connection");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_part_way_gives_typed_errors_and_the_pool_recovers() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    // Cut during startup (after 20 bytes of the server's answer): build fails, typed.
    proxy.set(Mode::CloseAfter(20));
    let err = Pool::builder(via(&pg, &proxy))
        .config(base_cfg())
        .build()
        .await
        .unwrap_err();
    assert!(
        err.is_io() || err.is_closed() || err.is_protocol(),
        "{err:?}"
    );

    proxy.set(Mode::Pass);
    let pool = pool_via(&pg, &proxy, base_cfg()).await;
    // Cut in the middle of a large result: the proxy stops after 1000 bytes from the server
    // on each connection (startup and validation took about half of that).
    let mut c = pool.acquire().await.unwrap();
    proxy.set(Mode::CloseAfter(1000));
    let err = c
        .simple_query("SELECT repeat('x', 100) FROM generate_series(1, 1000)")
        .await
        .unwrap_err();
    assert!(err.is_io() || err.is_closed(), "{err:?}");
    assert!(c.is_broken());
    drop(c);
    assert_eq!(pool.statistics().closed(CloseReason::Broken), 1);
    proxy.set(Mode::Pass);
    until_serving(
        &pool,
        "SELECT repeat('x', 100) FROM generate_series(1, 1000)",
        Duration::from_secs(10),
        "no recovery",
    )
    .await;
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_reset_during_an_outage_then_recover() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.acquire_timeout = Duration::from_millis(500);
    let pool = pool_via(&pg, &proxy, cfg).await;
    proxy.set(Mode::Reset);
    proxy.reset_open_connections();
    // Callers find the old connections dead, then new ones cannot be opened: typed errors.
    let t = Instant::now();
    let mut saw_timeout_with_cause = false;
    while t.elapsed() < Duration::from_secs(2) {
        match pool.acquire().await {
            Ok(mut c) => {
                let _ = c.simple_query("SELECT 1").await;
            }
            Err(e) => {
                assert!(e.is_timeout(), "{e:?}");
                saw_timeout_with_cause |= std::error::Error::source(&e).is_some();
            }
        }
    }
    assert!(
        saw_timeout_with_cause,
        "a timeout carries the last connect error"
    );
    proxy.set(Mode::Pass);
    until_serving(&pool, "SELECT 1", Duration::from_secs(10), "no recovery").await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_changed_while_running_bounded_retries_then_recovery() {
    let logs = Logs::capture();
    let pg = cluster();
    let role = Role::Password;
    let mut cfg = base_cfg();
    cfg.acquire_timeout = Duration::from_millis(500);
    cfg.reconnect_delays = [50, 100, 200, 400].map(Duration::from_millis).to_vec();
    let pool = wirepool_testkit::pool_from(pg.config(role), cfg).await;
    let user = role.name();
    let good = role.password().unwrap();
    pg.psql(&format!("ALTER ROLE {user} PASSWORD 'changed-elsewhere'"))
        .unwrap();
    pg.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'"
    ))
    .unwrap();
    let before = pool.statistics().reconnect_attempts;

    let t = Instant::now();
    let mut auth_errors = 0;
    while t.elapsed() < Duration::from_secs(3) {
        match pool.acquire().await {
            Ok(mut c) => {
                let _ = c.simple_query("SELECT 1").await;
            }
            Err(e) => {
                assert!(e.is_timeout(), "{e:?}");
                let code = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<wirepool::Error>())
                    .and_then(|s| s.code().map(str::to_string));
                if code.as_deref() == Some(sqlstate::INVALID_PASSWORD) {
                    auth_errors += 1;
                }
                let text = format!("{e} {e:?}");
                assert!(!text.contains(good), "no password in errors: {text}");
            }
        }
    }
    assert!(auth_errors > 0, "timeouts name the authentication failure");
    // Refusals that will not pass are retried at the slowest pace (400 ms here), not in a
    // tight loop: about 3 s / 400 ms attempts.
    let attempts = pool.statistics().reconnect_attempts - before;
    assert!((1..=10).contains(&attempts), "{attempts} attempts in 3 s");
    let refusals = logs.lines_with("Database refused the pool's connection");
    assert!(!refusals.is_empty(), "{}", logs.text());
    for (_, line) in &refusals {
        assert!(line.contains(sqlstate::INVALID_PASSWORD), "{line}");
        assert!(
            line.contains("retrying every 0.4s"),
            "the slowest pace: {line}"
        );
    }
    let text = logs.text();
    assert!(!text.contains(good), "no password in logs");

    pg.psql(&format!("ALTER ROLE {user} PASSWORD '{good}'"))
        .unwrap();
    until_serving(
        &pool,
        "SELECT 1",
        Duration::from_secs(10),
        "no recovery after the fix",
    )
    .await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_is_transient_and_retried_until_it_passes() {
    let pg = cluster();
    pg.psql("CREATE ROLE limited_user LOGIN CONNECTION LIMIT 2")
        .unwrap();
    let mut cfg = base_cfg();
    cfg.min_size = 1;
    cfg.acquire_timeout = Duration::from_millis(400);
    let pool =
        wirepool_testkit::pool_from(pg.config(Role::Trust).with_user("limited_user"), cfg).await;
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    // A third connection is refused with 53300 by the server: a timeout naming it.
    let err = pool.acquire().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let cause = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<wirepool::Error>())
        .unwrap_or_else(|| panic!("no cause: {err:?}"));
    assert_eq!(
        cause.code(),
        Some(sqlstate::TOO_MANY_CONNECTIONS),
        "{cause:?}"
    );
    assert!(cause.is_transient());
    pg.psql("ALTER ROLE limited_user CONNECTION LIMIT 10")
        .unwrap();
    // Retried on the normal schedule (100 ms, 200 ms): a third connection soon opens.
    let t = Instant::now();
    let c = loop {
        if let Ok(c) = pool.acquire().await {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no recovery");
    };
    assert!(pool.statistics().reconnect_attempts >= 1);
    drop((a, b, c));
    pool.close().await;
}

/// After connections are lost, replacements are opened one at a time until one succeeds;
/// one that hangs (a server that accepted the connection and never answers, with no
/// connect timeout) holds the others back no longer than the acquire timeout: the pool
/// does not wait on it forever, and neither does its `close()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_connect_that_hangs_does_not_hold_the_pool_back_for_ever() {
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let mut cfg = base_cfg();
    cfg.acquire_timeout = Duration::from_millis(500);
    let pool = wirepool_testkit::pool_from(
        pg.config(Role::Trust)
            .with_port(proxy.port())
            .with_connect_timeout(None),
        cfg,
    )
    .await;
    // New connections hang at their first message; the pool's are reset. A caller finds
    // them gone and waits for a replacement, which hangs.
    proxy.set(Mode::Stall);
    proxy.reset_open_connections();
    let t = Instant::now();
    while proxy.open_connections() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the proxy did not reset"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(drop) }
    });
    let t = Instant::now();
    loop {
        let s = pool.statistics();
        if s.total_connections == 0 && s.opening_connections > 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Connects pass again; the one under way still hangs.
    proxy.set(Mode::Pass);
    let _ = waiter.await.unwrap();
    until_serving(
        &pool,
        "SELECT 1",
        Duration::from_secs(20),
        "the pool kept waiting on a connect that never ends",
    )
    .await;
    assert!(
        pool.statistics().opening_connections > 0,
        "the connect that hangs is still under way"
    );
    // Nor does the drain wait on it: `close()` abandons connects under way (the drain
    // timeout is 30 s).
    let t = Instant::now();
    pool.close().await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "close() waited {:?}",
        t.elapsed()
    );
    assert_eq!(pool.statistics().opening_connections, 0);
}
