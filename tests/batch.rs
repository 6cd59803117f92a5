//! Batches on a connection against a real server: atomic (one Sync: all or nothing, the
//! error naming the failing statement's index) and independent (a Sync per statement),
//! typed results, `execute_many` over a million rows with bounded memory, a failing row,
//! a batch dropped at every await, and a batch inside a transaction.

use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{Connection, ErrorKind};
use wirepool_testkit::{cluster, Cluster, Role};

async fn connect(pg: &Cluster) -> Connection {
    let mut c = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    c.batch_execute("CREATE TABLE IF NOT EXISTS t (id int8 PRIMARY KEY, label text, n int4)")
        .await
        .unwrap();
    c.batch_execute("TRUNCATE t").await.unwrap();
    c
}

async fn ids(c: &mut Connection) -> Vec<i64> {
    c.query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const INSERT: &str = "INSERT INTO t (id, label, n) VALUES ($1, $2, $3)";

#[tokio::test]
async fn an_atomic_batch_with_a_failing_statement_applies_nothing_and_names_it() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.execute(INSERT, &[&2i64, &"there", &0i32]).await.unwrap();
    let e = c
        .batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .execute(INSERT, &[&2i64, &"duplicate", &2i32])
        .execute(INSERT, &[&3i64, &"c", &3i32])
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(1), "{e}");
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::UNIQUE_VIOLATION),
        "{e}"
    );
    assert_eq!(ids(&mut c).await, [2]);
    // The connection goes on.
    let r = c
        .batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .query("SELECT id, label FROM t ORDER BY id", &[])
        .execute("UPDATE t SET n = n + 1", &[])
        .query("SELECT sum(n)::int8 FROM t", &[])
        .run()
        .await
        .unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].count(), 1);
    assert!(r[0].rows().is_none());
    let rows = r[1].rows().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    assert_eq!(rows[1].get::<_, &str>("label"), "there");
    assert_eq!(r[2].count(), 2);
    assert_eq!(r[3].rows().unwrap()[0].get::<_, i64>(0), 3);
}

/// A COMMIT inside an atomic batch ends its transaction keeping what ran before it (the
/// server's tag says so): a later failure is not "nothing took effect".
#[tokio::test]
async fn an_atomic_batch_that_committed_before_its_failure_may_have_run() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    let e = c
        .batch()
        .execute(INSERT, &[&1i64, &"kept", &1i32])
        .execute("COMMIT", &[])
        .execute(INSERT, &[&2i64, &"rolled back", &2i32])
        .query("SELECT 1 / 0", &[])
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(3), "{e}");
    assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO), "{e}");
    assert_eq!(ids(&mut c).await, [1], "what ran before the COMMIT stays");
    assert_eq!(e.may_have_run(), Some(true), "{e}");
    // Without a COMMIT, a failure still means nothing stays.
    let e = c
        .batch()
        .execute(INSERT, &[&3i64, &"c", &3i32])
        .query("SELECT 1 / 0", &[])
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.may_have_run(), None, "{e}");
    assert_eq!(ids(&mut c).await, [1]);
}

#[tokio::test]
async fn an_independent_batch_applies_each_statement_alone() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.execute(INSERT, &[&2i64, &"there", &0i32]).await.unwrap();
    let r = c
        .batch()
        .atomic(false)
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .execute(INSERT, &[&2i64, &"duplicate", &2i32])
        .query("SELECT count(*) FROM t", &[])
        .execute(INSERT, &[&3i64, &"c", &3i32])
        .run()
        .await
        .unwrap();
    assert_eq!(r.len(), 4);
    assert!(r[0].error().is_none());
    let e = r[1].error().expect("the duplicate failed");
    assert_eq!(e.batch_index(), Some(1));
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::UNIQUE_VIOLATION)
    );
    assert_eq!(r[2].rows().unwrap()[0].get::<_, i64>(0), 2);
    assert_eq!(r[3].count(), 1);
    assert_eq!(ids(&mut c).await, [1, 2, 3]);
}

#[tokio::test]
async fn a_value_that_does_not_convert_sends_nothing() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    let e = c
        .batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .execute(INSERT, &[&2i64, &"b", &"not an int4"])
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(1), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e}");
    assert!(ids(&mut c).await.is_empty());
}

#[tokio::test]
async fn inside_a_transaction_a_batch_is_part_of_it() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    let mut tx = c.transaction().await.unwrap();
    tx.batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .execute(INSERT, &[&2i64, &"b", &2i32])
        .run()
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(ids(&mut c).await.is_empty());
    let mut tx = c.transaction().await.unwrap();
    tx.batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .run()
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids(&mut c).await, [1]);
}

#[tokio::test]
async fn execute_many_of_a_million_rows_with_bounded_memory() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    let kib = |field: &str| -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    // The peak is what counts (what is freed at the end does not show in the RSS then):
    // the kernel's high-water mark, reset to the present first.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = kib("VmRSS:");
    let n = c
        .execute_many(
            INSERT,
            (0..1_000_000i64).map(|i| (i, format!("row {i}"), (i % 1000) as i32)),
        )
        .await
        .unwrap();
    let grown_kib = kib("VmHWM:").saturating_sub(before);
    println!("execute_many of 1,000,000 rows: peak RSS grew {grown_kib} KiB");
    assert_eq!(n, 1_000_000);
    let row = c
        .query_one("SELECT count(*), sum(n)::int8 FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1_000_000);
    assert_eq!(row.get::<_, i64>(1), 1000 * (999 * 1000 / 2));
    // The rows are made as they are sent and nothing is kept per row: memory does not grow
    // with them (a collection of a million rows would be well over 50 MiB; a result kept
    // per row, 40 MiB).
    assert!(grown_kib < 16 * 1024, "{grown_kib} KiB");
}

#[tokio::test]
async fn execute_many_with_a_failing_row() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.execute(INSERT, &[&5_000i64, &"there", &0i32])
        .await
        .unwrap();
    let rows = || (0..10_000i64).map(|i| (i, "x", 1i32));
    let e = c.execute_many(INSERT, rows()).await.unwrap_err();
    assert_eq!(e.batch_index(), Some(5_000), "{e}");
    assert_eq!(ids(&mut c).await, [5_000], "atomic: nothing of it applied");
    let e = c
        .execute_many_independent(INSERT, rows())
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(5_000), "{e}");
    assert_eq!(
        ids(&mut c).await.len(),
        10_000,
        "independent: every other row applied"
    );
    // A value that does not convert half-way, after rows were sent: nothing applied.
    c.batch_execute("TRUNCATE t").await.unwrap();
    let mixed: Vec<[&(dyn wirepool::ToSql + Sync); 3]> = (0..20_000i64)
        .map(|i| {
            let id: &(dyn wirepool::ToSql + Sync) = Box::leak(Box::new(i));
            let n: &(dyn wirepool::ToSql + Sync) = if i == 15_000 { &"bad" } else { &1i32 };
            [id, &"x", n]
        })
        .collect();
    let e = c
        .execute_many(INSERT, mixed.iter().map(|r| &r[..]))
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(15_000), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e}");
    assert!(
        ids(&mut c).await.is_empty(),
        "what was sent before it was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_batch_dropped_at_any_point_applies_all_or_nothing() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    // Dropped after some rows were sent and before the Sync (more rows than are written
    // ahead of the answers), and dropped under timeouts at any moment.
    for pulled in [1usize, 2_000, 10_000, 25_000] {
        c.batch_execute("TRUNCATE t").await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        // Far more rows after `pulled` than are written ahead (a few MiB: row by row,
        // or by COPY in chunks of 1 MiB), so the drop comes before the Sync is written.
        let rows = (0..2_000_000i64).map(move |i| {
            if i as usize == pulled {
                let _ = tx.take().map(|t| t.send(()));
            }
            (i, "x", 1i32)
        });
        tokio::select! {
            r = c.execute_many(INSERT, rows) => panic!("finished before the drop: {r:?}"),
            _ = rx => {}
        }
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            n, 0,
            "a batch dropped after {pulled} rows were made applied {n}"
        );
    }
    let mut all = 0;
    let mut none = 0;
    for k in 0..12u64 {
        c.batch_execute("TRUNCATE t").await.unwrap();
        let limit = Duration::from_millis(k * 8);
        let rows = (0..30_000i64).map(|i| (i, "x", 1i32));
        let _ = tokio::time::timeout(limit, c.execute_many(INSERT, rows)).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        match n {
            0 => none += 1,
            30_000 => all += 1,
            n => panic!("{n} of 30,000 rows applied after a drop at {limit:?}"),
        }
    }
    println!("batches dropped under timeouts: {none} applied nothing, {all} applied everything");
}

/// A `COPY … FROM STDIN` or `TO STDOUT` in a batch (whose data would go through
/// `copy_in` / `copy_out`) is refused before anything is sent, naming it: the batch does
/// not wait for data that never comes, and the connection goes on.
#[tokio::test]
async fn a_client_copy_in_a_batch_is_refused_before_anything_is_sent() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    for atomic in [true, false] {
        for copy in ["COPY t FROM STDIN", "copy t (id) to stdout"] {
            let e = tokio::time::timeout(
                Duration::from_secs(30),
                c.batch()
                    .execute(INSERT, &[&1i64, &"a", &1i32])
                    .execute(copy, &[])
                    .atomic(atomic)
                    .run(),
            )
            .await
            .expect("the batch waited for COPY data")
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::CopyUnsupported, "{e}");
            assert_eq!(e.batch_index(), Some(1), "{e}");
            assert_eq!(e.may_have_run(), Some(false), "{e}");
            assert_eq!(ids(&mut c).await, Vec::<i64>::new(), "{copy}: nothing sent");
        }
    }
    let e = c
        .execute_many("COPY t FROM STDIN", [(1i64,)])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CopyUnsupported, "{e}");
    // A COPY of a server file is a statement like any other (here it fails on the server).
    let e = c
        .batch()
        .execute("COPY t FROM '/nonexistent/wirepool-file'", &[])
        .run()
        .await
        .unwrap_err();
    assert!(e.as_db_error().is_some(), "{e}");
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// A statement that fails only as its transaction commits (a deferred unique check): in an
/// independent batch, that statement's own result carries the error and its row is not
/// counted (one result per statement); an atomic batch fails as a whole, naming no
/// statement, since the server does not say whose row broke the constraint.
#[tokio::test]
async fn a_batch_whose_commit_fails_says_so() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.batch_execute("CREATE TEMP TABLE d (k int, u int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        .await
        .unwrap();
    let ins = "INSERT INTO d VALUES ($1, $2)";
    let r = c
        .batch()
        .execute(ins, &[&1i32, &7i32])
        .execute(ins, &[&2i32, &7i32])
        .execute(ins, &[&3i32, &8i32])
        .atomic(false)
        .run()
        .await
        .unwrap();
    assert_eq!(r.len(), 3, "one result per statement");
    assert_eq!((r[0].count(), r[0].error().is_none()), (1, true));
    let e = r[1].error().expect("the second failed at its commit");
    assert_eq!(e.batch_index(), Some(1), "{e}");
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::UNIQUE_VIOLATION)
    );
    assert_eq!(r[1].count(), 0);
    assert_eq!((r[2].count(), r[2].error().is_none()), (1, true));
    assert_eq!(rows_in_d(&mut c).await, 2);

    c.batch_execute("TRUNCATE d").await.unwrap();
    let e = c
        .batch()
        .execute(ins, &[&1i32, &7i32])
        .execute(ins, &[&2i32, &7i32])
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), None, "{e}");
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::UNIQUE_VIOLATION)
    );
    assert_eq!(rows_in_d(&mut c).await, 0);

    // execute_many with a Sync per row: the row whose commit failed is named and not
    // counted.
    let rows: Vec<(i32, i32)> = vec![(1, 7), (2, 7), (3, 8)];
    let e = c.execute_many_independent(ins, rows).await.unwrap_err();
    assert_eq!(e.batch_index(), Some(1), "{e}");
    assert_eq!(rows_in_d(&mut c).await, 2);
}

async fn rows_in_d(c: &mut Connection) -> i64 {
    c.query_one("SELECT count(*) FROM d", &[])
        .await
        .unwrap()
        .get(0)
}

/// A `COMMIT` (or `PREPARE TRANSACTION`) the server turned into a rollback (the
/// transaction had failed) is that statement's error, as `Transaction::commit` reports
/// it, never a success.
#[tokio::test]
async fn a_commit_that_rolled_back_in_a_batch_is_an_error() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    for commit in ["COMMIT", "end", "PREPARE TRANSACTION 'wp_rolled_back'"] {
        let r = c
            .batch()
            .execute("BEGIN", &[])
            .execute(INSERT, &[&1i64, &"a", &1i32])
            .query("SELECT 1 / 0", &[])
            .execute(commit, &[])
            .atomic(false)
            .run()
            .await
            .unwrap();
        assert_eq!(r.len(), 4);
        assert!(r[2].error().is_some());
        let e = r[3].error().expect("the commit rolled back");
        assert_eq!(e.kind(), ErrorKind::TransactionRolledBack, "{e}");
        assert_eq!(e.batch_index(), Some(3), "{e}");
        assert_eq!(ids(&mut c).await, Vec::<i64>::new());
    }
}
