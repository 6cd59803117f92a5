//! Parameterized queries against a real server: typed values both ways, injection-proof
//! parameters, typed errors that leave the connection usable, the statement cache and its
//! re-prepare, transactions, connect hooks, the command timeout on every query method, and
//! a pooled connection dropped in the middle of an extended query.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{Connection, ErrorKind, Pool, ToSql, TransactionStatus, Type};
use wirepool_testkit::{cluster, Cluster, Role};

/// The superuser: these tests create tables.
async fn connect(pg: &Cluster) -> Connection {
    Connection::connect(&pg.config(Role::Admin)).await.unwrap()
}

/// `SELECT $1::<ty>` with `value`, read back as the same Rust type.
async fn round_trip<T>(c: &mut Connection, ty: &str, value: T)
where
    T: ToSql + Sync + for<'a> wirepool::FromSql<'a> + PartialEq + std::fmt::Debug,
{
    let row = c
        .query_one(&format!("SELECT $1::{ty}"), &[&value])
        .await
        .unwrap_or_else(|e| panic!("{ty}: {e}"));
    let back: T = row.get(0);
    assert_eq!(back, value, "{ty}");
}

#[tokio::test]
async fn typed_values_round_trip() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    round_trip(&mut c, "bool", true).await;
    round_trip(&mut c, "int2", -12i16).await;
    round_trip(&mut c, "int4", i32::MIN).await;
    round_trip(&mut c, "int8", i64::MAX).await;
    round_trip(&mut c, "float4", 1.5f32).await;
    round_trip(&mut c, "float8", -2.25e300f64).await;
    round_trip(&mut c, "text", "żółw ✓ 'quoted'".to_string()).await;
    round_trip(&mut c, "varchar", String::new()).await;
    round_trip(&mut c, "bytea", vec![0u8, 1, 2, 255, 0]).await;
    round_trip(&mut c, "int4", None::<i32>).await;
    round_trip(&mut c, "text", Some("x".to_string())).await;
    round_trip(&mut c, "int4[]", vec![1i32, -2, 3]).await;
    round_trip(
        &mut c,
        "text[]",
        vec!["a".to_string(), "".into(), "c d".into()],
    )
    .await;
    round_trip(
        &mut c,
        "uuid",
        uuid::Uuid::parse_str("6f7b3c2e-0d1a-4e5f-9a8b-1c2d3e4f5a6b").unwrap(),
    )
    .await;
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-27T14:30:00.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    round_trip(&mut c, "timestamptz", t).await;
    round_trip(
        &mut c,
        "date",
        chrono::NaiveDate::from_ymd_opt(2000, 2, 29).unwrap(),
    )
    .await;
    let doc = serde_json::json!({"a": [1, 2, {"b": null}], "s": "x\"y"});
    round_trip(&mut c, "jsonb", doc).await;

    // numeric, through text (no decimal crate is built in).
    let row = c
        .query_one(
            "SELECT ($1::text)::numeric * 2 AS n, ($1::text)::numeric::text AS t",
            &[&"12345678901234567890.125"],
        )
        .await
        .unwrap();
    let n: String = c
        .query_one("SELECT ($1::text)::numeric::text", &[&"0.1"])
        .await
        .map(|r| r.get(0))
        .unwrap();
    assert_eq!(n, "0.1");
    let t: &str = row.get("t");
    assert_eq!(t, "12345678901234567890.125");
    assert_eq!(row.columns()[0].name(), "n");
    assert_eq!(row.columns()[0].type_(), &Type::NUMERIC);
    assert_eq!(row.columns()[1].type_oid(), Type::TEXT.oid());

    // Several rows, by name and index, NULL as Option.
    let rows = c
        .query(
            "SELECT g AS id, CASE WHEN g % 2 = 0 THEN NULL ELSE 'odd' END AS label FROM generate_series(1, $1) g",
            &[&5i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let labels: Vec<Option<&str>> = rows.iter().map(|r| r.get("label")).collect();
    assert_eq!(labels, [Some("odd"), None, Some("odd"), None, Some("odd")]);
    assert_eq!(rows[4].get::<_, i32>("id"), 5);
}

#[tokio::test]
async fn a_parameter_is_a_value_never_sql() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.simple_query("CREATE TABLE t (name text)").await.unwrap();
    let evil = "'; DROP TABLE t; --";
    let n = c
        .execute("INSERT INTO t (name) VALUES ($1)", &[&evil])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let back: String = c
        .query_one("SELECT name FROM t WHERE name = $1", &[&evil])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, evil);
    let rows = c
        .simple_query("SELECT count(*) FROM t")
        .await
        .expect("the table is still there");
    assert_eq!(rows[0].get(0), Some("1"));
    assert_eq!(
        c.execute("UPDATE t SET name = $1", &[&"ok"]).await.unwrap(),
        1
    );
    assert_eq!(c.execute("DELETE FROM t", &[]).await.unwrap(), 1);
}

/// Each failure is typed, and the next query on the same connection answers correctly.
#[tokio::test]
async fn errors_are_typed_and_the_connection_stays_usable() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    async fn still_fine(c: &mut Connection) {
        let v: i32 = c
            .query_one("SELECT $1::int4 + 1", &[&41i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 42);
        assert_eq!(c.transaction_status(), TransactionStatus::Idle);
        assert!(!c.is_busy() && !c.is_broken());
    }

    let e = c
        .query("SELECT $1::int4, $2::int4", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    assert!(
        e.to_string().contains("2 parameters, 1 value was given"),
        "{e}"
    );
    still_fine(&mut c).await;

    let e = c.query("SELECT $1::int4", &[&"text"]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e:?}");
    assert!(e.to_string().contains("$1 (of type int4)"), "{e}");
    still_fine(&mut c).await;

    let row = c.query_one("SELECT 'abc'::text", &[]).await.unwrap();
    let e = row.try_get::<_, i32>(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e:?}");
    assert!(e.to_string().contains("text"), "{e}");
    let e = row.try_get::<_, i32>("nope").unwrap_err();
    assert!(e.to_string().contains("no column nope"), "{e}");
    let null = c.query_one("SELECT NULL::int4", &[]).await.unwrap();
    assert_eq!(
        null.try_get::<_, i32>(0).unwrap_err().kind(),
        ErrorKind::Conversion
    );
    assert_eq!(null.get::<_, Option<i32>>(0), None);

    let e = c.query("SELEKT 1", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::SYNTAX_ERROR), "{e:?}");
    still_fine(&mut c).await;

    let e = c.query("SELECT 1 / $1::int4", &[&0i32]).await.unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO), "{e:?}");
    still_fine(&mut c).await;

    let e = c.query("SELECT * FROM nope", &[]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"ERROR 42P01: relation "nope" does not exist"#,
        "Display shows the SQLSTATE and the server's message"
    );
    still_fine(&mut c).await;

    let e = c.query_one("SELECT 1 WHERE false", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RowCount);
    let e = c
        .query_opt("SELECT generate_series(1, 2)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RowCount);
    assert!(c
        .query_opt("SELECT 1 WHERE false", &[])
        .await
        .unwrap()
        .is_none());
    still_fine(&mut c).await;
}

#[tokio::test]
async fn get_panics_with_the_column_and_both_types() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    let row = c.query_one("SELECT 'x'::text AS label", &[]).await.unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: i64 = row.get("label");
    }))
    .unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("label"), "{msg}");
    assert!(msg.contains("text") && msg.contains("i64"), "{msg}");
}

#[tokio::test]
async fn the_statement_cache_hits_and_survives_discard_and_alter() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.simple_query("CREATE TABLE items (id int, name text); INSERT INTO items VALUES (1, 'a')")
        .await
        .unwrap();
    let sql = "SELECT * FROM items WHERE id = $1";
    for _ in 0..5 {
        assert_eq!(c.query(sql, &[&1i32]).await.unwrap().len(), 1);
    }
    let s = c.statement_cache_stats();
    assert_eq!((s.misses(), s.hits()), (1, 4));

    // The server forgets every prepared statement behind the cache's back (run through the
    // extended protocol, so the cache cannot see it): the next run prepares again.
    c.execute("DEALLOCATE ALL", &[]).await.unwrap();
    assert_eq!(c.query(sql, &[&1i32]).await.unwrap().len(), 1);
    c.execute("DISCARD ALL", &[]).await.unwrap();
    assert_eq!(c.query(sql, &[&1i32]).await.unwrap().len(), 1);
    // Through the simple protocol, the cache sees it and forgets too.
    c.simple_query("DISCARD ALL").await.unwrap();
    assert_eq!(c.query(sql, &[&1i32]).await.unwrap().len(), 1);
    // Even when a later statement of the same string fails: DEALLOCATE is not undone by
    // the rollback. Inside a transaction, a statement the server no longer knows could
    // not be prepared again transparently (the error aborts the transaction).
    let e = c
        .simple_query("DEALLOCATE ALL; SELECT 1/0")
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::DIVISION_BY_ZERO),
        "{e:?}"
    );
    c.simple_query("BEGIN").await.unwrap();
    assert_eq!(c.query(sql, &[&1i32]).await.unwrap().len(), 1);
    c.simple_query("COMMIT").await.unwrap();

    // The result type of a cached statement changes: prepared again, new columns.
    c.simple_query("ALTER TABLE items ADD COLUMN price int DEFAULT 7")
        .await
        .unwrap();
    let row = c.query_one(sql, &[&1i32]).await.unwrap();
    assert_eq!(row.len(), 3);
    assert_eq!(row.get::<_, i32>("price"), 7);
    c.simple_query("ALTER TABLE items ALTER COLUMN name TYPE varchar(10)")
        .await
        .unwrap();
    let row = c.query_one(sql, &[&1i32]).await.unwrap();
    assert_eq!(row.columns()[1].type_(), &Type::VARCHAR);

    // A prepared Statement stays usable whatever the cache does.
    let st = c.prepare("SELECT $1::int4 * 2").await.unwrap();
    assert_eq!(st.params(), &[Type::INT4]);
    assert_eq!(st.columns().len(), 1);
    c.set_statement_cache_capacity(0);
    assert_eq!(
        c.query_one(&st, &[&21i32]).await.unwrap().get::<_, i32>(0),
        42
    );
    c.set_statement_cache_capacity(1);
    for i in 0..3i32 {
        let v: i32 = c
            .query_one(&format!("SELECT $1::int4 + {i}"), &[&1i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 1 + i);
    }
    assert_eq!(
        c.query_one(&st, &[&5i32]).await.unwrap().get::<_, i32>(0),
        10
    );
    let statements: i64 = c
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        statements <= 2,
        "evicted statements are closed on the server: {statements}"
    );
}

#[tokio::test]
async fn transactions_commit_roll_back_and_roll_back_when_dropped() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    c.simple_query("CREATE TABLE acct (id int PRIMARY KEY, balance int)")
        .await
        .unwrap();
    let tx = c.transaction().await.unwrap();
    let mut tx = tx;
    tx.execute("INSERT INTO acct VALUES ($1, $2)", &[&1i32, &100i32])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = c.transaction().await.unwrap();
    tx.execute("UPDATE acct SET balance = 0", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    {
        let mut tx = c.transaction().await.unwrap();
        tx.execute("UPDATE acct SET balance = -1", &[])
            .await
            .unwrap();
        // Dropped: an early return with `?`, say.
    }
    let balance: i32 = c
        .query_one("SELECT balance FROM acct WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(balance, 100);
    assert_eq!(c.transaction_status(), TransactionStatus::Idle);

    // A failed statement aborts the transaction; commit then rolls it back.
    let mut tx = c.transaction().await.unwrap();
    let e = tx
        .execute("INSERT INTO acct VALUES ($1, $2)", &[&1i32, &5i32])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::UNIQUE_VIOLATION));
    let e = tx.commit().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TransactionRolledBack, "{e}");
    assert_eq!(c.transaction_status(), TransactionStatus::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_transactions_and_guards_dropped_mid_query_never_leak() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 1).await;
    pool.acquire()
        .await
        .unwrap()
        .simple_query("CREATE TABLE k (v int)")
        .await
        .unwrap();
    {
        let mut g = pool.acquire().await.unwrap();
        let mut tx = g.transaction().await.unwrap();
        tx.execute("INSERT INTO k VALUES ($1)", &[&1i32])
            .await
            .unwrap();
        // Both dropped uncommitted.
    }
    let sql = "SELECT g, repeat('x', 100) FROM generate_series(1, $1) g";
    for polls in [1usize, 2, 3, 5, 8, 13] {
        let mut g = pool.acquire().await.unwrap();
        {
            // Cut off between the two exchanges, or while rows stream in.
            let mut fut = pin!(g.query(sql, &[&200_000i32]));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                    r.unwrap();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        drop(g);
        let mut g = pool.acquire().await.unwrap();
        assert_eq!(g.transaction_status(), TransactionStatus::Idle);
        assert!(!g.is_busy());
        let v: i32 = g
            .query_one("SELECT $1::int4", &[&7i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 7);
        let n: i64 = g
            .query_one("SELECT count(*) FROM k", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "the dropped transaction was rolled back");
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.connections_created, 1, "every reset succeeded: {s:?}");
    assert!(s.statement_cache_hits > 0, "{s:?}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_timeout_bounds_every_query_method_on_a_pooled_connection() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .max_size(2)
        .command_timeout(Some(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    let mut g = pool.acquire().await.unwrap();
    let e = g.simple_query("SELECT pg_sleep(10)").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e:?}");
    let e = g.query("SELECT pg_sleep($1)", &[&10f64]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e:?}");
    let e = g.execute("SELECT pg_sleep(10)", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e:?}");
    {
        let mut tx = g.transaction().await.unwrap();
        let e = tx.query_one("SELECT pg_sleep(10)", &[]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e:?}");
    }
    // Cancelled, not broken: the connection answers again.
    let v: i32 = g.query_one("SELECT 5", &[]).await.unwrap().get(0);
    assert_eq!(v, 5);
    drop(g);
    let s = pool.statistics();
    assert_eq!(
        s.errors_of(wirepool::observe::ErrorType::CommandTimeout),
        4,
        "{s:?}"
    );
    // A detached connection has no pool limits.
    let mut c = pool.acquire().await.unwrap().detach();
    assert_eq!(c.command_timeout(), None);
    c.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_hooks_run_on_every_new_connection() {
    let pg = cluster();
    pg.psql("CREATE SCHEMA app; CREATE TABLE app.only_here (x int); INSERT INTO app.only_here VALUES (3)")
        .unwrap();
    let pool = Pool::builder(pg.config(Role::Admin))
        .min_size(2)
        .max_size(3)
        .init_sql(["SET search_path TO app, public"])
        .after_connect(|c| {
            Box::pin(async move {
                c.execute(
                    "SELECT set_config('application_name', $1, false)",
                    &[&"hooked"],
                )
                .await?;
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    for g in &mut held {
        let x: i32 = g
            .query_one("SELECT x FROM only_here", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(x, 3);
        let name: String = g
            .query_one("SELECT current_setting('application_name')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(name, "hooked");
    }
    drop(held);
    pool.close().await;

    // A failing hook: the connection is not used, and the error is the hook's.
    let e = Pool::builder(pg.config(Role::Trust))
        .init_sql(["SET no_such_setting = 1"])
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::UNDEFINED_OBJECT), "{e:?}");
}

#[tokio::test]
async fn a_statement_can_be_passed_where_sql_is() {
    let pg = cluster();
    let mut c = connect(&pg).await;
    let st = c.prepare("SELECT $1::text || $2::text").await.unwrap();
    assert_eq!(st.params(), &[Type::TEXT, Type::TEXT]);
    let s: String = c.query_one(&st, &[&"a", &"b"]).await.unwrap().get(0);
    assert_eq!(s, "ab");
    let owned = String::from("SELECT $1::int8");
    let v: i64 = c.query_one(&owned, &[&9i64]).await.unwrap().get(0);
    assert_eq!(v, 9);
}

#[tokio::test]
async fn query_typed_runs_in_one_exchange_without_preparing() {
    let pg = wirepool_testkit::cluster();
    let mut c = wirepool::Connection::connect(&pg.config(wirepool_testkit::Role::Scram))
        .await
        .unwrap();
    let rows = c
        .query_typed(
            "SELECT $1 || $2, $3 + 1",
            &[
                (&"a", wirepool::Type::TEXT),
                (&"b", wirepool::Type::TEXT),
                (&41i64, wirepool::Type::INT8),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), "ab");
    assert_eq!(rows[0].get::<_, i64>(1), 42);
    let prepared: i64 = c
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    // Only the statement just run through `query_one` is prepared.
    assert_eq!(prepared, 1);
    // A value of the wrong type is refused before anything is sent.
    let e = c
        .query_typed("SELECT $1", &[(&1i32, wirepool::Type::TEXT)])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), wirepool::ErrorKind::Conversion, "{e}");
    // The server's error, and the connection goes on.
    let e = c
        .query_typed("SELECT 1 / $1", &[(&0i32, wirepool::Type::INT4)])
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::DIVISION_BY_ZERO)
    );
    let rows = c.query_typed("SELECT 5", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 5);
}
