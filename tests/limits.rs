//! Limits and refusals that must leave the connection usable: the protocol's parameter
//! count, COPY through the extended query methods, a command timeout shorter than a round
//! trip, and a statement abandoned inside a transaction (cancelled, not left running).

use std::time::{Duration, Instant};

use wirepool::{Connection, ErrorKind, Pool, ToSql};
use wirepool_testkit::{cluster, Role};

async fn select_1(c: &mut Connection) {
    let row = c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// `SELECT array_length(ARRAY[$1::int4, ..., $n::int4], 1)`.
fn n_parameters(n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| format!("${i}::int4")).collect();
    format!("SELECT array_length(ARRAY[{}], 1)", list.join(","))
}

#[tokio::test]
async fn the_protocols_65535_parameters_work_and_65536_are_refused_before_sending() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let values: Vec<i32> = (0..65_536).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    for n in [7_499, 65_535] {
        let row = c
            .query_one(n_parameters(n).as_str(), &refs[..n])
            .await
            .unwrap_or_else(|e| panic!("{n} parameters: {e}"));
        assert_eq!(row.get::<_, i32>(0), n as i32);
    }
    let e = c
        .query_one(n_parameters(65_535).as_str(), &refs)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(!c.is_broken() && !c.is_busy());
    select_1(&mut c).await;
}

#[tokio::test]
async fn copy_through_execute_and_query_is_refused_and_the_connection_stays_usable() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    c.simple_query("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    // COPY FROM STDIN, cached and uncached; COPY TO STDOUT with data to drain.
    for capacity in [100, 0] {
        c.set_statement_cache_capacity(capacity);
        let e = c.execute("COPY t FROM STDIN", &[]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CopyUnsupported, "{e}");
        assert!(!c.is_broken(), "{e}");
        select_1(&mut c).await;
        let e = c.query("COPY t TO STDOUT", &[]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CopyUnsupported, "{e}");
        assert!(!c.is_broken(), "{e}");
        select_1(&mut c).await;
    }
    // Inside a transaction too: the transaction is aborted by the refused COPY, as by
    // any failed statement, and rolls back cleanly.
    let mut tx = c.transaction().await.unwrap();
    let e = tx.execute("COPY t FROM STDIN", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CopyUnsupported);
    tx.rollback().await.unwrap();
    select_1(&mut c).await;
    let rows = c.simple_query("SELECT count(*) FROM t").await.unwrap();
    assert_eq!(rows[0].get(0), Some("1000"), "nothing was copied in");
}

#[tokio::test]
async fn a_pool_builds_with_a_command_timeout_shorter_than_a_round_trip() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(2)
        .command_timeout(Some(Duration::from_micros(1)))
        .build()
        .await
        .expect("validation is bounded by the connect timeout, not the command timeout");
    assert_eq!(pool.statistics().total_connections, 2);
    // The callers' queries are bounded by it.
    let mut c = pool.acquire().await.unwrap();
    let e = c.simple_query("SELECT pg_sleep(1)").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e}");
    drop(c);
    pool.close().await;
}

/// Backends running `sql` (other than the asking one).
async fn running(probe: &mut Connection, sql: &str) -> i64 {
    probe
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND pid <> pg_backend_pid()",
            &[&sql],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_statement_abandoned_inside_a_transaction_is_cancelled_on_return() {
    let pg = cluster();
    let mut probe = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Trust, 1, 1).await;
    let sleep = "SELECT pg_sleep(60)";
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    let mut tx = c.transaction().await.unwrap();
    let abandoned = tokio::time::timeout(Duration::from_millis(300), tx.simple_query(sleep)).await;
    assert!(abandoned.is_err(), "the sleep outlasts the timeout");
    // The handler's future is gone: its transaction and its checkout are dropped.
    drop(tx);
    drop(c);
    let t = Instant::now();
    while running(&mut probe, sleep).await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the abandoned statement is still running on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection came back clean (the same backend, outside any transaction).
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid);
    select_1(&mut c).await;
    drop(c);
    pool.close().await;
}
