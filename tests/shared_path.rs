//! The shared path: `pool.query`, `query_one`, `query_opt` and `execute` pipelined on the
//! pool's connections, against a real server.

use std::time::Duration;

use wirepool::{ErrorKind, Pool};
use wirepool_testkit::{cluster, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Admin))
        .min_size(2)
        .max_size(4)
        .build()
        .await
        .unwrap();
    let v: i32 = pool
        .query_one("SELECT $1::int4 + 1", &[&41i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    let handles: Vec<_> = (0..50)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..200i32 {
                    let n = t * 1000 + q;
                    let v: i32 = pool
                        .query_one("SELECT $1::int4 * 2", &[&n])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(v, n * 2);
                }
            })
        })
        .collect();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .unwrap()
            .unwrap();
    }
    let e = pool.execute("SET search_path TO x", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("acquire()"), "{e}");
    pool.close().await;
}
