//! A statement that ran past its command timeout may have run: the cancel can come after
//! its commit. A server that commits and then waits (for a synchronous standby that never
//! answers) shows it every time: the row is stored, and the error says it may have run, on
//! the shared path, on a checked-out connection and for a batch.

mod common;

use std::time::{Duration, Instant};

use wirepool::{ErrorKind, Pool};
use wirepool_testkit::{Cluster, Role};

/// Long enough for an INSERT and its commit on a loaded machine, ten times over.
const LIMIT: Duration = Duration::from_millis(500);

/// Whether row `id` is stored, once the cancel ended its commit's wait (the shared path
/// answers its caller at the timeout and cancels right after; until the wait ends, other
/// sessions do not see the commit).
fn stored(pg: &Cluster, id: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let n = pg
            .psql(&format!("SELECT count(*) FROM t WHERE id = {id}"))
            .unwrap();
        if n.trim() == "1" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_timed_out_after_its_commit_may_have_run() {
    let pg = common::commits_wait_for_a_missing_standby("t");
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .max_size(2)
        .command_timeout(Some(LIMIT))
        .build()
        .await
        .unwrap();
    let check = |what: &str, r: wirepool::Result<()>, ids: &[i32]| {
        let e = r.expect_err("the commit waits past the timeout");
        assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{what}: {e}");
        for &id in ids {
            assert!(stored(&pg, id), "{what}: row {id} committed");
        }
        assert_eq!(e.may_have_run(), Some(true), "{what}: {e}");
    };

    let r = pool.execute("INSERT INTO t VALUES (1)", &[]).await;
    check("pool.execute", r.map(drop), &[1]);

    let mut c = pool.acquire().await.unwrap();
    let r = c.execute("INSERT INTO t VALUES (2)", &[]).await;
    check("execute on a checked-out connection", r.map(drop), &[2]);

    let r = c
        .batch()
        .execute("INSERT INTO t VALUES (3)", &[])
        .execute("INSERT INTO t VALUES (4)", &[])
        .run()
        .await;
    check("an atomic batch on a connection", r.map(drop), &[3, 4]);
    drop(c);

    let r = pool
        .batch()
        .execute("INSERT INTO t VALUES (5)", &[])
        .execute("INSERT INTO t VALUES (6)", &[])
        .run()
        .await;
    check("an atomic pool.batch()", r.map(drop), &[5, 6]);

    // The connections were cancelled out of their waits and serve the next statement.
    let n: i64 = pool
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 6);
}
