//! What the default session reset costs (`scripts/bench-peers --reset`), on one throwaway
//! PostgreSQL, in one run, rounds interleaved: 100 tasks on 10 connections, each reading one
//! row of a 10,000-row table by primary key (`SELECT v FROM bench_t WHERE id = $1`, a
//! statement that names a relation, so it is not proven clean) and checking the answer,
//!
//! - the shared path (`pool.query_one`) under `SessionReset::UnlessProvenClean` (the
//!   default: the session reset pipelined behind each such statement) and under
//!   `SessionReset::WhenDirty` (which takes a table read through built-ins as clean: no
//!   reset, the baseline);
//! - the exclusive path (`acquire()` + `query_one` + release) under `UnlessProvenClean`
//!   (the return is reset, one round trip in a pool task), `WhenDirty` and `Never` (no
//!   reset: the baselines);
//!
//! each on a tokio runtime of 2 worker threads. Statements per second, p50 and p99 of one
//! statement, and the ratio of each default to its baseline.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirepool::SessionReset;
use wirepool_peers::{median_round, run_tasks, us, Lat};
use wirepool_testkit::{Cluster, Role};

const SQL: &str = "SELECT v FROM bench_t WHERE id = $1";
const ROWS: i32 = 10_000;
const TASKS: usize = 100;
const CONNECTIONS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    SharedDefault,
    SharedWhenDirty,
    ExclusiveDefault,
    ExclusiveWhenDirty,
    ExclusiveNever,
}

impl Client {
    const ALL: [Client; 5] = [
        Client::SharedDefault,
        Client::SharedWhenDirty,
        Client::ExclusiveDefault,
        Client::ExclusiveWhenDirty,
        Client::ExclusiveNever,
    ];

    fn name(self) -> &'static str {
        match self {
            Client::SharedDefault => {
                "pool.query_one, unless_proven_clean (default: reset after each)"
            }
            Client::SharedWhenDirty => "pool.query_one, when_dirty (no reset)",
            Client::ExclusiveDefault => {
                "acquire + query_one + release, unless_proven_clean (default: reset on return)"
            }
            Client::ExclusiveWhenDirty => "acquire + query_one + release, when_dirty (no reset)",
            Client::ExclusiveNever => "acquire + query_one + release, never (no reset)",
        }
    }

    fn shared(self) -> bool {
        matches!(self, Client::SharedDefault | Client::SharedWhenDirty)
    }
}

async fn round(client: Client, url: &str, secs: Duration) -> (f64, Lat) {
    let policy = match client {
        Client::SharedDefault | Client::ExclusiveDefault => SessionReset::UnlessProvenClean,
        Client::SharedWhenDirty | Client::ExclusiveWhenDirty => SessionReset::WhenDirty,
        Client::ExclusiveNever => SessionReset::Never,
    };
    let pool = wirepool::Pool::builder(url.parse().unwrap())
        .min_size(CONNECTIONS)
        .max_size(CONNECTIONS)
        .session_reset(policy)
        .build()
        .await
        .unwrap();
    for _ in 0..CONNECTIONS * 4 {
        pool.query_one(SQL, &[&1i32]).await.unwrap();
        let mut c = pool.acquire().await.unwrap();
        c.query_one(SQL, &[&1i32]).await.unwrap();
    }
    let next = Arc::new(AtomicI32::new(0));
    let p = pool.clone();
    let r = run_tasks(TASKS, secs, move || {
        let (p, next) = (p.clone(), next.clone());
        async move {
            let id = next.fetch_add(1, Ordering::Relaxed) % ROWS + 1;
            let t = Instant::now();
            let row = if client.shared() {
                p.query_one(SQL, &[&id]).await.unwrap()
            } else {
                let mut c = p.acquire().await.unwrap();
                c.query_one(SQL, &[&id]).await.unwrap()
            };
            assert_eq!(row.get::<_, String>(0), format!("v{id}"));
            t.elapsed()
        }
    })
    .await;
    pool.close().await;
    r
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, secs) = if quick {
        (1, Duration::from_secs(1))
    } else {
        (3, Duration::from_secs(3))
    };
    let pg = Cluster::start().expect("throwaway PostgreSQL");
    pg.psql(&format!(
        "CREATE TABLE bench_t (id int4 PRIMARY KEY, v text NOT NULL); \
         INSERT INTO bench_t SELECT g, 'v' || g FROM generate_series(1, {ROWS}) g"
    ))
    .expect("the table");
    pg.psql("GRANT SELECT ON bench_t TO PUBLIC")
        .expect("the grant");
    pg.psql("VACUUM ANALYZE bench_t").expect("vacuum");
    // RESET_AS_SUPERUSER=1: the pools log in as a superuser, whose session reset also ends
    // a replication origin the session set up.
    let role = if std::env::var_os("RESET_AS_SUPERUSER").is_some() {
        Role::Admin
    } else {
        Role::Trust
    };
    let url = pg.url(role) + "&sslmode=disable";
    println!(
        "machine: {} cores; PostgreSQL {}; {TASKS} tasks on {CONNECTIONS} connections; {rounds} round(s) of {secs:?}, interleaved; `{SQL}`; as {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        pg.psql("SHOW server_version").unwrap_or_default(),
        role.name()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runs: Vec<Vec<(f64, Lat)>> = vec![Vec::new(); Client::ALL.len()];
    for _ in 0..rounds {
        for (i, c) in Client::ALL.iter().enumerate() {
            runs[i].push(rt.block_on(round(*c, &url, secs)));
        }
    }
    println!();
    println!("| path | statements/s | p50 | p99 |");
    println!("|---|---|---|---|");
    let results: Vec<(f64, Lat)> = runs.into_iter().map(median_round).collect();
    for (c, (o, l)) in Client::ALL.iter().zip(&results) {
        println!("| {} | {o:.0} | {} | {} |", c.name(), us(l.p50), us(l.p99));
    }
    println!();
    println!(
        "shared path: unless_proven_clean / when_dirty = {:.2}x the throughput",
        results[0].0 / results[1].0
    );
    println!(
        "exclusive path: unless_proven_clean / when_dirty = {:.2}x, unless_proven_clean / never = {:.2}x the throughput",
        results[2].0 / results[3].0,
        results[2].0 / results[4].0
    );
}
