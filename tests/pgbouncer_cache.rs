//! wirepool with its statement cache on, behind PgBouncer 1.25 in transaction mode with
//! PgBouncer's own cache of named prepared statements (`max_prepared_statements`): a
//! statement wirepool prepared once on one server connection is bound on whichever one
//! PgBouncer picks next, inside explicit transactions too, where a server that does not
//! know it would abort the transaction (as with PgBouncer 1.18, see tests/pgbouncer.rs).
//!
//! Besides the results, each test checks what only PgBouncer's cache explains: a statement
//! bound inside a transaction on a server connection other than the one it was prepared
//! on, the server never answering `prepared statement "..." does not exist` (its log), the
//! statements PgBouncer's admin console counts, what `pg_prepared_statements` shows on the
//! server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{FromSql, Pool, ToSql};
use wirepool_testkit::{join_all_within, Bouncer, BouncerOptions, Cluster, PoolMode, Role};

/// PgBouncer 1.25 in transaction mode with `server_connections` server connections and
/// `max_prepared_statements` at `cache`.
fn bouncer(pg: &Cluster, server_connections: usize, cache: usize) -> Bouncer {
    Bouncer::start_with(
        pg,
        PoolMode::Transaction,
        server_connections,
        &BouncerOptions::statement_cache(cache),
    )
    .unwrap_or_else(|e| panic!("PgBouncer 1.25: {e}"))
}

/// A pool behind `bouncer` as `trust_user` with the statement cache on (named statements).
async fn cached_pool(bouncer: &Bouncer, pg: &Cluster, min: usize, max: usize) -> Pool {
    Pool::builder(bouncer.config(pg, Role::Trust))
        .min_size(min)
        .max_size(max)
        .statement_cache_capacity(100)
        .build()
        .await
        .unwrap_or_else(|e| panic!("pool behind PgBouncer 1.25: {e}"))
}

/// PgBouncer's counters for the database `postgres` (`SHOW STATS`).
fn stats(bouncer: &Bouncer, pg: &Cluster) -> BTreeMap<String, String> {
    bouncer
        .show(pg, "STATS")
        .unwrap()
        .into_iter()
        .find(|r| r["database"] == "postgres")
        .expect("SHOW STATS has a row for postgres")
}

fn counter(stats: &BTreeMap<String, String>, name: &str) -> u64 {
    stats[name]
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The server's log lines saying a statement bound was not prepared on that server
/// connection (SQLSTATE 26000): what wirepool would otherwise prepare again, or fail on
/// inside a transaction.
fn statements_missing_on_the_server(pg: &Cluster) -> Vec<String> {
    pg.server_log()
        .lines()
        .filter(|l| l.contains("prepared statement") && l.contains("does not exist"))
        .map(String::from)
        .collect()
}

/// The server connections PgBouncer holds for `trust_user`, as the server sees them.
async fn server_sessions(admin: &mut wirepool::Connection) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = 'postgres' AND usename = 'trust_user'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A statement prepared on one server connection and bound, inside a transaction, on the
/// other (made certain: the one it was prepared on is held by another client's
/// transaction); then many parameterized queries from tasks, half inside transactions,
/// through two server connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_follow_the_client_to_another_server() {
    const Q: &str =
        "SELECT pg_backend_pid() AS pid, $1::int4 + 1 AS next, $2::text || '!' AS shout";
    let pg = wirepool_testkit::cluster();
    let bouncer = bouncer(&pg, 2, 100);
    let pool = cached_pool(&bouncer, &pg, 3, 12).await;

    let mut a = pool.acquire().await.unwrap();
    let row = a.query_one(Q, &[&1i32, &"a"]).await.unwrap();
    let prepared_on: i32 = row.get("pid");
    assert_eq!(row.get::<_, i32>("next"), 2);
    // Two other clients take both server connections in transactions; the one that is not
    // where `a` prepared Q is let go, so that `a`'s next transaction runs there.
    let mut b = pool.acquire().await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let on_b: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("BEGIN").await.unwrap();
    let on_c: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(on_b, on_c, "two server connections in use");
    assert!(
        prepared_on == on_b || prepared_on == on_c,
        "{prepared_on} {on_b} {on_c}"
    );
    let (holder, other) = if on_b == prepared_on {
        (&mut b, &mut c)
    } else {
        (&mut c, &mut b)
    };
    other.batch_execute("COMMIT").await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    let row = a
        .query_one(Q, &[&41i32, &"moved"])
        .await
        .unwrap_or_else(|e| panic!("the cached statement on another server connection: {e}"));
    assert_ne!(
        row.get::<_, i32>("pid"),
        prepared_on,
        "ran on the other server"
    );
    assert_eq!(row.get::<_, i32>("next"), 42);
    assert_eq!(row.get::<_, &str>("shout"), "moved!");
    a.batch_execute("COMMIT").await.unwrap();
    holder.batch_execute("COMMIT").await.unwrap();
    assert!(pool.statistics().statement_cache_hits >= 1);
    drop((a, b, c));

    let handles: Vec<_> = (0..12i32)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..40i32 {
                    let label = format!("task {t} query {q}");
                    if q % 2 == 0 {
                        let mut c = pool.acquire().await.unwrap();
                        c.batch_execute("BEGIN").await.unwrap();
                        let rows = c
                            .query(
                                "SELECT g AS n, $1::text || g AS label, g::float8 / $2::float8 AS part \
                                 FROM generate_series(1, $3::int4) g ORDER BY g",
                                &[&label, &4.0f64, &(q % 5 + 1)],
                            )
                            .await
                            .unwrap_or_else(|e| panic!("{label}: {e}"));
                        assert_eq!(rows.len(), usize::try_from(q % 5 + 1).unwrap());
                        for (i, r) in (1..).zip(&rows) {
                            assert_eq!(r.get::<_, i32>("n"), i);
                            assert_eq!(r.get::<_, String>("label"), format!("{label}{i}"));
                            assert_eq!(r.get::<_, f64>("part"), f64::from(i) / 4.0);
                        }
                        let row = c
                            .query_one(
                                "SELECT $1::int8 * 3 AS tripled, $2::bool AS flag, $3::text AS maybe",
                                &[&i64::from(t * 1000 + q), &(q % 4 == 0), &None::<String>],
                            )
                            .await
                            .unwrap_or_else(|e| panic!("{label}: {e}"));
                        assert_eq!(row.get::<_, i64>("tripled"), i64::from(t * 1000 + q) * 3);
                        assert_eq!(row.get::<_, bool>("flag"), q % 4 == 0);
                        assert_eq!(row.get::<_, Option<String>>("maybe"), None);
                        c.batch_execute("COMMIT").await.unwrap();
                    } else {
                        let row = pool
                            .query_one(
                                "SELECT $1::int4 * 2 AS doubled, $2::text AS label",
                                &[&q, &label],
                            )
                            .await
                            .unwrap_or_else(|e| panic!("{label}: {e}"));
                        assert_eq!(row.get::<_, i32>("doubled"), q * 2);
                        assert_eq!(row.get::<_, &str>("label"), label);
                    }
                }
            })
        })
        .collect();
    join_all_within(handles).await;

    let s = pool.statistics();
    assert!(s.statement_cache_hits >= 200, "{s:?}");
    assert_eq!(statements_missing_on_the_server(&pg), Vec::<String>::new());
    let st = stats(&bouncer, &pg);
    // 12 x 20 transactions of two bound statements, 12 x 20 on the shared path.
    assert!(counter(&st, "total_bind_count") >= 720, "{st:?}");
    assert!(counter(&st, "total_server_parse_count") >= 1, "{st:?}");
    pool.close().await;
}

/// The shared path (`pool.query_one`) with named statements: many tasks' statements
/// pipelined on a few client connections, each its own transaction on whichever of two
/// server connections PgBouncer picks; each task gets its own parameters' results, and an
/// error in one leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_named_statements_from_many_tasks() {
    let pg = wirepool_testkit::cluster();
    let bouncer = bouncer(&pg, 2, 100);
    let pool = cached_pool(&bouncer, &pg, 2, 6).await;
    let handles: Vec<_> = (0..40i32)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..100i32 {
                    let label = format!("{t}/{q}");
                    match q % 10 {
                        3 => {
                            let e = pool
                                .query_one("SELECT 1 / $1::int4", &[&0i32])
                                .await
                                .unwrap_err();
                            assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO), "{e}");
                        }
                        5 | 8 => {
                            let v: Vec<i64> = pool
                                .query_one(
                                    "SELECT ARRAY[$1::int8, $2::int8] AS v",
                                    &[&i64::from(t), &i64::from(q)],
                                )
                                .await
                                .unwrap_or_else(|e| panic!("{label}: {e}"))
                                .get("v");
                            assert_eq!(v, [i64::from(t), i64::from(q)]);
                        }
                        _ => {
                            let row = pool
                                .query_one(
                                    "SELECT $1::int4 * 2 AS d, $2::text AS l, $3::float8 + 0.5 AS f",
                                    &[&q, &label, &f64::from(t)],
                                )
                                .await
                                .unwrap_or_else(|e| panic!("{label}: {e}"));
                            assert_eq!(row.get::<_, i32>("d"), q * 2);
                            assert_eq!(row.get::<_, &str>("l"), label);
                            assert_eq!(row.get::<_, f64>("f"), f64::from(t) + 0.5);
                        }
                    }
                }
            })
        })
        .collect();
    join_all_within(handles).await;
    let s = pool.statistics();
    assert!(s.pipelined_statements >= 4000, "{s:?}");
    assert_eq!(statements_missing_on_the_server(&pg), Vec::<String>::new());
    let st = stats(&bouncer, &pg);
    // Named statements: PgBouncer saw them parsed and bound (it counts no unnamed ones; a
    // lane runs a statement unnamed while its description is still on the way).
    assert!(counter(&st, "total_client_parse_count") >= 3, "{st:?}");
    assert!(counter(&st, "total_bind_count") >= 3000, "{st:?}");
    pool.close().await;
}

#[derive(Debug, Clone, Copy, PartialEq, ToSql, FromSql)]
#[postgres(name = "signal")]
enum Signal {
    #[postgres(name = "red")]
    Red,
    #[postgres(name = "amber")]
    Amber,
    #[postgres(name = "green")]
    Green,
}

#[derive(Debug, Clone, PartialEq, ToSql, FromSql)]
#[postgres(name = "crossing")]
struct Crossing {
    name: String,
    signal: Signal,
    lanes: Option<i32>,
}

/// An enum and a composite made by the test, written and read back typed through named
/// statements, inside transactions on checked-out connections and on the shared path,
/// across two server connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_types_through_the_statement_cache() {
    let pg = wirepool_testkit::cluster();
    pg.psql(
        "CREATE TYPE signal AS ENUM ('red', 'amber', 'green'); \
         CREATE TYPE crossing AS (name text, signal signal, lanes int4); \
         CREATE TABLE crossings (id int4 PRIMARY KEY, c crossing NOT NULL, history signal[]); \
         GRANT ALL ON crossings TO PUBLIC",
    )
    .unwrap();
    let bouncer = bouncer(&pg, 2, 100);
    let pool = cached_pool(&bouncer, &pg, 2, 8).await;
    let signals = [Signal::Red, Signal::Amber, Signal::Green];
    let handles: Vec<_> = (0..8i32)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..30i32 {
                    let id = t * 100 + q;
                    let signal = signals[usize::try_from(id % 3).unwrap()];
                    let crossing = Crossing {
                        name: format!("crossing {t}/{q}"),
                        signal,
                        lanes: (q % 2 == 0).then_some(q),
                    };
                    let history = vec![signal, Signal::Red, signal];
                    let mut c = pool.acquire().await.unwrap();
                    c.batch_execute("BEGIN").await.unwrap();
                    let n = c
                        .execute(
                            "INSERT INTO crossings (id, c, history) VALUES ($1, $2, $3)",
                            &[&id, &crossing, &history],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("insert {id}: {e}"));
                    assert_eq!(n, 1);
                    let row = c
                        .query_one(
                            "SELECT c, (c).signal AS s, history FROM crossings WHERE id = $1",
                            &[&id],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("select {id}: {e}"));
                    assert_eq!(row.get::<_, Crossing>("c"), crossing);
                    assert_eq!(row.get::<_, Signal>("s"), signal);
                    assert_eq!(row.get::<_, Vec<Signal>>("history"), history);
                    c.batch_execute("COMMIT").await.unwrap();
                    drop(c);
                    // The shared path reads them back (as results: a custom-typed parameter
                    // there fails to convert with the statement cache on, PgBouncer or not).
                    let row = pool
                        .query_one(
                            "SELECT c, (c).signal AS s, history[2] AS h FROM crossings WHERE id = $1",
                            &[&id],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("shared path {id}: {e}"));
                    assert_eq!(row.get::<_, Crossing>("c"), crossing);
                    assert_eq!(row.get::<_, Signal>("s"), signal);
                    assert_eq!(row.get::<_, Signal>("h"), Signal::Red);
                }
            })
        })
        .collect();
    join_all_within(handles).await;
    let n: i64 = pool
        .query_one("SELECT count(*) FROM crossings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 240);
    assert_eq!(statements_missing_on_the_server(&pg), Vec::<String>::new());
    let st = stats(&bouncer, &pg);
    assert!(counter(&st, "total_bind_count") >= 720, "{st:?}");
    pool.close().await;
}

/// `max_prepared_statements = 2` and one server connection: five statements push the
/// first out of PgBouncer's cache (the server holds at most two, under PgBouncer's names),
/// and using it again, as text and as a `Statement`, inside a transaction, prepares it on
/// the server anew behind wirepool's back with the right results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_evicted_from_pgbouncers_cache_is_prepared_again() {
    const FIRST: &str = "SELECT $1::int4 + 100 AS v";
    const PREPARED: &str = "SELECT name, statement FROM pg_prepared_statements ORDER BY name";
    let pg = wirepool_testkit::cluster();
    let bouncer = bouncer(&pg, 1, 2);
    let pool = cached_pool(&bouncer, &pg, 1, 1).await;
    let mut c = pool.acquire().await.unwrap();
    let first = c.prepare(FIRST).await.unwrap();
    let v: i32 = c.query_one(&first, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 101);
    for k in 2..=5i32 {
        let sql = format!("SELECT $1::int4 + {} AS v", k * 100);
        let v: i32 = c.query_one(&sql, &[&k]).await.unwrap().get(0);
        assert_eq!(v, k * 101);
    }
    let before = stats(&bouncer, &pg);
    let misses_before = pool.statistics().statement_cache_misses;

    c.batch_execute("BEGIN").await.unwrap();
    let server_side = |rows: Vec<wirepool::Row>| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let on_server = server_side(c.query(PREPARED, &[]).await.unwrap());
    assert!(on_server.len() <= 2, "PgBouncer keeps two: {on_server:?}");
    assert!(
        on_server
            .iter()
            .all(|(name, _)| name.starts_with("PGBOUNCER_")),
        "prepared under PgBouncer's names: {on_server:?}"
    );
    assert!(
        !on_server.iter().any(|(_, sql)| sql == FIRST),
        "the first statement was evicted: {on_server:?}"
    );
    let v: i32 = c
        .query_one(FIRST, &[&7i32])
        .await
        .unwrap_or_else(|e| panic!("the evicted statement as text: {e}"))
        .get(0);
    assert_eq!(v, 107);
    let v: i32 = c
        .query_one(&first, &[&-100i32])
        .await
        .unwrap_or_else(|e| panic!("the evicted statement as a Statement: {e}"))
        .get(0);
    assert_eq!(v, 0);
    let on_server = server_side(c.query(PREPARED, &[]).await.unwrap());
    assert!(on_server.len() <= 2, "{on_server:?}");
    assert!(
        on_server.iter().any(|(_, sql)| sql == FIRST),
        "prepared again on the server: {on_server:?}"
    );
    c.batch_execute("COMMIT").await.unwrap();

    let after = stats(&bouncer, &pg);
    // wirepool parsed one new statement (PREPARED; its cache still had the first), and
    // PgBouncer parsed on the server that one and the first again.
    let client_parses = |s| counter(s, "total_client_parse_count");
    let server_parses = |s| counter(s, "total_server_parse_count");
    assert_eq!(pool.statistics().statement_cache_misses, misses_before + 1);
    assert_eq!(
        client_parses(&after),
        client_parses(&before) + 1,
        "{after:?}"
    );
    assert!(
        server_parses(&after) >= server_parses(&before) + 2,
        "{before:?} {after:?}"
    );
    drop(c);
    assert_eq!(statements_missing_on_the_server(&pg), Vec::<String>::new());
    pool.close().await;
}

/// Forty clients (four pools of ten connections, each held by a task) share PgBouncer's
/// three server connections: every result is right, and the server never sees more than
/// three sessions of the test's role, sampled throughout and at the end, nor PgBouncer
/// more than three server connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_clients_share_three_server_connections() {
    let pg = wirepool_testkit::cluster();
    let bouncer = bouncer(&pg, 3, 50);
    let mut pools = Vec::new();
    for _ in 0..4 {
        pools.push(cached_pool(&bouncer, &pg, 10, 10).await);
    }
    let mut admin = wirepool::Connection::connect(&pg.config(Role::Admin))
        .await
        .unwrap();
    let done = Arc::new(tokio::sync::Notify::new());
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut most = 0;
            loop {
                most = most.max(server_sessions(&mut admin).await);
                tokio::select! {
                    () = done.notified() => return (most, admin),
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    });
    // Every task holds its connection before any starts, so all forty clients are
    // connected to PgBouncer at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let handles: Vec<_> = (0..40i32)
        .map(|t| {
            let pool = pools[usize::try_from(t % 4).unwrap()].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut c = pool.acquire().await.unwrap();
                barrier.wait().await;
                for q in 0..50i32 {
                    let label = format!("client {t} query {q}");
                    let in_transaction = q % 5 == 0;
                    if in_transaction {
                        c.batch_execute("BEGIN").await.unwrap();
                    }
                    let row = c
                        .query_one(
                            "SELECT $1::int4 * 1000 + $2::int4 AS id, $3::text AS label, \
                             length($3::text) AS len",
                            &[&t, &q, &label],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert_eq!(row.get::<_, i32>("id"), t * 1000 + q);
                    assert_eq!(row.get::<_, &str>("label"), label);
                    assert_eq!(
                        row.get::<_, i32>("len"),
                        i32::try_from(label.len()).unwrap()
                    );
                    if in_transaction {
                        c.batch_execute("COMMIT").await.unwrap();
                    }
                }
            })
        })
        .collect();
    join_all_within(handles).await;
    done.notify_one();
    let (most, mut admin) = sampler.await.unwrap();
    let now = server_sessions(&mut admin).await;
    assert!((1..=3).contains(&most), "server sessions at most: {most}");
    assert!(now <= 3, "server sessions at the end: {now}");
    let servers = bouncer.show(&pg, "SERVERS").unwrap();
    assert!(
        (1..=3).contains(
            &servers
                .iter()
                .filter(|r| r["database"] == "postgres")
                .count()
        ),
        "{servers:?}"
    );
    let clients = bouncer.show(&pg, "CLIENTS").unwrap();
    let ours = clients
        .iter()
        .filter(|r| r["database"] == "postgres")
        .count();
    assert!(ours >= 40, "forty clients connected: {ours}");
    for pool in &pools {
        let s = pool.statistics();
        assert_eq!(s.total_connections, 10, "{s:?}");
        assert!(s.statement_cache_hits >= 10 * 49, "{s:?}");
    }
    assert_eq!(statements_missing_on_the_server(&pg), Vec::<String>::new());
    for pool in pools {
        pool.close().await;
    }
}
