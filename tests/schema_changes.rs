//! A pipelined statement (`pool.query_one`) run again after the schema under it changed:
//! a column's type altered, a column dropped and added again with another type, and a
//! role's `search_path` changed so that the same text names another table. Each with the
//! statement cache on (the default) and off (`statement_cache_capacity(0)`), and on a
//! connection that had not prepared the statement as well as on the one that had. The
//! answer must be the right value or a clear error, never the new bytes read with the old
//! description (an `int4` 1069547520 for a `float4` 1.5).
//!
//! How a connection that had not prepared the statement is forced, within the same pool:
//! the pool has `max_size` 1 and a `max_lifetime` of 1 s (with the fast monitor of
//! `fast_config()`), so its one connection is retired once idle past a second and
//! replaced; after the schema change the test waits until `SELECT pg_backend_pid()` on
//! the shared path answers a process id other than every one seen up to the first run of
//! the statement, so the second run is on a backend opened after the first had finished.
//! For the "same connection" variants there is no lifetime and the process id is checked
//! to be unchanged.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wirepool::{Error, Pool};
use wirepool_testkit::{cluster, fast_config, Cluster, Role, PATIENCE};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cache {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Conn {
    /// The second run is on a connection opened after the first run.
    New,
    /// Both runs are on the one connection.
    Same,
}

async fn pool(pg: &Cluster, role: Role, cache: Cache, conn: Conn) -> Pool {
    let mut b = Pool::builder(pg.config(role))
        .config(fast_config())
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10));
    if cache == Cache::Off {
        b = b.statement_cache_capacity(0);
    }
    b = b.max_lifetime(match conn {
        Conn::New => Some(Duration::from_secs(1)),
        Conn::Same => None,
    });
    b.build().await.unwrap()
}

async fn backend(pool: &Pool) -> i32 {
    pool.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the shared path runs on a backend none of `seen` is.
async fn wait_for_a_new_backend(pool: &Pool, seen: &HashSet<i32>) -> i32 {
    let t = Instant::now();
    loop {
        let pid = backend(pool).await;
        if !seen.contains(&pid) {
            return pid;
        }
        assert!(
            t.elapsed() < PATIENCE,
            "test set-up: the pool's connection (max_lifetime 1 s) was not replaced within {PATIENCE:?}"
        );
        // Long enough for the connection to go back to the pool idle and be retired.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `first`, changes the schema with `change` (as the superuser, through psql), makes
/// sure of the connection the second run gets, and returns the second run's answer.
async fn across_a_change(
    pg: &Cluster,
    pool: &Pool,
    conn: Conn,
    sql: &str,
    check_first: impl FnOnce(&wirepool::Row),
    change: &str,
) -> Result<wirepool::Row, Error> {
    let mut seen = HashSet::new();
    seen.insert(backend(pool).await);
    let first = pool.query_one(sql, &[]).await.unwrap();
    check_first(&first);
    let after_first = backend(pool).await;
    seen.insert(after_first);
    pg.psql(change).unwrap();
    match conn {
        Conn::New => {
            wait_for_a_new_backend(pool, &seen).await;
        }
        Conn::Same => assert_eq!(
            backend(pool).await,
            after_first,
            "test set-up: the one connection was replaced (no max_lifetime)"
        ),
    }
    let second = pool.query_one(sql, &[]).await;
    if conn == Conn::Same {
        let now = backend(pool).await;
        if now != after_first {
            println!("note: the pool replaced its connection after the second run");
        }
    }
    second
}

async fn altered_column_type(cache: Cache, conn: Conn) {
    let pg = cluster();
    pg.psql("CREATE TABLE t (a int4); INSERT INTO t VALUES (1)")
        .unwrap();
    let pool = pool(&pg, Role::Admin, cache, conn).await;
    let second = across_a_change(
        &pg,
        &pool,
        conn,
        "SELECT a FROM t",
        |row| assert_eq!(row.get::<_, i32>(0), 1),
        "ALTER TABLE t ALTER COLUMN a TYPE float4 USING a + 0.5",
    )
    .await;
    let row = second.unwrap_or_else(|e| {
        panic!(
            "cache {cache:?}, {conn:?} connection: `SELECT a FROM t` after the column became \
             float4 failed: {e} (kind {:?}, SQLSTATE {:?})",
            e.kind(),
            e.code()
        )
    });
    let as_f32 = row.try_get::<_, f32>(0);
    let as_i32 = row.try_get::<_, i32>(0);
    assert!(
        matches!(as_f32, Ok(v) if v == 1.5) && as_i32.is_err(),
        "cache {cache:?}, {conn:?} connection: `SELECT a FROM t` after ALTER ... TYPE float4 \
         must read 1.5 as f32 and fail as i32; read as f32: {as_f32:?}, as i32: {as_i32:?} \
         (column described as {:?})",
        row.columns().first().map(|c| c.type_().name().to_string())
    );
    pool.close().await;
}

async fn dropped_and_added_column(cache: Cache, conn: Conn) {
    let pg = cluster();
    pg.psql("CREATE TABLE t (a int4, b int4); INSERT INTO t VALUES (1, 2)")
        .unwrap();
    let pool = pool(&pg, Role::Admin, cache, conn).await;
    let second = across_a_change(
        &pg,
        &pool,
        conn,
        "SELECT * FROM t",
        |row| {
            assert_eq!(row.len(), 2);
            assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (1, 2));
        },
        "ALTER TABLE t DROP COLUMN b; ALTER TABLE t ADD COLUMN b text; UPDATE t SET b = 'two'",
    )
    .await;
    let row = second.unwrap_or_else(|e| {
        panic!(
            "cache {cache:?}, {conn:?} connection: `SELECT * FROM t` after b was dropped and \
             added as text failed: {e} (kind {:?}, SQLSTATE {:?})",
            e.kind(),
            e.code()
        )
    });
    let a = row.try_get::<_, i32>(0);
    let b_text = row.try_get::<_, String>(1);
    let b_int = row.try_get::<_, i32>(1);
    assert!(
        row.len() == 2
            && matches!(a, Ok(1))
            && matches!(b_text.as_deref(), Ok("two"))
            && b_int.is_err(),
        "cache {cache:?}, {conn:?} connection: `SELECT * FROM t` after b became text must read \
         (1, \"two\") with b failing as i32; {} columns, a: {a:?}, b as text: {b_text:?}, b as \
         i32: {b_int:?}",
        row.len()
    );
    pool.close().await;
}

/// `SELECT x FROM tbl` where the role's search_path moves from s1 (x int4 = 7) to s2
/// (x text = 'seven') between two runs; the second on a new connection, which starts
/// with the new search_path.
async fn search_path_of_new_connections(cache: Cache) {
    let pg = cluster();
    pg.psql(
        "CREATE SCHEMA s1; CREATE SCHEMA s2; \
         CREATE TABLE s1.tbl (x int4); INSERT INTO s1.tbl VALUES (7); \
         CREATE TABLE s2.tbl (x text); INSERT INTO s2.tbl VALUES ('seven'); \
         GRANT USAGE ON SCHEMA s1, s2 TO trust_user; \
         GRANT SELECT ON s1.tbl, s2.tbl TO trust_user; \
         ALTER ROLE trust_user SET search_path = s1",
    )
    .unwrap();
    let pool = pool(&pg, Role::Trust, cache, Conn::New).await;
    let second = across_a_change(
        &pg,
        &pool,
        Conn::New,
        "SELECT x FROM tbl",
        |row| assert_eq!(row.get::<_, i32>(0), 7),
        "ALTER ROLE trust_user SET search_path = s2",
    )
    .await;
    let path: String = pool
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        path, "s2",
        "test set-up: the new connection has the role's new search_path"
    );
    match second {
        // A clear error is acceptable (the statement's result changed type).
        Err(e) => println!(
            "cache {cache:?}: `SELECT x FROM tbl` after the search_path change: {e} (kind {:?})",
            e.kind()
        ),
        Ok(row) => {
            let as_text = row.try_get::<_, String>(0);
            let as_int = row.try_get::<_, i32>(0);
            assert!(
                matches!(as_text.as_deref(), Ok("seven")) && as_int.is_err(),
                "cache {cache:?}: `SELECT x FROM tbl` now naming s2.tbl (x text = 'seven') must \
                 read \"seven\" as text and fail as i32; as text: {as_text:?}, as i32: {as_int:?}"
            );
        }
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_column_type_on_a_new_connection_with_the_statement_cache() {
    altered_column_type(Cache::On, Conn::New).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_column_type_on_a_new_connection_without_the_statement_cache() {
    altered_column_type(Cache::Off, Conn::New).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_column_type_on_the_same_connection_with_the_statement_cache() {
    altered_column_type(Cache::On, Conn::Same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_column_type_on_the_same_connection_without_the_statement_cache() {
    altered_column_type(Cache::Off, Conn::Same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_added_column_on_a_new_connection_with_the_statement_cache() {
    dropped_and_added_column(Cache::On, Conn::New).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_added_column_on_a_new_connection_without_the_statement_cache() {
    dropped_and_added_column(Cache::Off, Conn::New).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_added_column_on_the_same_connection_with_the_statement_cache() {
    dropped_and_added_column(Cache::On, Conn::Same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_added_column_on_the_same_connection_without_the_statement_cache() {
    dropped_and_added_column(Cache::Off, Conn::Same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_change_for_new_connections_with_the_statement_cache() {
    search_path_of_new_connections(Cache::On).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_change_for_new_connections_without_the_statement_cache() {
    search_path_of_new_connections(Cache::Off).await;
}
