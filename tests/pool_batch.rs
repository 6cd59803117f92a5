//! `pool.batch()` against a real server: an atomic batch is one request on a lane of the
//! shared path (one Sync, no checkout), pipelined beside other callers' statements; an
//! independent one places each statement alone. All or nothing, typed results, the
//! failing statement's index, refusals, a batch dropped at every await, a lost connection
//! and a changed schema.

use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{Connection, ErrorKind, Pool, ToSql};
use wirepool_testkit::{cluster, Cluster, Role};

/// One row of `t`'s parameters.
type Params<'a> = [&'a (dyn ToSql + Sync); 3];

const INSERT: &str = "INSERT INTO t (id, label, n) VALUES ($1, $2, $3)";

async fn ids(c: &mut Connection) -> Vec<i64> {
    c.query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn pool(pg: &Cluster) -> Pool {
    pool_of(pg, 2).await
}

/// A pool of at most `max` connections on an empty table `t`.
async fn pool_of(pg: &Cluster, max: usize) -> Pool {
    let mut c = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS t (id int8 PRIMARY KEY, label text, n int4); TRUNCATE t",
    )
    .await
    .unwrap();
    c.close().await.ok();
    wirepool_testkit::pool(pg, Role::Admin, 1, max).await
}

/// `pool.batch()`: an independent batch runs on the shared path (no checkout), each
/// statement alone; a failing one names its index and costs no other its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_pool_batch_runs_each_statement_alone() {
    let pg = cluster();
    let pool = pool(&pg).await;
    pool.execute(INSERT, &[&2i64, &"there", &0i32])
        .await
        .unwrap();
    let r = pool
        .batch()
        .atomic(false)
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .execute(INSERT, &[&2i64, &"duplicate", &2i32])
        .execute(INSERT, &[&3i64, &"c", &3i32])
        .query("SELECT id, label FROM t WHERE id = $1", &[&2i64])
        .run()
        .await
        .unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!((r[0].count(), r[2].count()), (1, 1));
    assert!(r[0].error().is_none() && r[2].error().is_none());
    let e = r[1].error().expect("the duplicate fails");
    assert_eq!(e.batch_index(), Some(1), "{e}");
    assert_eq!(
        e.as_db_error().map(|d| d.code()),
        Some(sqlstate::UNIQUE_VIOLATION),
        "{e}"
    );
    let rows = r[3].rows().expect("a query's rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, &str>(1), "there");
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(ids(&mut c).await, [1, 2, 3]);
    drop(c);
    assert_eq!(pool.statistics().pipelined_statements, 5);
    pool.close().await;
}

/// An atomic pool batch: all or nothing, the error naming the failing statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_pool_batch_applies_nothing_when_one_statement_fails() {
    let pg = cluster();
    let pool = pool(&pg).await;
    pool.execute(INSERT, &[&2i64, &"there", &0i32])
        .await
        .unwrap();
    let e = pool
        .batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .execute(INSERT, &[&2i64, &"duplicate", &2i32])
        .execute(INSERT, &[&3i64, &"c", &3i32])
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.batch_index(), Some(1), "{e}");
    let r = pool
        .batch()
        .execute(INSERT, &[&1i64, &"a", &1i32])
        .query("SELECT count(*) FROM t", &[])
        .run()
        .await
        .unwrap();
    assert_eq!(r[0].count(), 1);
    assert_eq!(r[1].rows().unwrap()[0].get::<_, i64>(0), 2);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(ids(&mut c).await, [1, 2]);
    drop(c);
    pool.close().await;
}

/// The shared path's refusals hold for every statement of a pool batch, in either mode,
/// and nothing of a refused batch is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_batch_with_a_session_statement_is_refused_before_anything_is_sent() {
    let pg = cluster();
    let pool = pool(&pg).await;
    for atomic in [true, false] {
        let e = pool
            .batch()
            .atomic(atomic)
            .execute(INSERT, &[&1i64, &"a", &1i32])
            .execute(";SET search_path = other", &[])
            .run()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("acquire()"), "{e}");
        assert_eq!(e.batch_index(), Some(1), "{e}");
    }
    let mut c = pool.acquire().await.unwrap();
    assert!(ids(&mut c).await.is_empty());
    drop(c);
    pool.close().await;
}

/// An atomic pool batch is one request on a lane: with one connection in the pool, twenty
/// batches and twenty single statements run together on it with no checkout each, every
/// result typed and right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_pool_batch_runs_on_a_lane_beside_pipelined_statements() {
    let pg = cluster();
    let pool = pool_of(&pg, 1).await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    let before = pool.statistics();
    let tasks: Vec<_> = (0..20i64)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let (label, n) = (format!("row {t}"), t as i32);
                let r = pool
                    .batch()
                    .execute(INSERT, &[&t, &label, &n])
                    .query("SELECT $1::int8 * 2 AS twice", &[&t])
                    .query("SELECT label, n FROM t WHERE id = $1", &[&t])
                    .run()
                    .await
                    .unwrap_or_else(|e| panic!("batch {t}: {e}"));
                assert_eq!(r.len(), 3);
                assert_eq!(r[0].count(), 1);
                assert!(r[0].rows().is_none(), "execute() keeps no rows");
                assert_eq!(r[1].rows().unwrap()[0].get::<_, i64>("twice"), t * 2);
                let row = &r[2].rows().unwrap()[0];
                assert_eq!(row.get::<_, String>(0), format!("row {t}"));
                assert_eq!(row.get::<_, i32>(1), t as i32);
                let v: i32 = pool
                    .query_one("SELECT $1::int4 + 1", &[&(t as i32)])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(v, t as i32 + 1);
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the batches finish")
            .unwrap();
    }
    let after = pool.statistics();
    assert_eq!(
        after.pipelined_statements - before.pipelined_statements,
        20 * 3 + 20,
        "every statement went through the shared path"
    );
    let checkouts = after.total_acquisitions - before.total_acquisitions;
    assert!(
        checkouts < 10,
        "{checkouts} checkouts for 20 batches: a batch took a connection of its own"
    );
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(ids(&mut c).await, (0..20).collect::<Vec<i64>>());
    drop(c);
    pool.close().await;
}

/// Polls `f` up to `polls` times, yielding between, and drops it unless it finished.
async fn poll_then_drop<F: std::future::Future>(f: F, polls: usize) {
    let mut f = std::pin::pin!(f);
    for _ in 0..polls {
        let step = std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await;
        if step.is_ready() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A pool batch dropped at any await (describing a statement new to the pool, waiting for
/// room, in flight) applies all of its statements or none, and costs the caller beside it
/// none of its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_pool_batch_dropped_at_any_await_applies_all_or_nothing() {
    let pg = cluster();
    let pool = pool(&pg).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beside = {
        let pool = pool.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = answered as i32;
                let v: i32 = pool
                    .query_one("SELECT $1::int4", &[&i])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(v, i, "an answer went to another caller");
                answered += 1;
            }
            answered
        })
    };
    let (mut all, mut none) = (0, 0);
    for k in 0..60u64 {
        let base = k as i64 * 10;
        // Every other batch's statement is new to the pool: the drop can come while it
        // is described.
        let insert = if k % 2 == 0 {
            INSERT.to_string()
        } else {
            format!("{INSERT} -- {k}")
        };
        let (b1, b2) = (base + 1, base + 2);
        let p0: Params<'_> = [&base, &"a", &1i32];
        let p1: Params<'_> = [&b1, &"b", &2i32];
        let p2: Params<'_> = [&b2, &"c", &3i32];
        let batch = pool
            .batch()
            .execute(&insert, &p0)
            .execute(&insert, &p1)
            .execute(&insert, &p2)
            .query("SELECT pg_sleep(0.01)", &[]);
        // Dropped after a number of polls (while described, placed, queued), or after a
        // time (in flight, up to after its answer).
        let at = if k < 20 {
            poll_then_drop(batch.run(), k as usize).await;
            format!("poll {k}")
        } else {
            let limit = Duration::from_millis(k - 20);
            let _ = tokio::time::timeout(limit, batch.run()).await;
            format!("{limit:?}")
        };
        // The batch may still be in flight: never partial, whenever it is looked at.
        for _ in 0..2 {
            let n: i64 = pool
                .query_one(
                    "SELECT count(*) FROM t WHERE id >= $1 AND id < $2",
                    &[&base, &(base + 10)],
                )
                .await
                .unwrap()
                .get(0);
            match n {
                0 => none += 1,
                3 => all += 1,
                n => panic!("{n} of 3 statements applied after a drop at {at}"),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = tokio::time::timeout(Duration::from_secs(60), beside)
        .await
        .expect("the caller beside finishes")
        .unwrap();
    assert!(answered > 0);
    assert!(
        none > 0 && all > 0,
        "drops before and after the batch took effect: {none}, {all}"
    );
    println!("looks after dropped batches: {none} saw nothing applied, {all} everything; {answered} answers beside");
    // The pool is whole: a batch runs, every connection comes back.
    let r = pool
        .batch()
        .execute(INSERT, &[&-1i64, &"last", &0i32])
        .query("SELECT label FROM t WHERE id = $1", &[&-1i64])
        .run()
        .await
        .unwrap();
    assert_eq!(r[1].rows().unwrap()[0].get::<_, &str>(0), "last");
    pool.close().await;
    let s = pool.statistics();
    assert_eq!(s.active_connections, 0, "{s:?}");
}

/// A batch whose connection is lost while it runs fails as a whole, saying it may have
/// run; its statements were one transaction, so nothing of it took effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_batch_whose_connection_is_lost_may_have_run() {
    let pg = cluster();
    let pool = pool(&pg).await;
    let run = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.batch()
                .execute(INSERT, &[&1i64, &"a", &1i32])
                .query("SELECT pg_sleep(60) AS lost_batch_marker", &[])
                .run()
                .await
        })
    };
    let mut admin = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let mut terminated = false;
    for _ in 0..600 {
        let r = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE query LIKE '%AS lost_batch_marker' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        if r.get::<_, i64>(0) > 0 {
            terminated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(terminated, "the batch never started");
    let e = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the batch ends with its connection")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.may_have_run(), Some(true), "{e}");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the batch's insert was rolled back with it");
    // The pool goes on.
    assert_eq!(
        pool.execute(INSERT, &[&2i64, &"b", &2i32]).await.unwrap(),
        1
    );
    pool.close().await;
}

/// A statement whose result type changed under it (a column added) fails the batch on the
/// server's cached plan; the pool describes it again and runs the whole batch once more:
/// nothing took effect the first time, so its insert is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_batch_is_described_again_after_a_schema_change() {
    let pg = cluster();
    let pool = pool_of(&pg, 1).await;
    let mut c = pool.acquire().await.unwrap();
    c.batch_execute(
        "DROP TABLE IF EXISTS shape; CREATE TABLE shape (a int4); INSERT INTO shape VALUES (1)",
    )
    .await
    .unwrap();
    drop(c);
    let r = pool
        .batch()
        .query("SELECT * FROM shape", &[])
        .run()
        .await
        .unwrap();
    assert_eq!(r[0].rows().unwrap()[0].len(), 1);
    let mut c = pool.acquire().await.unwrap();
    c.batch_execute("ALTER TABLE shape ADD COLUMN b int4 DEFAULT 7")
        .await
        .unwrap();
    drop(c);
    let r = pool
        .batch()
        .execute(INSERT, &[&1i64, &"once", &1i32])
        .query("SELECT * FROM shape", &[])
        .run()
        .await
        .unwrap();
    let row = &r[1].rows().unwrap()[0];
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (1, 7));
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(ids(&mut c).await, [1]);
    drop(c);
    pool.close().await;
}
