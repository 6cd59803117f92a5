//! wirepool against its peers on one throwaway PostgreSQL, in one run, interleaved:
//! deadpool-postgres, bb8-postgres and sqlx (each in its default configuration, bb8 and
//! sqlx also without their checkout ping), and pgbench as the physical reference.
//!
//! Scenarios (the rounds of each are interleaved across the pools, and the median round
//! is reported):
//!
//! 1. uncontended acquire + release on a warm pool, one task: ns per op;
//! 2. 100 tasks on `max_size` 10, acquire + a yield + release, no query: ops/s and the
//!    acquire latency's p50, p99, max;
//! 3. 100 tasks on `max_size` 10, acquire + `SELECT 1` (simple protocol) + release: ops/s
//!    and the whole op's p50, p99, max;
//! 4. no pool: 10 tasks, each with a connection of its own, `SELECT 1` in a loop (the
//!    pool's overhead is 3 against 4);
//! 5. pool build as a SCRAM user until two connections are in use at once: p50, p95;
//! 6. `pgbench -n -M simple -c 10 -j 2` with a `SELECT 1` script against the same server;
//! 7. the floor of this runtime: 10 tasks on the same tokio runtime, each a bare
//!    `TcpStream` that writes a prebuilt Query message and reads to ReadyForQuery (no
//!    library, no parsing beyond message lengths). No tokio client of any pool can be
//!    faster than this on the same machine; pgbench (C, one poll loop per thread) is.
//!
//! `scripts/bench-peers` runs it (release build); `--quick` for a short run.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirepool_peers::{median_round, run_tasks, us, Lat};
use wirepool_testkit::{Cluster, Role};

/// A pool under test.
#[derive(Clone)]
enum Peer {
    Wirepool(wirepool::Pool),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>),
    Sqlx(sqlx::PgPool),
}

/// The pools, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wirepool,
    Deadpool,
    Bb8,
    Bb8NoPing,
    Sqlx,
    SqlxNoPing,
}

const KINDS: [Kind; 6] = [
    Kind::Wirepool,
    Kind::Deadpool,
    Kind::Bb8,
    Kind::Bb8NoPing,
    Kind::Sqlx,
    Kind::SqlxNoPing,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wirepool => "wirepool",
            Kind::Deadpool => "deadpool-postgres",
            Kind::Bb8 => "bb8-postgres",
            Kind::Bb8NoPing => "bb8-postgres, no checkout ping",
            Kind::Sqlx => "sqlx",
            Kind::SqlxNoPing => "sqlx, no checkout ping",
        }
    }

    /// A pool of `max` connections with `min` opened (as each pool understands it).
    async fn build(self, url: &str, min: usize, max: usize) -> Peer {
        match self {
            Kind::Wirepool => Peer::Wirepool(
                wirepool::Pool::builder(url.parse().unwrap())
                    .min_size(min)
                    .max_size(max)
                    .acquire_timeout(Duration::from_secs(60))
                    .build()
                    .await
                    .unwrap(),
            ),
            Kind::Deadpool => {
                let mut cfg = deadpool_postgres::Config::new();
                cfg.url = Some(url.to_string());
                cfg.pool = Some(deadpool_postgres::PoolConfig::new(max));
                Peer::Deadpool(
                    cfg.create_pool(
                        Some(deadpool_postgres::Runtime::Tokio1),
                        tokio_postgres::NoTls,
                    )
                    .unwrap(),
                )
            }
            Kind::Bb8 | Kind::Bb8NoPing => {
                let m = bb8_postgres::PostgresConnectionManager::new_from_stringlike(
                    url,
                    tokio_postgres::NoTls,
                )
                .unwrap();
                Peer::Bb8(
                    bb8::Pool::builder()
                        .max_size(max as u32)
                        .min_idle(Some(min as u32))
                        .test_on_check_out(self == Kind::Bb8)
                        .connection_timeout(Duration::from_secs(60))
                        .build(m)
                        .await
                        .unwrap(),
                )
            }
            Kind::Sqlx | Kind::SqlxNoPing => Peer::Sqlx(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(max as u32)
                    .min_connections(min as u32)
                    .test_before_acquire(self == Kind::Sqlx)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect(url)
                    .await
                    .unwrap(),
            ),
        }
    }
}

impl Peer {
    /// Scenario 1: `iters` uncontended checkouts and returns, timed after 1,000 to warm
    /// up. Each pool runs a loop of its own: through [`Peer::with_conn`] each turn would
    /// also move a future the size of the largest peer's (1.6 KB), 30-40 ns a turn for
    /// every pool alike, which is the dispatch's and no pool's.
    async fn acquire_release(&self, iters: usize) -> Duration {
        macro_rules! timed {
            ($checkout:expr) => {{
                for _ in 0..1000 {
                    drop($checkout.await.unwrap());
                }
                let t = Instant::now();
                for _ in 0..iters {
                    drop($checkout.await.unwrap());
                }
                t.elapsed()
            }};
        }
        match self {
            Peer::Wirepool(p) => timed!(p.acquire()),
            Peer::Deadpool(p) => timed!(p.get()),
            Peer::Bb8(p) => timed!(p.get()),
            Peer::Sqlx(p) => timed!(p.acquire()),
        }
    }

    /// Acquire, then `during` while held, then release.
    async fn with_conn<F: Future<Output = ()>>(&self, during: impl FnOnce() -> F) {
        match self {
            Peer::Wirepool(p) => {
                let c = p.acquire().await.unwrap();
                during().await;
                drop(c);
            }
            Peer::Deadpool(p) => {
                let c = p.get().await.unwrap();
                during().await;
                drop(c);
            }
            Peer::Bb8(p) => {
                let c = p.get().await.unwrap();
                during().await;
                drop(c);
            }
            Peer::Sqlx(p) => {
                let c = p.acquire().await.unwrap();
                during().await;
                drop(c);
            }
        }
    }

    /// Acquire, time the acquisition, `SELECT 1` (simple protocol), release.
    async fn select_1(&self) -> Duration {
        let t = Instant::now();
        match self {
            Peer::Wirepool(p) => {
                let mut c = p.acquire().await.unwrap();
                std::hint::black_box(c.simple_query("SELECT 1").await.unwrap());
            }
            Peer::Deadpool(p) => {
                let c = p.get().await.unwrap();
                std::hint::black_box(c.simple_query("SELECT 1").await.unwrap());
            }
            Peer::Bb8(p) => {
                let c = p.get().await.unwrap();
                std::hint::black_box(c.simple_query("SELECT 1").await.unwrap());
            }
            Peer::Sqlx(p) => {
                use sqlx::Executor;
                let mut c = p.acquire().await.unwrap();
                std::hint::black_box(c.execute(sqlx::raw_sql("SELECT 1")).await.unwrap());
            }
        }
        t.elapsed()
    }

    async fn close(self) {
        match self {
            Peer::Wirepool(p) => p.close().await,
            Peer::Deadpool(p) => p.close(),
            Peer::Bb8(p) => drop(p),
            Peer::Sqlx(p) => p.close().await,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, secs, iters) = if quick {
        (1, Duration::from_millis(500), 20_000)
    } else {
        (3, Duration::from_secs(3), 300_000)
    };
    let pg = Cluster::start().expect("throwaway PostgreSQL");
    let url = pg.url(Role::Scram) + "&sslmode=disable";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "machine: {} cores; PostgreSQL {}; {rounds} round(s) of {secs:?} per scenario and pool, interleaved",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        pg.psql("SHOW server_version").unwrap_or_default()
    );
    rt.block_on(async {
        // 1. Uncontended acquire + release, one task, warm pool.
        let mut s1: Vec<(Kind, Vec<f64>)> = KINDS.iter().map(|k| (*k, Vec::new())).collect();
        let mut pools: Vec<Peer> = Vec::new();
        for k in KINDS {
            pools.push(k.build(&url, 1, 10).await);
        }
        for _ in 0..rounds {
            for (i, p) in pools.iter().enumerate() {
                let t = p.acquire_release(iters).await;
                s1[i].1.push(t.as_nanos() as f64 / iters as f64);
            }
        }
        // 2. 100 tasks, max_size 10, acquire + yield + release.
        let mut s2: Vec<Vec<(f64, Lat)>> = vec![Vec::new(); KINDS.len()];
        for _ in 0..rounds {
            for (i, p) in pools.iter().enumerate() {
                let p = p.clone();
                s2[i].push(
                    run_tasks(100, secs, move || {
                        let p = p.clone();
                        async move {
                            let t = Instant::now();
                            let mut waited = Duration::ZERO;
                            p.with_conn(|| {
                                waited = t.elapsed();
                                tokio::task::yield_now()
                            })
                            .await;
                            waited
                        }
                    })
                    .await,
                );
            }
        }
        // 3. 100 tasks, max_size 10, acquire + SELECT 1 + release.
        let mut s3: Vec<Vec<(f64, Lat)>> = vec![Vec::new(); KINDS.len()];
        for _ in 0..rounds {
            for (i, p) in pools.iter().enumerate() {
                let p = p.clone();
                s3[i].push(
                    run_tasks(100, secs, move || {
                        let p = p.clone();
                        async move { p.select_1().await }
                    })
                    .await,
                );
            }
        }
        for p in pools {
            p.close().await;
        }
        // 4. No pool: 10 tasks with a connection each.
        let mut s4 = Vec::new();
        for _ in 0..rounds {
            let conns: Vec<_> = futures_join((0..10).map(|_| {
                let cfg: wirepool::ConnectConfig = url.parse().unwrap();
                async move { wirepool::Connection::connect(&cfg).await.unwrap() }
            }))
            .await;
            let conns: Vec<_> = conns
                .into_iter()
                .map(|c| Arc::new(tokio::sync::Mutex::new(c)))
                .collect();
            let stop = Arc::new(AtomicBool::new(false));
            let start = Instant::now();
            let hs: Vec<_> = conns
                .iter()
                .map(|c| {
                    let (c, stop) = (c.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut c = c.lock().await;
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            std::hint::black_box(c.simple_query("SELECT 1").await.unwrap());
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            s4.push(rate_after(secs, &stop, start, hs).await);
        }
        // 7. The runtime's floor: bare sockets, no library.
        let mut s7 = Vec::new();
        for _ in 0..rounds {
            s7.push(bare_tokio(pg.port(), secs).await);
        }
        // 5. Pool build (SCRAM) until two connections are in use at once.
        let builds = if quick { 5 } else { 30 };
        let mut s5: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
        for round in 0..builds {
            // Each round starts with another pool, and each build waits for the server to
            // finish closing the previous pool's sessions: no pool pays for another's
            // teardown.
            for j in 0..KINDS.len() {
                let i = (round + j) % KINDS.len();
                let k = KINDS[i];
                tokio::time::sleep(Duration::from_millis(20)).await;
                let t = Instant::now();
                let p = k.build(&url, 2, 10).await;
                let (a, b) = (p.clone(), p.clone());
                let (ta, tb) = (
                    tokio::spawn(async move { a.with_conn(|| tokio::time::sleep(Duration::from_millis(1))).await }),
                    tokio::spawn(async move { b.with_conn(|| tokio::time::sleep(Duration::from_millis(1))).await }),
                );
                ta.await.unwrap();
                tb.await.unwrap();
                s5[i].push(t.elapsed() - Duration::from_millis(1));
                p.close().await;
            }
        }
        // 6. pgbench.
        let pgbench = pgbench(&pg, if quick { 2 } else { secs.as_secs().max(3) * 2 });

        println!();
        println!("| pool | 1. uncontended ns/op | 2. 100x10 no query: ops/s | p50 | p99 | p99.9 | max | 3. 100x10 SELECT 1: ops/s | p50 | p99 | p99.9 | max | 5. build p50 | p95 |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (i, k) in KINDS.iter().enumerate() {
            let (o2, l2) = median_round(s2[i].clone());
            let (o3, l3) = median_round(s3[i].clone());
            let mut b = s5[i].clone();
            b.sort_unstable();
            println!(
                "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                k.name(),
                median(s1[i].1.clone()),
                o2,
                us(l2.p50),
                us(l2.p99),
                us(l2.p999),
                us(l2.max),
                o3,
                us(l3.p50),
                us(l3.p99),
                us(l3.p999),
                ms(l3.max),
                ms(b[b.len() / 2]),
                ms(b[(b.len() * 95 / 100).min(b.len() - 1)]),
            );
        }
        let s4 = median(s4);
        println!();
        println!("4. no pool, 10 connections, SELECT 1: {s4:.0} queries/s");
        match &pgbench {
            Ok(tps) => println!("6. pgbench -n -M simple -c 10 -j 2, SELECT 1: {tps:.0} tps"),
            Err(e) => println!("6. pgbench: {e}"),
        }
        let s7 = median(s7);
        println!("7. bare tokio sockets, 10 connections, SELECT 1: {s7:.0} queries/s");
        let w3 = median_round(s3[0].clone()).0;
        let d3 = median_round(s3[1].clone()).0;
        println!();
        println!("ratios (wirepool against):");
        println!(
            "  1. deadpool's time per op: {:.2}x",
            median(s1[0].1.clone()) / median(s1[1].1.clone())
        );
        println!(
            "  2. deadpool's ops/s: {:.2}x",
            median_round(s2[0].clone()).0 / median_round(s2[1].clone()).0
        );
        println!("  3. deadpool's ops/s: {:.2}x; no pool (4): {:.2}x", w3 / d3, w3 / s4);
        if let Ok(tps) = pgbench {
            println!("  3. pgbench's tps: {:.2}x", w3 / tps);
            println!("  (7. bare tokio sockets against pgbench: {:.2}x)", s7 / tps);
        }
        println!("  3. bare tokio sockets (7): {:.2}x", w3 / s7);
    });
}

async fn futures_join<F: Future + Send + 'static>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let hs: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await.unwrap());
    }
    out
}

/// pgbench against the cluster for `secs` seconds; its tps.
fn pgbench(pg: &Cluster, secs: u64) -> Result<f64, String> {
    wirepool_peers::pgbench(pg, "simple", "SELECT 1;\n", 1, secs)
}

/// Scenario 7: 10 tasks, each a bare socket sending a prebuilt `SELECT 1` Query message and
/// reading until ReadyForQuery, as trust_user. Queries per second.
async fn bare_tokio(port: u16, secs: Duration) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Reads until a ReadyForQuery ends what is buffered.
    async fn until_ready(s: &mut TcpStream, buf: &mut Vec<u8>) {
        buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            let mut i = 0;
            while i + 5 <= buf.len() {
                let len =
                    u32::from_be_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]) as usize;
                if i + 1 + len > buf.len() {
                    break;
                }
                if buf[i] == b'E' {
                    panic!(
                        "server error: {:?}",
                        String::from_utf8_lossy(&buf[i..i + 1 + len])
                    );
                }
                if buf[i] == b'Z' && i + 1 + len == buf.len() {
                    return;
                }
                i += 1 + len;
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.set_nodelay(true).unwrap();
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for part in ["user", "trust_user", "database", "postgres", ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend(body);
        s.write_all(&startup).await.expect("startup");
        until_ready(&mut s, &mut Vec::new()).await;
        conns.push(s);
    }
    let query: &[u8] = b"Q\x00\x00\x00\x0dSELECT 1\x00";
    let start = Instant::now();
    let hs: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(query).await.expect("write");
                    until_ready(&mut s, &mut buf).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    rate_after(secs, &stop, start, hs).await
}

/// Lets tasks that count their operations run for `secs`, stops them, and returns their
/// operations per second since `start`.
async fn rate_after(
    secs: Duration,
    stop: &AtomicBool,
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
) -> f64 {
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}
