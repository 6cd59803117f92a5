//! wirepool behind a real PgBouncer in transaction mode (Debian's `pgbouncer`, started by
//! the test on a free loopback port): parameterized queries and batches from many tasks,
//! whose statements land on whichever server connection PgBouncer picks.

use wirepool::error::sqlstate;
use wirepool::Pool;
use wirepool_testkit::{join_all_within, Bouncer, PoolMode, Role};

async fn hammer(pool: &Pool, tasks: i32, queries: i32) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..queries {
                    let mut c = pool.acquire().await.unwrap();
                    let label = format!("task {t} query {q}");
                    let row = c
                        .query_one(
                            "SELECT $1::int4 * 2 AS doubled, $2::text AS label, $3::int8 + 1 AS next",
                            &[&q, &label, &i64::from(t)],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert_eq!(row.get::<_, i32>("doubled"), q * 2);
                    assert_eq!(row.get::<_, &str>("label"), label);
                    assert_eq!(row.get::<_, i64>("next"), i64::from(t) + 1);
                    // A second statement, so that prepared statements of many shapes are
                    // in use at once.
                    let n: i64 = c
                        .query_one("SELECT count(*) FROM generate_series(1, $1::int4)", &[&(q % 7 + 1)])
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"))
                        .get(0);
                    assert_eq!(n, i64::from(q % 7 + 1));
                }
            })
        })
        .collect();
    join_all_within(handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_with_unnamed_statements() {
    let pg = wirepool_testkit::cluster();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 5).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = bouncer.pool(&pg, 5, 20).await;
    hammer(&pool, 50, 100).await;
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.total_acquisitions, 5000);
    assert_eq!(s.statement_cache_hits, 0, "nothing is cached: {s:?}");
    // The server saw at most PgBouncer's five connections for twenty of the pool's.
    let servers: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'trust_user'")
        .unwrap()
        .parse()
        .unwrap();
    assert!(servers <= 5, "{servers}");
    pool.close().await;
    let log = bouncer.log();
    assert!(!log.contains("does not exist"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_with_the_cache_on_prepares_again_where_needed() {
    let pg = wirepool_testkit::cluster();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 3).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = Pool::builder(bouncer.config(&pg, Role::Trust))
        .min_size(2)
        .max_size(10)
        .build()
        .await
        .unwrap();
    // Outside explicit transactions, a Bind sent to a server that never saw its Parse
    // fails with 26000 and is prepared again there, transparently.
    hammer(&pool, 20, 50).await;
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, 1000);
    assert!(s.statement_cache_hits > 0, "{s:?}");
    pool.close().await;
}

/// Types not built in, looked up behind PgBouncer in transaction mode without a statement
/// cache: the lookup is an unnamed statement with its own Sync, and the statement whose
/// place it took is parsed again, on whichever server PgBouncer picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_with_custom_types() {
    use wirepool::{FromSql, ToSql};
    #[derive(Debug, Clone, Copy, PartialEq, ToSql, FromSql)]
    #[postgres(name = "traffic_light")]
    enum Light {
        #[postgres(name = "red")]
        Red,
        #[postgres(name = "amber")]
        Amber,
        #[postgres(name = "green")]
        Green,
    }
    let pg = wirepool_testkit::cluster();
    pg.psql("CREATE TYPE traffic_light AS ENUM ('red', 'amber', 'green'); CREATE EXTENSION hstore")
        .unwrap();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 3).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = bouncer.pool(&pg, 2, 8).await;
    let lights = [Light::Red, Light::Amber, Light::Green];
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..50usize {
                    let mut c = pool.acquire().await.unwrap();
                    let light = lights[(t + q) % 3];
                    let row = c
                        .query_one(
                            "SELECT $1::traffic_light AS l, ARRAY[$1::traffic_light] AS ls, \
                             hstore('k', $2::text) AS h",
                            &[&light, &format!("{t}/{q}")],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("task {t} query {q}: {e}"));
                    assert_eq!(row.get::<_, Light>("l"), light);
                    assert_eq!(row.get::<_, Vec<Light>>("ls"), [light]);
                    let h: std::collections::HashMap<String, Option<String>> = row.get("h");
                    assert_eq!(h["k"].as_deref(), Some(&*format!("{t}/{q}")));
                }
            })
        })
        .collect();
    join_all_within(handles).await;
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.total_acquisitions, 400);
    pool.close().await;
}

/// The shared path behind PgBouncer in transaction mode: pipelined statements, each its own
/// transaction (its own Sync), unnamed (no statement cache), on whichever server PgBouncer
/// picks; an error in one leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_shared_path() {
    let pg = wirepool_testkit::cluster();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 3).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = bouncer.pool(&pg, 2, 6).await;
    let handles: Vec<_> = (0..40)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..100i32 {
                    if q % 10 == 3 {
                        let e = pool
                            .query_one("SELECT 1 / $1::int4", &[&0i32])
                            .await
                            .unwrap_err();
                        assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO), "{e}");
                        continue;
                    }
                    let label = format!("{t}/{q}");
                    let row = pool
                        .query_one("SELECT $1::int4 * 2 AS d, $2::text AS l", &[&q, &label])
                        .await
                        .unwrap_or_else(|e| panic!("task {t} query {q}: {e}"));
                    assert_eq!(row.get::<_, i32>("d"), q * 2);
                    assert_eq!(row.get::<_, &str>("l"), label);
                }
            })
        })
        .collect();
    join_all_within(handles).await;
    let s = pool.statistics();
    assert!(s.pipelined_statements >= 4000, "{s:?}");
    pool.close().await;
    let log = bouncer.log();
    assert!(!log.contains("does not exist"), "{log}");
}

/// Statements not proven clean (they name a table) are followed on the shared path by the
/// session reset; behind PgBouncer in transaction mode, with the statement cache off (as
/// this setup wants), it goes out unnamed with them, and no answer is lost to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_shared_path_with_the_reset_between_statements() {
    let pg = wirepool_testkit::cluster();
    pg.psql(
        "CREATE TABLE bt (id int4 PRIMARY KEY, v text); \
         INSERT INTO bt SELECT g, 'v' || g FROM generate_series(1, 100) g; \
         GRANT SELECT ON bt TO PUBLIC",
    )
    .unwrap();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 3).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = bouncer.pool(&pg, 2, 6).await;
    let handles: Vec<_> = (0..20)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..50i32 {
                    let id = (t * 50 + q) % 100 + 1;
                    let row = pool
                        .query_one("SELECT v FROM bt WHERE id = $1", &[&id])
                        .await
                        .unwrap_or_else(|e| panic!("task {t} query {q}: {e}"));
                    assert_eq!(row.get::<_, String>(0), format!("v{id}"));
                }
            })
        })
        .collect();
    join_all_within(handles).await;
    let s = pool.statistics();
    assert_eq!(s.pipelined_session_changes, 0);
    assert!(s.pipelined_statements >= 1000);
    pool.close().await;
}

/// Batches behind PgBouncer in transaction mode, with the statement cache off: an atomic
/// pool batch is one transaction (one Sync) and so stays on one server connection; an
/// independent one is a transaction per statement; a failing statement in the middle
/// names its index; a batch and `execute_many` on a checked-out connection, inside a
/// transaction too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_batches() {
    let pg = wirepool_testkit::cluster();
    pg.psql("CREATE TABLE bb (id int8 PRIMARY KEY, task int4, v text); GRANT ALL ON bb TO PUBLIC")
        .unwrap();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 3).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = bouncer.pool(&pg, 2, 6).await;
    const INSERT: &str = "INSERT INTO bb (id, task, v) VALUES ($1, $2, $3)";
    let handles: Vec<_> = (0..20i32)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..20i64 {
                    let id = i64::from(t) * 1000 + q * 2;
                    let next = id + 1;
                    if q % 5 == 4 {
                        // The second statement repeats an id already there: nothing applies.
                        let before = id - 2;
                        let e = pool
                            .batch()
                            .execute(INSERT, &[&id, &t, &"x"])
                            .execute(INSERT, &[&before, &t, &"dup"])
                            .run()
                            .await
                            .unwrap_err();
                        assert_eq!(e.batch_index(), Some(1), "{e}");
                        assert_eq!(e.code(), Some(sqlstate::UNIQUE_VIOLATION), "{e}");
                        continue;
                    }
                    let r = pool
                        .batch()
                        .execute(INSERT, &[&id, &t, &"a"])
                        .execute(INSERT, &[&next, &t, &"b"])
                        .query(
                            "SELECT v FROM bb WHERE id IN ($1, $2) ORDER BY id",
                            &[&id, &next],
                        )
                        .run()
                        .await
                        .unwrap_or_else(|e| panic!("task {t} batch {q}: {e}"));
                    assert_eq!((r[0].count(), r[1].count()), (1, 1));
                    let v: Vec<String> = r[2].rows().unwrap().iter().map(|r| r.get(0)).collect();
                    assert_eq!(v, ["a", "b"], "one transaction sees its own rows");
                }
                // Independent: each statement alone, the failing one named.
                let (a, dup) = (i64::from(t) * 1000 + 900, i64::from(t) * 1000);
                let r = pool
                    .batch()
                    .atomic(false)
                    .execute(INSERT, &[&a, &t, &"i"])
                    .execute(INSERT, &[&dup, &t, &"dup"])
                    .query("SELECT count(*) FROM bb WHERE task = $1", &[&t])
                    .run()
                    .await
                    .unwrap();
                assert_eq!(r[0].count(), 1);
                assert_eq!(r[1].error().and_then(|e| e.batch_index()), Some(1));
                assert!(r[2].rows().is_some());
            })
        })
        .collect();
    join_all_within(handles).await;
    // 16 atomic batches of 2 rows and one independent row per task.
    let n: i64 = pool
        .query_one("SELECT count(*) FROM bb", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20 * (16 * 2 + 1));
    // On a checked-out connection: execute_many atomically, and a batch inside a
    // transaction that is rolled back with it.
    let mut c = pool.acquire().await.unwrap();
    let added = c
        .execute_many(INSERT, (0..10_000i64).map(|i| (100_000 + i, -1i32, "m")))
        .await
        .unwrap();
    assert_eq!(added, 10_000);
    c.batch_execute("BEGIN").await.unwrap();
    let r = c
        .batch()
        .execute("DELETE FROM bb WHERE task = $1", &[&-1i32])
        .query("SELECT count(*) FROM bb WHERE task = $1", &[&-1i32])
        .run()
        .await
        .unwrap();
    assert_eq!(r[0].count(), 10_000);
    assert_eq!(r[1].rows().unwrap()[0].get::<_, i64>(0), 0);
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM bb WHERE task = -1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 10_000,
        "the batch was part of the transaction rolled back"
    );
    drop(c);
    pool.close().await;
    let log = bouncer.log();
    assert!(!log.contains("does not exist"), "{log}");
}
