//! An outside attacker's tests of the shared path and the session reset (written from the
//! public API and the documentation only): session state that reads or outlives the reset,
//! prepared statements of one connection passed to the pool, and `ALTER ROLE ... SET`.
//!
//! The claims attacked:
//!
//! 1. The shared path refuses what changes or depends on the session; what gets past is
//!    caught from the server's answers (a transaction left open is rolled back, a changed
//!    session takes its connection out for a reset).
//! 2. Under the default `SessionReset::WhenDirty`, nothing one `acquire()` caller does to
//!    its session reaches the next caller of that connection.
//! 3. Pipelined and `acquire()` callers share one FIFO; neither starves.
//! 4. A pipelined statement never decodes a value with a stale description.
//! 5. Nothing acknowledged is lost; `may_have_run() == Some(false)` means it did not run.
//!
//! Each test collects every problem it finds and fails once, at the end, with the list: a

use wirepool::error::sqlstate;
use wirepool::{Pool, SessionReset};
use wirepool_testkit::Role;

mod attack;
use attack::*;

// ---------------------------------------------------------------------------------------
// Claims 1 and 2: session state that reads or outlives the reset
// ---------------------------------------------------------------------------------------

/// Claim 1 ("depends on session state"): `lastval()` is refused, but the same call in a
/// view reads the sequence state another pipelined caller left on the shared connection.
/// Claim 2: `nextval` is on the clean list, so an `acquire()` caller's sequence state is
/// never reset, and the next caller's `currval` reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_state_of_one_caller_is_read_by_another() {
    let pg = setup();
    let mut report = Vec::new();

    // Shared path: A draws a value, B reads it through a view.
    let pool = pool1(&pg, Role::Admin).await;
    let a = pool
        .query_one("SELECT nextval('public.seq')", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    match pool.query_one("SELECT v FROM v_lastval", &[]).await {
        Ok(row) => report.push(format!(
            "pool.query_one(\"SELECT v FROM v_lastval\") (a view over lastval()) read another \
             pipelined caller's nextval: {} (theirs was {a}); expected a refusal or SQLSTATE 55000",
            row.get::<_, i64>(0)
        )),
        Err(e) if refused(&e) || e.code() == Some(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE) => {}
        Err(e) => report.push(format!("v_lastval: unexpected error {}", describe(&e))),
    }
    pool.close().await;

    // Exclusive path: A calls nextval, B calls currval on the same backend.
    for (what, first) in [
        ("nextval", "SELECT nextval('public.seq')"),
        ("setval", "SELECT setval('public.seq', 777)"),
    ] {
        let pool = pool1(&pg, Role::Admin).await;
        let mut c = pool.acquire().await.unwrap();
        let pid = c.process_id();
        let v = c.query_one(first, &[]).await.unwrap().get::<_, i64>(0);
        drop(c);
        let mut c = pool.acquire().await.unwrap();
        assert_eq!(c.process_id(), pid);
        match c.query_one("SELECT currval('public.seq')", &[]).await {
            Ok(row) => report.push(format!(
                "acquire(): after caller A ran {first:?} (= {v}) and returned the connection, \
                 caller B's `SELECT currval('public.seq')` answered {} instead of SQLSTATE 55000 \
                 ({what} is not reset under the default policy)",
                row.get::<_, i64>(0)
            )),
            Err(e) if e.code() == Some(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE) => {}
            Err(e) => report.push(format!("currval: unexpected error {}", describe(&e))),
        }
        drop(c);
        pool.close().await;
    }

    // Shared path then acquire: a lane's sequence state reaches an acquire() caller.
    let pool = pool1(&pg, Role::Admin).await;
    let v = pool
        .query_one("SELECT nextval('public.seq')", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    let mut c = pool.acquire().await.unwrap();
    match c.query_one("SELECT lastval()", &[]).await {
        Ok(row) => report.push(format!(
            "an acquire() caller's `SELECT lastval()` answered {} (a pipelined caller's \
             nextval was {v}) instead of SQLSTATE 55000",
            row.get::<_, i64>(0)
        )),
        Err(e) if e.code() == Some(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE) => {}
        Err(e) => report.push(format!("lastval: unexpected error {}", describe(&e))),
    }
    drop(c);
    pool.close().await;
    finish("sequence state between callers", 4, report);
}

/// Claim 2: what the documented reset (`RESET ALL`, `DISCARD TEMP`, ...) cannot undo:
/// the random seed, a loaded library, dblink's named connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_the_reset_does_not_undo() {
    let pg = setup();
    let mut report = Vec::new();
    let expected = pg
        .psql("SELECT setseed(0.42); SELECT random()::text")
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let dsn = format!(
        "host={} port={} user=wirepool_admin dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    );

    let cases: Vec<ResetCase<'_>> = vec![
        (
            "setseed",
            "SELECT setseed(0.42)::text".to_string(),
            "SELECT random()::text",
            Box::new(move |r| match r {
                Ok(v) if v == expected => Some(format!(
                    "the next caller's random() is {v}: exactly what setseed(0.42) predicts"
                )),
                _ => None,
            }),
        ),
        (
            "LOAD 'passwordcheck'",
            "LOAD 'passwordcheck'".to_string(),
            "ALTER ROLE pw_victim PASSWORD 'pw'",
            Box::new(|r| match r {
                Err(e) if e.contains("password") => Some(format!(
                    "the next caller's `ALTER ROLE ... PASSWORD 'pw'` fails in a module the \
                     previous caller loaded: {e}"
                )),
                _ => None,
            }),
        ),
        (
            "dblink_connect",
            format!("SELECT dblink_connect('leak', '{dsn}')"),
            "SELECT coalesce(array_to_string(dblink_get_connections(), ','), '<none>')",
            Box::new(|r| match r {
                Ok(v) if v != "<none>" => Some(format!(
                    "the next caller has the previous caller's dblink connection(s): {v}"
                )),
                _ => None,
            }),
        ),
    ];
    for policy in [
        SessionReset::UnlessProvenClean,
        SessionReset::WhenDirty,
        SessionReset::Always,
    ] {
        for (name, first, second, judge) in &cases {
            let pool = Pool::builder(pg.config(Role::Admin))
                .min_size(1)
                .max_size(1)
                .session_reset(policy)
                .build()
                .await
                .unwrap();
            let mut c = pool.acquire().await.unwrap();
            let pid = c.process_id();
            if let Err(e) = c.simple_query(first).await {
                report.push(format!("({name}: set-up failed: {})", describe(&e)));
                continue;
            }
            drop(c);
            let mut c = pool.acquire().await.unwrap();
            let same = c.process_id() == pid;
            let r = match c.simple_query(second).await {
                Ok(rows) => Ok(rows
                    .first()
                    .and_then(|r| r.get(0))
                    .unwrap_or("")
                    .to_string()),
                Err(e) => Err(e.to_string()),
            };
            drop(c);
            if let Some(p) = judge(r) {
                report.push(format!(
                    "{policy:?}, acquire(): caller A ran {first:?}; caller B on the {} backend: {p}",
                    if same { "same" } else { "another" }
                ));
            }
            pool.close().await;
        }
    }
    // On the shared path, through a function of the application: the probe does not
    // read dblink's connections.
    pg.psql(&format!(
        "CREATE FUNCTION public.open_link() RETURNS text LANGUAGE sql AS \
         $f$ SELECT dblink_connect('leak2', '{dsn}') $f$"
    ))
    .unwrap();
    let pool = pool1(&pg, Role::Admin).await;
    match pool.query_one("SELECT open_link()", &[]).await {
        Ok(_) => {
            let mut c = pool.acquire().await.unwrap();
            let r = c
                .query_one(
                    "SELECT coalesce(array_to_string(dblink_get_connections(), ','), '<none>')",
                    &[],
                )
                .await;
            drop(c);
            if let Ok(row) = r {
                let v: String = row.get(0);
                if v != "<none>" {
                    report.push(format!(
                        "pool.query_one(\"SELECT open_link()\") (a function calling dblink_connect) \
                         left the dblink connection {v:?} for the next acquire() caller"
                    ));
                }
            }
        }
        Err(e) => println!("open_link on the shared path: {}", describe(&e)),
    }
    pool.close().await;
    finish("state the session reset does not undo", 7, report);
}

// ---------------------------------------------------------------------------------------
// Claims 1 and 4: prepared statements of one connection passed to the pool
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_elsewhere_passed_to_the_shared_path() {
    let pg = setup();
    let mut report = Vec::new();

    // A session statement prepared through acquire(), then run on the shared path.
    for sql in [
        "SET search_path = other",
        "BEGIN",
        "SELECT pg_advisory_lock(4242)",
        "LISTEN stmt_ch",
        "SELECT set_config('search_path', 'other', false)",
    ] {
        let pool = pool1(&pg, Role::Admin).await;
        let baseline = shared_snapshot(&pool).await;
        let mut c = pool.acquire().await.unwrap();
        let stmt = match c.prepare(sql).await {
            Ok(s) => s,
            Err(e) => {
                println!("prepare({sql:?}) failed: {}", describe(&e));
                continue;
            }
        };
        drop(c);
        let outcome = pool.execute(&stmt, &[]).await;
        let after = shared_snapshot(&pool).await;
        let mut c = pool.acquire().await.unwrap();
        let txn = c.transaction_status();
        let next = conn_snapshot(&mut c).await;
        drop(c);
        let mut problems: Vec<String> = changes(&baseline, &after)
            .into_iter()
            .map(|c| format!("a later pipelined caller sees {c}"))
            .collect();
        problems.extend(
            changes(&baseline, &next)
                .into_iter()
                .filter(|c| !c.contains(": \"<probe refused"))
                .map(|c| format!("the next acquire() caller sees {c}")),
        );
        if txn != wirepool::TransactionStatus::Idle {
            problems.push(format!(
                "the next acquire() caller is in a transaction ({txn:?})"
            ));
        }
        if pg.psql(FREE_4242).unwrap() != "t" {
            problems.push("advisory lock 4242 is held by the pool's connection".to_string());
        }
        if outcome.is_ok() && sql == "BEGIN" {
            problems.push("a prepared BEGIN was reported done on the shared path".to_string());
        }
        if !problems.is_empty() {
            report.push(format!(
                "pool.execute(&conn.prepare({sql:?})) -> {}:\n      {}",
                match &outcome {
                    Ok(n) => format!("Ok({n})"),
                    Err(e) => describe(e),
                },
                problems.join("\n      ")
            ));
        }
        pool.close().await;
    }

    // A statement of one pool's connection run on another pool, whose connection has its
    // own statements (perhaps under the same names).
    pg.psql("INSERT INTO public.notes VALUES ('victim')")
        .unwrap();
    let pool_a = pool1(&pg, Role::Admin).await;
    let pool_b = pool1(&pg, Role::Admin).await;
    let mut cb = pool_b.acquire().await.unwrap();
    let b_delete = cb
        .prepare("DELETE FROM public.notes WHERE owner = 'victim'")
        .await
        .unwrap();
    let b_int = cb.prepare("SELECT 42::int4 AS v").await.unwrap();
    drop(cb);
    let _ = (&b_delete, &b_int);
    let mut ca = pool_a.acquire().await.unwrap();
    let a_insert = ca
        .prepare("INSERT INTO public.notes VALUES ('from-a')")
        .await
        .unwrap();
    let a_text = ca.prepare("SELECT 'from a'::text AS v").await.unwrap();
    drop(ca);
    match pool_b.query(&a_text, &[]).await {
        Ok(rows) => {
            let got = rows
                .first()
                .map(|r| format!("{:?}", r.try_get::<_, String>(0).map_err(|e| e.to_string())));
            if got.as_deref() != Some("Ok(\"from a\")") {
                report.push(format!(
                    "pool_b.query(&statement prepared on pool_a) returned {got:?}, not \"from a\""
                ));
            }
        }
        Err(e) => println!("pool_b.query(&a_text): {}", describe(&e)),
    }
    let r = pool_b.execute(&a_insert, &[]).await;
    let victim = pg
        .psql("SELECT count(*) FROM public.notes WHERE owner = 'victim'")
        .unwrap();
    let from_a = pg
        .psql("SELECT count(*) FROM public.notes WHERE owner = 'from-a'")
        .unwrap();
    if victim != "1" {
        report.push(format!(
            "pool_b.execute(&INSERT prepared on pool_a) -> {:?} deleted the victim row: pool_b \
             ran its own statement of the same name",
            r.as_ref().map_err(describe)
        ));
    }
    match &r {
        Ok(1) if from_a != "1" => report.push(format!(
            "pool_b.execute(&INSERT prepared on pool_a) said Ok(1) but {from_a} rows were inserted"
        )),
        _ => {}
    }
    pool_a.close().await;
    pool_b.close().await;
    finish("prepared statements on the shared path", 7, report);
}

// ---------------------------------------------------------------------------------------
// ALTER ROLE ... SET: a change for new sessions (observed, not counted as a leak)
// ---------------------------------------------------------------------------------------

/// `ALTER ROLE CURRENT_USER SET search_path = other` on the shared path is a catalog
/// change meant for new sessions, as it would be through any client; it is printed, not
/// judged. What is judged: the connections the pool already has keep their session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_role_set_reaches_only_new_sessions() {
    let pg = setup();
    let pool = pool1(&pg, Role::Admin).await;
    let r = pool
        .execute("ALTER ROLE CURRENT_USER SET search_path = other", &[])
        .await;
    println!(
        "ALTER ROLE CURRENT_USER SET on the shared path: {:?}",
        r.as_ref().map_err(describe)
    );
    let owner: String = pool
        .query_one("SELECT owner FROM who", &[])
        .await
        .unwrap()
        .get(0);
    let fresh = pool1(&pg, Role::Admin).await;
    let fresh_owner: String = fresh
        .query_one("SELECT owner FROM who", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "existing connection reads {owner}.who; a new pool's connection reads {fresh_owner}.who"
    );
    pg.psql("ALTER ROLE wirepool_admin RESET search_path")
        .unwrap();
    fresh.close().await;
    pool.close().await;
    assert_eq!(
        owner, "public",
        "an existing session changed by ALTER ROLE ... SET"
    );
}
