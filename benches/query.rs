//! Against a real throwaway PostgreSQL:
//!
//! - `pool_acquire`: the real `Pool::acquire().await` + drop on a warm pool (an idle
//!   connection is always there; leak detection on, as by default), one task, timed inside
//!   one `block_on`; and, on its own, the checkout's check that the server has not closed
//!   the idle connection (`Connection::check_idle`); a clean return under the default
//!   `SessionReset::UnlessProvenClean` against `SessionReset::Never` (with and without a
//!   `SELECT 1` between acquire and release), and a return after a `SET`
//!   (a dirty session, reset with one round trip) under each;
//! - `extended_vs_simple`: a cached parameterized query (`query("SELECT $1::int4")`) against
//!   `simple_query("SELECT 1")` on the same connection, and (printed) the throughput of 100
//!   tasks on 10 pooled connections with each;
//! - `select_1`: `SELECT 1` on a bare connection (baseline) versus acquire + `SELECT 1` +
//!   release through the pool;
//! - the p99 of `acquire()` alone while 100 tasks run queries and idle connections exist
//!   (printed, not a criterion figure).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wirepool::{Connection, Pool, SessionReset};
use wirepool_testkit::Role;

fn query(c: &mut Criterion) {
    let pg = wirepool_testkit::cluster();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = pg.config(Role::Trust);

    let mut g = c.benchmark_group("pool_acquire");
    let warm = rt
        .block_on(Pool::builder(cfg.clone()).min_size(2).max_size(10).build())
        .unwrap();
    g.bench_function("acquire_release_warm_pool", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let c = warm.acquire().await.unwrap();
                    black_box(&c);
                    drop(c);
                }
                t.elapsed()
            })
        })
    });
    // The session-reset policy on a clean return: UnlessProvenClean (the default) against Never,
    // same run; and a dirty return (a SET before it), which costs the reset's round trip,
    // against the same return under Never.
    for (name, policy) in [
        (
            "acquire_release_clean_default",
            SessionReset::UnlessProvenClean,
        ),
        ("acquire_release_clean_never", SessionReset::Never),
    ] {
        let with_query = name.replace("acquire_release_clean", "acquire_select_1_release");
        let pool = rt
            .block_on(
                Pool::builder(cfg.clone())
                    .min_size(2)
                    .max_size(10)
                    .session_reset(policy)
                    .build(),
            )
            .unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let c = pool.acquire().await.unwrap();
                        black_box(&c);
                        drop(c);
                    }
                    t.elapsed()
                })
            })
        });
        // With a statement: the classifier's verdict on it (proven clean) and the tags the
        // server sends decide that the return needs no reset.
        g.bench_function(&with_query, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let mut c = pool.acquire().await.unwrap();
                        black_box(c.simple_query("SELECT 1").await.unwrap());
                        drop(c);
                    }
                    t.elapsed()
                })
            })
        });
        rt.block_on(pool.close());
    }
    for (name, policy) in [
        ("set_then_release_default", SessionReset::UnlessProvenClean),
        ("set_then_release_never", SessionReset::Never),
    ] {
        let pool = rt
            .block_on(
                Pool::builder(cfg.clone())
                    .min_size(1)
                    .max_size(1)
                    .session_reset(policy)
                    .build(),
            )
            .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut c = pool.acquire().await.unwrap();
                    c.simple_query("SET application_name = 'bench'")
                        .await
                        .unwrap();
                })
            })
        });
        rt.block_on(pool.close());
    }
    let mut idle = rt.block_on(Connection::connect(&cfg)).unwrap();
    g.bench_function("checkout_check_idle_connection", |b| {
        b.iter(|| assert!(black_box(wirepool::internals::check_idle(&mut idle))))
    });
    g.finish();
    rt.block_on(warm.close());

    // A cached parameterized query against a simple query, same connection, same run.
    let mut g = c.benchmark_group("extended_vs_simple");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    let mut conn = rt.block_on(Connection::connect(&cfg)).unwrap();
    rt.block_on(conn.query("SELECT $1::int4", &[&1i32]))
        .unwrap();
    g.bench_function("simple_query_select_1", |b| {
        b.iter(|| rt.block_on(async { conn.simple_query("SELECT 1").await.unwrap() }))
    });
    g.bench_function("query_select_param_cached", |b| {
        b.iter(|| {
            rt.block_on(async {
                let row = conn.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
                black_box(row.get::<_, i32>(0))
            })
        })
    });
    g.finish();
    // Pooled throughput: 100 tasks on 10 connections, a cached parameterized query each.
    let pool10 = rt
        .block_on(Pool::builder(cfg.clone()).min_size(10).max_size(10).build())
        .unwrap();
    let throughput = |per_task: usize, parameterized: bool| {
        rt.block_on(async {
            let t = Instant::now();
            let mut hs = Vec::new();
            for _ in 0..100 {
                let pool = pool10.clone();
                hs.push(tokio::spawn(async move {
                    for i in 0..per_task {
                        let mut c = pool.acquire().await.unwrap();
                        if parameterized {
                            let v: i32 = c
                                .query_one("SELECT $1::int4", &[&(i as i32)])
                                .await
                                .unwrap()
                                .get(0);
                            black_box(v);
                        } else {
                            black_box(c.simple_query("SELECT 1").await.unwrap());
                        }
                    }
                }));
            }
            for h in hs {
                h.await.unwrap();
            }
            (100 * per_task) as f64 / t.elapsed().as_secs_f64()
        })
    };
    let _ = throughput(20, true);
    let simple = throughput(200, false);
    let param = throughput(200, true);
    let simple2 = throughput(200, false);
    let param2 = throughput(200, true);
    println!(
        "100 tasks on 10 connections, 20,000 queries per round, two rounds each: \
         simple_query(\"SELECT 1\") {:.0} / {:.0} queries/s, query(\"SELECT $1::int4\") cached {:.0} / {:.0} queries/s",
        simple, simple2, param, param2
    );
    rt.block_on(pool10.close());

    let mut g = c.benchmark_group("select_1");
    g.sample_size(30).measurement_time(Duration::from_secs(3));

    let mut conn = rt.block_on(Connection::connect(&cfg)).unwrap();
    g.bench_function("bare_connection", |b| {
        b.iter(|| rt.block_on(async { conn.simple_query("SELECT 1").await.unwrap() }))
    });
    let pool = rt
        .block_on(Pool::builder(cfg.clone()).min_size(2).max_size(10).build())
        .unwrap();
    g.bench_function("pool_acquire_query_release", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut c = pool.acquire().await.unwrap();
                c.simple_query("SELECT 1").await.unwrap()
            })
        })
    });
    g.finish();

    // What the statement metrics cost a statement: the same statement with them on (the
    // default, 100 texts) and off, on each path, in one run.
    let mut g = c.benchmark_group("statement_metrics");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    for (limit, state) in [(0usize, "off"), (100, "on")] {
        let mut pc = wirepool::PoolConfig::default();
        pc.min_size = 2;
        pc.max_size = 2;
        pc.statement_metrics_limit = limit;
        let p = rt
            .block_on(Pool::builder(cfg.clone()).config(pc).build())
            .unwrap();
        g.bench_function(format!("exclusive_query_one_metrics_{state}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut c = p.acquire().await.unwrap();
                    c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap()
                })
            })
        });
        g.bench_function(format!("pipelined_query_one_metrics_{state}"), |b| {
            b.iter(|| {
                rt.block_on(p.query_one("SELECT $1::int4", &[&1i32]))
                    .unwrap()
            })
        });
        rt.block_on(p.close());
    }
    g.finish();

    // p99 of acquire() with 100 tasks running and idle connections available.
    let busy_pool = rt
        .block_on(Pool::builder(cfg).min_size(110).max_size(120).build())
        .unwrap();
    let run = |rounds: usize| {
        rt.block_on(async {
            let mut hs = Vec::new();
            for _ in 0..100 {
                let pool = busy_pool.clone();
                hs.push(tokio::spawn(async move {
                    let mut v = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let t = Instant::now();
                        let mut c = pool.acquire().await.unwrap();
                        v.push(t.elapsed());
                        c.simple_query("SELECT 1").await.unwrap();
                    }
                    v
                }));
            }
            let mut all = Vec::new();
            for h in hs {
                all.extend(h.await.unwrap());
            }
            all
        })
    };
    // Warm-up: let the pool grow to what 100 tasks need, so idle connections exist.
    let _ = run(10);
    let grown = busy_pool.statistics().total_connections;
    let mut lat: Vec<Duration> = run(50);
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "acquire() with 100 tasks running on {} connections ({} samples): p50 {:?}, p95 {:?}, p99 {:?}, max {:?}",
        grown,
        lat.len(),
        q(0.50),
        q(0.95),
        q(0.99),
        lat[lat.len() - 1]
    );
    rt.block_on(pool.close());
    rt.block_on(busy_pool.close());
}

criterion_group!(benches, query);
criterion_main!(benches);
