//! TLS against plain text, in one run against one throwaway server with `ssl = on`. Both
//! sides authenticate with SCRAM-SHA-256: TLS as `tls_user` (verify-full, with channel
//! binding), plain text as `scram_user` (pg_hba allows `tls_user` over TLS only):
//!
//! - pool build with `min_size` 2 (two connections opened and validated), 30 times each,
//!   interleaved: p50 and p95;
//! - 100 tasks on a pool of 10, `SELECT 1` through `Pool::acquire`: queries per second,
//!   three rounds each, interleaved.
//!
//! `cargo bench --bench tls` (a plain binary: it prints its table).

use std::time::{Duration, Instant};

use wirepool::{ConnectConfig, Pool};
use wirepool_testkit::{Cluster, Role};

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

async fn build(cfg: &ConnectConfig) -> Duration {
    let t = Instant::now();
    let pool = Pool::builder(cfg.clone())
        .min_size(2)
        .max_size(10)
        .build()
        .await
        .unwrap();
    let took = t.elapsed();
    pool.close().await;
    took
}

async fn throughput(pool: &Pool, per_task: usize) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let mut c = pool.acquire().await.unwrap();
                    std::hint::black_box(c.simple_query("SELECT 1").await.unwrap());
                }
            })
        })
        .collect();
    for h in tasks {
        h.await.unwrap();
    }
    (100 * per_task) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; a `cargo test --benches` run passes nothing and only
    // checks that the comparison runs, with few rounds.
    let benching = std::env::args().any(|a| a == "--bench");
    let (builds, rounds, per_task) = if benching { (30, 3, 100) } else { (2, 1, 5) };
    let pg = Cluster::start_tls().expect("throwaway PostgreSQL with TLS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plain: ConnectConfig = format!("{}&sslmode=disable", pg.url(Role::Scram))
        .parse()
        .unwrap();
    let tls: ConnectConfig = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        pg.url(Role::Tls),
        pg.ca_cert().display()
    )
    .parse()
    .unwrap();
    rt.block_on(async {
        let (mut p, mut t) = (Vec::new(), Vec::new());
        for _ in 0..builds {
            p.push(build(&plain).await);
            t.push(build(&tls).await);
        }
        println!(
            "pool build, min_size 2, SCRAM: plain p50 {:?} p95 {:?}; TLS verify-full p50 {:?} p95 {:?}",
            quantile(&mut p, 0.5),
            quantile(&mut p, 0.95),
            quantile(&mut t, 0.5),
            quantile(&mut t, 0.95)
        );
        let pp = Pool::builder(plain.clone()).min_size(10).max_size(10).build().await.unwrap();
        let tp = Pool::builder(tls.clone()).min_size(10).max_size(10).build().await.unwrap();
        throughput(&pp, 20).await;
        throughput(&tp, 20).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(throughput(&pp, per_task).await);
            b.push(throughput(&tp, per_task).await);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "100 tasks on 10 connections, SELECT 1: plain {:.0} queries/s, TLS {:.0} queries/s ({:.2}x); rounds plain {:?} TLS {:?}",
            mean(&a),
            mean(&b),
            mean(&b) / mean(&a),
            a.iter().map(|x| x.round()).collect::<Vec<_>>(),
            b.iter().map(|x| x.round()).collect::<Vec<_>>()
        );
        pp.close().await;
        tp.close().await;
    });
}
