//! What the peer benchmarks share: running tasks against a pool for a while with their
//! latencies, the median round, and pgbench on the same server.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirepool_testkit::Cluster;

/// Latency quantiles of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lat {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

pub fn lat(mut v: Vec<Duration>) -> Lat {
    v.sort_unstable();
    let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    Lat {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: *v.last().unwrap(),
    }
}

/// `tasks` tasks doing `op` for `secs`: ops/s and the latencies `op` returns.
pub async fn run_tasks<F, Fut>(tasks: usize, secs: Duration, op: F) -> (f64, Lat)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Duration> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (op, stop) = (op.clone(), stop.clone());
            tokio::spawn(async move {
                let mut v = Vec::with_capacity(1 << 14);
                while !stop.load(Ordering::Relaxed) {
                    v.push(op().await);
                }
                v
            })
        })
        .collect();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = start.elapsed();
    (all.len() as f64 / elapsed.as_secs_f64(), lat(all))
}

/// The round whose throughput is the median.
pub fn median_round(mut v: Vec<(f64, Lat)>) -> (f64, Lat) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `pgbench -n -M <mode> -c 10 -j 2` for `secs` with `script` (which runs `per_tx`
/// statements a transaction) against `pg` as trust_user: statements per second.
pub fn pgbench(pg: &Cluster, mode: &str, script: &str, per_tx: u32, secs: u64) -> Result<f64, String> {
    let bin = wirepool_testkit::find_bin_dir()
        .map_err(|e| e.to_string())?
        .join("pgbench");
    let path = std::env::temp_dir().join(format!(
        "wirepool-peers-{}-{}.sql",
        std::process::id(),
        mode
    ));
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(bin)
        .args(["-n", "-M", mode, "-c", "10", "-j", "2", "-T", &secs.to_string()])
        .arg("-f")
        .arg(&path)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "trust_user",
            "postgres",
        ])
        .env_remove("PGPASSWORD")
        .output()
        .map_err(|e| format!("running pgbench: {e}"))?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .map(|tps| tps * f64::from(per_tx))
        .ok_or_else(|| {
            format!(
                "no tps in pgbench's output: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
