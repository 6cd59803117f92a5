//! Statements that change or depend on session state, in many spellings, must not let one
//! caller's session reach another's.
//!
//! On the shared path (`pool.execute` / `pool.query`, pool of one connection, so every
//! later pipelined caller shares its session) each statement is either refused (an
//! `InvalidInput` error naming `acquire()`) or leaves nothing that another caller can see:
//! a battery of probes, sent by other callers right behind it and again after it, must
//! read what it read before (search_path, which `accounts` an unqualified name resolves
//! to, the current user, settings, temporary objects, LISTENs, SQL-level prepared
//! statements, cursors, advisory locks), and INSERTs sent by other callers behind it and
//! acknowledged must be visible from another session (no transaction left open).
//!
//! On the exclusive path (`pool.acquire()`, default session-reset policy, one connection)
//! what a caller did inside a `DO` block, a function, `set_config(..., false)`, a
//! temporary view, sequence or function is gone for the next caller of `acquire()`, and
//! for the next pipelined caller.
//!
//! Every case runs on a pool of its own; all cases run and the test fails at the end with
//! the list of those that leaked.

use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::{Connection, Error, ErrorKind, Pool};
use wirepool_testkit::{cluster, Cluster, Role};

const SCHEMA: &str = "
    CREATE SCHEMA other;
    CREATE TABLE public.accounts (owner text);
    INSERT INTO public.accounts VALUES ('public');
    CREATE TABLE other.accounts (owner text);
    INSERT INTO other.accounts VALUES ('other');
    CREATE TABLE public.ledger (id int8 PRIMARY KEY);
    CREATE SEQUENCE public.seq;
    CREATE FUNCTION public.sneaky() RETURNS int LANGUAGE plpgsql AS
        $$ BEGIN PERFORM set_config('search_path', 'other', false); RETURN 1; END $$;
    CREATE PROCEDURE public.set_path_proc() LANGUAGE plpgsql AS
        $$ BEGIN SET search_path = other; END $$;
";

/// What another caller reads: (name, SQL returning one text value).
const PROBES: &[(&str, &str)] = &[
    ("search_path", "SELECT current_setting('search_path')"),
    ("unqualified accounts", "SELECT owner FROM accounts"),
    ("current_user", "SELECT current_user::text"),
    ("wp.mark", "SELECT coalesce(current_setting('wp.mark', true), '<unset>')"),
    ("TimeZone", "SELECT current_setting('TimeZone')"),
    (
        "temporary objects",
        "SELECT ((SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) \
         + (SELECT count(*) FROM pg_proc WHERE pronamespace = pg_my_temp_schema()))::text",
    ),
    ("listening channels", "SELECT count(*)::text FROM pg_listening_channels()"),
    (
        "SQL prepared statements",
        "SELECT count(*)::text FROM pg_prepared_statements WHERE from_sql",
    ),
    ("cursors", "SELECT count(*)::text FROM pg_cursors"),
    (
        "advisory locks of this session",
        "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    ),
];

/// What is required of a case.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Refused, or nothing of it reaches callers sent right behind it or after it.
    RefusedOrNoTrace,
    /// As above, but only callers after its answer are checked: a function whose body
    /// changes the session cannot be seen by the pool before it has run.
    RefusedOrNoTraceAfterwards,
    /// It reads another caller's session state: refused, or the server's error with this
    /// SQLSTATE (never a value).
    RefusedOrError(&'static str),
    /// Refused (its effect cannot be checked by another caller).
    Refused,
}

struct Case {
    sql: &'static str,
    expect: Expect,
    /// Run by another caller on the shared path first.
    before: Option<&'static str>,
    /// The pool runs `SET wp.mark = 'init'` on its connections (for RESET).
    mark: bool,
}

const fn case(sql: &'static str) -> Case {
    Case {
        sql,
        expect: Expect::RefusedOrNoTrace,
        before: None,
        mark: false,
    }
}

const fn marked(sql: &'static str) -> Case {
    Case {
        mark: true,
        ..case(sql)
    }
}

const fn afterwards(sql: &'static str) -> Case {
    Case {
        expect: Expect::RefusedOrNoTraceAfterwards,
        ..case(sql)
    }
}

const SHARED_CASES: &[Case] = &[
    // Transactions, with leading semicolons, comments, nested comments and casing.
    case("BEGIN"),
    case(";BEGIN"),
    case("begin"),
    case("/* x */ BEGIN"),
    case("-- x\nBEGIN"),
    case("/* a /* nested */ b */ BEGIN"),
    case("\n\t BEGIN WORK"),
    case("START TRANSACTION"),
    case("start transaction isolation level repeatable read"),
    case("COMMIT"),
    // SET and RESET.
    case("SET search_path = other"),
    case(";SET search_path = other"),
    case("/* x */ SET search_path = other"),
    case("-- x\nSET search_path = other"),
    case("/* outer /* inner */ still a comment */ SET search_path = other"),
    case("set SEARCH_PATH to other"),
    case("SeT SeSsIoN search_path = other"),
    case("SET LOCAL search_path = other"),
    case("SET ROLE trust_user"),
    case("SET SESSION AUTHORIZATION trust_user"),
    case("SET TIME ZONE 'Pacific/Chatham'"),
    marked("RESET wp.mark"),
    marked("RESET ALL"),
    // LISTEN, PREPARE, cursors.
    case("LISTEN ch"),
    case("/* x */ listen \"Ch\""),
    case("PREPARE p AS SELECT 1"),
    case("-- c\nprepare p as select 2"),
    case("DEALLOCATE ALL"),
    case("DISCARD ALL"),
    case("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
    case("declare c no scroll cursor with hold for select 1"),
    // DO blocks.
    case("DO $$ BEGIN PERFORM set_config('search_path','other',false); END $$"),
    case("DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$"),
    case("DO $$ BEGIN EXECUTE 'LISTEN ch'; END $$"),
    case("do language plpgsql $x$ begin execute 'set search_path = other'; end $x$"),
    // set_config in its spellings.
    case("SELECT set_config('search_path', 'other', false)"),
    case("SELECT pg_catalog.set_config('search_path', 'other', false)"),
    case("SELECT \"set_config\"('search_path', 'other', false)"),
    case("SELECT U&\"\\0073et_config\"('search_path', 'other', false)"),
    case("SELECT U&\"!0073et_config\" UESCAPE '!' ('search_path', 'other', false)"),
    case("select SET_CONFIG ( 'search_path' , 'other' , false )"),
    case("SELECT 1 WHERE set_config('search_path', 'other', false) IS NOT NULL"),
    marked("SELECT set_config('wp.mark', 'changed', false)"),
    case("SELECT set_config('role', 'trust_user', false)"),
    case("UPDATE pg_settings SET setting = 'other' WHERE name = 'search_path'"),
    // Advisory locks.
    case("SELECT pg_advisory_lock(42)"),
    case("SELECT pg_try_advisory_lock(42)"),
    case("SELECT pg_catalog.pg_advisory_lock_shared(42)"),
    case("SELECT pg_advisory_lock(1, 42)"),
    // Temporary objects.
    case("SELECT 1 INTO LOCAL TEMP t1"),
    case("CREATE TEMP TABLE t1 (a int)"),
    case("create /* x */ temp table t4 (a int)"),
    case("CREATE GLOBAL TEMPORARY TABLE t3 (a int)"),
    case("CREATE TEMPORARY TABLE accounts AS SELECT 'temp'::text AS owner"),
    case("SELECT 'temp'::text AS owner INTO TEMP accounts"),
    case("CREATE TEMP VIEW v AS SELECT 1 AS a"),
    case("CREATE TEMP VIEW accounts AS SELECT 'temp'::text AS owner"),
    case("CREATE TEMP SEQUENCE s1"),
    case("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    case("EXPLAIN ANALYZE CREATE TEMP TABLE t2 AS SELECT 1"),
    // Reading another caller's session state.
    Case {
        expect: Expect::RefusedOrError(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE),
        before: Some("SELECT nextval('public.seq')::text"),
        ..case("SELECT lastval()")
    },
    Case {
        expect: Expect::RefusedOrError(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE),
        before: Some("SELECT nextval('public.seq')::text"),
        ..case("SELECT currval('public.seq')")
    },
    Case {
        expect: Expect::Refused,
        ..case("SELECT setseed(0.5)")
    },
    // Functions whose bodies change the session: the pool cannot see inside them, but
    // nothing may remain for the callers after them.
    afterwards("CALL set_path_proc()"),
    afterwards("SELECT sneaky()"),
    afterwards("SELECT * FROM sneaky()"),
];

fn refused(e: &Error) -> bool {
    e.kind() == ErrorKind::InvalidInput && e.to_string().contains("acquire()")
}

fn describe(e: &Error) -> String {
    format!("{e} (kind {:?}, SQLSTATE {:?})", e.kind(), e.code())
}

fn setup() -> Cluster {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    pg
}

async fn pool(pg: &Cluster, mark: bool) -> Pool {
    let mut b = Pool::builder(pg.config(Role::Admin))
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10));
    if mark {
        b = b.init_sql(["SET wp.mark = 'init'"]);
    }
    b.build().await.unwrap()
}

/// Each probe's answer on the shared path, all sent at once (so they are pipelined
/// together), or why it failed.
async fn shared_snapshot(pool: &Pool) -> Vec<(&'static str, String)> {
    let answers = futures_util::future::join_all(PROBES.iter().map(|(name, sql)| async move {
        let v = match pool.query_one(*sql, &[]).await {
            Ok(row) => row
                .try_get::<_, String>(0)
                .unwrap_or_else(|e| format!("<unreadable: {e}>")),
            Err(e) if refused(&e) => format!("<probe refused on the shared path: {e}>"),
            Err(e) => format!("<error: {}>", describe(&e)),
        };
        (*name, v)
    }))
    .await;
    answers
}

/// Each probe's answer on one connection.
async fn conn_snapshot(conn: &mut Connection) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, sql) in PROBES {
        let v = match conn.query_one(*sql, &[]).await {
            Ok(row) => row
                .try_get::<_, String>(0)
                .unwrap_or_else(|e| format!("<unreadable: {e}>")),
            Err(e) => format!("<error: {}>", describe(&e)),
        };
        out.push((*name, v));
    }
    out
}

/// The probes whose answer differs from the baseline, as `name: before -> now`.
fn changes(baseline: &[(&str, String)], now: &[(&str, String)]) -> Vec<String> {
    baseline
        .iter()
        .zip(now)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| format!("{name}: {a:?} -> {b:?}"))
        .collect()
}

/// INSERTs of other callers on the shared path; returns the ids acknowledged.
async fn inserts(pool: &Pool, ids: std::ops::Range<i64>) -> (Vec<i64>, Vec<String>) {
    let results = futures_util::future::join_all(ids.map(|id| async move {
        (
            id,
            pool.execute("INSERT INTO public.ledger VALUES ($1)", &[&id])
                .await,
        )
    }))
    .await;
    let mut acked = Vec::new();
    let mut problems = Vec::new();
    for (id, r) in results {
        match r {
            Ok(1) => acked.push(id),
            Ok(n) => problems.push(format!("INSERT of {id} said {n} rows")),
            Err(e) => problems.push(format!(
                "another caller's INSERT of {id} failed: {}",
                describe(&e)
            )),
        }
    }
    (acked, problems)
}

/// Runs one case on a pool of its own; returns what went wrong.
async fn shared_case(pg: &Cluster, c: &Case, n: i64) -> (Vec<String>, bool) {
    let pool = pool(pg, c.mark).await;
    let mut problems = Vec::new();
    // The baseline, and the pool's statements prepared before the case (so that
    // DEALLOCATE / DISCARD would hit them).
    let baseline = shared_snapshot(&pool).await;
    if baseline[1].1 != "public" {
        problems.push(format!("baseline is not as set up: {baseline:?}"));
    }
    if let Some(before) = c.before {
        match pool.query_one(before, &[]).await {
            Ok(_) => {}
            Err(e) if refused(&e) => {}
            Err(e) => problems.push(format!("`{before}` first failed: {}", describe(&e))),
        }
    }
    let first_ids = n * 100..n * 100 + 3;
    let later_ids = n * 100 + 3..n * 100 + 6;
    let pipelined_behind = c.expect != Expect::RefusedOrNoTraceAfterwards;
    let (outcome, behind) = if pipelined_behind {
        let (outcome, behind) = tokio::join!(pool.query(c.sql, &[]), async {
            tokio::task::yield_now().await;
            tokio::join!(shared_snapshot(&pool), inserts(&pool, first_ids.clone()))
        });
        (outcome, Some(behind))
    } else {
        (pool.query(c.sql, &[]).await, None)
    };
    let mut acked = Vec::new();
    let mut snapshots = Vec::new();
    if let Some((snap, (ids, p))) = behind {
        snapshots.push(("sent right behind it", snap));
        acked.extend(ids);
        problems.extend(p);
    }
    let after = shared_snapshot(&pool).await;
    snapshots.push(("sent after its answer", after));
    let (ids, p) = inserts(&pool, later_ids).await;
    acked.extend(ids);
    problems.extend(p);

    match (&outcome, c.expect) {
        (Err(e), _) if refused(e) => {}
        (Err(e), _) if e.kind() == ErrorKind::InvalidInput => {
            problems.push(format!("refused without naming acquire(): {e}"));
        }
        (_, Expect::Refused) => problems.push(format!(
            "not refused: {}",
            match &outcome {
                Ok(rows) => format!("it ran ({} rows)", rows.len()),
                Err(e) => describe(e),
            }
        )),
        (Err(e), Expect::RefusedOrError(code)) if e.code() == Some(code) => {}
        (Ok(rows), Expect::RefusedOrError(_)) => problems.push(format!(
            "answered with another caller's session state: {:?}",
            rows.first()
                .map(|r| r.try_get::<_, i64>(0).map_err(|e| e.to_string()))
        )),
        (Err(e), Expect::RefusedOrError(code)) => {
            problems.push(format!(
                "neither refused nor SQLSTATE {code}: {}",
                describe(e)
            ));
        }
        _ => {}
    }
    for (when, snap) in &snapshots {
        for ch in changes(&baseline, snap) {
            problems.push(format!("seen by a caller {when}: {ch}"));
        }
    }
    // From another session: no advisory lock held, every acknowledged INSERT committed.
    let list = acked
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let check = format!(
        "SELECT pg_try_advisory_lock(1) AND pg_try_advisory_lock(42), \
         (SELECT count(*) FROM public.ledger WHERE id IN ({}))",
        if list.is_empty() {
            "NULL".to_string()
        } else {
            list
        }
    );
    // The backends of the previous case's pool end a moment after it closed them, and
    // release their locks only then; this case's own connection stays open meanwhile, so a
    // lock it holds is still seen.
    let mut seen = pg.psql(&check).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.starts_with("t|") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        seen = pg.psql(&check).unwrap();
    }
    let (locks_free, visible) = seen.split_once('|').unwrap();
    if locks_free != "t" {
        problems.push("another session cannot take advisory lock 1 or 42".to_string());
    }
    if visible != acked.len().to_string() {
        problems.push(format!(
            "{} of the {} INSERTs acknowledged to other callers are visible from another \
             session (a transaction was left open around them)",
            visible,
            acked.len()
        ));
    }
    pool.close().await;
    (problems, outcome.is_err_and(|e| refused(&e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_changing_statements_are_refused_or_leave_no_trace_on_the_shared_path() {
    assert!(SHARED_CASES.len() >= 40);
    let pg = setup();
    let mut report = Vec::new();
    let mut refusals = 0;
    for (i, c) in SHARED_CASES.iter().enumerate() {
        let (problems, was_refused) = shared_case(&pg, c, i as i64 + 1).await;
        refusals += usize::from(was_refused);
        if !problems.is_empty() {
            report.push(format!(
                "`{}`:\n      {}",
                c.sql.escape_debug(),
                problems.join("\n      ")
            ));
        }
    }
    println!(
        "{} cases, {} refused, {} with problems",
        SHARED_CASES.len(),
        refusals,
        report.len()
    );
    assert!(
        report.is_empty(),
        "{} of {} statements on the shared path leaked or misbehaved:\n  {}",
        report.len(),
        SHARED_CASES.len(),
        report.join("\n  ")
    );
}

/// Statements an `acquire()` caller runs; the next caller of the same connection must
/// find nothing of them under the default session-reset policy.
const EXCLUSIVE_CASES: &[&str] = &[
    "DO $$ BEGIN PERFORM set_config('search_path','other',false); END $$",
    "DO $$ BEGIN EXECUTE 'SET search_path = other'; END $$",
    "SELECT set_config('search_path', 'other', false)",
    "UPDATE pg_settings SET setting = 'other' WHERE name = 'search_path'",
    "DO $$ BEGIN EXECUTE 'LISTEN excl_ch'; END $$",
    "DO $$ BEGIN EXECUTE 'PREPARE excl_p AS SELECT 1'; END $$",
    "SELECT pg_advisory_lock(42)",
    "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
    "SELECT sneaky()",
    "CALL set_path_proc()",
    "CREATE TEMP VIEW v AS SELECT 1 AS a",
    "CREATE TEMP VIEW accounts AS SELECT 'temp'::text AS owner",
    "CREATE TEMP SEQUENCE s1",
    "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TEMP TABLE accounts AS SELECT 'temp'::text AS owner",
    "SELECT set_config('role', 'trust_user', false)",
];

async fn exclusive_case(pg: &Cluster, sql: &str) -> Vec<String> {
    let pool = pool(pg, false).await;
    let mut problems = Vec::new();
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    let baseline = conn_snapshot(&mut c).await;
    if let Err(e) = c.batch_execute(sql).await {
        problems.push(format!("the statement itself failed: {}", describe(&e)));
    }
    let changed = conn_snapshot(&mut c).await;
    if changes(&baseline, &changed).is_empty() {
        problems.push("test set-up: the statement changed nothing the probes see".to_string());
    }
    drop(c);

    let mut c = pool.acquire().await.unwrap();
    let same = c.process_id() == pid;
    let next = conn_snapshot(&mut c).await;
    for ch in changes(&baseline, &next) {
        problems.push(format!(
            "the next acquire() caller ({} backend) sees {ch}",
            if same { "same" } else { "another" }
        ));
    }
    if sql.contains("LISTEN excl_ch") {
        // A notification on the channel must not reach the next caller.
        pg.psql("NOTIFY excl_ch, 'for the caller before'").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), c.next_notification()).await;
        if let Ok(n) = got {
            problems.push(format!(
                "the next acquire() caller received a notification: {n:?}"
            ));
        }
        let queued = c.take_notifications();
        if !queued.is_empty() {
            problems.push(format!(
                "the next acquire() caller has notifications queued: {queued:?}"
            ));
        }
    }
    drop(c);
    // And the next pipelined caller resolves `accounts` as before.
    match pool.query_one("SELECT owner FROM accounts", &[]).await {
        Ok(row) => {
            let owner: String = row.get(0);
            if owner != "public" {
                problems.push(format!(
                    "pool.query_one(\"SELECT owner FROM accounts\") read {owner}.accounts"
                ));
            }
        }
        Err(e) => problems.push(format!(
            "pool.query_one(\"SELECT owner FROM accounts\") failed: {}",
            describe(&e)
        )),
    }
    let locks_free = pg
        .psql("SELECT pg_try_advisory_lock(1) AND pg_try_advisory_lock(42)")
        .unwrap();
    if locks_free != "t" {
        problems.push("another session cannot take advisory lock 1 or 42".to_string());
    }
    pool.close().await;
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_acquire_caller_leaves_is_gone_for_the_next_under_the_default_reset() {
    let pg = setup();
    let mut report = Vec::new();
    for sql in EXCLUSIVE_CASES {
        let problems = exclusive_case(&pg, sql).await;
        if !problems.is_empty() {
            report.push(format!("`{sql}`:\n      {}", problems.join("\n      ")));
        }
    }
    assert!(
        report.is_empty(),
        "{} of {} statements left state for the next caller:\n  {}",
        report.len(),
        EXCLUSIVE_CASES.len(),
        report.join("\n  ")
    );
}
