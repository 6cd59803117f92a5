//! Nothing one caller does with a pooled connection reaches the next caller: session state
//! reset on return under each `SessionReset` policy, the pool's settings applied again, a
//! cancelled `transaction()` that never leaves a transaction open. Every test runs on a
//! pool of one connection, so the next checkout gets the same backend (checked by its
//! process id).

mod common;

use std::time::Duration;

use common::poll_at_most;

use wirepool::{Connection, Pool, PoolConfig, SessionReset, TransactionStatus};
use wirepool_testkit::{cluster, Cluster, Role};

async fn one_connection(pg: &Cluster, role: Role, policy: SessionReset) -> Pool {
    Pool::builder(pg.config(role))
        .min_size(1)
        .max_size(1)
        .session_reset(policy)
        .build()
        .await
        .unwrap()
}

/// The first column of the first row of `sql`, as text ("NULL" for a null).
async fn probe(conn: &mut Connection, sql: &str) -> String {
    let rows = conn.simple_query(sql).await.unwrap();
    rows[0].get(0).unwrap_or("NULL").to_string()
}

/// Runs `change` on one checkout (and checks that `probe_sql` saw it there), returns the
/// connection, and gives what `probe_sql` says at the next checkout of the same backend.
async fn after_return(pool: &Pool, change: &str, probe_sql: &str) -> (String, String) {
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    let before = probe(&mut c, probe_sql).await;
    c.simple_query(change).await.unwrap();
    let changed = probe(&mut c, probe_sql).await;
    assert_ne!(
        before, changed,
        "`{change}` changes what `{probe_sql}` says"
    );
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid, "the same backend");
    let next = probe(&mut c, probe_sql).await;
    (before, next)
}

/// Under `policy`, the state `change` makes is gone at the next checkout.
async fn gone(pg: &Cluster, role: Role, policy: SessionReset, change: &str, probe_sql: &str) {
    let pool = one_connection(pg, role, policy).await;
    let (before, next) = after_return(&pool, change, probe_sql).await;
    assert_eq!(next, before, "after `{change}` under {policy:?}");
    pool.close().await;
}

#[tokio::test]
async fn set_role_is_gone_at_the_next_checkout() {
    let pg = cluster();
    pg.psql("CREATE ROLE other_role; GRANT other_role TO scram_user")
        .unwrap();
    gone(
        &pg,
        Role::Scram,
        SessionReset::default(),
        "SET ROLE other_role",
        "SELECT current_user",
    )
    .await;
}

#[tokio::test]
async fn set_session_authorization_is_gone_at_the_next_checkout() {
    let pg = cluster();
    pg.psql("CREATE ROLE other_role").unwrap();
    gone(
        &pg,
        Role::Admin,
        SessionReset::default(),
        "SET SESSION AUTHORIZATION other_role",
        "SELECT session_user || '/' || current_user",
    )
    .await;
}

/// A replication origin set up by a superuser's session, called by name or inside a
/// function: no reset statement but `pg_replication_origin_session_reset()` ends it, and
/// every later commit of the session would carry it.
#[tokio::test]
async fn a_replication_origin_is_gone_at_the_next_checkout() {
    let pg = cluster();
    pg.psql("SELECT pg_replication_origin_create('o1')")
        .unwrap();
    pg.psql(
        "CREATE FUNCTION set_origin() RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN PERFORM pg_replication_origin_session_setup('o1'); RETURN 1; END$$",
    )
    .unwrap();
    let probe_sql = "SELECT pg_replication_origin_session_is_setup()::text";
    gone(
        &pg,
        Role::Admin,
        SessionReset::default(),
        "SELECT pg_replication_origin_session_setup('o1')",
        probe_sql,
    )
    .await;
    gone(
        &pg,
        Role::Admin,
        SessionReset::default(),
        "SELECT set_origin()",
        probe_sql,
    )
    .await;
    // After an SQL-level PREPARE (the reset that deallocates it too).
    gone(
        &pg,
        Role::Admin,
        SessionReset::default(),
        "PREPARE p AS SELECT 1; SELECT set_origin()",
        probe_sql,
    )
    .await;
    // On the shared path: the function's statement is followed by the session reset, and
    // the next statement on the same backend, another caller's, runs without the origin.
    let pool = one_connection(&pg, Role::Admin, SessionReset::default()).await;
    let pid = |r: wirepool::Row| r.get::<_, i32>(0);
    let first = pid(pool
        .query_one("SELECT pg_backend_pid() FROM set_origin()", &[])
        .await
        .unwrap());
    let row = pool
        .query_one(
            "SELECT pg_backend_pid(), pg_replication_origin_session_is_setup()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), first, "the same backend");
    assert!(
        !row.get::<_, bool>(1),
        "the origin is gone on the shared path"
    );
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        pool.statistics().pipelined_session_changes,
        0,
        "the reset between statements ended the origin (it did not fail)"
    );
    assert_eq!(probe(&mut c, probe_sql).await, "false");
    drop(c);
    pool.close().await;
}

/// A dblink connection opened by a function of the application, where the text shows no
/// `dblink_connect`: no `DISCARD` closes it, and the next caller could run statements
/// through it. The reset closes the session's named dblink connections, under each policy
/// and between statements on the shared path (dblink here in a schema whose name needs
/// quoting).
#[tokio::test]
async fn a_dblink_connection_opened_in_a_function_is_gone_at_the_next_checkout() {
    let pg = cluster();
    pg.psql("CREATE SCHEMA \"Link Ext\"; CREATE EXTENSION dblink SCHEMA \"Link Ext\"")
        .unwrap();
    let dsn = format!(
        "host={} port={} user={} dbname=postgres",
        pg.socket_dir().display(),
        pg.port(),
        Role::Admin.name()
    );
    pg.psql(&format!(
        "CREATE FUNCTION open_link(name text) RETURNS text LANGUAGE sql AS \
         $f$ SELECT \"Link Ext\".dblink_connect(name, '{dsn}') $f$"
    ))
    .unwrap();
    let probe_sql =
        "SELECT coalesce(array_to_string(\"Link Ext\".dblink_get_connections(), ','), '<none>')";
    for policy in [
        SessionReset::UnlessProvenClean,
        SessionReset::WhenDirty,
        SessionReset::Always,
    ] {
        gone(&pg, Role::Admin, policy, "SELECT open_link('a')", probe_sql).await;
        // After an SQL-level PREPARE, whose reset is DISCARD ALL spelled out.
        gone(
            &pg,
            Role::Admin,
            policy,
            "PREPARE p AS SELECT 1; SELECT open_link('b')",
            probe_sql,
        )
        .await;
    }
    // On the shared path: the function's statement is followed by the session reset, and
    // the next statement on the same backend, another caller's, finds no connection.
    let pool = one_connection(&pg, Role::Admin, SessionReset::default()).await;
    let first = pool
        .query_one("SELECT pg_backend_pid(), open_link('c')", &[])
        .await
        .unwrap();
    let row = pool
        .query_one(&format!("SELECT pg_backend_pid(), ({probe_sql})"), &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        first.get::<_, i32>(0),
        "the same backend"
    );
    assert_eq!(
        row.get::<_, String>(1),
        "<none>",
        "closed on the shared path"
    );
    assert_eq!(
        pool.statistics().pipelined_session_changes,
        0,
        "the reset between statements closed it (it did not fail)"
    );
    pool.close().await;
}

/// A function that runs `DEALLOCATE ALL` drops the connection's own statements too, where
/// no tag shows it: the reset notices that none is left, so the next caller prepares its
/// statements again instead of failing on the first one, inside its transaction.
#[tokio::test]
async fn statements_a_function_deallocated_are_not_the_next_callers_failure() {
    let pg = cluster();
    pg.psql(
        "CREATE FUNCTION drop_all_statements() RETURNS int LANGUAGE plpgsql AS \
         $$BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END$$",
    )
    .unwrap();
    for policy in [
        SessionReset::UnlessProvenClean,
        SessionReset::WhenDirty,
        SessionReset::Always,
    ] {
        let pool = one_connection(&pg, Role::Admin, policy).await;
        let mut c = pool.acquire().await.unwrap();
        let pid = c.process_id();
        c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
        c.query_one("SELECT drop_all_statements()", &[])
            .await
            .unwrap();
        drop(c);
        let mut c = pool.acquire().await.unwrap();
        assert_eq!(c.process_id(), pid, "the same backend");
        let mut tx = c.transaction().await.unwrap();
        let v: i32 = tx
            .query_one("SELECT $1::int4", &[&2i32])
            .await
            .unwrap_or_else(|e| panic!("under {policy:?}: {e}"))
            .get(0);
        assert_eq!(v, 2);
        tx.commit().await.unwrap();
        drop(c);
        pool.close().await;
    }
}

/// A superuser login whose session starts as another role (a `role` setting): the
/// caller becomes the login again (`SET ROLE NONE`) and sets up an origin; the reset
/// ends it as the login role, on return and between statements on the shared path.
#[tokio::test]
async fn a_replication_origin_of_a_login_that_starts_as_another_role_is_gone() {
    let pg = cluster();
    pg.psql("SELECT pg_replication_origin_create('o1')")
        .unwrap();
    pg.psql("CREATE ROLE boss SUPERUSER LOGIN").unwrap();
    pg.psql("ALTER ROLE boss SET role = 'trust_user'").unwrap();
    pg.psql(
        "CREATE FUNCTION set_origin() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS \
         $$BEGIN PERFORM pg_replication_origin_session_setup('o1'); RETURN 1; END$$",
    )
    .unwrap();
    let pool = Pool::builder(pg.config(Role::Trust).with_user("boss"))
        .min_size(1)
        .max_size(1)
        .build()
        .await
        .unwrap();
    let probe_sql = "SELECT current_user || '/' || pg_replication_origin_session_is_setup()::text";
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    c.simple_query("SET ROLE NONE; SELECT pg_replication_origin_session_setup('o1'); RESET ROLE")
        .await
        .unwrap();
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid, "the same backend: {}", pg.server_log());
    assert_eq!(probe(&mut c, "SELECT current_user").await, "trust_user");
    c.simple_query("SET ROLE NONE").await.unwrap();
    assert_eq!(
        probe(&mut c, probe_sql).await,
        "boss/false",
        "gone at the checkout"
    );
    c.simple_query("RESET ROLE").await.unwrap();
    drop(c);
    // On the shared path, through a function that runs as its (superuser) owner.
    let first: i32 = pool
        .query_one("SELECT pg_backend_pid() FROM set_origin()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, pid, "the same backend");
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid, "the same backend");
    assert_eq!(
        pool.statistics().pipelined_session_changes,
        0,
        "the reset between statements ended the origin (it did not fail)"
    );
    c.simple_query("SET ROLE NONE").await.unwrap();
    assert_eq!(
        probe(&mut c, probe_sql).await,
        "boss/false",
        "gone after the shared path"
    );
    drop(c);
    pool.close().await;
}

#[tokio::test]
async fn search_path_is_gone_at_the_next_checkout() {
    let pg = cluster();
    gone(
        &pg,
        Role::Scram,
        SessionReset::default(),
        "SET search_path = tenant_7",
        "SHOW search_path",
    )
    .await;
}

#[tokio::test]
async fn statement_timeout_returns_to_the_roles_own() {
    let pg = cluster();
    pg.psql("ALTER ROLE scram_user SET statement_timeout = '5s'")
        .unwrap();
    let pool = one_connection(&pg, Role::Scram, SessionReset::default()).await;
    let (before, next) =
        after_return(&pool, "SET statement_timeout = 0", "SHOW statement_timeout").await;
    assert_eq!((before.as_str(), next.as_str()), ("5s", "5s"));
    pool.close().await;
}

#[tokio::test]
async fn standard_conforming_strings_is_gone_at_the_next_checkout() {
    let pg = cluster();
    gone(
        &pg,
        Role::Scram,
        SessionReset::default(),
        "SET standard_conforming_strings = off",
        "SHOW standard_conforming_strings",
    )
    .await;
}

#[tokio::test]
async fn listen_is_gone_at_the_next_checkout() {
    let pg = cluster();
    gone(
        &pg,
        Role::Scram,
        SessionReset::default(),
        "LISTEN jobs",
        "SELECT count(*) FROM pg_listening_channels()",
    )
    .await;
}

#[tokio::test]
async fn a_with_hold_cursor_is_gone_at_the_next_checkout() {
    let pg = cluster();
    gone(
        &pg,
        Role::Scram,
        SessionReset::default(),
        "DECLARE c CURSOR WITH HOLD FOR SELECT generate_series(1, 10)",
        "SELECT count(*) FROM pg_cursors",
    )
    .await;
}

#[tokio::test]
async fn always_drops_temporary_tables_and_advisory_locks() {
    let pg = cluster();
    // Neither leaves a tag that tells: CREATE TEMP TABLE ... AS reports SELECT, and the
    // lock is taken inside a SELECT.
    gone(
        &pg,
        Role::Scram,
        SessionReset::Always,
        "CREATE TEMP TABLE scratch AS SELECT generate_series(1, 3) AS n",
        "SELECT coalesce(to_regclass('scratch')::text, 'none')",
    )
    .await;
    gone(
        &pg,
        Role::Scram,
        SessionReset::Always,
        "SELECT pg_advisory_lock(42)",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    )
    .await;
    // The lock is free for another session.
    let other = one_connection(&pg, Role::Scram, SessionReset::Never).await;
    let mut c = other.acquire().await.unwrap();
    assert_eq!(probe(&mut c, "SELECT pg_try_advisory_lock(42)").await, "t");
    drop(c);
    other.close().await;
}

#[tokio::test]
async fn never_leaves_the_state_for_the_next_caller() {
    let pg = cluster();
    pg.psql("CREATE ROLE other_role; GRANT other_role TO scram_user")
        .unwrap();
    let pool = one_connection(&pg, Role::Scram, SessionReset::Never).await;
    let (_, next) = after_return(&pool, "SET search_path = tenant_7", "SHOW search_path").await;
    assert_eq!(next, "tenant_7", "the leak that Never allows");
    let (_, next) = after_return(&pool, "SET ROLE other_role", "SELECT current_user").await;
    assert_eq!(next, "other_role");
    pool.close().await;
}

#[tokio::test]
async fn a_reset_runs_the_pools_init_sql_again_and_keeps_the_statement_cache() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .max_size(1)
        .init_sql(["SET search_path TO app, public"])
        .build()
        .await
        .unwrap();
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        c.query_one("SELECT $1::int4", &[&1i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    let misses = c.statement_cache_stats().misses();
    drop(c);
    let (before, next) =
        after_return(&pool, "SET search_path = tenant_7", "SHOW search_path").await;
    assert_eq!(
        (before.as_str(), next.as_str()),
        ("app, public", "app, public")
    );
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        c.query_one("SELECT $1::int4", &[&2i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    assert_eq!(
        c.statement_cache_stats().misses(),
        misses,
        "the cached statement survived the reset"
    );
    drop(c);
    pool.close().await;
}

#[tokio::test]
async fn an_sql_prepare_is_deallocated_and_the_cache_follows() {
    let pg = cluster();
    let pool = one_connection(&pg, Role::Scram, SessionReset::default()).await;
    let mut c = pool.acquire().await.unwrap();
    c.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
    drop(c);
    let (before, next) = after_return(
        &pool,
        "PREPARE mine AS SELECT 1",
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'mine'",
    )
    .await;
    assert_eq!((before.as_str(), next.as_str()), ("0", "0"));
    // DISCARD ALL dropped the pool's statement too: the cache knows, and prepares anew.
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        c.query_one("SELECT $1::int4", &[&3i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    drop(c);
    pool.close().await;
}

#[tokio::test]
async fn settings_changed_through_a_guard_are_the_pools_again_at_the_next_checkout() {
    let pg = cluster();
    let mut cfg = PoolConfig::default();
    cfg.min_size = 1;
    cfg.max_size = 1;
    cfg.command_timeout = Some(Duration::from_secs(7));
    cfg.statement_cache_capacity = 5;
    let pool = wirepool_testkit::pool_from(pg.config(Role::Scram), cfg).await;
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    c.set_command_timeout(None);
    c.set_statement_cache_capacity(0);
    assert_eq!(
        (c.command_timeout(), c.statement_cache_capacity()),
        (None, 0)
    );
    drop(c);
    let c = pool.acquire().await.unwrap();
    assert_eq!(c.process_id(), pid);
    assert_eq!(
        (c.command_timeout(), c.statement_cache_capacity()),
        (Some(Duration::from_secs(7)), 5)
    );
    drop(c);
    pool.close().await;
}

/// `transaction()` dropped after `n` polls, then an INSERT on the same connection: it is
/// committed (the connection was outside any transaction when it ran). Returns whether the
/// `transaction()` future had finished within `n` polls.
async fn insert_after_cancelled_begin(conn: &mut Connection, n: usize, value: i32) -> bool {
    let done = match poll_at_most(conn.transaction(), n).await {
        Some(tx) => {
            drop(tx.unwrap()); // dropped uncommitted: rolled back
            true
        }
        None => false,
    };
    // Outside any transaction now, or a ROLLBACK queued that goes out first.
    assert!(
        conn.transaction_status() == TransactionStatus::Idle || conn.is_busy(),
        "after {n} polls: {:?}",
        conn.transaction_status()
    );
    assert_eq!(
        conn.execute("INSERT INTO seen VALUES ($1)", &[&value])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        conn.transaction_status(),
        TransactionStatus::Idle,
        "after {n} polls"
    );
    done
}

#[tokio::test]
async fn a_transaction_dropped_at_any_poll_never_swallows_the_next_statement() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    conn.simple_query("CREATE TABLE seen (n int)")
        .await
        .unwrap();
    let mut n = 0;
    loop {
        n += 1;
        assert!(n < 1000, "transaction() never finished");
        if insert_after_cancelled_begin(&mut conn, n, n as i32).await {
            break;
        }
    }
    let count = probe(&mut conn, "SELECT count(*) FROM seen").await;
    assert_eq!(count, n.to_string(), "every INSERT was committed");
    assert!(n > 1, "at least one drop came before the end");
}

#[tokio::test]
async fn through_a_pool_a_cancelled_transaction_never_rolls_back_later_writes() {
    let pg = cluster();
    let pool = one_connection(&pg, Role::Admin, SessionReset::default()).await;
    let mut c = pool.acquire().await.unwrap();
    c.simple_query("CREATE TABLE seen (n int)").await.unwrap();
    drop(c);
    let mut n = 0;
    loop {
        n += 1;
        assert!(n < 1000, "transaction() never finished");
        let mut c = pool.acquire().await.unwrap();
        let done = insert_after_cancelled_begin(&mut c, n, n as i32).await;
        drop(c); // the return would roll back an open transaction
        if done {
            break;
        }
    }
    // Under a real timeout too, as an application writes it.
    let mut c = pool.acquire().await.unwrap();
    let r = tokio::time::timeout(Duration::from_nanos(1), c.transaction()).await;
    drop(r);
    c.execute("INSERT INTO seen VALUES (0)", &[]).await.unwrap();
    drop(c);
    let mut c = pool.acquire().await.unwrap();
    let count = probe(&mut c, "SELECT count(*) FROM seen").await;
    assert_eq!(count, (n + 1).to_string(), "every INSERT was committed");
    drop(c);
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

/// What no reset undoes (a random seed, a loaded library, a dblink connection) closes the
/// connection that ran it: the next caller gets another backend, under every policy.
#[tokio::test]
async fn what_no_reset_undoes_closes_the_connection() {
    let pg = cluster();
    for policy in [
        SessionReset::UnlessProvenClean,
        SessionReset::WhenDirty,
        SessionReset::Always,
        SessionReset::Never,
    ] {
        for change in [
            "SELECT setseed(0.42)",
            "LOAD 'passwordcheck'",
            "SELECT pg_catalog.setseed(0.5)",
        ] {
            let pool = one_connection(&pg, Role::Admin, policy).await;
            let mut c = pool.acquire().await.unwrap();
            let pid = c.process_id();
            c.simple_query(change).await.unwrap();
            drop(c);
            let c = pool.acquire().await.unwrap();
            assert_ne!(c.process_id(), pid, "after `{change}` under {policy:?}");
            drop(c);
            pool.close().await;
        }
    }
}
