//! The database killed and restarted under load: no panic, no hang, typed errors, the
//! lifecycle goes through UNHEALTHY/RECOVERING back to HEALTHY, nothing is lost.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wirepool::throwaway::{Cluster, Role};
use wirepool::{LifecycleState, Pool, PoolConfig};

/// Every log line the pool writes, so the test reads the transitions it logged rather than
/// sampling the state (a state can last less than any sampling interval).
#[derive(Clone, Default)]
struct Logs(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("wirepool=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
    .clone()
}

/// The lifecycle states in the order the pool logged its transitions into them.
fn logged_states(logs: &Logs) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    text.lines()
        .filter_map(|l| l.split("Health status: ").nth(1))
        .filter_map(|t| t.split(" -> ").nth(1))
        .map(|to| to.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_under_load() {
    let logs = capture_logs();
    let mut pg = Cluster::start().unwrap_or_else(|e| panic!("throwaway PostgreSQL: {e}"));
    let mut cfg = PoolConfig::default();
    cfg.min_size = 2;
    cfg.max_size = 10;
    cfg.acquire_timeout = Duration::from_secs(2);
    cfg.monitor_interval = Duration::from_millis(50);
    cfg.keepalive_interval = Some(Duration::from_millis(200));
    cfg.reconnect_delays = [100, 200, 400, 800].map(Duration::from_millis).to_vec();
    cfg.health.error_window = Duration::from_secs(2);
    let pool = Pool::builder(pg.config(Role::Trust))
        .config(cfg)
        .build()
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while Instant::now() < deadline {
                match pool.acquire().await {
                    Ok(mut c) => match c.simple_query("SELECT 1").await {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            assert!(
                                e.is_db() || e.is_closed() || e.is_io() || e.is_protocol(),
                                "{e:?}"
                            );
                            failed += 1;
                        }
                    },
                    Err(e) => {
                        assert!(e.is_timeout(), "{e:?}");
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start_again().unwrap();

    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("no hang")
            .unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");

    // The pool serves again and reports HEALTHY.
    let t = Instant::now();
    loop {
        if let Ok(mut c) = pool.acquire().await {
            if c.simple_query("SELECT 1").await.is_ok() {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pool did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    while pool.state() != LifecycleState::Healthy {
        assert!(
            t.elapsed() < Duration::from_secs(70),
            "state stuck at {:?}",
            pool.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert!(s.reconnect_attempts >= 1);
    pool.close().await;
    let seen = logged_states(&logs);
    let pos = |x: &str| seen.iter().position(|s| s == x);
    let unhealthy = pos("UNHEALTHY").unwrap_or_else(|| panic!("went UNHEALTHY: {seen:?}"));
    let recovering = pos("RECOVERING").unwrap_or_else(|| panic!("went RECOVERING: {seen:?}"));
    assert!(unhealthy < recovering, "{seen:?}");
    assert!(
        seen[recovering..].iter().any(|s| s == "HEALTHY"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("TERMINATED"),
        "{seen:?}"
    );
    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(
        text.contains("Reconnection attempt 1/4 (delay: 0.1s)"),
        "{text}"
    );
    assert!(text.contains("Connection pool recovered: "), "{text}");
}
