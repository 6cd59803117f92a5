//! `wirepool demo`: the pool and its endpoints under a load that walks through what an
//! operator sees in production.
//!
//! Without `DATABASE_URL` it starts a throwaway PostgreSQL (removed on exit). Then it serves
//! `/health`, `/metrics` and `/mcp` as `serve` does and runs these phases, printing one
//! status line per second:
//!
//! 1. **steady**: a few workers with short queries; HEALTHY.
//! 2. **burst**: many more workers than `max_size`, holding connections; callers queue,
//!    the pool turns DEGRADED or UNHEALTHY.
//! 3. **leak**: one connection held past the leak timeout; a leak warning, then the INFO
//!    when it comes back.
//! 4. **outage**: the database is stopped, then started again; UNHEALTHY, RECOVERING,
//!    HEALTHY with the reconnection schedule in the log (throwaway database only).
//! 5. **recovery**: steady load until the pool is HEALTHY again.
//!
//! After the phases it keeps the steady load running until Ctrl-C (or exits with `--once`).
//! Ctrl-C at any point stops the load, drains the pool and removes the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::throwaway::{self, Throwaway};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wirepool::{ConnectConfig, Pool, PoolConfig};

use crate::serve::{build_pool, shutdown_signal, Http, Listen};
use wirepool::mcp::HEALTH_URI;

/// Demo options.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    pub(crate) listen: Listen,
    pub(crate) phase: Duration,
    pub(crate) once: bool,
}

/// Counts of the load generator's outcomes.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

pub(crate) async fn run(
    connect: Option<ConnectConfig>,
    mut cfg: PoolConfig,
    leak_timeout_set: bool,
    opts: DemoOptions,
) -> Result<(), String> {
    let (connect, mut cluster) = match connect {
        Some(c) => (c, None),
        None => {
            outln!("Starting a throwaway PostgreSQL (initdb into a temporary directory)...");
            let (pg, cfg) = tokio::task::spawn_blocking(throwaway::start)
                .await
                .map_err(|e| format!("starting PostgreSQL: {e}"))??;
            outln!(
                "PostgreSQL is up on 127.0.0.1:{} (removed when the demo ends)",
                pg.port()
            );
            (cfg, Some(pg))
        }
    };
    // Demo-sized timings, unless set in the environment.
    if !leak_timeout_set {
        cfg.leak_detection = true;
        // Ten times what a burst worker holds its connection for, so that only the leak
        // phase's connection is reported, however slow the machine.
        cfg.leak_detection_timeout = opts.phase.mul_f64(0.4).max(BURST_HOLD * 10);
    }
    cfg.acquire_timeout = cfg.acquire_timeout.min(Duration::from_secs(2));
    // Errors and slow acquisitions keep the pool DEGRADED for this long (60 s in
    // production); shortened so that the recovery is visible within the demo.
    cfg.health.error_window = (opts.phase * 2).max(Duration::from_secs(4));
    let leak_timeout = cfg.leak_detection_timeout;
    let pool = build_pool(connect, cfg).await?;
    let mut listen = opts.listen.clone();
    // Another program on the default port should not stop a demo: take any free port.
    if std::net::TcpListener::bind(listen.bind)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    {
        outln!(
            "{} is in use; the demo listens on a free port instead",
            listen.bind
        );
        listen.bind.set_port(0);
    }
    let http = match Http::start(&pool, &listen).await {
        Ok(h) => h,
        Err(e) => {
            pool.close().await;
            return Err(e);
        }
    };
    let base = format!("http://{}", http.addr);
    outln!();
    outln!("  status:  {base}/   (open it in a browser: the pool live, its last 15 minutes)");
    outln!("  health:  {base}/health");
    outln!("  metrics: {base}/metrics");
    if opts.listen.mcp {
        outln!("  mcp:     {base}/mcp   (resource {HEALTH_URI}; older clients: {base}/sse)");
    }
    if let Some(m) = http.metrics_addr {
        outln!("  metrics: http://{m}/metrics");
    }
    outln!();
    outln!("Phases: steady, burst, leak, outage, recovery. Ctrl-C stops the demo.");

    let stop = CancellationToken::new();
    let tally = Arc::new(Tally::default());
    let status = tokio::spawn(status_lines(pool.clone(), stop.clone()));
    let script = phases(&pool, cluster.as_mut(), &opts, leak_timeout, &tally, &stop);
    let interrupted = tokio::select! {
        r = script => { r?; false }
        sig = shutdown_signal() => {
            outln!("{sig}: stopping the demo");
            true
        }
    };
    if !interrupted && !opts.once {
        outln!("All phases done; steady load continues. Ctrl-C stops the demo.");
        let load = CancellationToken::new();
        let mut workers = steady(&pool, &tally, &load, 2);
        let sig = shutdown_signal().await;
        outln!("{sig}: stopping the demo");
        load.cancel();
        while workers.join_next().await.is_some() {}
    }
    stop.cancel();
    let _ = status.await;
    outln!(
        "Load generator: {} queries succeeded, {} failed.",
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed)
    );
    pool.close().await;
    http.stop().await;
    // Stops the throwaway server (there is none in a build without the `demo` feature).
    #[cfg_attr(not(feature = "demo"), allow(clippy::drop_non_drop))]
    drop(cluster);
    outln!("Demo finished.");
    Ok(())
}

/// How long a burst worker holds its connection: [`BURST_QUERY`]'s sleep.
const BURST_HOLD: Duration = Duration::from_millis(300);
const BURST_QUERY: &str = "SELECT pg_sleep(0.3)";

/// Runs the phases in order.
async fn phases(
    pool: &Pool,
    cluster: Option<&mut Throwaway>,
    opts: &DemoOptions,
    leak_timeout: Duration,
    tally: &Arc<Tally>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let phase = opts.phase;
    announce("steady", "a few workers, short queries");
    run_load(steady(pool, tally, stop, 2), phase).await;

    announce(
        "burst",
        "60 workers on a pool of max_size, each holding its connection 300 ms",
    );
    let token = stop.child_token();
    let mut set = steady(pool, tally, &token, 0);
    for _ in 0..60 {
        set.spawn(worker(
            pool.clone(),
            tally.clone(),
            token.clone(),
            BURST_QUERY,
            Duration::ZERO,
        ));
    }
    tokio::time::sleep(phase).await;
    token.cancel();
    while set.join_next().await.is_some() {}

    announce(
        "leak",
        &format!(
            "one connection held past the leak timeout ({:.1} s)",
            leak_timeout.as_secs_f64()
        ),
    );
    let token = stop.child_token();
    let mut set = steady(pool, tally, &token, 2);
    match pool.acquire().await {
        Ok(held) => {
            outln!("holding a connection acquired at {}", held.acquired_at());
            tokio::time::sleep(leak_timeout + Duration::from_millis(1500)).await;
            drop(held);
        }
        Err(e) => outln!("could not take a connection to hold: {e}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel();
    while set.join_next().await.is_some() {}

    match cluster {
        Some(pg) => {
            announce(
                "outage",
                "PostgreSQL stopped (immediate), started again after a while",
            );
            let token = stop.child_token();
            let mut set = steady(pool, tally, &token, 2);
            tokio::time::sleep(Duration::from_secs(1)).await;
            kill(pg).await?;
            tokio::time::sleep(phase).await;
            start_again(pg).await?;
            outln!("PostgreSQL is back; the pool reconnects on its schedule");
            wait_healthy(pool, phase * 4).await;
            token.cancel();
            while set.join_next().await.is_some() {}
        }
        None => announce(
            "outage",
            "skipped: DATABASE_URL points at a database the demo does not own",
        ),
    }

    announce("recovery", "steady load until the pool is HEALTHY");
    let token = stop.child_token();
    let mut set = steady(pool, tally, &token, 2);
    wait_healthy(pool, phase * 4).await;
    tokio::time::sleep(phase.min(Duration::from_secs(3))).await;
    token.cancel();
    while set.join_next().await.is_some() {}
    Ok(())
}

async fn kill(pg: &mut Throwaway) -> Result<(), String> {
    // pg_ctl blocks; keep the runtime's workers free.
    tokio::task::block_in_place(|| throwaway::kill(pg))
        .map_err(|e| format!("stopping PostgreSQL: {e}"))
}

async fn start_again(pg: &mut Throwaway) -> Result<(), String> {
    tokio::task::block_in_place(|| throwaway::start_again(pg))
        .map_err(|e| format!("starting PostgreSQL again: {e}"))
}

async fn wait_healthy(pool: &Pool, limit: Duration) {
    let t = Instant::now();
    while pool.state() != wirepool::LifecycleState::Healthy && t.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn announce(name: &str, what: &str) {
    outln!("--- phase {name}: {what}");
}

async fn run_load(mut set: JoinSet<()>, d: Duration) {
    tokio::time::sleep(d).await;
    set.abort_all();
    while set.join_next().await.is_some() {}
}

/// `n` steady workers: a short query on a checked-out connection, then a pause; and as
/// many running pipelined statements (`pool.query_one`, no checkout).
fn steady(pool: &Pool, tally: &Arc<Tally>, stop: &CancellationToken, n: usize) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        set.spawn(pipelined(pool.clone(), tally.clone(), stop.clone()));
        set.spawn(worker(
            pool.clone(),
            tally.clone(),
            stop.clone(),
            "SELECT pg_sleep(0.005)",
            Duration::from_millis(100),
        ));
    }
    set
}

/// A pipelined statement every 20 ms.
async fn pipelined(pool: Pool, tally: Arc<Tally>, stop: CancellationToken) {
    let mut n = 0i32;
    while !stop.is_cancelled() {
        n = n.wrapping_add(1);
        let pages = n % 10;
        let params: [&(dyn wirepool::ToSql + Sync); 1] = [&pages];
        let r = tokio::select! {
            r = pool.query_one("SELECT count(*) FROM pg_class WHERE relpages > $1", &params) => r,
            _ = stop.cancelled() => return,
        };
        let pause = match r {
            Ok(_) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                20
            }
            Err(_) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                100
            }
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn worker(
    pool: Pool,
    tally: Arc<Tally>,
    stop: CancellationToken,
    sql: &'static str,
    pause: Duration,
) {
    while !stop.is_cancelled() {
        let r = tokio::select! {
            r = async {
                let mut c = pool.acquire().await?;
                c.simple_query(sql).await
            } => r,
            _ = stop.cancelled() => return,
        };
        match r {
            Ok(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tally.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// How many seconds the status line's p95 covers.
const P95_WINDOW: usize = 5;

/// One line per second: state, counts, the p95 acquisition time over the last few seconds,
/// leaks, errors.
async fn status_lines(pool: Pool, stop: CancellationToken) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Histograms of the last seconds: the p95 is of their difference, so it shows what
    // callers see now, not the average since start.
    let mut history = std::collections::VecDeque::with_capacity(P95_WINDOW + 1);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let h = pool.health();
        let s = pool.statistics();
        history.push_back(s.acquisition_histogram);
        if history.len() > P95_WINDOW + 1 {
            history.pop_front();
        }
        let mut recent = s.clone();
        let oldest = history.front().copied().unwrap_or_default();
        for (i, n) in recent.acquisition_histogram.iter_mut().enumerate() {
            *n -= oldest[i];
        }
        let p95 = recent
            .acquisition_quantile_ms(0.95)
            .map_or_else(|| "-".to_string(), fmt_ms);
        let errors: u64 = s.errors.iter().map(|(_, n)| n).sum();
        outln!(
            "[{:>4}s] {:<13} total {:>2}  idle {:>2}  active {:>2}  waiting {:>3} | p95 acquire ({P95_WINDOW}s) {p95:>8} | leaks {} | errors {errors}",
            start.elapsed().as_secs(),
            pool.state().as_str(),
            h.total,
            h.idle,
            h.active,
            h.waiting,
            s.leaks_detected,
        );
    }
}

/// A latency read from histogram buckets, with no more precision than they have: two
/// significant digits, and "<0.01 ms" inside the lowest bucket (10 µs).
fn fmt_ms(ms: f64) -> String {
    if ms < 0.01 {
        "<0.01 ms".to_string()
    } else if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{} ms", (ms.round() as u64))
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_ms;

    #[test]
    fn latencies_without_false_precision() {
        assert_eq!(fmt_ms(0.004), "<0.01 ms");
        assert_eq!(fmt_ms(0.234), "0.23 ms");
        assert_eq!(fmt_ms(2.345), "2.3 ms");
        assert_eq!(fmt_ms(42.4), "42 ms");
        assert_eq!(fmt_ms(1500.0), "1.5 s");
    }
}
