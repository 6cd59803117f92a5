//! The shared path decides from what the server says: the transaction status after every
//! statement, the settings it reports, the row descriptions of the connection that runs a
//! statement; and it waits in the pool's one FIFO with the callers of `acquire()`. The
//! refusal of session statements is turned off in some of these tests (an internals
//! switch), to show that the net beneath it holds on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wirepool::{ErrorKind, Pool, PoolConfig};
use wirepool_testkit::{cluster, Cluster, Role};

async fn pool(pg: &Cluster, max: usize, tune: impl FnOnce(&mut PoolConfig)) -> Pool {
    let mut c = wirepool_testkit::fast_config();
    c.min_size = 1;
    c.max_size = max;
    tune(&mut c);
    wirepool_testkit::pool_from(pg.config(Role::Admin), c).await
}

/// Ids in `t` as another session sees them.
fn committed(pg: &Cluster) -> Vec<i64> {
    let out = pg.psql("SELECT id FROM t ORDER BY id").unwrap();
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_is_rolled_back_and_nothing_inside_it_is_reported_done() {
    let pg = cluster();
    pg.psql("CREATE TABLE t (id int8 PRIMARY KEY)").unwrap();
    let pool = pool(&pg, 1, |_| {}).await;
    wirepool::internals::set_shared_path_refusal(&pool, false);
    // Warm the lane and the INSERT's description so the statements below go out together.
    pool.execute("INSERT INTO t VALUES ($1)", &[&0i64])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for round in 0..20i64 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let r = p.execute(";BEGIN", &[]).await;
            (round, None, r.map(|_| ()))
        }));
        for k in 1..=5i64 {
            let p = pool.clone();
            let id = round * 100 + k;
            tasks.push(tokio::spawn(async move {
                let r = p.execute("INSERT INTO t VALUES ($1)", &[&id]).await;
                (round, Some(id), r.map(|n| assert_eq!(n, 1)))
            }));
        }
    }
    let mut acknowledged = vec![0i64];
    let mut rolled_back = Vec::new();
    let mut opened = 0;
    for t in tasks {
        let (_, id, r) = t.await.unwrap();
        match (id, r) {
            // The BEGIN that opened a transaction is told so; one that ran inside another's
            // transaction was rolled back with it.
            (None, Err(e)) if e.kind() == ErrorKind::InvalidInput => {
                assert!(e.to_string().contains("acquire()"), "{e}");
                assert_eq!(e.may_have_run(), Some(false), "{e}");
                opened += 1;
            }
            (None, Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::TransactionRolledBack, "{e}");
                assert_eq!(e.may_have_run(), Some(false), "{e}");
            }
            (None, Ok(())) => panic!("a BEGIN on the shared path was reported done"),
            (Some(id), Ok(())) => acknowledged.push(id),
            (Some(id), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::TransactionRolledBack, "{e}");
                assert_eq!(e.may_have_run(), Some(false), "{e}");
                rolled_back.push(id);
            }
        }
    }
    assert!(opened >= 1);
    let mut seen = committed(&pg);
    acknowledged.sort_unstable();
    seen.sort_unstable();
    assert_eq!(
        seen, acknowledged,
        "every acknowledged write, and nothing else"
    );
    for id in &rolled_back {
        assert!(!seen.contains(id));
    }
    assert_eq!(pool.statistics().pipelined_session_changes, opened);
    // The lane's connection is usable and outside a transaction.
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.transaction_status(), wirepool::TransactionStatus::Idle);
    c.execute("INSERT INTO t VALUES (-1)", &[]).await.unwrap();
    drop(c);
    assert!(committed(&pg).contains(&-1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_sets_search_path_never_reaches_the_next_statement() {
    let pg = cluster();
    pg.psql(
        "CREATE SCHEMA other; \
         CREATE TABLE public.accounts (owner text); INSERT INTO public.accounts VALUES ('public'); \
         CREATE TABLE other.accounts (owner text); INSERT INTO other.accounts VALUES ('other'); \
         CREATE FUNCTION public.hop() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM set_config('search_path', 'other', false); RETURN 1; END $$",
    )
    .unwrap();
    let version: u32 = pg.psql("SHOW server_version_num").unwrap().parse().unwrap();
    for policy in [
        wirepool::SessionReset::WhenDirty,
        wirepool::SessionReset::Never,
    ] {
        let pool = pool(&pg, 1, |c| c.session_reset = policy).await;
        let owner = |p: Pool| async move {
            let row = p.query_one("SELECT owner FROM accounts", &[]).await?;
            Ok::<String, wirepool::Error>(row.get(0))
        };
        assert_eq!(owner(pool.clone()).await.unwrap(), "public");
        let hop = pool.query_one("SELECT hop()", &[]).await.unwrap();
        assert_eq!(hop.get::<_, i32>(0), 1);
        for _ in 0..20 {
            assert_eq!(owner(pool.clone()).await.unwrap(), "public", "{policy:?}");
        }
        // The reset after `SELECT hop()` (not proven clean: it calls the application's
        // function) put search_path back before anything else ran. PostgreSQL 18 also
        // reports the change (ParameterStatus), which takes the connection out and counts.
        let reported = u64::from(version >= 180_000);
        assert_eq!(
            pool.statistics().pipelined_session_changes,
            reported,
            "{policy:?}"
        );
        let mut c = pool.acquire().await.unwrap();
        let sp = c.query_one("SHOW search_path", &[]).await.unwrap();
        assert_eq!(sp.get::<_, &str>(0), "\"$user\", public", "{policy:?}");
        drop(c);
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_caller_is_served_when_the_only_connection_comes_back() {
    let pg = cluster();
    let pool = pool(&pg, 1, |c| c.acquire_timeout = Duration::from_secs(20)).await;
    let held = pool.acquire().await.unwrap();
    let p = pool.clone();
    let t = Instant::now();
    let q = tokio::spawn(async move { p.query_one("SELECT 41 + 1", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!q.is_finished());
    assert_eq!(pool.statistics().waiting_requests, 1);
    drop(held);
    let row = q.await.unwrap().unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // Served at the return, not at the end of the acquire timeout.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_and_pipelined_callers_share_one_queue_on_a_busy_pool() {
    let pg = cluster();
    pg.psql("CREATE TABLE t (id int8 PRIMARY KEY)").unwrap();
    let pool = pool(&pg, 2, |c| c.acquire_timeout = Duration::from_secs(20)).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut exclusive = Vec::new();
    for _ in 0..6 {
        let (p, stop) = (pool.clone(), stop.clone());
        exclusive.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = p.acquire().await.unwrap();
                let tx = c.transaction().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut pipelined = Vec::new();
    for k in 0..8i64 {
        let (p, stop) = (pool.clone(), stop.clone());
        pipelined.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut id = k * 1_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id += 1;
                let row = p.query_one("SELECT $1::int8 + 1", &[&id]).await.unwrap();
                assert_eq!(row.get::<_, i64>(0), id + 1);
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ex = 0;
    for t in exclusive {
        ex += t.await.unwrap();
    }
    let mut pi = 0;
    for t in pipelined {
        pi += t.await.unwrap();
    }
    assert!(ex > 0 && pi > 0, "exclusive {ex}, pipelined {pi}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_whose_type_changed_is_never_decoded_with_the_old_type() {
    let pg = cluster();
    for capacity in [100usize, 0] {
        pg.psql("DROP TABLE IF EXISTS f; CREATE TABLE f (a int4); INSERT INTO f VALUES (1)")
            .unwrap();
        let pool = pool(&pg, 2, |c| c.statement_cache_capacity = capacity).await;
        let row = pool.query_one("SELECT a FROM f", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        pg.psql("ALTER TABLE f ALTER COLUMN a TYPE float4 USING a + 0.5")
            .unwrap();
        // A second connection, which has not prepared the statement: hold the first one
        // (the lane gives it back for a caller of acquire()), so the next lane opens the
        // other.
        let held = pool.acquire().await.unwrap();
        let other = pool.acquire().await.unwrap();
        let other_id = other.id();
        drop(other);
        let row = pool.query_one("SELECT a FROM f", &[]).await.unwrap();
        assert_eq!(row.get::<_, f32>(0), 1.5, "cache {capacity}");
        assert!(row.try_get::<_, i32>(0).is_err(), "cache {capacity}");
        drop(held);
        // And on every connection after that.
        for _ in 0..10 {
            let row = pool.query_one("SELECT a FROM f", &[]).await.unwrap();
            assert_eq!(row.get::<_, f32>(0), 1.5, "cache {capacity}");
        }
        let _ = other_id;
        pool.close().await;
    }
}

/// The reset between statements puts back what the pool's connect hooks set (here
/// `search_path`, `application_name`, the role, and two custom settings, one from
/// `init_sql` and one from `after_connect`), not the server's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_between_statements_keeps_what_the_connect_hooks_set() {
    let pg = cluster();
    pg.psql(
        "CREATE SCHEMA app; CREATE SCHEMA other; \
         CREATE TABLE app.accounts (owner text); INSERT INTO app.accounts VALUES ('app'); \
         CREATE TABLE other.accounts (owner text); INSERT INTO other.accounts VALUES ('other'); \
         CREATE FUNCTION public.hop() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM set_config('search_path', 'other', false); RETURN 1; END $$; \
         CREATE ROLE app_reader; GRANT USAGE ON SCHEMA app, other TO app_reader; \
         GRANT SELECT ON ALL TABLES IN SCHEMA app, other TO app_reader",
    )
    .unwrap();
    let mut c = wirepool_testkit::fast_config();
    c.min_size = 1;
    c.max_size = 1;
    let pool = Pool::builder(pg.config(Role::Admin))
        .config(c)
        .init_sql([
            "SET search_path = app, public",
            "SET application_name = 'hooked'; SET app.tenant = 'seven'",
            "SET ROLE app_reader",
        ])
        .after_connect(|conn| {
            Box::pin(async move {
                conn.execute("SELECT set_config('app.region', $1, false)", &[&"north"])
                    .await?;
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    let owner = || async {
        let row = pool
            .query_one(
                "SELECT owner, current_setting('application_name') || ' ' \
                 || current_setting('app.tenant') || ' ' || current_setting('app.region') \
                 || ' ' || current_user FROM accounts",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0), row.get::<_, String>(1))
    };
    let hooked = (
        "app".to_string(),
        "hooked seven north app_reader".to_string(),
    );
    assert_eq!(owner().await, hooked);
    // Both names a relation and calls the application's function: a reset follows each.
    assert_eq!(
        pool.query_one("SELECT hop() FROM accounts", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    for _ in 0..5 {
        assert_eq!(owner().await, hooked);
    }
    // `hop()` changed search_path. A server that reports search_path (PostgreSQL 18 sends
    // its ParameterStatus) says so, and the pool counts the change; an older one does
    // not, and the reset after the relation-naming statement is what restores it. Either
    // way the next statements saw the hooks' settings (above).
    let reported = pool
        .acquire()
        .await
        .unwrap()
        .parameter("search_path")
        .is_some();
    let changes = if reported { 1 } else { 0 };
    assert_eq!(pool.statistics().pipelined_session_changes, changes);
    pool.close().await;
}

/// A statement prepared in SQL inside a function (which no tag shows, and which the reset
/// between statements leaves: no pipelined statement can use it) is gone when the
/// connection goes back to the pool: the next `acquire()` caller does not find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_prepared_inside_a_function_never_reaches_an_acquire_caller() {
    let pg = cluster();
    pg.psql(
        "CREATE FUNCTION public.prep() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN EXECUTE 'PREPARE hidden AS SELECT 1'; RETURN 1; END $$",
    )
    .unwrap();
    for policy in [
        wirepool::SessionReset::UnlessProvenClean,
        wirepool::SessionReset::WhenDirty,
    ] {
        let pool = pool(&pg, 1, |c| c.session_reset = policy).await;
        let r = pool.query_one("SELECT prep()", &[]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), 1);
        let mut c = pool.acquire().await.unwrap();
        let n = c
            .query_one(
                "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(n.get::<_, i64>(0), 0, "{policy:?}");
        let listening = c
            .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
            .await
            .unwrap();
        assert_eq!(listening.get::<_, i64>(0), 0, "{policy:?}");
        drop(c);
        pool.close().await;
    }
}
