//! The shared path against a real server: `pool.query`, `query_one`, `query_opt` and
//! `execute` pipelined on the pool's connections by many tasks at once. Every caller must
//! get its own answer or its own error, under random statements, under command timeouts
//! and dropped futures, and when the server is killed or a backend terminated; statements
//! that need a session are refused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{ErrorKind, Pool, PoolConfig};
use wirepool_testkit::{cluster, eventually, Cluster, Role};

/// A small deterministic generator (xorshift), one per task.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SCHEMA: &str = "CREATE TABLE items (id int8 PRIMARY KEY, tag text NOT NULL)";

async fn shared_pool(pg: &Cluster, cfg: PoolConfig) -> Pool {
    wirepool_testkit::pool_from(pg.config(Role::Admin), cfg).await
}

fn config(max: usize) -> PoolConfig {
    let mut c = wirepool_testkit::fast_config();
    c.min_size = 2;
    c.max_size = max;
    c
}

/// What one random statement did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ok: u64,
    expected_errors: u64,
    timed_out: u64,
}

/// One random statement with its expected outcome checked. `inserted` gets the ids of
/// rows this caller inserted (or may have, when `unsure` gets them instead).
async fn one_statement(
    pool: &Pool,
    rng: &mut Rng,
    next_id: &AtomicI64,
    inserted: &mut Vec<i64>,
    timeout: Option<Duration>,
) -> Tally {
    let kind = rng.below(10);
    let x = rng.next() as i32 >> 1;
    let run = async {
        match kind {
            // One in ten fails: division by zero, or a duplicate key.
            0 => {
                if rng.below(2) == 0 {
                    let e = pool
                        .query_one("SELECT 10 / $1::int4", &[&0i32])
                        .await
                        .unwrap_err();
                    assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO), "{e}");
                } else {
                    let e = pool
                        .execute("INSERT INTO items VALUES ($1, 'dup')", &[&0i64])
                        .await
                        .unwrap_err();
                    assert_eq!(e.code(), Some(sqlstate::UNIQUE_VIOLATION), "{e}");
                }
                Err(())
            }
            1..=3 => {
                let label = format!("label {x}");
                let row = pool
                    .query_one(
                        "SELECT $1::int4 AS v, $2::text AS s, $3::float8 AS f",
                        &[&x, &label, &0.5f64],
                    )
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>("v"), x);
                assert_eq!(row.get::<_, &str>("s"), label);
                assert_eq!(row.get::<_, f64>("f"), 0.5);
                Ok(())
            }
            4..=5 => {
                let n = rng.below(40) as i32;
                let rows = pool
                    .query(
                        "SELECT g, $2::int4 + g AS s FROM generate_series(1, $1::int4) g",
                        &[&n, &x],
                    )
                    .await
                    .unwrap();
                assert_eq!(rows.len(), n as usize);
                for (i, r) in rows.iter().enumerate() {
                    let g = i as i32 + 1;
                    assert_eq!(r.get::<_, i32>(0), g);
                    assert_eq!(r.get::<_, i32>(1), x.wrapping_add(g));
                }
                Ok(())
            }
            6..=7 => {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                inserted.push(id);
                let n = pool
                    .execute(
                        "INSERT INTO items VALUES ($1, $2)",
                        &[&id, &format!("t{id}")],
                    )
                    .await
                    .unwrap();
                assert_eq!(n, 1);
                Ok(())
            }
            _ => {
                let yes = rng.below(2) == 0;
                let row = pool
                    .query_opt("SELECT $1::int8 * 3 WHERE $2::bool", &[&i64::from(x), &yes])
                    .await
                    .unwrap();
                assert_eq!(
                    row.map(|r| r.get::<_, i64>(0)),
                    yes.then(|| i64::from(x) * 3)
                );
                Ok(())
            }
        }
    };
    let mut t = Tally::default();
    match timeout {
        None => match run.await {
            Ok(()) => t.ok += 1,
            Err(()) => t.expected_errors += 1,
        },
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(Ok(())) => t.ok += 1,
            Ok(Err(())) => t.expected_errors += 1,
            Err(_) => t.timed_out += 1,
        },
    }
    t
}

async fn load(pool: &Pool, tasks: u64, statements: u64, with_timeouts: bool) -> (Tally, Vec<i64>) {
    let next_id = Arc::new(AtomicI64::new(1));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (pool, next_id) = (pool.clone(), next_id.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(t + 1);
                let mut tally = Tally::default();
                let mut inserted = Vec::new();
                for _ in 0..statements / tasks {
                    // A tenth get a 1 ms timeout: dropped in the queue, in flight, or
                    // answered in time.
                    let limit =
                        (with_timeouts && rng.below(10) == 0).then(|| Duration::from_millis(1));
                    let r = one_statement(&pool, &mut rng, &next_id, &mut inserted, limit).await;
                    tally.ok += r.ok;
                    tally.expected_errors += r.expected_errors;
                    tally.timed_out += r.timed_out;
                }
                (tally, inserted)
            })
        })
        .collect();
    let mut all = Tally::default();
    let mut ids = Vec::new();
    for h in handles {
        let (t, i) = tokio::time::timeout(Duration::from_secs(300), h)
            .await
            .expect("no hang")
            .unwrap();
        all.ok += t.ok;
        all.expected_errors += t.expected_errors;
        all.timed_out += t.timed_out;
        ids.extend(i);
    }
    (all, ids)
}

/// Every connection back in the pool, none of them dirty or inside a transaction.
async fn all_returned_and_clean(pool: &Pool, pg: &Cluster) {
    eventually("the lanes give their connections back", || {
        let s = pool.statistics();
        s.active_connections == 0 && s.total_acquisitions == s.total_releases
    })
    .await;
    let s = pool.statistics();
    assert_eq!(s.statements_in_flight, 0, "{s:?}");
    assert_eq!(s.pipelined_connections, 0, "{s:?}");
    let busy = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'wirepool_admin' AND state <> 'idle' AND pid <> pg_backend_pid()")
        .unwrap();
    assert_eq!(busy, "0", "every session of the pool is idle");
    let mut c = pool.acquire().await.unwrap();
    let r = c
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "\"$user\", public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_random_statements_from_two_hundred_tasks() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    pg.psql("INSERT INTO items VALUES (0, 'the duplicate')")
        .unwrap();
    let pool = shared_pool(&pg, config(10)).await;
    let (t, ids) = load(&pool, 200, 50_000, false).await;
    assert_eq!(t.ok + t.expected_errors, 50_000);
    assert!(t.expected_errors > 3_000, "{t:?}");
    let s = pool.statistics();
    assert!(s.pipelined_statements >= 50_000, "{s:?}");
    // Every insert is there, and nothing else.
    let n: i64 = pool
        .query_one("SELECT count(*) FROM items WHERE id > 0", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, ids.len());
    all_returned_and_clean(&pool, &pg).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ms_timeouts_on_a_tenth_never_cost_another_caller_its_answer() {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    pg.psql("INSERT INTO items VALUES (0, 'the duplicate')")
        .unwrap();
    let pool = shared_pool(&pg, config(6)).await;
    // Every statement not given a timeout gets its own answer: one_statement asserts it,
    // and a cancel that hit it would fail it with 57014.
    let (t, _) = load(&pool, 200, 20_000, true).await;
    assert_eq!(t.ok + t.expected_errors + t.timed_out, 20_000);
    assert!(t.timed_out > 0, "some statements timed out: {t:?}");
    // Slow statements abandoned in flight are cancelled once nothing else runs beside
    // them; the connection stays usable.
    for _ in 0..20 {
        let r = tokio::time::timeout(
            Duration::from_millis(20),
            pool.query_one("SELECT pg_sleep(5)", &[]),
        )
        .await;
        assert!(r.is_err());
    }
    let v: i32 = pool
        .query_one("SELECT $1::int4", &[&7i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7);
    eventually("the abandoned sleeps are cancelled", || {
        pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' AND state = 'active'")
            .is_ok_and(|n| n == "0")
    })
    .await;
    // The pool's own command timeout: the same, as an error.
    let mut cfg = config(2);
    cfg.command_timeout = Some(Duration::from_millis(100));
    let short = shared_pool(&pg, cfg).await;
    let e = short
        .query_one("SELECT pg_sleep(3)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e}");
    let v: i32 = short.query_one("SELECT 3::int4", &[]).await.unwrap().get(0);
    assert_eq!(v, 3);
    short.close().await;
    all_returned_and_clean(&pool, &pg).await;
    pool.close().await;
}

/// The server killed, and backends terminated, under load: no hang, no wrong answer, and
/// every error that says its statement was not sent is true (its row is not there), every
/// success is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_and_terminated_backends_under_load() {
    let mut pg = cluster();
    pg.psql(SCHEMA).unwrap();
    // Commits are flushed before they are acknowledged, so what succeeded survives a kill.
    pg.psql("ALTER ROLE wirepool_admin SET synchronous_commit = on")
        .unwrap();
    let mut cfg = config(6);
    cfg.acquire_timeout = Duration::from_secs(2);
    cfg.reconnect_delays = vec![Duration::from_millis(100)];
    let pool = shared_pool(&pg, cfg).await;
    let next_id = Arc::new(AtomicI64::new(1));
    let sure = Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
    let not_run = Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
    let may_have_run = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..40)
        .map(|_| {
            let (pool, next_id, sure, not_run, may, stop) = (
                pool.clone(),
                next_id.clone(),
                sure.clone(),
                not_run.clone(),
                may_have_run.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    match pool
                        .execute(
                            "INSERT INTO items VALUES ($1, $2)",
                            &[&id, &format!("t{id}")],
                        )
                        .await
                    {
                        Ok(n) => {
                            assert_eq!(n, 1);
                            sure.lock().push(id);
                        }
                        Err(e) => match e.may_have_run() {
                            Some(true) => {
                                may.fetch_add(1, Ordering::Relaxed);
                            }
                            // Never sent, timed out waiting for a connection, refused by
                            // the server (a terminated backend): not committed.
                            _ => {
                                assert!(e.code() != Some(sqlstate::UNIQUE_VIOLATION), "{e}");
                                not_run.lock().push(id);
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        },
                    }
                }
            })
        })
        .collect();
    let grow = |n: usize| {
        let sure = sure.clone();
        async move {
            eventually("statements succeed", || sure.lock().len() >= n).await;
        }
    };
    grow(2_000).await;
    for _ in 0..3 {
        pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'wirepool_admin' AND pid <> pg_backend_pid()")
            .unwrap();
        let now = sure.lock().len();
        grow(now + 500).await;
    }
    pg.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.start_again().unwrap();
    let now = sure.lock().len();
    grow(now + 2_000).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("no hang")
            .unwrap();
    }
    let present: HashSet<i64> = pool
        .query("SELECT id FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in sure.lock().iter() {
        assert!(present.contains(id), "{id} succeeded and is missing");
    }
    let not_run = not_run.lock().clone();
    for id in not_run.iter() {
        assert!(
            !present.contains(id),
            "{id} was said not to have run, and did"
        );
    }
    let unsure = may_have_run.load(Ordering::Relaxed);
    assert!(
        unsure + not_run.len() as u64 > 0,
        "the faults failed some statements"
    );
    all_returned_and_clean(&pool, &pg).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_statements_are_refused_naming_acquire() {
    let pg = cluster();
    let pool = shared_pool(&pg, config(2)).await;
    for sql in [
        "SET search_path TO x",
        "BEGIN",
        "LISTEN ch",
        "PREPARE p AS SELECT 1",
        "DECLARE c CURSOR FOR SELECT 1",
        "CREATE TEMP TABLE t (a int)",
        "SELECT set_config('search_path', 'x', false)",
        "SELECT pg_advisory_lock(1)",
        "COPY (SELECT 1) TO STDOUT",
    ] {
        let e = pool.execute(sql, &[]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{sql}: {e}");
        assert!(e.to_string().contains("acquire()"), "{sql}: {e}");
    }
    // Nothing was sent: nothing changed on any session.
    let mut c = pool.acquire().await.unwrap();
    let r = c
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "\"$user\", public");
    drop(c);
    // A wrong parameter is refused before anything is sent, and the path goes on.
    let e = pool
        .query_one("SELECT $1::int4", &[&"text"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion, "{e}");
    let e = pool.query_one("SELECT $1::int4", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = pool
        .query_one("SELECT * FROM no_such_table", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(sqlstate::UNDEFINED_TABLE), "{e}");
    let e = pool
        .query_one("SELECT 1 UNION SELECT 2", &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RowCount, "{e}");
    let v: i64 = pool
        .query_one("SELECT $1::int8", &[&5i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 5);
    pool.close().await;
}

/// A table altered under a statement the shared path has described and prepared: it is
/// described again, once, and the answer has the new columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_table_is_described_again() {
    let pg = cluster();
    pg.psql("CREATE TABLE t (a int4); INSERT INTO t VALUES (1)")
        .unwrap();
    let pool = shared_pool(&pg, config(2)).await;
    let r = pool.query_one("SELECT * FROM t", &[]).await.unwrap();
    assert_eq!(r.len(), 1);
    pg.psql("ALTER TABLE t ADD COLUMN b text DEFAULT 'x'")
        .unwrap();
    let r = pool.query_one("SELECT * FROM t", &[]).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r.get::<_, &str>("b"), "x");
    pool.close().await;
}

/// While the shared path is busy, a caller of `acquire()` still gets a connection: a lane
/// drains and gives its connection back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_is_not_starved_by_the_shared_path() {
    let pg = cluster();
    let mut cfg = config(3);
    cfg.min_size = 3;
    let pool = shared_pool(&pg, cfg).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..30)
        .map(|i| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let v: i32 = pool
                        .query_one("SELECT $1::int4", &[&i])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(v, i);
                }
            })
        })
        .collect();
    eventually("every connection serves the shared path", || {
        pool.statistics().pipelined_connections == 3
    })
    .await;
    for _ in 0..5 {
        let mut c = tokio::time::timeout(Duration::from_secs(10), pool.acquire())
            .await
            .expect("acquire() is served")
            .unwrap();
        let mut tx = c.transaction().await.unwrap();
        tx.execute("SET LOCAL work_mem = '8MB'", &[]).await.unwrap();
        tx.commit().await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.await.unwrap();
    }
    pool.close().await;
}

/// A caller placed just after another left a slow statement is not queued behind it: the
/// lane takes nothing new until the abandoned statement is off it (here: cancelled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_placed_behind_an_abandoned_statement() {
    let pg = cluster();
    let mut cfg = config(1);
    cfg.min_size = 1;
    let pool = shared_pool(&pg, cfg).await;
    for i in 0..5i32 {
        let r = tokio::time::timeout(
            Duration::from_millis(50),
            pool.query_one("SELECT pg_sleep(60)", &[]),
        )
        .await;
        assert!(r.is_err(), "a sleep of a minute cannot answer in 50 ms");
        // At once, on the only connection: it waits for the cancel, not for the sleep.
        let v = tokio::time::timeout(
            Duration::from_secs(20),
            pool.query_one("SELECT $1::int4", &[&i]),
        )
        .await
        .expect("the next statement is not stuck behind the abandoned sleep")
        .unwrap();
        assert_eq!(v.get::<_, i32>(0), i);
    }
    let s = pool.statistics();
    assert_eq!(s.statements_in_flight, 0, "{s:?}");
    all_returned_and_clean(&pool, &pg).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_behind_a_busy_server_wait_in_the_client_and_never_run_once_left() {
    let pg = cluster();
    let mut cfg = config(1);
    cfg.min_size = 1;
    let pool = shared_pool(&pg, cfg).await;
    pool.acquire()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE held (id int4 PRIMARY KEY)")
        .await
        .unwrap();
    // Described once, so that each use below is one request.
    let insert = "INSERT INTO held VALUES ($1)";
    assert_eq!(pool.execute(insert, &[&0i32]).await.unwrap(), 1);
    // The only connection's server is busy with a slow statement, and a second one was
    // sent behind it; the third waits in the client to go out with whatever follows.
    let slow = tokio::spawn({
        let pool = pool.clone();
        async move { pool.query_one("SELECT pg_sleep(3)", &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.execute(insert, &[&1i32]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its caller leaves before the server gets to it: it was never sent, so it never runs.
    let left =
        tokio::time::timeout(Duration::from_millis(300), pool.execute(insert, &[&2i32])).await;
    assert!(left.is_err(), "the slow statement still runs: {left:?}");
    slow.await.unwrap().unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    // One more statement after the slow one: the lane has settled what was left.
    assert_eq!(pool.execute(insert, &[&3i32]).await.unwrap(), 1);
    let ids: Vec<i32> = pool
        .query("SELECT id FROM held ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        ids,
        [0, 1, 3],
        "the statement whose caller left before it was sent never ran"
    );
    all_returned_and_clean(&pool, &pg).await;
    pool.close().await;
}

/// A lane whose session a statement changed (a function's `SET ROLE`, which the server
/// reports through `is_superuser`) ends, and the statements queued behind, never sent, go
/// to another lane. The names they would have prepared were never parsed: a later lane on
/// the same connection prepares them again rather than binding to a statement the server
/// does not have (26000, "prepared statement ... does not exist"). Functions that PREPARE
/// in SQL make the connection's reset drop every prepared statement too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_queued_behind_a_session_change_are_prepared_where_they_run() {
    let pg = cluster();
    pg.psql(
        "CREATE FUNCTION change_role() RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN EXECUTE 'SET ROLE trust_user'; RETURN 1; END$$; \
         CREATE FUNCTION prepare_in_sql() RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN EXECUTE 'PREPARE in_sql AS SELECT 1'; RETURN 1; \
         EXCEPTION WHEN duplicate_prepared_statement THEN RETURN 2; END$$",
    )
    .unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 2).await;
    let missing = |e: &wirepool::Error| e.code() == Some(sqlstate::INVALID_SQL_STATEMENT_NAME);
    let mut tasks = Vec::new();
    for w in 0..2usize {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut missed = 0;
            for i in 0..600usize {
                let sql = if (i + w) % 2 == 0 {
                    "SELECT prepare_in_sql()"
                } else {
                    "SELECT change_role()"
                };
                if let Err(e) = pool.query(sql, &[]).await {
                    missed += usize::from(missing(&e));
                }
            }
            missed
        }));
    }
    let probe = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut missed = 0;
            for i in 0..6000i64 {
                match pool.query_one("SELECT $1::int8", &[&i]).await {
                    Ok(r) => assert_eq!(r.get::<_, i64>(0), i),
                    Err(e) => missed += usize::from(missing(&e)),
                }
            }
            missed
        })
    };
    let mut missed = probe.await.unwrap();
    for t in tasks {
        missed += t.await.unwrap();
    }
    assert!(
        pool.statistics().pipelined_session_changes > 0,
        "the functions changed sessions on the shared path"
    );
    assert_eq!(
        missed, 0,
        "statements bound to names the server did not have"
    );
    pool.close().await;
}

/// A function that deallocates the pool's own prepared statements (where no tag shows
/// it): the first statement that binds to one gets 26000 from the server, and then the
/// connection prepares every statement again, rather than binding to the others and failing
/// on each in turn (an atomic batch of three, placed again once, would fail on its second).
#[tokio::test]
async fn statements_a_function_deallocated_are_prepared_again() {
    let pg = cluster();
    pg.psql(
        "CREATE FUNCTION drop_pool_statements() RETURNS int LANGUAGE plpgsql AS $$ \
         DECLARE n text; k int := 0; BEGIN \
         FOR n IN SELECT name FROM pg_prepared_statements WHERE name LIKE 'wirepool\\_pipe\\_%' \
         LOOP EXECUTE format('DEALLOCATE %I', n); k := k + 1; END LOOP; RETURN k; END $$",
    )
    .unwrap();
    let pool = wirepool_testkit::pool(&pg, Role::Admin, 1, 1).await;
    let batch = |i: i32| {
        let pool = pool.clone();
        async move {
            let (wide, text) = (i64::from(i), i.to_string());
            pool.batch()
                .query("SELECT $1::int4", &[&i])
                .query("SELECT $1::int8", &[&wide])
                .query("SELECT $1::text", &[&text])
                .run()
                .await
        }
    };
    batch(1).await.unwrap();
    let dropped: i32 = pool
        .query_one("SELECT drop_pool_statements()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        dropped >= 3,
        "the function dropped the batch's statements ({dropped})"
    );
    let r = batch(2).await.unwrap();
    assert_eq!(r[0].rows().unwrap()[0].get::<_, i32>(0), 2);
    assert_eq!(r[1].rows().unwrap()[0].get::<_, i64>(0), 2);
    assert_eq!(r[2].rows().unwrap()[0].get::<_, String>(0), "2");
    pool.close().await;
}
