//! An outside attacker's tests of the shared path's refusal (written from the public API
//! and the documentation only): odd spellings against the scanner.
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

use wirepool::ErrorKind;
use wirepool_testkit::{Cluster, Role};

mod attack;
use attack::*;

// ---------------------------------------------------------------------------------------
// Claim 1: odd spellings against the scanner
// ---------------------------------------------------------------------------------------

fn spellings() -> Vec<String> {
    let mut v: Vec<String> = [
        // Identifiers with `$` next to something that looks like a dollar quote.
        "SELECT 1 AS x$q$, set_config('search_path','other',false) AS y -- $q$",
        "SELECT 1 AS x$$, set_config('search_path','other',false) AS y -- $$",
        // A comment opener whose star is not a closer.
        "SELECT 1 /*/ */ , set_config('search_path','other',false)",
        "SELECT 1 /**/, set_config('search_path','other',false) /* /* */ */",
        // set_config with a computed third argument.
        "SELECT set_config('search_path','other', true AND false)",
        "SELECT set_config('search_path','other', NOT true)",
        "SELECT set_config('search_path','other', true = false)",
        "SELECT set_config('search_path','other', true IS NULL)",
        "SELECT set_config('search_path','other', true::int = 0)",
        "SELECT set_config('search_path','other', \"true\") FROM (SELECT false AS \"true\") s",
        "SELECT set_config('search_path','other', s.true) FROM (SELECT false AS \"true\") s",
        "SELECT set_config('search_path','other', is_local) FROM (SELECT false AS is_local) s",
        "SELECT set_config('search_path','other', (false))",
        "SELECT set_config('search_path','other', 'f')",
        "SELECT set_config('search_path','other', 'off'::bool)",
        "SELECT set_config('search_path','other', true), set_config('attack.mark','hopped', false)",
        "SELECT set_config(n, 'other', false) FROM (VALUES ('search_path')) v(n)",
        // Qualified and spaced spellings.
        "SELECT pg_catalog/**/./**/set_config('search_path','other',false)",
        "SELECT pg_catalog . set_config ('search_path','other',false)",
        "SELECT set_config/* c */('search_path','other',false)",
        "SELECT set_config\n-- c\n('search_path','other',false)",
        "SeLeCt SeT_CoNfIg('search_path','other',FaLsE)",
        "SELECT \"pg_catalog\".\"set_config\"('search_path','other',false)",
        // Unicode escapes.
        "SELECT U&\"\\+000073et_config\"('search_path','other',false)",
        "SELECT U&\"!0073et_config\" /* c */ uescape '!' ('search_path','other',false)",
        "SELECT u&\"#0073et_config\"\nUESCAPE\n'#'('search_path','other',false)",
        "SELECT U&\"pg\\005fcatalog\".set_config('search_path','other',false)",
        "SELECT U&'\\0027' AS q, set_config('search_path','other',false)",
        // Strings and dollar quotes next to the call.
        "SELECT E'\\'', set_config('search_path','other',false)",
        "SELECT E'\\\\' AS a, set_config('search_path','other',false)",
        "SELECT $a$ $$ $a$, set_config('search_path','other',false)",
        "SELECT $_$x$_$ AS s, set_config('search_path','other',false)",
        "SELECT 'a'\n'b' AS s, set_config('search_path','other',false)",
        // Other shapes of the call.
        "WITH s AS (SELECT set_config('search_path','other',false) AS v) SELECT v FROM s",
        "SELECT * FROM ROWS FROM (set_config('search_path','other',false))",
        "SELECT * FROM set_config('search_path','other',false)",
        "VALUES (set_config('search_path','other',false))",
        "EXPLAIN (ANALYZE) SELECT set_config('search_path','other',false)",
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT pg_advisory_lock(4242)",
        "INSERT INTO public.notes SELECT set_config('search_path','other',false)",
        "MERGE INTO public.notes n USING (SELECT set_config('search_path','other',false) AS v) s \
         ON false WHEN NOT MATCHED THEN INSERT VALUES (s.v)",
        "CREATE TABLE public.ctas_sc AS SELECT set_config('search_path','other',false) AS v",
        "SELECT set_config('search_path','other',false) AS v INTO public.selinto_sc",
        // Advisory locks.
        "SELECT pg_advisory_lock(4242::int8)",
        "SELECT pg_advisory_lock(k) FROM (VALUES (4242)) v(k)",
        "SELECT * FROM pg_advisory_lock(4242)",
        "SELECT pg_catalog.pg_try_advisory_lock_shared(4242)",
        // pg_settings.
        "UPDATE pg_catalog.pg_settings SET setting = 'other' WHERE name = 'search_path'",
        "UPDATE pg_settings s SET setting = 'other' WHERE s.name = 'search_path'",
        "WITH u AS (UPDATE pg_settings SET setting = 'other' WHERE name = 'search_path' \
         RETURNING 1) SELECT * FROM u",
        // Transaction control spelled oddly (a transaction left open).
        "begin;",
        ";;;BEGIN;;;",
        "START/**/TRANSACTION",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "/* x */ ROLLBACK",
        "COMMIT AND CHAIN",
        "ABORT",
        // LISTEN, cursors, prepare.
        "LISTEN/**/x",
        "listen\"x\"",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE pz AS SELECT 1",
        // COPY variants and other statements.
        "COPY (SELECT 1) TO STDOUT",
        "copy notes from stdin",
        "COPY public.notes TO '/dev/null'",
        "COPY (SELECT set_config('search_path','other',false)) TO '/dev/null'",
        "SECURITY LABEL ON TABLE notes IS 'x'",
        "IMPORT FOREIGN SCHEMA public FROM SERVER nosuch INTO other",
        "SELECT dblink_connect('leak', 'dbname=postgres')",
        "SELECT setseed(0.5)",
        "SHOW search_path",
        "TABLE who",
        // A long alias after the call.
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!(
        "SELECT pg_advisory_lock(4242) AS \"{}\"",
        "x".repeat(200)
    ));
    v.push(format!(
        "SELECT 1 AS {}$q$, set_config('search_path','other',false) -- $q$",
        "y".repeat(100)
    ));
    // NUL bytes.
    v.push("SELECT 1\0; SET search_path = other".to_string());
    v.push("SELECT set_config('search_path','other',false)\0".to_string());
    v.push("SELECT 1 --\0\n, set_config('search_path','other',false)".to_string());
    // Huge statements (> 1 MiB) hiding the call behind a comment, a string, a list.
    let mib = 2 * 1024 * 1024;
    v.push(format!(
        "SELECT 1 /*{}*/ , set_config('search_path','other',false)",
        "x".repeat(mib)
    ));
    v.push(format!(
        "SELECT '{}' AS s, set_config('search_path','other',false)",
        "x".repeat(mib)
    ));
    v.push(format!(
        "SELECT {} set_config('search_path','other',false)",
        "1,".repeat(mib / 2)
    ));
    v.push(format!(
        "SELECT 1 {}{} , set_config('search_path','other',false)",
        "/*".repeat(50_000),
        "*/".repeat(50_000)
    ));
    v
}

async fn spelling_case(pg: &Cluster, role: Role, sql: &str) -> (Vec<String>, &'static str) {
    let pool = pool1(pg, role).await;
    let baseline = shared_snapshot(&pool).await;
    let mut problems = Vec::new();
    let outcome = pool.query(sql, &[]).await;
    let verdict = match &outcome {
        Err(e) if refused(e) => "refused",
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            problems.push(format!("refused without naming acquire(): {e}"));
            "refused"
        }
        Err(_) => "server error",
        Ok(_) => "ran",
    };
    let after = shared_snapshot(&pool).await;
    for ch in changes(&baseline, &after) {
        problems.push(format!("a later pipelined caller sees {ch}"));
    }
    let mut c = pool.acquire().await.unwrap();
    let next = conn_snapshot(&mut c).await;
    let txn = c.transaction_status();
    drop(c);
    for ch in changes(&baseline, &next)
        .into_iter()
        .filter(|c| !c.contains(": \"<probe refused"))
    {
        problems.push(format!("the next acquire() caller sees {ch}"));
    }
    if txn != wirepool::TransactionStatus::Idle {
        problems.push(format!(
            "the next acquire() caller is in a transaction: {txn:?}"
        ));
    }
    if pg.psql(FREE_4242).unwrap() != "t" {
        problems.push("advisory lock 4242 is held by the pool's connection".to_string());
    }
    if !problems.is_empty() {
        if let Err(e) = &outcome {
            problems.push(format!("(the attack's own result: {})", describe(e)));
        }
    }
    pool.close().await;
    (problems, verdict)
}

/// Claim 1: the scanner reads what PostgreSQL reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_spellings_are_refused_or_leave_nothing() {
    let pg = setup();
    let cases = spellings();
    let mut report = Vec::new();
    for sql in &cases {
        let (problems, verdict) = spelling_case(&pg, Role::Admin, sql).await;
        if problems.is_empty() {
            println!("held ({verdict}): {}", short(sql));
        } else {
            report.push(format!(
                "pool.query({}) [{verdict}]:\n      {}",
                short(sql),
                problems.join("\n      ")
            ));
        }
    }
    finish("odd spellings on the shared path", cases.len(), report);
}

/// Claim 1: with `standard_conforming_strings = off` (a role default), `'\'` does not end
/// a string. A scanner that reads strings as if it were on sees a string where the server
/// sees a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_standard_conforming_strings_off_reads_strings_differently() {
    let pg = setup();
    pg.psql("ALTER ROLE trust_user SET standard_conforming_strings = off")
        .unwrap();
    let cases = [
        "SELECT '\\' AS a, ' AS b, set_config($q$search_path$q$, $q$other$q$, false) AS c -- '",
        "SELECT '\\' AS a, ' AS b, pg_advisory_lock(4242) AS c -- '",
    ];
    let mut report = Vec::new();
    for sql in cases {
        let (problems, verdict) = spelling_case(&pg, Role::Trust, sql).await;
        if problems.is_empty() {
            println!("held ({verdict}): {sql:?}");
        } else {
            report.push(format!(
                "pool.query({sql:?}) as trust_user (standard_conforming_strings = off) \
                 [{verdict}]:\n      {}",
                problems.join("\n      ")
            ));
        }
    }
    finish(
        "standard_conforming_strings = off on the shared path",
        cases.len(),
        report,
    );
}
