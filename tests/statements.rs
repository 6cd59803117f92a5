//! Prepared statements: never decoded with a description that no longer holds, and never
//! left on the server beyond the cache's capacity (plus one pending Close), whatever the
//! caller does (refused requests, dropped futures, timeouts, `DEALLOCATE ALL`).

mod common;

use std::time::Duration;

use common::poll_at_most;
use wirepool::{ConnectConfig, Connection, ErrorKind, Type};
use wirepool_testkit::{cluster, Role};

async fn connect(cfg: &ConnectConfig, capacity: usize) -> Connection {
    let mut c = Connection::connect(cfg).await.unwrap();
    c.set_statement_cache_capacity(capacity);
    c
}

/// Named statements this session holds on the server (counted without preparing one).
async fn on_server(c: &mut Connection) -> usize {
    let rows = c
        .simple_query("SELECT count(*) FROM pg_prepared_statements")
        .await
        .unwrap();
    rows[0].get(0).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_statement_whose_column_type_changed_is_decoded_by_its_new_type() {
    let pg = cluster();
    let mut c = connect(&pg.config(Role::Admin), 0).await;
    c.simple_query("CREATE TABLE t (a int4); INSERT INTO t VALUES (1234)")
        .await
        .unwrap();
    let stmt = c.prepare("SELECT a FROM t").await.unwrap();
    assert_eq!(
        c.query_one(&stmt, &[]).await.unwrap().get::<_, i32>(0),
        1234
    );
    c.simple_query("ALTER TABLE t ALTER a TYPE text")
        .await
        .unwrap();
    let row = c.query_one(&stmt, &[]).await.unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::TEXT);
    assert_eq!(row.get::<_, &str>(0), "1234");
    let e = row.try_get::<_, i32>(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e}");
}

#[tokio::test]
async fn a_statement_run_under_another_search_path_is_decoded_by_what_it_reads_there() {
    let pg = cluster();
    let mut c = connect(&pg.config(Role::Admin), 0).await;
    c.simple_query(
        "CREATE SCHEMA tenant_a; CREATE TABLE tenant_a.items (x int8); INSERT INTO tenant_a.items VALUES (5);
         CREATE SCHEMA tenant_b; CREATE TABLE tenant_b.items (x float8); INSERT INTO tenant_b.items VALUES (2.5);
         SET search_path = tenant_a",
    )
    .await
    .unwrap();
    let stmt = c.prepare("SELECT x FROM items").await.unwrap();
    assert_eq!(c.query_one(&stmt, &[]).await.unwrap().get::<_, i64>(0), 5);
    c.simple_query("SET search_path = tenant_b").await.unwrap();
    let row = c.query_one(&stmt, &[]).await.unwrap();
    assert_eq!(row.get::<_, f64>(0), 2.5);
    assert!(row.try_get::<_, i64>(0).is_err());
}

#[tokio::test]
async fn closes_of_evicted_statements_survive_a_refused_request() {
    let pg = cluster();
    let mut c = connect(&pg.config(Role::Trust), 1).await;
    for i in 0..20 {
        let sql = format!("SELECT {i}::int4 + $1");
        let row = c.query_one(sql.as_str(), &[&1i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        let e = c.query("SELECT 'a\0b'", &[]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    let n = on_server(&mut c).await;
    assert!(n <= 2, "{n} statements on the server for a capacity of 1");
}

#[tokio::test]
async fn prepares_dropped_after_their_parse_leave_no_statements_behind() {
    let pg = cluster();
    let mut c = connect(&pg.config(Role::Trust), 10).await;
    let mut dropped = 0;
    for i in 0..50 {
        let sql = format!("SELECT {i}::int4 + $1");
        // Polled once on an idle connection: the Parse goes out, then the future is
        // dropped before the description arrives.
        if poll_at_most(c.prepare(&sql), 1).await.is_none() {
            dropped += 1;
        }
        // The dropped answer is read to its end (no statement is prepared by this).
        c.simple_query("SELECT 1").await.unwrap();
    }
    assert!(
        dropped > 25,
        "{dropped} of 50 prepares were dropped part-way"
    );
    // One more statement, to send the pending Closes.
    c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
    let n = on_server(&mut c).await;
    assert!(n <= 11, "{n} statements on the server for a capacity of 10");
}

#[tokio::test]
async fn a_storm_of_timed_out_queries_leaves_at_most_the_capacity() {
    let pg = cluster();
    let mut c = connect(&pg.config(Role::Trust), 10).await;
    let mut seed = 0x9e37_79b9_u64;
    let mut timed_out = 0;
    for i in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Command timeouts from 1 µs to 3 ms, around the time of a round trip: some cut
        // a prepare short, some an execution, some nothing; every third statement sleeps
        // far past the longest of them (a timer late by 60 times its limit still fires
        // first), so it always times out.
        c.set_command_timeout(Some(Duration::from_micros(1 + seed % 3000)));
        let sql = if i % 3 == 0 {
            format!("SELECT {}::int4 + $1 FROM pg_sleep(0.2)", i % 40)
        } else {
            format!("SELECT {}::int4 + $1", i % 40)
        };
        match c.query(sql.as_str(), &[&1i32]).await {
            Err(e) if e.kind() == ErrorKind::CommandTimeout => timed_out += 1,
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
    }
    assert!(timed_out >= 100, "only {timed_out} queries timed out");
    c.set_command_timeout(None);
    c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
    assert!(!c.is_broken());
    let n = on_server(&mut c).await;
    assert!(n <= 11, "{n} statements on the server for a capacity of 10");
}

#[tokio::test]
async fn deallocate_all_through_execute_empties_the_statement_cache() {
    let pg = cluster();
    let mut c = connect(&pg.config(Role::Trust), 10).await;
    c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
    c.execute("DEALLOCATE ALL", &[]).await.unwrap();
    assert_eq!(on_server(&mut c).await, 0);
    // Inside a transaction a statement the server lost would abort it (26000).
    let mut tx = c.transaction().await.unwrap();
    let row = tx.query_one("SELECT $1::int4", &[&2i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    tx.commit().await.unwrap();
}
