//! Several servers on loopback: a primary and a streaming standby made with
//! `pg_basebackup -R`. target_session_attrs picks the right one, load_balance_hosts spreads
//! a pool over both, and a read-write pool follows a failover (the primary killed, the
//! standby promoted) by itself.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wirepool::error::sqlstate;
use wirepool::{ConnectConfig, Connection, ErrorKind, Pool, PoolConfig};
use wirepool_testkit::{Cluster, Role};

use common::Logs;

struct Pair {
    primary: Cluster,
    standby: Cluster,
}

fn pair() -> Pair {
    let primary = wirepool_testkit::cluster();
    primary
        .psql("CREATE TABLE writes (task int, at timestamptz DEFAULT now()); GRANT ALL ON writes TO trust_user")
        .unwrap();
    let standby = primary
        .start_standby()
        .unwrap_or_else(|e| panic!("standby: {e}"));
    Pair { primary, standby }
}

/// A URL over `hosts` (cluster, in order) for trust_user, with extra parameters.
fn url(hosts: &[&Cluster], extra: &str) -> ConnectConfig {
    let list: Vec<String> = hosts
        .iter()
        .map(|c| format!("127.0.0.1:{}", c.port()))
        .collect();
    format!(
        "postgres://{}@{}/postgres?connect_timeout=2&{extra}",
        Role::Trust.name(),
        list.join(",")
    )
    .parse()
    .unwrap()
}

fn addr(c: &Cluster) -> String {
    format!("127.0.0.1:{}", c.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_replays_and_refuses_writes() {
    let p = pair();
    p.primary.psql("INSERT INTO writes VALUES (1)").unwrap();
    p.standby.wait_replayed_from(&p.primary).unwrap();
    assert_eq!(p.standby.psql("SELECT count(*) FROM writes").unwrap(), "1");
    let mut c = Connection::connect(&url(&[&p.standby], "")).await.unwrap();
    assert_eq!(c.in_recovery(), Some(true));
    let e = c
        .execute("INSERT INTO writes VALUES ($1)", &[&2i32])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::READ_ONLY_SQL_TRANSACTION), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_session_attrs_pick_the_server() {
    let mut p = pair();
    // read-write, in either order: the primary only.
    for hosts in [[&p.primary, &p.standby], [&p.standby, &p.primary]] {
        let pool = Pool::builder(url(&hosts, "target_session_attrs=read-write"))
            .min_size(4)
            .max_size(4)
            .build()
            .await
            .unwrap();
        let s = pool.statistics();
        assert_eq!(s.connections_by_host, vec![(addr(&p.primary), 4)], "{s:?}");
        let mut c = pool.acquire().await.unwrap();
        c.execute("INSERT INTO writes VALUES ($1)", &[&1i32])
            .await
            .unwrap();
        drop(c);
        assert_eq!(
            pool.health().host.as_deref(),
            Some(addr(&p.primary).as_str())
        );
        pool.close().await;
    }
    for (attrs, want) in [
        ("primary", addr(&p.primary)),
        ("read-only", addr(&p.standby)),
        ("standby", addr(&p.standby)),
        ("prefer-standby", addr(&p.standby)),
    ] {
        let c = Connection::connect(&url(
            &[&p.primary, &p.standby],
            &format!("target_session_attrs={attrs}"),
        ))
        .await
        .unwrap();
        assert_eq!(c.server_addr(), want, "{attrs}");
    }
    // No standby at all: standby fails, listing each host and why.
    let e = Connection::connect(&url(
        &[&p.primary, &p.primary],
        "target_session_attrs=standby",
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AllHostsFailed, "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&addr(&p.primary)), "{text}");
    assert!(text.contains("it is a primary (not in recovery)"), "{text}");
    assert!(e.is_transient(), "a failover may yet make one");
    let e = Connection::connect(&url(&[&p.standby], "target_session_attrs=read-write"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerMismatch, "{e:?}");

    // prefer-standby: the standby while it is there, the primary once it is gone.
    let both = url(
        &[&p.primary, &p.standby],
        "target_session_attrs=prefer-standby",
    );
    let prefer_standby = || Pool::builder(both.clone()).min_size(3).max_size(3).build();
    let pool = prefer_standby().await.unwrap();
    assert_eq!(
        pool.statistics().connections_by_host,
        vec![(addr(&p.standby), 3)]
    );
    pool.close().await;
    tokio::task::block_in_place(|| p.standby.kill()).unwrap();
    let pool = prefer_standby().await.unwrap();
    assert_eq!(
        pool.statistics().connections_by_host,
        vec![(addr(&p.primary), 3)]
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balance_hosts_random_spreads_a_pool_over_both_servers() {
    let p = pair();
    for (extra, spread) in [
        ("load_balance_hosts=random", true),
        ("load_balance_hosts=disable", false),
    ] {
        let pool = Pool::builder(url(&[&p.primary, &p.standby], extra))
            .min_size(16)
            .max_size(16)
            .build()
            .await
            .unwrap();
        let s = pool.statistics();
        let hosts: Vec<&str> = s
            .connections_by_host
            .iter()
            .map(|(h, _)| h.as_str())
            .collect();
        if spread {
            assert_eq!(
                hosts,
                {
                    let mut v = vec![addr(&p.primary), addr(&p.standby)];
                    v.sort();
                    v
                },
                "{s:?}"
            );
        } else {
            assert_eq!(hosts, vec![addr(&p.primary)], "{s:?}");
        }
        let metrics = pool.render_prometheus();
        for (h, n) in &s.connections_by_host {
            assert!(
                metrics.contains(&format!(
                    "codebase_mcp_pool_connections_by_host{{host=\"{h}\"}} {n}"
                )),
                "{metrics}"
            );
        }
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_write_pool_follows_a_failover() {
    let logs = Logs::capture();
    let mut p = pair();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 2;
    cfg.max_size = 10;
    cfg.acquire_timeout = Duration::from_secs(1);
    cfg.monitor_interval = Duration::from_millis(50);
    cfg.reconnect_delays = [200, 400, 800].map(Duration::from_millis).to_vec();
    let last_step = Duration::from_millis(800);
    let pool = wirepool_testkit::pool_from(
        url(&[&p.primary, &p.standby], "target_session_attrs=read-write"),
        cfg,
    )
    .await;
    assert_eq!(
        pool.health().host.as_deref(),
        Some(addr(&p.primary).as_str())
    );

    // 50 tasks writing; each notes when it last wrote.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last_write: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; 50]));
    let tasks: Vec<_> = (0..50)
        .map(|t| {
            let (pool, stop, last_write) = (pool.clone(), stop.clone(), last_write.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ok = match pool.acquire().await {
                        Ok(mut c) => c
                            .execute("INSERT INTO writes (task) VALUES ($1)", &[&(t as i32)])
                            .await
                            .is_ok(),
                        Err(e) => {
                            assert!(e.is_timeout(), "{e:?}");
                            false
                        }
                    };
                    if ok {
                        last_write.lock()[t] = Some(Instant::now());
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| p.primary.kill()).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| p.standby.promote()).unwrap();
    let promoted = Instant::now();

    // Every task writes again, to the new primary, within one step of the schedule.
    let limit = last_step + Duration::from_secs(3);
    loop {
        let all = last_write
            .lock()
            .iter()
            .all(|w| w.is_some_and(|w| w > promoted));
        if all {
            break;
        }
        assert!(
            promoted.elapsed() < limit,
            "not every task wrote within {limit:?} of the promotion: {}",
            pool.health().to_json()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = promoted.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("no task hangs")
            .expect("no task panics");
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(
        s.connections_by_host
            .iter()
            .map(|(h, _)| h.clone())
            .collect::<Vec<_>>(),
        vec![addr(&p.standby)],
        "{s:?}"
    );
    let h = pool.health();
    assert_eq!(h.host.as_deref(), Some(addr(&p.standby).as_str()));
    let text = logs.text();
    assert!(
        text.contains(&format!(
            "Connection pool switched from {} to {}",
            addr(&p.primary),
            addr(&p.standby)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Connection opened to {} (primary)",
            addr(&p.standby)
        )),
        "{text}"
    );
    let after: i64 = p
        .standby
        .psql("SELECT count(DISTINCT task) FROM writes WHERE at > now() - interval '1 minute'")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, 50);
    eprintln!("every task wrote again {took:?} after the promotion");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_read_only_breaks_a_read_write_connection() {
    let p = pair();
    let pool = Pool::builder(url(&[&p.primary], "target_session_attrs=read-write"))
        .min_size(1)
        .max_size(1)
        .build()
        .await
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let first = c.process_id();
    let mut tx = c.transaction().await.unwrap();
    tx.simple_query("SET TRANSACTION READ ONLY").await.unwrap();
    let e = tx
        .execute("INSERT INTO writes (task) VALUES ($1)", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::READ_ONLY_SQL_TRANSACTION));
    drop(tx);
    assert!(c.is_broken());
    drop(c);
    let c = pool.acquire().await.unwrap();
    assert_ne!(c.process_id(), first, "the connection was not reused");
    drop(c);
    // Without a target, the same error leaves the connection as it was.
    let mut c = Connection::connect(&url(&[&p.primary], "")).await.unwrap();
    c.simple_query("BEGIN READ ONLY").await.unwrap();
    let e = c
        .execute("INSERT INTO writes (task) VALUES ($1)", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::READ_ONLY_SQL_TRANSACTION));
    assert!(!c.is_broken());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_pool_stops_using_its_server_once_it_is_promoted() {
    let logs = Logs::capture();
    let p = pair();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 2;
    cfg.max_size = 2;
    cfg.acquire_timeout = Duration::from_millis(500);
    cfg.monitor_interval = Duration::from_millis(50);
    let pool =
        wirepool_testkit::pool_from(url(&[&p.standby], "target_session_attrs=standby"), cfg).await;
    let in_recovery = |pool: Pool| async move {
        let mut c = pool.acquire().await?;
        let row = c.query_one("SELECT pg_is_in_recovery()", &[]).await?;
        Ok::<bool, wirepool::Error>(row.get(0))
    };
    // Both connections serve a read from the standby.
    let (a, b) = tokio::join!(in_recovery(pool.clone()), in_recovery(pool.clone()));
    assert!(a.unwrap() && b.unwrap());
    tokio::task::block_in_place(|| p.standby.promote()).unwrap();
    // It reports the promotion at the end of a connection's next answer: that answer, at
    // most one per open connection, is the last one from it; then there is no standby.
    let mut from_primary = 0;
    let mut refused = 0;
    for _ in 0..20 {
        match in_recovery(pool.clone()).await {
            Ok(true) => {}
            Ok(false) => from_primary += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        from_primary <= 2,
        "{from_primary} of 20 reads answered by the promoted server"
    );
    assert!(refused >= 18, "{refused} of 20 refused");
    let text = logs.text();
    assert!(
        text.contains(&format!(
            "Server {} is now a primary, not what target_session_attrs asks for",
            addr(&p.standby)
        )),
        "{text}"
    );
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}
