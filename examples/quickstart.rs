//! Starts a throwaway PostgreSQL (or uses DATABASE_URL), builds a pool, runs a burst of
//! parameterized queries from 50 tasks in transactions, and prints the statistics, the
//! health JSON and the metrics.
//!
//! `cargo run --example quickstart`

use std::time::Duration;

use wirepool::Pool;
use wirepool_testkit::{Cluster, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("wirepool=info")
        .with_target(false)
        .init();
    let (_cluster, url) = match std::env::var("DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            println!("DATABASE_URL is not set: starting a throwaway PostgreSQL");
            let c = Cluster::start()?;
            let url = c.url(Role::Scram);
            (Some(c), url)
        }
    };
    let pool = Pool::builder(url.parse()?)
        .min_size(2)
        .max_size(10)
        .build()
        .await?;
    let mut tasks = Vec::new();
    for task in 0..50i32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20i32 {
                let mut c = pool.acquire().await?;
                let mut tx = c.transaction().await?;
                let row = tx
                    .query_one("SELECT $1::int4 * $2::int4 AS product", &[&task, &n])
                    .await?;
                let product: i32 = row.get("product");
                assert_eq!(product, task * n);
                tx.commit().await?;
            }
            Ok::<_, wirepool::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = pool.statistics();
    println!(
        "acquisitions {} releases {} waited {} peak active {} p95 acquire {:.3} ms, statement cache {} hits / {} misses",
        s.total_acquisitions,
        s.total_releases,
        s.acquisitions_waited,
        s.peak_active_connections,
        s.acquisition_quantile_ms(0.95).unwrap_or(0.0),
        s.statement_cache_hits,
        s.statement_cache_misses,
    );
    println!("{}", pool.health().to_json());
    println!(
        "{}",
        pool.render_prometheus()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    );
    pool.close().await;
    Ok(())
}
