//! Pipelined statements on one throwaway PostgreSQL, in one run, rounds interleaved
//! (`scripts/bench-peers --pipeline`): 100 tasks on 10 connections, each running a cached
//! `SELECT $1::int4` with a fresh value and checking the answer,
//!
//! - wirepool's shared path: `pool.query_one` (statements pipelined on the connections);
//! - wirepool's exclusive path: `acquire()` + `query_one` + release;
//! - deadpool-postgres: `get()` + `prepare_cached` + `query_one` + release;
//! - `pgbench -M prepared -c 10 -j 2` with the same statement, one per transaction;
//! - `pgbench -M prepared -c 10 -j 2` with 10 statements per `\startpipeline` block (one
//!   Sync, so one transaction, per 10 statements);
//! - the ceiling of pipelining with a Sync per statement: 10 bare sockets writing 10
//!   prebuilt Bind/Execute/Sync at a time, no library;
//!
//! each on a tokio runtime of 2 worker threads, and wirepool's two paths again on 1 worker
//! thread. Statements per second, and the latency of one statement (p50, p99) for the
//! Rust clients. Prints the ratios the issue sets as targets.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirepool_peers::{bare_pipelined, median_round, pgbench, run_tasks, us, Lat};
use wirepool_testkit::{Cluster, Role};

const SQL: &str = "SELECT $1::int4";
const TASKS: usize = 100;
const CONNECTIONS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    Shared,
    Exclusive,
    Deadpool,
    /// `pool.batch()` of 10 statements (a result per statement; statements/s counted).
    Batch {
        atomic: bool,
    },
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Shared => "wirepool pool.query_one (pipelined)",
            Client::Exclusive => "wirepool acquire + query_one",
            Client::Deadpool => "deadpool-postgres get + query_one",
            Client::Batch { atomic: true } => {
                "wirepool pool.batch() of 10, atomic (on a lane, one Sync)"
            }
            Client::Batch { atomic: false } => {
                "wirepool pool.batch() of 10, independent (pipelined, a Sync each)"
            }
        }
    }
}

async fn round(client: Client, url: &str, secs: Duration) -> (f64, Lat) {
    let next = Arc::new(AtomicI32::new(0));
    match client {
        Client::Batch { atomic } => {
            let pool = wirepool::Pool::builder(url.parse().unwrap())
                .min_size(CONNECTIONS)
                .max_size(CONNECTIONS)
                .build()
                .await
                .unwrap();
            for _ in 0..CONNECTIONS * 4 {
                pool.query_one(SQL, &[&1i32]).await.unwrap();
                let mut c = pool.acquire().await.unwrap();
                c.query_one(SQL, &[&1i32]).await.unwrap();
            }
            let p = pool.clone();
            let (o, l) = run_tasks(TASKS, secs, move || {
                let (p, next) = (p.clone(), next.clone());
                async move {
                    let base = next.fetch_add(1, Ordering::Relaxed).wrapping_mul(10);
                    let vals: Vec<i32> = (0..10).map(|k| base.wrapping_add(k)).collect();
                    let params: Vec<[&(dyn wirepool::ToSql + Sync); 1]> =
                        vals.iter().map(|v| [v as _]).collect();
                    let t = Instant::now();
                    let mut b = p.batch().atomic(atomic);
                    for ps in &params {
                        b = b.query(SQL, ps);
                    }
                    let results = b.run().await.unwrap();
                    for (r, v) in results.iter().zip(&vals) {
                        assert_eq!(r.rows().unwrap()[0].get::<_, i32>(0), *v);
                    }
                    t.elapsed()
                }
            })
            .await;
            pool.close().await;
            // Ten statements a batch.
            (o * 10.0, l)
        }
        Client::Shared | Client::Exclusive => {
            let mut b = wirepool::Pool::builder(url.parse().unwrap())
                .min_size(CONNECTIONS)
                .max_size(CONNECTIONS);
            if std::env::var_os("NO_TIMEOUT").is_some() {
                b = b.command_timeout(None);
            }
            if let Some(d) = std::env::var("DEPTH").ok().and_then(|d| d.parse().ok()) {
                b = b.pipeline_depth(d);
            }
            let pool = b.build().await.unwrap();
            // Warm: the statement described and prepared on every connection.
            for _ in 0..CONNECTIONS * 4 {
                pool.query_one(SQL, &[&1i32]).await.unwrap();
                let mut c = pool.acquire().await.unwrap();
                c.query_one(SQL, &[&1i32]).await.unwrap();
            }
            let p = pool.clone();
            let r = run_tasks(TASKS, secs, move || {
                let (p, next) = (p.clone(), next.clone());
                async move {
                    let v = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let row = if client == Client::Shared {
                        p.query_one(SQL, &[&v]).await.unwrap()
                    } else {
                        let mut c = p.acquire().await.unwrap();
                        c.query_one(SQL, &[&v]).await.unwrap()
                    };
                    assert_eq!(row.get::<_, i32>(0), v);
                    t.elapsed()
                }
            })
            .await;
            pool.close().await;
            r
        }
        Client::Deadpool => {
            let mut cfg = deadpool_postgres::Config::new();
            cfg.url = Some(url.to_string());
            cfg.pool = Some(deadpool_postgres::PoolConfig::new(CONNECTIONS));
            let pool = cfg
                .create_pool(
                    Some(deadpool_postgres::Runtime::Tokio1),
                    tokio_postgres::NoTls,
                )
                .unwrap();
            let warm: Vec<_> = {
                let mut v = Vec::new();
                for _ in 0..CONNECTIONS {
                    let c = pool.get().await.unwrap();
                    let s = c.prepare_cached(SQL).await.unwrap();
                    c.query_one(&s, &[&1i32]).await.unwrap();
                    v.push(c);
                }
                v
            };
            drop(warm);
            let p = pool.clone();
            let r = run_tasks(TASKS, secs, move || {
                let (p, next) = (p.clone(), next.clone());
                async move {
                    let v = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let c = p.get().await.unwrap();
                    let s = c.prepare_cached(SQL).await.unwrap();
                    let row = c.query_one(&s, &[&v]).await.unwrap();
                    assert_eq!(row.get::<_, i32>(0), v);
                    t.elapsed()
                }
            })
            .await;
            pool.close();
            r
        }
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, secs) = if quick {
        (1, Duration::from_secs(1))
    } else {
        (3, Duration::from_secs(3))
    };
    let pg = Cluster::start().expect("throwaway PostgreSQL");
    let url = pg.url(Role::Trust) + "&sslmode=disable";
    println!(
        "machine: {} cores; PostgreSQL {}; {TASKS} tasks on {CONNECTIONS} connections; {rounds} round(s) of {secs:?}, interleaved",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        pg.psql("SHOW server_version").unwrap_or_default()
    );
    let clients = [
        Client::Shared,
        Client::Exclusive,
        Client::Deadpool,
        Client::Batch { atomic: true },
        Client::Batch { atomic: false },
    ];
    let mut two: Vec<Vec<(f64, Lat)>> = vec![Vec::new(); clients.len()];
    let mut one: Vec<Vec<(f64, Lat)>> = vec![Vec::new(); 2];
    let mut bare = Vec::new();
    let mut bench_plain = Vec::new();
    let mut bench_pipe = Vec::new();
    let pgsecs = secs.as_secs().max(1);
    let plain = "\\set x random(1, 1000000)\nSELECT :x::int4;\n";
    let mut piped = String::from("\\set x random(1, 1000000)\n\\startpipeline\n");
    for _ in 0..10 {
        piped.push_str("SELECT :x::int4;\n");
    }
    piped.push_str("\\endpipeline\n");
    let rt2 = runtime(2);
    let rt1 = runtime(1);
    if std::env::var_os("PIPELINE_ONLY_SHARED").is_some() {
        // For a profiler: the shared path alone, on 2 runtime threads.
        let (o, l) = rt2.block_on(round(Client::Shared, &url, secs * 3));
        println!(
            "shared path: {o:.0} statements/s, p50 {}, p99 {}",
            us(l.p50),
            us(l.p99)
        );
        return;
    }
    if std::env::var_os("PIPELINE_ONLY_BARE").is_some() {
        // For a profiler: the bare-socket ceiling alone, on 2 runtime threads, with
        // `PER_WRITE` statements a write (10 unless set).
        let per_write = std::env::var("PER_WRITE")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(10);
        let o = rt2.block_on(bare_pipelined(pg.port(), secs * 3, per_write));
        println!("bare sockets: {o:.0} statements/s");
        return;
    }
    for _ in 0..rounds {
        for (i, c) in clients.iter().enumerate() {
            two[i].push(rt2.block_on(round(*c, &url, secs)));
        }
        for (i, c) in [Client::Shared, Client::Exclusive].iter().enumerate() {
            one[i].push(rt1.block_on(round(*c, &url, secs)));
        }
        bare.push(rt2.block_on(bare_pipelined(pg.port(), secs, 10)));
        bench_plain.push(pgbench(&pg, "prepared", plain, 1, pgsecs).expect("pgbench"));
        bench_pipe.push(pgbench(&pg, "prepared", &piped, 10, pgsecs).expect("pgbench"));
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let plain = med(bench_plain);
    let bare = med(bare);
    let pipe = med(bench_pipe);
    println!();
    println!("| client | runtime threads | statements/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    let mut results = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (o, l) = median_round(two[i].clone());
        println!(
            "| {} | 2 | {o:.0} | {} | {} |",
            c.name(),
            us(l.p50),
            us(l.p99)
        );
        results.push((*c, 2, o, l));
    }
    for (i, c) in [Client::Shared, Client::Exclusive].iter().enumerate() {
        let (o, l) = median_round(one[i].clone());
        println!(
            "| {} | 1 | {o:.0} | {} | {} |",
            c.name(),
            us(l.p50),
            us(l.p99)
        );
        results.push((*c, 1, o, l));
    }
    println!("| bare sockets, 10 x (Bind, Execute, Sync) per write, 10 connections | 2 | {bare:.0} | | |");
    println!("| pgbench -M prepared -c 10 -j 2 | (C) | {plain:.0} | | |");
    println!("| pgbench -M prepared -c 10 -j 2, 10 per \\startpipeline | (C) | {pipe:.0} | | |");
    let get = |c: Client, t: usize| {
        results
            .iter()
            .find(|r| r.0 == c && r.1 == t)
            .map(|r| (r.2, r.3))
            .unwrap()
    };
    println!();
    for atomic in [true, false] {
        let (b, l) = get(Client::Batch { atomic }, 2);
        println!(
            "pool.batch() of 10 ({}) / pgbench pipelined: {:.2}x (target 0.8x for atomic); p99 of a batch {}",
            if atomic { "atomic" } else { "independent" },
            b / pipe,
            us(l.p99)
        );
    }
    for t in [2, 1] {
        let (shared, sl) = get(Client::Shared, t);
        let (_, el) = get(Client::Exclusive, t);
        println!("{t} runtime thread(s):");
        println!(
            "  shared / pgbench prepared:   {:.2}x (target 3x)",
            shared / plain
        );
        println!(
            "  shared / pgbench pipelined:  {:.2}x (target 0.8x)",
            shared / pipe
        );
        println!(
            "  shared / bare Sync-per-statement pipelining: {:.2}x",
            shared / bare
        );
        if t == 2 {
            let (dp, _) = get(Client::Deadpool, 2);
            println!(
                "  shared / deadpool:           {:.2}x (target 3x)",
                shared / dp
            );
        }
        println!(
            "  shared p99 / exclusive p99:  {:.2} ({} against {}; target at most 1)",
            sl.p99.as_secs_f64() / el.p99.as_secs_f64(),
            us(sl.p99),
            us(el.p99)
        );
    }
}
