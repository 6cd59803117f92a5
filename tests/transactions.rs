//! Transaction controls: serializable conflicts (40001, then a retry that succeeds),
//! read-only refusing a write (25006), savepoints and nested transactions rolled back
//! inside a committed transaction, a failed transaction's commit as an error, a commit
//! whose connection was lost after it was sent, and 10,000 notices in one statement
//! logged, not kept.

mod common;

use wirepool::error::sqlstate;
use wirepool::{Connection, ErrorKind, IsolationLevel};
use wirepool_testkit::{cluster, Role};

async fn rows(conn: &mut Connection, table: &str) -> Vec<i32> {
    conn.query(&format!("SELECT v FROM {table} ORDER BY v"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn serializable_conflict_then_a_retry_and_read_only() {
    let pg = cluster();
    let mut a = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let mut b = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    a.batch_execute("CREATE TABLE doctors (id int PRIMARY KEY, on_call bool); INSERT INTO doctors VALUES (1, true), (2, true)")
        .await
        .unwrap();
    // Write skew: each sees two on call and takes one off; serializable lets one commit.
    let take_off = "UPDATE doctors SET on_call = false WHERE id = $1 AND (SELECT count(*) FROM doctors WHERE on_call) = 2";
    let mut ta = a
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    let mut tb = b
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    ta.execute(take_off, &[&1i32]).await.unwrap();
    tb.execute(take_off, &[&2i32]).await.unwrap();
    ta.commit().await.unwrap();
    let e = match tb.execute("SELECT 1", &[]).await {
        Ok(_) => tb.commit().await.unwrap_err(),
        Err(e) => {
            drop(tb);
            e
        }
    };
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::SERIALIZATION_FAILURE),
        "{e}"
    );
    // The retry sees the committed state and succeeds (it changes nothing now).
    let mut tb = b
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    assert_eq!(tb.execute(take_off, &[&2i32]).await.unwrap(), 0);
    tb.commit().await.unwrap();
    let on_call: i64 = a
        .query_one("SELECT count(*) FROM doctors WHERE on_call", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_call, 1);

    let mut ro = a
        .build_transaction()
        .read_only(true)
        .deferrable(true)
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    let level: String = ro
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "serializable");
    let e = ro
        .execute("UPDATE doctors SET on_call = true", &[])
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::READ_ONLY_SQL_TRANSACTION),
        "{e}"
    );
    drop(ro);
    // The dropped transaction was rolled back before the next statement.
    a.execute("SELECT 1", &[]).await.unwrap();
    assert_eq!(a.transaction_status(), wirepool::TransactionStatus::Idle);
}

#[tokio::test]
async fn savepoints_nested_transactions_and_a_failed_commit() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    c.batch_execute("CREATE TEMP TABLE t (v int)")
        .await
        .unwrap();
    let mut tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    {
        let mut sp = tx.savepoint("my \"odd\" savepoint").await.unwrap();
        sp.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
        sp.rollback().await.unwrap();
    }
    tx.execute("INSERT INTO t VALUES (3)", &[]).await.unwrap();
    {
        let mut nested = tx.transaction().await.unwrap();
        nested
            .execute("INSERT INTO t VALUES (4)", &[])
            .await
            .unwrap();
        {
            let mut deeper = nested.transaction().await.unwrap();
            deeper
                .execute("INSERT INTO t VALUES (5)", &[])
                .await
                .unwrap();
            deeper.commit().await.unwrap();
        }
        // Dropped: rolled back to its savepoint, 4 and 5 with it.
    }
    {
        let mut kept = tx.transaction().await.unwrap();
        kept.execute("INSERT INTO t VALUES (6)", &[]).await.unwrap();
        // An error inside a savepoint: rolled back to it, the outer goes on.
        let e = kept
            .execute("INSERT INTO t VALUES (1/0)", &[])
            .await
            .unwrap_err();
        assert_eq!(
            e.as_db_error().map(|d| d.code()),
            Some(sqlstate::DIVISION_BY_ZERO)
        );
        kept.rollback().await.unwrap();
    }
    tx.execute("INSERT INTO t VALUES (7)", &[]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows(&mut c, "t").await, [1, 3, 7]);

    // A transaction that failed: its commit is an error, and nothing was committed.
    let mut tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (8)", &[]).await.unwrap();
    tx.execute("SELECT 1/0", &[]).await.unwrap_err();
    let e = tx.commit().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TransactionRolledBack, "{e}");
    assert_eq!(rows(&mut c, "t").await, [1, 3, 7]);
}

/// A COMMIT the server stored and could not answer: its backend is terminated while the
/// commit waits for a synchronous standby that does not exist (the commit is kept). The
/// error says the transaction may have committed, and it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_lost_after_it_was_sent_may_have_run() {
    let pg = common::commits_wait_for_a_missing_standby("c");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut admin = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let mut conn = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let pid = conn.process_id();
    let mut tx = conn.transaction().await.unwrap();
    tx.execute("INSERT INTO c VALUES (1)", &[]).await.unwrap();
    let kill = async {
        let waiting =
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'";
        loop {
            let n: i64 = admin.query_one(waiting, &[&pid]).await.unwrap().get(0);
            if n == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(60));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    };
    let (r, ()) = tokio::join!(tx.commit(), kill);
    let e = r.expect_err("the connection was lost");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while pg.psql("SELECT count(*) FROM c").unwrap().trim() != "1" {
        assert!(std::time::Instant::now() < deadline, "the commit is kept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(e.may_have_run(), Some(true), "{e}");
}

#[tokio::test]
async fn ten_thousand_notices_are_logged_not_kept() {
    let logs = common::Logs::capture();
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    c.batch_execute(
        "DO $$ BEGIN FOR i IN 1..10000 LOOP RAISE NOTICE 'notice number %', i; END LOOP; END $$",
    )
    .await
    .unwrap();
    let seen = logs.lines_with("notice number").len();
    assert_eq!(seen, 10_000, "every notice logged");
    let line = logs.lines_with("notice number 10000");
    assert!(
        line[0].1.contains(sqlstate::SUCCESSFUL_COMPLETION),
        "with its SQLSTATE: {}",
        line[0].1
    );
    let v: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 1);
}

#[tokio::test]
async fn a_conversion_error_says_its_cause_and_names_the_column_and_types() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    let row = c
        .query_one("SELECT NULL::int4 AS maybe, 7::int8 AS big", &[])
        .await
        .unwrap();
    let e = row.try_get::<_, i32>("maybe").unwrap_err();
    let text = e.to_string();
    // tokio-postgres's words first (applications match on them), then the column's name and
    // the Rust type.
    assert!(text.starts_with("error deserializing column 0: "), "{text}");
    assert!(
        text.ends_with("(column \"maybe\" of type int4, read as i32)"),
        "{text}"
    );
    assert!(text.contains("NULL"), "the cause is in the message: {text}");
    // The cause is the error's source too, and `chain` does not print it twice.
    let cause = std::error::Error::source(&e).expect("the cause is the source");
    assert!(cause.is::<postgres_types::WasNull>(), "{cause:?}");
    assert_eq!(wirepool::error::chain(&e), text, "and not repeated");
    let e = row.try_get::<_, i32>("big").unwrap_err();
    assert_eq!(
        e.to_string(),
        "error deserializing column 1: cannot convert between the Rust type `i32` and the Postgres type `int8` (column \"big\" of type int8, read as i32)"
    );
    let cause = std::error::Error::source(&e).expect("the WrongType is the source");
    assert!(cause.is::<postgres_types::WrongType>(), "{cause:?}");
    assert_eq!(wirepool::error::chain(&e), e.to_string());
    let e = row.try_get::<_, i64>(0).unwrap_err();
    assert!(
        e.to_string().starts_with("error deserializing column 0: "),
        "{e}"
    );
}
