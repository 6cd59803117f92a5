//! The reconnection schedule of the real pool monitor, under paused tokio time: with the
//! guide's defaults, attempts run 1, 2, 4, 8, 16 s apart, then every 16 s.

use std::time::Duration;

use wirepool::{ConnectConfig, Pool, PoolConfig};

#[tokio::test(start_paused = true)]
async fn the_guides_schedule_on_the_real_monitor() {
    // A socket directory that does not exist: every connect fails at once, with no I/O
    // to wait for, so only the schedule moves time.
    let dir = std::env::temp_dir().join(format!("wirepool-absent-{}", std::process::id()));
    let connect: ConnectConfig = "postgres://app@localhost/app".parse().unwrap();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 0;
    cfg.acquire_timeout = Duration::from_secs(1);
    let pool = Pool::builder(connect.socket_dir(&dir).with_port(5432))
        .config(cfg)
        .build()
        .await
        .unwrap();
    assert_eq!(pool.config().reconnect_delays.len(), 5);
    let start = tokio::time::Instant::now();
    // The first failed connect starts the schedule.
    let err = pool.acquire().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let source = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<wirepool::Error>())
        .expect("the connect error");
    assert!(source.is_io(), "{source:?}");

    // Attempt k runs at the sum of the first k delays after the first failure.
    let mut at = 0.0;
    for (k, delay) in [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
        .into_iter()
        .enumerate()
    {
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
    pool.close().await;
}
