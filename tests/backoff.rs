//! The reconnection schedule of the real pool monitor, under paused tokio time: with the
//! guide's defaults, attempts run 1, 2, 4, 8, 16 s apart, then every 16 s; with jitter,
//! each delay falls between half and all of its step. Each test has a timeout of its own
//! (in paused time, so it costs nothing), so a broken schedule fails instead of hanging.

use std::time::Duration;

use tokio::time::Instant;
use wirepool::{ConnectConfig, Pool, PoolConfig};

/// A pool whose every connect fails at once (a socket directory that does not exist: no
/// I/O to wait for, so only the schedule moves time).
async fn failing_pool(jitter: bool) -> Pool {
    let dir = std::env::temp_dir().join(format!("wirepool-absent-{}", std::process::id()));
    let connect: ConnectConfig = "postgres://app@localhost/app".parse().unwrap();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 0;
    cfg.acquire_timeout = Duration::from_secs(1);
    cfg.reconnect_jitter = jitter;
    let pool = wirepool_testkit::pool_from(connect.socket_dir(&dir).with_port(5432), cfg).await;
    assert_eq!(pool.config().reconnect_delays.len(), 5);
    pool
}

/// A caller's acquire: its connect fails at once and starts the schedule; it times out
/// with that connect error as the cause.
async fn first_failure(pool: Pool) {
    let err = pool.acquire().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let source = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<wirepool::Error>())
        .expect("the connect error");
    assert!(source.is_io(), "{source:?}");
}

/// The guide's steps, then the last one repeating.
const STEPS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0];

#[tokio::test(start_paused = true)]
async fn the_guides_schedule_on_the_real_monitor() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let pool = failing_pool(false).await;
        let start = Instant::now();
        // The caller's timeout ends at 1 s, the instant of the first attempt: it waits
        // aside, so the watch below reads the count on either side of that instant.
        let caller = tokio::spawn(first_failure(pool.clone()));
        // Attempt k runs at the sum of the first k delays after the first failure.
        let mut at = 0.0;
        for (k, delay) in STEPS.into_iter().enumerate() {
            at += delay;
            let before = start + Duration::from_secs_f64(at - 0.1);
            let after = start + Duration::from_secs_f64(at + 0.1);
            tokio::time::sleep_until(before).await;
            assert_eq!(
                pool.statistics().reconnect_attempts,
                k as u64,
                "before attempt {} at {at} s",
                k + 1
            );
            tokio::time::sleep_until(after).await;
            assert_eq!(
                pool.statistics().reconnect_attempts,
                k as u64 + 1,
                "after attempt {} at {at} s",
                k + 1
            );
        }
        caller
            .await
            .expect("the caller timed out with the connect error");
        pool.close().await;
    })
    .await
    .expect("the schedule ran within its time");
}

#[tokio::test(start_paused = true)]
async fn with_jitter_each_delay_is_between_half_and_all_of_its_step() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let pool = failing_pool(true).await;
        let start = Instant::now();
        // The caller waits out its timeout while the attempts are watched: with jitter,
        // the first may come before that.
        let caller = tokio::spawn(first_failure(pool.clone()));
        // When each attempt happens, read every 10 ms of (paused) time.
        let mut times = Vec::new();
        let mut seen = 0;
        while times.len() < STEPS.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let n = pool.statistics().reconnect_attempts;
            if n > seen {
                assert_eq!(n, seen + 1, "one attempt at a time");
                seen = n;
                times.push((Instant::now() - start).as_secs_f64());
            }
        }
        let mut prev = 0.0;
        let mut below_nominal = 0;
        for (k, (t, step)) in times.iter().zip(STEPS).enumerate() {
            let gap = t - prev;
            assert!(
                gap >= step / 2.0 - 0.05 && gap <= step + 0.1,
                "attempt {} came {gap:.2} s after the previous one (step {step} s)",
                k + 1
            );
            if gap < step - 0.1 {
                below_nominal += 1;
            }
            prev = *t;
        }
        assert!(below_nominal > 0, "no delay was shortened: {times:?}");
        caller.await.unwrap();
        pool.close().await;
    })
    .await
    .expect("the schedule ran within its time");
}
