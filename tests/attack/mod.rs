//! What the attack tests of the shared path and the session reset share: the schema they
//! attack through, the probes another caller reads, a pool of one connection, and the
//! report a test fails with (every finding at once).

#![allow(dead_code)] // each test binary uses a part

use std::time::Duration;

use wirepool::{Connection, Error, ErrorKind, Pool};
use wirepool_testkit::{cluster, Cluster, Role};

/// A statement, what it leaves, a later caller's check and the judge of its answer.
pub(crate) type ResetCase<'a> = (
    &'a str,
    String,
    &'a str,
    Box<dyn Fn(Result<String, String>) -> Option<String>>,
);

/// Two schemas with a table of the same name (`who`), so which one an unqualified name
/// resolves to shows the search_path; `notes` in both for writes sent behind an attack;
/// `hop()` changes the session in every way a probe can see; `hop_imm(int)` does what an
/// IMMUTABLE function may (settings, an advisory lock); `hop_bool(int)` is a predicate.
pub(crate) const SCHEMA: &str = r#"
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
/// Whether advisory lock 4242 is free: "t" when it is. The lock is released again before
/// psql's session ends, so that its backend, which exits after psql returns, cannot be the
/// holder the next check finds.
pub(crate) const FREE_4242: &str =
    "SELECT CASE WHEN pg_try_advisory_lock(4242) THEN pg_advisory_unlock(4242) ELSE false END";

pub(crate) const PROBES: &[(&str, &str)] = &[
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

pub(crate) fn refused(e: &Error) -> bool {
    e.kind() == ErrorKind::InvalidInput && e.to_string().contains("acquire()")
}

pub(crate) fn describe(e: &Error) -> String {
    format!(
        "{e} (kind {:?}, SQLSTATE {:?}, may_have_run {:?})",
        e.kind(),
        e.code(),
        e.may_have_run()
    )
}

pub(crate) fn setup() -> Cluster {
    let pg = cluster();
    pg.psql(SCHEMA).unwrap();
    pg
}

/// A pool of exactly one connection, so every caller shares that connection's session.
pub(crate) async fn pool1(pg: &Cluster, role: Role) -> Pool {
    Pool::builder(pg.config(role))
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(15))
        .build()
        .await
        .unwrap()
}

pub(crate) async fn shared_snapshot(pool: &Pool) -> Vec<(&'static str, String)> {
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

pub(crate) async fn conn_snapshot(conn: &mut Connection) -> Vec<(&'static str, String)> {
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

pub(crate) fn changes(baseline: &[(&str, String)], now: &[(&str, String)]) -> Vec<String> {
    baseline
        .iter()
        .zip(now)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| format!("{name}: {a:?} -> {b:?}"))
        .collect()
}

pub(crate) fn finish(title: &str, total: usize, report: Vec<String>) {
    assert!(
        report.is_empty(),
        "{title}: {} of {} attacks broke a claim:\n  {}",
        report.len(),
        total,
        report.join("\n  ")
    );
}

/// A tiny deterministic generator (no extra dependency).
pub(crate) struct Xorshift(pub(crate) u64);
impl Xorshift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub(crate) fn short(sql: &str) -> String {
    if sql.len() > 160 {
        format!("{:?}... ({} bytes)", &sql[..120], sql.len())
    } else {
        format!("{sql:?}")
    }
}
