//! The monitoring guide's application on one pool (`scripts/bench-peers --mixed`): one
//! throwaway PostgreSQL, one pool of `max_size` 4 serving at once
//!
//! - 8 tasks in short transactions through `acquire()` (an INSERT, about 2 ms held, COMMIT);
//! - 16 tasks on the pipelined path: `pool.execute` of an INSERT and `pool.query_one` of a
//!   read whose answer is checked, in turn;
//! - a listener receiving a `pool.notify` every 50 ms;
//! - a COPY of 1,000 rows every 500 ms through `acquire()`.
//!
//! For 20 s (`--quick`: 5 s), then: completions of each kind, the pipelined share of all
//! statement completions next to the exclusive one's, p50 / p99 / max of each kind, the
//! notifications sent and received, and a check that every acknowledged write is in the
//! table. `--restart` restarts the server half-way (`pg_ctl stop -m immediate`, start) and
//! reports what failed during the outage and that every kind worked again afterwards.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use futures_util::SinkExt;
use wirepool::{ListenerEvent, Pool};
use wirepool_peers::{lat, us, Lat};
use wirepool_testkit::{Cluster, Role};

const EXCLUSIVE: usize = 8;
const PIPELINED: usize = 16;
const CHANNEL: &str = "mixed_events";

#[derive(Default)]
struct Kind {
    latencies: Vec<Duration>,
    errors: u64,
    after_restart: u64,
    first_error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    restarted: AtomicBool,
    next_id: AtomicI64,
    acknowledged: Mutex<Vec<i64>>,
    not_run: Mutex<Vec<i64>>,
}

fn record(k: &mut Kind, s: &Shared, r: Result<Duration, wirepool::Error>) {
    match r {
        Ok(d) => {
            k.latencies.push(d);
            if s.restarted.load(Ordering::Relaxed) {
                k.after_restart += 1;
            }
        }
        Err(e) => {
            k.errors += 1;
            k.first_error.get_or_insert_with(|| e.to_string());
        }
    }
}

async fn transaction(pool: &Pool, s: &Shared) -> Result<Duration, wirepool::Error> {
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let t = Instant::now();
    let mut c = pool.acquire().await?;
    let mut tx = c.transaction().await?;
    tx.execute("INSERT INTO events (id, kind) VALUES ($1, 'tx')", &[&id])
        .await?;
    tokio::time::sleep(Duration::from_millis(2)).await;
    tx.commit().await?;
    s.acknowledged.lock().unwrap().push(id);
    Ok(t.elapsed())
}

async fn pipelined(pool: &Pool, s: &Shared, write: bool) -> Result<Duration, wirepool::Error> {
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let t = Instant::now();
    if write {
        match pool
            .execute("INSERT INTO events (id, kind) VALUES ($1, 'pipe')", &[&id])
            .await
        {
            Ok(n) => {
                assert_eq!(n, 1);
                s.acknowledged.lock().unwrap().push(id);
            }
            Err(e) => {
                if e.may_have_run() == Some(false) {
                    s.not_run.lock().unwrap().push(id);
                }
                return Err(e);
            }
        }
    } else {
        let row = pool.query_one("SELECT $1::int8 + 1", &[&id]).await?;
        assert_eq!(
            row.get::<_, i64>(0),
            id + 1,
            "a pipelined caller's own answer"
        );
    }
    Ok(t.elapsed())
}

async fn copy_rows(pool: &Pool, s: &Shared) -> Result<Duration, wirepool::Error> {
    let first = s.next_id.fetch_add(1000, Ordering::Relaxed);
    let t = Instant::now();
    let mut c = pool.acquire().await?;
    let mut data = String::with_capacity(1000 * 16);
    for i in 0..1000 {
        data.push_str(&format!("{}\tcopy\n", first + i));
    }
    let mut sink = c.copy_in("COPY events (id, kind) FROM STDIN").await?;
    sink.send(bytes::Bytes::from(data)).await?;
    let n = sink.finish().await?;
    assert_eq!(n, 1000);
    s.acknowledged.lock().unwrap().extend(first..first + 1000);
    Ok(t.elapsed())
}

fn row(name: &str, k: &Kind, secs: f64) {
    let l = if k.latencies.is_empty() {
        Lat::default()
    } else {
        lat(k.latencies.clone())
    };
    println!(
        "| {name} | {} | {:.0}/s | {} | {} | {} | {} |",
        k.latencies.len(),
        k.latencies.len() as f64 / secs,
        us(l.p50),
        us(l.p99),
        us(l.max),
        k.errors
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let restart = std::env::args().any(|a| a == "--restart");
    let secs = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(20)
    };
    let mut pg = Cluster::start().expect("throwaway PostgreSQL");
    pg.psql("CREATE TABLE events (id int8 PRIMARY KEY, kind text NOT NULL)")
        .unwrap();
    // The throwaway cluster acknowledges commits before they are flushed (it is a test
    // cluster); an acknowledged write must survive the restart, as on a real server.
    pg.psql("ALTER SYSTEM SET synchronous_commit = on").unwrap();
    pg.psql("SELECT pg_reload_conf()").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "machine: {} cores; PostgreSQL {}; max_size 4; {EXCLUSIVE} transaction tasks, {PIPELINED} pipelined tasks, a listener (notify every 50 ms), a COPY of 1,000 rows every 500 ms; {secs:?}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        pg.psql("SHOW server_version").unwrap_or_default(),
        if restart { ", server restarted half-way" } else { "" }
    );
    let s = Arc::new(Shared {
        stop: AtomicBool::new(false),
        restarted: AtomicBool::new(false),
        next_id: AtomicI64::new(1),
        acknowledged: Mutex::new(Vec::new()),
        not_run: Mutex::new(Vec::new()),
    });
    let pool = rt
        .block_on(
            Pool::builder(pg.config(Role::Admin))
                .min_size(4)
                .max_size(4)
                .acquire_timeout(Duration::from_secs(5))
                .build(),
        )
        .unwrap();
    let (kinds, sent, received) = rt.block_on(async {
        let mut listener = pool.listener().await.unwrap();
        listener.listen(CHANNEL).await.unwrap();
        let listen = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut seen = std::collections::BTreeSet::new();
                while !s.stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(200), listener.recv()).await {
                        Ok(Ok(ListenerEvent::Notification(n))) => {
                            seen.insert(n.payload().parse::<i64>().unwrap());
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                seen
            })
        };
        let mut handles = Vec::new();
        for _ in 0..EXCLUSIVE {
            let (p, s) = (pool.clone(), s.clone());
            handles.push(tokio::spawn(async move {
                let mut k = Kind::default();
                while !s.stop.load(Ordering::Relaxed) {
                    let r = transaction(&p, &s).await;
                    record(&mut k, &s, r);
                }
                (0usize, k)
            }));
        }
        for i in 0..PIPELINED {
            let (p, s) = (pool.clone(), s.clone());
            handles.push(tokio::spawn(async move {
                let mut k = Kind::default();
                let mut write = i % 2 == 0;
                while !s.stop.load(Ordering::Relaxed) {
                    let r = pipelined(&p, &s, write).await;
                    record(&mut k, &s, r);
                    write = !write;
                }
                (1usize, k)
            }));
        }
        {
            let (p, s) = (pool.clone(), s.clone());
            handles.push(tokio::spawn(async move {
                let mut k = Kind::default();
                while !s.stop.load(Ordering::Relaxed) {
                    let r = copy_rows(&p, &s).await;
                    record(&mut k, &s, r);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                (2usize, k)
            }));
        }
        let notifier = {
            let (p, s) = (pool.clone(), s.clone());
            tokio::spawn(async move {
                let mut k = Kind::default();
                let mut sent = Vec::new();
                let mut n = 0i64;
                while !s.stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t = Instant::now();
                    let r = p
                        .notify(CHANNEL, &n.to_string())
                        .await
                        .map(|()| t.elapsed());
                    if r.is_ok() {
                        sent.push(n);
                    }
                    record(&mut k, &s, r);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (k, sent)
            })
        };
        if restart {
            tokio::time::sleep(secs / 2).await;
            tokio::task::block_in_place(|| {
                pg.kill().unwrap();
                pg.start_again().unwrap();
            });
            s.restarted.store(true, Ordering::Relaxed);
            tokio::time::sleep(secs / 2).await;
        } else {
            tokio::time::sleep(secs).await;
        }
        // Let the last notifications arrive, then stop.
        s.stop.store(true, Ordering::Relaxed);
        let mut kinds: Vec<Kind> = (0..4).map(|_| Kind::default()).collect();
        for h in handles {
            let (i, k) = h.await.unwrap();
            kinds[i].latencies.extend(k.latencies);
            kinds[i].errors += k.errors;
            kinds[i].after_restart += k.after_restart;
            if kinds[i].first_error.is_none() {
                kinds[i].first_error = k.first_error;
            }
        }
        let (k, sent) = notifier.await.unwrap();
        kinds[3] = k;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = listen.await.unwrap();
        (kinds, sent, seen)
    });
    let total = secs.as_secs_f64();
    println!();
    println!("| kind | completed | per second | p50 | p99 | max | errors |");
    println!("|---|---|---|---|---|---|---|");
    let names = [
        "transactions through acquire()",
        "pipelined pool.execute / pool.query_one",
        "COPY of 1,000 rows",
        "pool.notify",
    ];
    for (name, k) in names.iter().zip(&kinds) {
        row(name, k, total);
    }
    for (name, k) in names.iter().zip(&kinds) {
        if let Some(e) = &k.first_error {
            println!("first error of {name}: {e}");
        }
    }
    let (ex, pi) = (kinds[0].latencies.len(), kinds[1].latencies.len());
    println!();
    println!(
        "statement completions: pipelined {:.1} %, exclusive (transactions) {:.1} %",
        100.0 * pi as f64 / (ex + pi).max(1) as f64,
        100.0 * ex as f64 / (ex + pi).max(1) as f64
    );
    let lost: Vec<_> = sent.iter().filter(|n| !received.contains(n)).collect();
    println!(
        "notifications: {} sent, {} received, {} sent and not received",
        sent.len(),
        received.len(),
        lost.len()
    );
    let in_table: std::collections::HashSet<i64> = pg
        .psql("SELECT id FROM events")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let acknowledged = s.acknowledged.lock().unwrap();
    let missing = acknowledged
        .iter()
        .filter(|i| !in_table.contains(i))
        .count();
    let not_run = s.not_run.lock().unwrap();
    let ran_anyway = not_run.iter().filter(|i| in_table.contains(i)).count();
    println!(
        "acknowledged writes: {}, missing from the table: {missing}; reported not run yet present: {ran_anyway}",
        acknowledged.len()
    );
    if restart {
        println!(
            "completed after the restart: transactions {}, pipelined {}, COPY {}, notify {}",
            kinds[0].after_restart,
            kinds[1].after_restart,
            kinds[2].after_restart,
            kinds[3].after_restart
        );
    }
    let slowest = kinds
        .iter()
        .filter_map(|k| k.latencies.iter().max())
        .max()
        .copied()
        .unwrap_or_default();
    println!("slowest call: {}", us(slowest));
    assert_eq!(missing, 0, "an acknowledged write is missing");
    assert_eq!(ran_anyway, 0, "a write reported as not run is in the table");
}
