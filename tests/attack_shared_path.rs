//! An outside attacker's tests of the shared path (`pool.query` / `query_one` /
//! `query_opt` / `execute`) and of the session reset between `acquire()` callers, written
//! from the public API and the documentation only.
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
//! failure here is a finding, not a flaky test.

use std::sync::{Arc, Mutex};

/// A statement, what it leaves, a later caller's check and the judge of its answer.
type ResetCase<'a> = (
    &'a str,
    String,
    &'a str,
    Box<dyn Fn(Result<String, String>) -> Option<String>>,
);
use std::time::{Duration, Instant};

use wirepool::{Connection, Error, ErrorKind, Pool, SessionReset};
use wirepool_testkit::{cluster, Cluster, Role};

// ---------------------------------------------------------------------------------------
// Set-up shared by the tests
// ---------------------------------------------------------------------------------------

/// Two schemas with a table of the same name (`who`), so which one an unqualified name
/// resolves to shows the search_path; `notes` in both for writes sent behind an attack;
/// `hop()` changes the session in every way a probe can see; `hop_imm(int)` does what an
/// IMMUTABLE function may (settings, an advisory lock); `hop_bool(int)` is a predicate.
const SCHEMA: &str = r#"
    CREATE SCHEMA other;
    CREATE TABLE public.who (owner text); INSERT INTO public.who VALUES ('public');
    CREATE TABLE other.who (owner text); INSERT INTO other.who VALUES ('other');
    CREATE TABLE public.notes (owner text);
    CREATE TABLE other.notes (owner text);
    GRANT USAGE ON SCHEMA other TO PUBLIC;
    GRANT ALL ON ALL TABLES IN SCHEMA public, other TO PUBLIC;
    CREATE SEQUENCE public.seq;
    GRANT ALL ON SEQUENCE public.seq TO PUBLIC;

    CREATE FUNCTION public.hop() RETURNS int LANGUAGE plpgsql AS $f$
    BEGIN
        PERFORM set_config('search_path', 'other', false);
        PERFORM set_config('attack.mark', 'hopped', false);
        PERFORM pg_advisory_lock(4242);
        EXECUTE 'LISTEN hop_ch';
        IF NOT EXISTS (SELECT 1 FROM pg_cursors WHERE name = 'hop_cur') THEN
            EXECUTE 'DECLARE hop_cur CURSOR WITH HOLD FOR SELECT 1';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = 'hop_p') THEN
            EXECUTE 'PREPARE hop_p AS SELECT 1';
        END IF;
        EXECUTE 'CREATE TEMP TABLE IF NOT EXISTS hop_tmp (a int)';
        RETURN 1;
    END $f$;

    CREATE FUNCTION public.hop_imm(a int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
    BEGIN
        PERFORM set_config('search_path', 'other', false);
        PERFORM set_config('attack.mark', 'hopped', false);
        PERFORM pg_advisory_lock(4242);
        RETURN a;
    END $f$;

    CREATE FUNCTION public.hop_bool(a int) RETURNS bool LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN true; END $f$;

    -- A view, a trigger, a rule, a default, a generated column, a CHECK, a domain, a
    -- cast, an operator, attribute notation, an index expression, and overloads of
    -- built-in names that take other argument types.
    CREATE VIEW public.v_hop AS SELECT public.hop() AS h;

    CREATE TABLE public.trig_t (a int); INSERT INTO public.trig_t VALUES (100);
    CREATE FUNCTION public.hop_trig() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN coalesce(NEW, OLD); END $f$;
    CREATE TRIGGER hop_row BEFORE INSERT OR UPDATE OR DELETE ON public.trig_t
        FOR EACH ROW EXECUTE FUNCTION public.hop_trig();
    CREATE FUNCTION public.hop_trig_stmt() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN NULL; END $f$;
    CREATE TABLE public.trunc_t (a int);
    CREATE TRIGGER hop_trunc BEFORE TRUNCATE ON public.trunc_t
        FOR EACH STATEMENT EXECUTE FUNCTION public.hop_trig_stmt();

    CREATE TABLE public.rule_t (a int);
    CREATE TABLE public.rule_sink (a int);
    CREATE RULE hop_rule AS ON INSERT TO public.rule_t
        DO ALSO INSERT INTO public.rule_sink VALUES (public.hop());

    CREATE TABLE public.def_t (a int DEFAULT public.hop());
    CREATE TABLE public.gen_t (a int, b int GENERATED ALWAYS AS (public.hop_imm(a)) STORED);
    CREATE TABLE public.chk_t (a int CHECK (public.hop_bool(a)));
    CREATE TABLE public.idx_t (a int);
    CREATE INDEX idx_t_hop ON public.idx_t (public.hop_imm(a));

    CREATE DOMAIN public.hopdom AS int CHECK (public.hop_bool(VALUE));

    CREATE TYPE public.hopbox AS (v int);
    CREATE FUNCTION public.to_hopbox(int) RETURNS public.hopbox LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN ROW($1)::public.hopbox; END $f$;
    CREATE CAST (int AS public.hopbox) WITH FUNCTION public.to_hopbox(int);

    CREATE FUNCTION public.hop_op(int, int) RETURNS int LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN $1 + $2; END $f$;
    CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = int, FUNCTION = public.hop_op);

    CREATE FUNCTION public.hop_attr(public.who) RETURNS int LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN 1; END $f$;

    CREATE FUNCTION public.now(int) RETURNS int LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN $1; END $f$;
    CREATE FUNCTION public.lower(int) RETURNS int LANGUAGE plpgsql AS $f$
    BEGIN PERFORM public.hop(); RETURN $1; END $f$;

    CREATE MATERIALIZED VIEW public.mv_hop AS SELECT 1 AS h WITH NO DATA;

    -- Reads of session state through a view.
    CREATE VIEW public.v_lastval AS SELECT lastval() AS v;
    CREATE VIEW public.v_mark AS SELECT current_setting('attack.mark', true) AS v;

    -- A slow session changer, for cancellation.
    CREATE FUNCTION public.hop_slow() RETURNS int LANGUAGE plpgsql AS $f$
    BEGIN
        PERFORM set_config('search_path', 'other', false);
        PERFORM set_config('attack.mark', 'hopped', false);
        PERFORM pg_sleep(0.002);
        RETURN 1;
    END $f$;

    CREATE EXTENSION dblink;
    CREATE ROLE pw_victim LOGIN;
"#;

/// What another caller reads: (name, SQL returning one text value).
const PROBES: &[(&str, &str)] = &[
    ("search_path", "SELECT current_setting('search_path')"),
    ("unqualified `who`", "SELECT owner FROM who"),
    (
        "attack.mark",
        // A custom setting once set stays defined as '' after RESET ALL (PostgreSQL cannot
        // undo that), so '' counts as unset here.
        "SELECT coalesce(nullif(current_setting('attack.mark', true), ''), '<unset>')",
    ),
    (
        "advisory locks of this backend",
        "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    ),
    ("cursors", "SELECT count(*)::text FROM pg_cursors"),
    (
        "SQL prepared statements",
        "SELECT count(*)::text FROM pg_prepared_statements WHERE from_sql",
    ),
    (
        "temporary tables",
        "SELECT count(*)::text FROM pg_class WHERE relnamespace = pg_my_temp_schema()",
    ),
    (
        "listening channels",
        "SELECT count(*)::text FROM pg_listening_channels()",
    ),
];

fn refused(e: &Error) -> bool {
    e.kind() == ErrorKind::InvalidInput && e.to_string().contains("acquire()")
}

fn describe(e: &Error) -> String {
    format!(
        "{e} (kind {:?}, SQLSTATE {:?}, may_have_run {:?})",
        e.kind(),
        e.code(),
        e.may_have_run()
    )
}

fn setup() -> Cluster {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    pg
}

/// A pool of exactly one connection, so every caller shares that connection's session.
async fn pool1(pg: &Cluster, role: Role) -> Pool {
    Pool::builder(pg.config(role))
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(15))
        .build()
        .await
        .unwrap()
}

async fn shared_snapshot(pool: &Pool) -> Vec<(&'static str, String)> {
    futures_util::future::join_all(PROBES.iter().map(|(name, sql)| async move {
        let v = match pool.query_one(*sql, &[]).await {
            Ok(row) => row
                .try_get::<_, String>(0)
                .unwrap_or_else(|e| format!("<unreadable: {e}>")),
            Err(e) if refused(&e) => "<probe refused on the shared path>".to_string(),
            Err(e) => format!("<error: {}>", describe(&e)),
        };
        (*name, v)
    }))
    .await
}

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

fn changes(baseline: &[(&str, String)], now: &[(&str, String)]) -> Vec<String> {
    baseline
        .iter()
        .zip(now)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| format!("{name}: {a:?} -> {b:?}"))
        .collect()
}

fn finish(title: &str, total: usize, report: Vec<String>) {
    assert!(
        report.is_empty(),
        "{title}: {} of {} attacks broke a claim:\n  {}",
        report.len(),
        total,
        report.join("\n  ")
    );
}

/// A tiny deterministic generator (no extra dependency).
struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---------------------------------------------------------------------------------------
// Claims 1 and 2: calls the text does not show
// ---------------------------------------------------------------------------------------

/// Statements whose text calls no function of the application, but which run `hop()`
/// (or `hop_imm`) through the schema: views, triggers, rules, defaults, generated columns,
/// CHECK constraints, domains, casts, operators, attribute notation, index expressions,
/// overloads of built-in names. The last few call `hop()` visibly (controls).
const HIDDEN_CALLS: &[&str] = &[
    "SELECT h FROM v_hop",
    "TABLE v_hop",
    "VALUES ((SELECT h FROM v_hop))",
    "EXPLAIN (ANALYZE) SELECT h FROM v_hop",
    "WITH x AS (SELECT h FROM v_hop) SELECT h FROM x",
    "INSERT INTO trig_t VALUES (1)",
    "UPDATE trig_t SET a = a WHERE a = 100",
    "DELETE FROM trig_t WHERE a = 1",
    "WITH x AS (INSERT INTO trig_t VALUES (3) RETURNING a) SELECT a FROM x",
    "MERGE INTO trig_t t USING (VALUES (2)) v(x) ON t.a = v.x WHEN NOT MATCHED THEN INSERT VALUES (v.x)",
    "INSERT INTO rule_t VALUES (1)",
    "INSERT INTO def_t DEFAULT VALUES",
    "INSERT INTO gen_t (a) VALUES (1)",
    "INSERT INTO chk_t VALUES (1)",
    "INSERT INTO idx_t VALUES (1)",
    "SELECT 1::hopdom AS v",
    "SELECT CAST(2 AS hopdom) AS v",
    "SELECT (5::hopbox).v",
    "SELECT 1 ### 1",
    "SELECT w.hop_attr FROM public.who w",
    "SELECT (w).hop_attr FROM public.who w",
    "SELECT now(1)",
    "SELECT lower(42)",
    "SELECT h INTO public.sel_into_t FROM v_hop",
    "CREATE TABLE public.ctas_t AS SELECT h FROM v_hop",
    "TRUNCATE trunc_t",
    // Controls: the call is in the text.
    "SELECT hop()",
    "SELECT * FROM hop()",
    "SELECT public.hop_bool(1)",
];

/// Writes sent right behind an attack on the shared path: an acknowledged `INSERT INTO
/// notes` must have gone to `public.notes`, the table the caller's session resolves.
async fn writes_behind(pool: &Pool, tag: &str) -> Vec<(String, Result<u64, Error>)> {
    futures_util::future::join_all((0..4).map(|k| {
        let owner = format!("{tag}-{k}");
        async move {
            let r = pool
                .execute("INSERT INTO notes VALUES ($1)", &[&owner])
                .await;
            (owner, r)
        }
    }))
    .await
}

fn where_notes_went(pg: &Cluster, tag: &str) -> (Vec<String>, Vec<String>) {
    let q = |schema: &str| {
        pg.psql(&format!(
            "SELECT owner FROM {schema}.notes WHERE owner LIKE '{tag}-%' ORDER BY 1"
        ))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    (q("public"), q("other"))
}

async fn hidden_shared_case(pg: &Cluster, sql: &str, n: usize) -> Vec<String> {
    let pool = pool1(pg, Role::Admin).await;
    let mut problems = Vec::new();
    let baseline = shared_snapshot(&pool).await;
    let tag = format!("hs{n}");
    let (outcome, behind) = tokio::join!(pool.query(sql, &[]), async {
        tokio::task::yield_now().await;
        writes_behind(&pool, &tag).await
    });
    match &outcome {
        Err(e) if refused(e) => {}
        Err(e) => problems.push(format!("(the attack itself failed: {})", describe(e))),
        Ok(_) => {}
    }
    let after = shared_snapshot(&pool).await;
    for ch in changes(&baseline, &after) {
        problems.push(format!("a later pipelined caller sees {ch}"));
    }
    let (public, other) = where_notes_went(pg, &tag);
    for (owner, r) in &behind {
        match r {
            Ok(_) if other.contains(owner) => problems.push(format!(
                "pipelined `INSERT INTO notes` ({owner}) sent behind it was acknowledged but \
                 went to other.notes"
            )),
            Ok(_) if !public.contains(owner) => {
                problems.push(format!("acknowledged INSERT {owner} is nowhere"))
            }
            Err(e)
                if e.may_have_run() == Some(false)
                    && (public.contains(owner) || other.contains(owner)) =>
            {
                problems.push(format!(
                    "INSERT {owner} failed with may_have_run() == Some(false) but ran: {}",
                    describe(e)
                ))
            }
            _ => {}
        }
    }
    // The next acquire() caller of the (only) connection.
    let mut c = pool.acquire().await.unwrap();
    let next = conn_snapshot(&mut c).await;
    drop(c);
    for ch in changes(&baseline, &next)
        .into_iter()
        // The shared baseline cannot read pg_listening_channels, pg_cursors or
        // pg_prepared_statements (refused there): checked below.
        .filter(|c| !c.contains(": \"<probe refused"))
    {
        problems.push(format!("the next acquire() caller sees {ch}"));
    }
    let mut c = pool.acquire().await.unwrap();
    let listening = c
        .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
        .await
        .map(|r| r.get::<_, i64>(0));
    let held = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) \
                  + (SELECT count(*) FROM pg_cursors WHERE name <> '')",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0));
    drop(c);
    if let Ok(k) = held {
        if k != 0 {
            problems.push(format!(
                "the next acquire() caller finds {k} prepared statement(s) or cursor(s) it never made"
            ));
        }
    }
    if let Ok(k) = listening {
        if k != 0 {
            problems.push(format!(
                "the next acquire() caller listens on {k} channel(s) it never asked for"
            ));
        }
    }
    let lock = pg.psql("SELECT pg_try_advisory_lock(4242)").unwrap();
    if lock != "t" {
        problems.push(
            "advisory lock 4242 is held by the pool's connection after the attack".to_string(),
        );
    }
    pool.close().await;
    problems
}

/// Claim 1: a statement whose text is clean but which changes the session through the
/// schema must be caught (the connection taken out and reset): no later caller may see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_calls_on_the_shared_path_never_reach_another_caller() {
    let pg = setup();
    let mut report = Vec::new();
    for (i, sql) in HIDDEN_CALLS.iter().enumerate() {
        let problems = hidden_shared_case(&pg, sql, i).await;
        let real: Vec<_> = problems
            .iter()
            .filter(|p| !p.starts_with("(the attack itself failed"))
            .collect();
        if !real.is_empty() {
            report.push(format!(
                "pool.query({sql:?}):\n      {}",
                problems.join("\n      ")
            ));
        } else {
            println!("held: {sql:?} {problems:?}");
        }
    }
    finish(
        "hidden session changes on the shared path",
        HIDDEN_CALLS.len(),
        report,
    );
}

async fn hidden_exclusive_case(pg: &Cluster, sql: &str) -> Vec<String> {
    let pool = pool1(pg, Role::Admin).await;
    let mut problems = Vec::new();
    // The baseline in a checkout of its own (the probes themselves are not all proven
    // clean, so that checkout is reset on return).
    let mut c = pool.acquire().await.unwrap();
    let pid = c.process_id();
    let baseline = conn_snapshot(&mut c).await;
    drop(c);
    // Caller A runs only the attack.
    let mut c = pool.acquire().await.unwrap();
    if c.process_id() != pid {
        problems.push("(test set-up: another backend)".to_string());
    }
    if let Err(e) = c.query(sql, &[]).await {
        problems.push(format!("(the statement itself failed: {})", describe(&e)));
    }
    drop(c);
    // Caller B.
    let mut c = pool.acquire().await.unwrap();
    let same = c.process_id() == pid;
    let next = conn_snapshot(&mut c).await;
    drop(c);
    for ch in changes(&baseline, &next) {
        problems.push(format!(
            "the next acquire() caller ({} backend) sees {ch}",
            if same { "same" } else { "another" }
        ));
    }
    let lock = pg.psql("SELECT pg_try_advisory_lock(4242)").unwrap();
    if lock != "t" {
        problems.push("advisory lock 4242 is still held by the pool's connection".to_string());
    }
    pool.close().await;
    problems
}

/// Claim 2: under the default policy the session reset must follow every change a caller made,
/// including those made by functions the statement's text does not name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_calls_through_acquire_never_reach_the_next_caller() {
    let pg = setup();
    let mut report = Vec::new();
    for sql in HIDDEN_CALLS {
        let problems = hidden_exclusive_case(&pg, sql).await;
        if problems.iter().any(|p| !p.starts_with("(the statement")) {
            report.push(format!(
                "conn.query({sql:?}):\n      {}",
                problems.join("\n      ")
            ));
        } else {
            println!("held: {sql:?} {problems:?}");
        }
    }
    finish(
        "hidden session changes through acquire() (the default SessionReset::UnlessProvenClean)",
        HIDDEN_CALLS.len(),
        report,
    );
}

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
    if pg.psql("SELECT pg_try_advisory_lock(4242)").unwrap() != "t" {
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

fn short(sql: &str) -> String {
    if sql.len() > 160 {
        format!("{:?}... ({} bytes)", &sql[..120], sql.len())
    } else {
        format!("{sql:?}")
    }
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
        Err(e) if refused(&e) || e.code() == Some("55000") => {}
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
            Err(e) if e.code() == Some("55000") => {}
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
        Err(e) if e.code() == Some("55000") => {}
        Err(e) => report.push(format!("lastval: unexpected error {}", describe(&e))),
    }
    drop(c);
    pool.close().await;
    finish("sequence state between callers", 4, report);
}

/// Claim 2: what the documented reset (`RESET ALL`, `DISCARD TEMP`, ...) cannot undo:
/// the random seed, a loaded library, dblink's named connections.
#[ignore = "open finding: a function of the application that opens a dblink connection, called on the shared path, leaves it for the next caller (the session reset between statements does not close dblink connections)"]
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
        if pg.psql("SELECT pg_try_advisory_lock(4242)").unwrap() != "t" {
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
// Claim 1 under cancellation
// ---------------------------------------------------------------------------------------

/// A session-changing function of the application (caught by the probe when its future
/// runs to the end) abandoned at random points by tiny timeouts; and pipelined readers
/// behind it must never be told `Ok` with the changed session's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_session_changers_are_still_caught() {
    let pg = setup();
    let pool = pool1(&pg, Role::Admin).await;
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut report = Vec::new();
    let mut completed = 0;
    for i in 0..300 {
        let limit = Duration::from_micros(rng.next() % 20_000);
        let (attack, reader) = tokio::join!(
            tokio::time::timeout(limit, pool.query_one("SELECT hop_slow()", &[])),
            async {
                tokio::task::yield_now().await;
                tokio::time::timeout(
                    Duration::from_secs(30),
                    pool.query_one("SELECT owner FROM who", &[]),
                )
                .await
            }
        );
        let reader = match reader {
            Ok(r) => r,
            Err(_) => {
                report.push(format!(
                    "round {i} (timeout {limit:?}): a pipelined reader behind the abandoned \
                     attack got no answer (nor an error) within 30 s"
                ));
                break;
            }
        };
        if matches!(attack, Ok(Ok(_))) {
            completed += 1;
        }
        if let Ok(row) = &reader {
            let owner: String = row.get(0);
            if owner != "public" {
                report.push(format!(
                    "round {i} (timeout {limit:?}): a pipelined reader behind the attack was \
                     answered Ok({owner:?}) from the changed session"
                ));
            }
        }
        // A later caller must find the session as it was.
        let row = tokio::time::timeout(
            Duration::from_secs(30),
            pool.query_one(
                "SELECT owner || ' ' || coalesce(nullif(current_setting('attack.mark', true), ''), '<unset>') \
                 FROM who",
                &[],
            ),
        )
        .await;
        let Ok(row) = row else {
            report.push(format!(
                "round {i} (timeout {limit:?}): a later caller got no answer (nor an error) \
                 within 30 s"
            ));
            break;
        };
        match row {
            Ok(r) => {
                let v: String = r.get(0);
                if v != "public <unset>" {
                    report.push(format!(
                        "round {i} (timeout {limit:?}, attack {}): a later caller sees {v:?}",
                        match &attack {
                            Ok(Ok(_)) => "completed".to_string(),
                            Ok(Err(e)) => describe(e),
                            Err(_) => "abandoned".to_string(),
                        }
                    ));
                    break;
                }
            }
            Err(e) => report.push(format!(
                "round {i}: the later caller failed: {}",
                describe(&e)
            )),
        }
    }
    println!("{completed} of 300 attacks completed");
    let _ = tokio::time::timeout(Duration::from_secs(10), pool.close()).await;
    finish("abandoned session changers", 300, report);
}

// ---------------------------------------------------------------------------------------
// Claim 3: one FIFO
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_kind_of_caller_starves_the_other() {
    let pg = setup();
    let mut report = Vec::new();
    let pool = pool1(&pg, Role::Admin).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // A flood of pipelined statements; acquire() must get the connection each time.
    let mut flood = Vec::new();
    for _ in 0..24 {
        let (p, s) = (pool.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = p.query_one("SELECT pg_sleep(0.003)::text", &[]).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), pool.acquire()).await {
            Ok(Ok(c)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(c);
                if t.elapsed() > Duration::from_secs(2) {
                    report.push(format!(
                        "acquire() #{i} under a pipelined flood took {:?}",
                        t.elapsed()
                    ));
                }
            }
            Ok(Err(e)) => report.push(format!(
                "acquire() #{i} under a pipelined flood: {}",
                describe(&e)
            )),
            Err(_) => report.push(format!(
                "acquire() #{i} starved for 5 s under a pipelined flood"
            )),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }

    // A stream of acquire() callers; a pipelined statement must get through.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hogs = Vec::new();
    for _ in 0..8 {
        let (p, s) = (pool.clone(), stop.clone());
        hogs.push(tokio::spawn(async move {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(c) = p.acquire().await {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(c);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..10 {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), pool.query_one("SELECT 1", &[])).await {
            Ok(Ok(_)) if t.elapsed() > Duration::from_secs(2) => report.push(format!(
                "pipelined statement #{i} among acquire() callers took {:?}",
                t.elapsed()
            )),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => report.push(format!(
                "pipelined #{i} among acquire() callers: {}",
                describe(&e)
            )),
            Err(_) => report.push(format!(
                "pipelined #{i} starved 5 s among acquire() callers"
            )),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.await.unwrap();
    }
    pool.close().await;
    finish("one FIFO", 15, report);
}

// ---------------------------------------------------------------------------------------
// Claim 4: stale descriptions
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, wirepool::FromSql)]
#[postgres(name = "pt")]
struct PtRow {
    x: i32,
    y: i32,
}

#[derive(Debug, PartialEq, wirepool::FromSql)]
#[postgres(name = "pt_c")]
struct Pt {
    x: i32,
    y: i32,
}

#[derive(Debug, PartialEq, wirepool::FromSql)]
#[postgres(name = "pt2_c")]
struct Pt2 {
    x: i32,
    y: i32,
}

#[ignore = "known limitation, as tokio-postgres: a composite whose attributes were renamed into each other (same OID, same field types on the wire) keeps its looked-up field names until Pool::clear_type_cache (documented there)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_never_decoded_with_a_stale_description() {
    let pg = setup();
    pg.psql(
        "CREATE TABLE pt (x int4, y int4); INSERT INTO pt VALUES (1, 2); \
         CREATE TYPE pt_c AS (x int4, y int4); \
         CREATE TYPE pt2_c AS (x int4, y int4); \
         CREATE TABLE sw (a int4, b int4); INSERT INTO sw VALUES (1, 2); \
         CREATE TABLE flip (v int4); INSERT INTO flip VALUES (1);",
    )
    .unwrap();
    let pool = pool1(&pg, Role::Admin).await;
    let mut report = Vec::new();

    // A table's row type is a composite; it must at least be readable.
    match pool
        .query_one("SELECT p FROM pt p", &[])
        .await
        .map(|r| r.try_get::<_, PtRow>(0))
    {
        Ok(Ok(v)) => assert_eq!(v, PtRow { x: 1, y: 2 }),
        Ok(Err(e)) => report.push(format!(
            "(not a stale description, but) a table's row type cannot be read as a composite: \
             pool.query_one(\"SELECT p FROM pt p\") -> {e}"
        )),
        Err(e) => report.push(format!("SELECT p FROM pt p: {}", describe(&e))),
    }
    // Composites on the shared path: read one through acquire() first (it looks the type
    // up), then on the shared path.
    for sql in ["SELECT ROW(1, 2)::pt_c", "SELECT ROW(1, 2)::pt2_c"] {
        if let Err(e) = pool
            .query_one(sql, &[])
            .await
            .unwrap()
            .try_get::<_, Pt>(0)
            .map(|_| ())
        {
            if sql.contains("pt_c") {
                report.push(format!(
                    "(not a stale description, but) a composite read first on the shared path \
                     cannot be decoded: pool.query_one({sql:?}) -> {e}"
                ));
            }
        }
        let mut c = pool.acquire().await.unwrap();
        let r = c.query_one(sql, &[]).await.unwrap();
        if sql.contains("pt_c") {
            if let Err(e) = r.try_get::<_, Pt>(0) {
                report.push(format!(
                    "(not a stale description, but) a composite cannot be decoded through \
                     acquire() either: conn.query_one({sql:?}) -> {e}"
                ));
            }
        }
        drop(c);
    }
    // A composite type: an attribute dropped and added again (the fields' order changes).
    let before = pool
        .query_one("SELECT ROW(1, 2)::pt_c", &[])
        .await
        .unwrap()
        .try_get::<_, Pt>(0);
    if before.is_err() {
        report.push(format!(
            "(not a stale description, but) pool.query_one(\"SELECT ROW(1, 2)::pt_c\") cannot \
             be decoded even before any change: {:?}",
            before.map_err(|e| e.to_string())
        ));
    }
    pg.psql("ALTER TYPE pt_c DROP ATTRIBUTE x; ALTER TYPE pt_c ADD ATTRIBUTE x int4")
        .unwrap();
    match pool
        .query_one("SELECT ROW(1, 2)::pt_c", &[])
        .await
        .map(|r| r.try_get::<_, Pt>(0))
    {
        Ok(Ok(v)) if v != (Pt { x: 2, y: 1 }) => report.push(format!(
            "after `ALTER TYPE pt_c DROP ATTRIBUTE x; ADD ATTRIBUTE x int4` (fields now y, x), \
             pool.query_one(\"SELECT ROW(1, 2)::pt_c\") (y=1, x=2) decoded {v:?}: a wrong \
             value from the stale description of the type"
        )),
        other => println!(
            "pt_c after the change: {:?}",
            other
                .map(|r| r.map_err(|e| e.to_string()))
                .map_err(|e| describe(&e))
        ),
    }
    // The same with the attributes renamed into each other's places.
    let before = pool
        .query_one("SELECT ROW(1, 2)::pt2_c", &[])
        .await
        .unwrap()
        .try_get::<_, Pt2>(0);
    if before.is_err() {
        report.push(format!(
            "(not a stale description, but) pool.query_one(\"SELECT ROW(1, 2)::pt2_c\") cannot \
             be decoded even before any change: {:?}",
            before.map_err(|e| e.to_string())
        ));
    }
    pg.psql(
        "ALTER TYPE pt2_c RENAME ATTRIBUTE x TO tmp; ALTER TYPE pt2_c RENAME ATTRIBUTE y TO x; \
         ALTER TYPE pt2_c RENAME ATTRIBUTE tmp TO y",
    )
    .unwrap();
    match pool
        .query_one("SELECT ROW(1, 2)::pt2_c", &[])
        .await
        .map(|r| r.try_get::<_, Pt2>(0))
    {
        Ok(Ok(v)) if v != (Pt2 { x: 2, y: 1 }) => report.push(format!(
            "after renaming pt2_c's attributes x and y into each other, \
             pool.query_one(\"SELECT ROW(1, 2)::pt2_c\") (y=1, x=2) decoded {v:?}: a wrong value"
        )),
        other => println!(
            "pt2_c after the change: {:?}",
            other
                .map(|r| r.map_err(|e| e.to_string()))
                .map_err(|e| describe(&e))
        ),
    }

    // `SELECT *` after two columns of one type swapped names: by name, `a` is now 2.
    let r = pool.query_one("SELECT * FROM sw", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>("a"), 1);
    pg.psql(
        "ALTER TABLE sw RENAME COLUMN a TO tmp; ALTER TABLE sw RENAME COLUMN b TO a; \
         ALTER TABLE sw RENAME COLUMN tmp TO b",
    )
    .unwrap();
    match pool.query_one("SELECT * FROM sw", &[]).await {
        Ok(r) => match r.try_get::<_, i32>("a") {
            Ok(2) | Err(_) => {}
            Ok(v) => report.push(format!(
                "after swapping sw's column names, `SELECT * FROM sw` read column \"a\" as {v} \
                 (it is 2): a stale description"
            )),
        },
        Err(e) => println!("SELECT * FROM sw after the swap: {}", describe(&e)),
    }

    // A column's type flipping under concurrent pipelined readers.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (p, s, w) = (pool.clone(), stop.clone(), wrong.clone());
        readers.push(tokio::spawn(async move {
            let mut ok = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(row) = p.query_one("SELECT v FROM flip", &[]).await {
                    let ty = row.columns()[0].type_().clone();
                    let good = match ty.name() {
                        "int4" => row.try_get::<_, i32>(0).map(|v| v == 1).unwrap_or(false),
                        "text" => row
                            .try_get::<_, String>(0)
                            .map(|v| v == "two")
                            .unwrap_or(false),
                        "int8" => row.try_get::<_, i64>(0).map(|v| v == 3).unwrap_or(false),
                        _ => false,
                    };
                    if !good {
                        w.lock().unwrap().push(format!("{ty} column read wrong"));
                    }
                    ok += 1;
                }
            }
            ok
        }));
    }
    for _ in 0..10 {
        pg.psql("ALTER TABLE flip ALTER COLUMN v TYPE text USING 'two'")
            .unwrap();
        pg.psql("ALTER TABLE flip ALTER COLUMN v TYPE int8 USING 3")
            .unwrap();
        pg.psql("ALTER TABLE flip ALTER COLUMN v TYPE int4 USING 1")
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    println!("{reads} reads of flip");
    let w = std::mem::take(&mut *wrong.lock().unwrap());
    if !w.is_empty() {
        report.push(format!(
            "flip: {} reads decoded wrongly, e.g. {}",
            w.len(),
            w[0]
        ));
    }
    drop(w);
    pool.close().await;
    finish("stale descriptions", 4, report);
}

// ---------------------------------------------------------------------------------------
// Claim 5: a restart with a listener, pipelined writes and transactions at once
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum Outcome {
    Ok,
    NotRun(String),
    Unknown,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_mixed_load_loses_nothing_acknowledged() {
    let mut pg = setup();
    pg.psql("CREATE TABLE ledger (id int8 PRIMARY KEY)")
        .unwrap();
    pg.psql("ALTER SYSTEM SET synchronous_commit = on").unwrap();
    pg.psql("SELECT pg_reload_conf()").unwrap();
    let pool = Pool::builder(pg.config(Role::Admin))
        .min_size(2)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let outcomes: Arc<Mutex<Vec<(i64, Outcome)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    let classify = |r: Result<(), Error>| match r {
        Ok(()) => Outcome::Ok,
        Err(e) if e.may_have_run() == Some(false) => Outcome::NotRun(describe(&e)),
        Err(_) => Outcome::Unknown,
    };
    // Pipelined writers, some of them with tiny timeouts.
    for w in 0..8i64 {
        let (p, o, s) = (pool.clone(), outcomes.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let id = w * 1_000_000 + i;
                i += 1;
                let params: [&(dyn wirepool::ToSql + Sync); 1] = [&id];
                let fut = p.execute("INSERT INTO ledger VALUES ($1)", &params);
                let r = if i % 7 == 0 {
                    match tokio::time::timeout(Duration::from_micros(300), fut).await {
                        Ok(r) => r.map(|_| ()),
                        Err(_) => {
                            o.lock().unwrap().push((id, Outcome::Unknown));
                            continue;
                        }
                    }
                } else {
                    fut.await.map(|_| ())
                };
                o.lock().unwrap().push((id, classify(r)));
            }
        }));
    }
    // Transactions through acquire().
    for w in 0..2i64 {
        let (p, o, s) = (pool.clone(), outcomes.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let id = 50_000_000 + w * 1_000_000 + i * 2;
                i += 1;
                let r: Result<(), Error> = async {
                    let mut c = p.acquire().await?;
                    let mut tx = c.transaction().await?;
                    tx.execute("INSERT INTO ledger VALUES ($1)", &[&id]).await?;
                    tx.execute("INSERT INTO ledger VALUES ($1)", &[&(id + 1)])
                        .await?;
                    tx.commit().await
                }
                .await;
                let out = classify(r);
                let out2 = match &out {
                    Outcome::Ok => Outcome::Ok,
                    Outcome::NotRun(s) => Outcome::NotRun(s.clone()),
                    Outcome::Unknown => Outcome::Unknown,
                };
                let mut g = o.lock().unwrap();
                g.push((id, out));
                g.push((id + 1, out2));
            }
        }));
    }
    // A listener and notifications through the pool.
    let listener_events = Arc::new(Mutex::new((0u64, 0u64)));
    {
        let (p, s, ev) = (pool.clone(), stop.clone(), listener_events.clone());
        tasks.push(tokio::spawn(async move {
            let mut l = p.listener().await.unwrap();
            l.listen("mixed").await.unwrap();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), l.recv()).await {
                    Ok(Ok(wirepool::ListenerEvent::Notification(_))) => ev.lock().unwrap().0 += 1,
                    Ok(Ok(wirepool::ListenerEvent::Reconnected)) => ev.lock().unwrap().1 += 1,
                    _ => {}
                }
            }
        }));
        let (p, s) = (pool.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = p
                    .query_one("SELECT pg_notify('mixed', 'x')::text", &[])
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.start_again().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let seen: std::collections::HashSet<i64> = pg
        .psql("SELECT id FROM ledger")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let mut report = Vec::new();
    let (mut acked, mut notrun) = (0, 0);
    for (id, o) in outcomes.iter() {
        match o {
            Outcome::Ok => {
                acked += 1;
                if !seen.contains(id) {
                    report.push(format!("acknowledged write {id} is not in the table"));
                }
            }
            Outcome::NotRun(e) => {
                notrun += 1;
                if seen.contains(id) {
                    report.push(format!(
                        "write {id} reported may_have_run() == Some(false) but is committed: {e}"
                    ));
                }
            }
            Outcome::Unknown => {}
        }
    }
    let ev = *listener_events.lock().unwrap();
    println!(
        "{} writes, {acked} acknowledged, {notrun} not run, {} committed; listener: {} \
         notifications, {} reconnects",
        outcomes.len(),
        seen.len(),
        ev.0,
        ev.1
    );
    if ev.1 == 0 {
        report.push("the listener never yielded Reconnected after the restart".to_string());
    }
    // After the restart, a pipelined caller finds a clean session.
    let snap = shared_snapshot(&pool).await;
    if snap[1].1 != "public" {
        report.push(format!("after the restart: {snap:?}"));
    }
    pool.close().await;
    report.truncate(20);
    finish("restart under mixed load", outcomes.len(), report);
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
