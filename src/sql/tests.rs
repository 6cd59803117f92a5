//! The table of hostile and innocent spellings: each text with what `classify` must say of
//! it on the pipelined path (`Some(fragment of the refusal's text)` or `None`: allowed). The
//! differential proof (`proof.rs`) also runs every text through PostgreSQL's own scanner and
//! grammar.

use super::classify;

/// Texts and the refusal they must get (a fragment of its text), or `None` for allowed.
pub(super) const TABLE: &[(&str, Option<&str>)] = &[
    // Statements, however they are dressed up.
    ("SET search_path = x", Some("SET changes")),
    (";BEGIN", Some("BEGIN opens")),
    (";;;  ;BEGIN;", Some("BEGIN opens")),
    ("/* hi */ SET x = 1", Some("SET changes")),
    (
        "/* a /* nested */ comment */ SET x = 1",
        Some("SET changes"),
    ),
    ("-- comment\nSET x = 1", Some("SET changes")),
    ("sEt LoCaL x = 1", Some("SET changes")),
    ("SET SESSION AUTHORIZATION DEFAULT", Some("SET changes")),
    ("SET ROLE admin", Some("SET changes")),
    (
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        Some("SET changes"),
    ),
    ("RESET ALL", Some("RESET")),
    ("start transaction", Some("START TRANSACTION")),
    ("COMMIT", Some("COMMIT")),
    ("END", Some("END ends")),
    ("ROLLBACK PREPARED 'x'", Some("ROLLBACK")),
    ("ABORT", Some("ABORT")),
    ("SAVEPOINT s", Some("SAVEPOINT")),
    ("RELEASE SAVEPOINT s", Some("RELEASE")),
    ("PREPARE TRANSACTION 'x'", Some("PREPARE")),
    ("COMMIT PREPARED 'x'", Some("COMMIT")),
    ("LISTEN ch", Some("LISTEN subscribes")),
    ("UNLISTEN *", Some("UNLISTEN")),
    ("PREPARE p (int) AS SELECT $1", Some("PREPARE")),
    ("EXECUTE p(1)", Some("EXECUTE")),
    ("DEALLOCATE ALL", Some("DEALLOCATE")),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", Some("DECLARE")),
    ("FETCH NEXT FROM c", Some("FETCH")),
    ("MOVE c", Some("MOVE")),
    ("CLOSE ALL", Some("CLOSE")),
    ("DISCARD ALL", Some("DISCARD")),
    ("LOCK TABLE t", Some("LOCK")),
    ("COPY t FROM STDIN", Some("COPY")),
    (
        "DO $$ BEGIN PERFORM set_config('search_path','x',false); END $$",
        Some("DO runs"),
    ),
    ("DO $x$ BEGIN PERFORM 1; END $x$", Some("DO runs")),
    ("do language plpgsql 'begin null; end'", Some("DO runs")),
    ("CALL p()", Some("CALL")),
    ("LOAD 'auto_explain'", Some("LOAD")),
    ("EXPLAIN EXECUTE p(1)", Some("EXECUTE")),
    ("EXPLAIN (ANALYZE, BUFFERS) EXECUTE p", Some("EXECUTE")),
    // More than one statement.
    ("SELECT 1; SELECT 2", Some("more than one")),
    ("SELECT 1;SET x=1", Some("more than one")),
    ("SELECT 'a;' ; SELECT 2", Some("more than one")),
    // Temporary objects.
    ("CREATE TEMP TABLE t (a int)", Some("temporary")),
    ("create temporary table t (a int)", Some("temporary")),
    ("CREATE GLOBAL TEMPORARY TABLE t (a int)", Some("temporary")),
    ("CREATE LOCAL TEMP TABLE t AS SELECT 1", Some("temporary")),
    ("CREATE TEMP VIEW v AS SELECT 1", Some("temporary")),
    (
        "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        Some("temporary"),
    ),
    ("CREATE TEMP SEQUENCE s", Some("temporary")),
    (
        "EXPLAIN ANALYZE CREATE TEMP TABLE x AS SELECT 1",
        Some("temporary"),
    ),
    ("SELECT 1 INTO LOCAL TEMP t", Some("temporary")),
    ("SELECT 1 AS a INTO TEMPORARY TABLE t", Some("temporary")),
    (
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        Some("temporary"),
    ),
    (
        "CREATE FUNCTION \"pg_temp\".f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        Some("temporary"),
    ),
    ("CREATE TABLE pg_temp_3.t (a int)", Some("temporary")),
    ("SELECT * FROM U&\"pg\\005ftemp\".t", Some("temporary")),
    ("CREATE TABLE pg_temp . t (a int)", Some("temporary")),
    // pg_settings.
    (
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
        Some("pg_settings"),
    ),
    (
        "update pg_catalog.pg_settings set setting = 'x' where name = 'work_mem'",
        Some("pg_settings"),
    ),
    (
        "WITH u AS (UPDATE pg_settings SET setting = 'x' RETURNING 1) SELECT * FROM u",
        Some("pg_settings"),
    ),
    // Session functions, however spelled.
    (
        "SELECT set_config('search_path', 'x', false)",
        Some("set_config()"),
    ),
    ("select SET_CONFIG('a.b','c',false)", Some("set_config()")),
    (
        "SELECT \"set_config\"('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT U&\"\\0073et_config\"('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT U&\"!0073et_config\" UESCAPE '!' ('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT pg_catalog.set_config('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT \"pg_catalog\".\"set_config\"('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT U&\"pg\\005fcatalog\" . set_config('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT set_config /* c */ ('a.b', 'c', false)",
        Some("set_config()"),
    ),
    (
        "SELECT set_config -- c\n ('a.b', 'c', false)",
        Some("set_config()"),
    ),
    ("SELECT set_config('a.b', 'c', 1 = 1)", Some("set_config()")),
    (
        "SELECT set_config('a.b', 'c', is_local => true)",
        Some("set_config()"),
    ),
    ("SELECT set_config('a.b', 'c')", Some("set_config()")),
    (
        "SELECT 1 FROM t WHERE set_config('a.b', x, false) IS NOT NULL",
        Some("set_config()"),
    ),
    ("SELECT pg_advisory_lock(1)", Some("session-level lock")),
    (
        "SELECT pg_try_advisory_lock_shared(1)",
        Some("session-level lock"),
    ),
    ("SELECT pg_advisory_unlock_all()", Some("locks")),
    ("SELECT lastval()", Some("lastval()")),
    ("SELECT currval('s')", Some("currval()")),
    ("SELECT setseed(0.5)", Some("setseed()")),
    (
        "SELECT pg_listening_channels()",
        Some("pg_listening_channels()"),
    ),
    ("SELECT set_limit(0.5)", Some("set_limit()")),
    (
        "SELECT dblink_connect('c', 'dbname=x')",
        Some("dblink_connect()"),
    ),
    (
        "SELECT * FROM ROWS FROM (pg_advisory_lock(1))",
        Some("session-level lock"),
    ),
    ("INSERT INTO t SELECT lastval()", Some("lastval()")),
    // Strings, quoted names and comments hide nothing and fake nothing.
    ("SELECT 'x' FROM t; SET x = 1", Some("more than one")),
    ("SELECT $$;SET$$, 1", None),
    ("SELECT E'\\';SET x=1'", None),
    ("SELECT 'a;b', \"c;d\", $q$;$q$ -- ;\n/* ; */", None),
    ("SELECT 'set_config(''a'',''b'',false)'", None),
    ("SELECT '\\', 'x; SET a = 1; --'", Some("more than one")),
    ("SELECT 'unterminated", Some("reject")),
    ("SELECT 1 /* unterminated", Some("reject")),
    // Innocent texts.
    ("SELECT 'SET x' AS s", None),
    ("SELECT \"set\" FROM t", None),
    ("SELECT temp FROM t", None),
    ("INSERT INTO items VALUES ($1, 'BEGIN')", None),
    ("INSERT INTO temp VALUES (1)", None),
    ("SELECT * FROM t WHERE x IN (1,2)", None),
    ("WITH a AS (SELECT 1) SELECT * FROM a", None),
    ("SELECT $1::int4", None),
    ("SELECT 1;", None),
    ("-- comment only\nSELECT 1", None),
    ("select set_config('a.b','c', true)", None),
    ("select set_config('a.b','c', 'true')", None),
    ("SELECT nextval('s')", None),
    ("SELECT pg_settings.name FROM pg_settings", None),
    ("CREATE TABLE t (a int)", None),
    ("VACUUM t", None),
    ("CHECKPOINT", None),
    ("NOTIFY ch, 'x'", None),
    ("SELECT pg_notify('ch', 'x')", None),
    ("SHOW search_path", None),
    ("SELECT current_setting('search_path')", None),
];

#[test]
fn the_table() {
    assert!(TABLE.len() >= 60);
    for (sql, want) in TABLE {
        let class = classify(sql);
        match (want, class.refusal) {
            (None, None) => {}
            (Some(fragment), Some(r)) => assert!(
                r.to_string().contains(fragment),
                "{sql:?}: {r} (wanted {fragment:?})"
            ),
            _ => panic!("{sql:?}: {class:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn statement_counts() {
    for (sql, n) in [
        ("", 0),
        (";;", 0),
        ("-- x", 0),
        (";BEGIN", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; SELECT 2", 2),
        ("SELECT ';'; SELECT $$;$$", 2),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END", 1),
    ] {
        assert_eq!(classify(sql).statements, n, "{sql}");
    }
    let atomic =
        classify("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END");
    assert_eq!(
        atomic.refusal.unwrap().to_string(),
        "a BEGIN ATOMIC body is not checked statement by statement"
    );
}

#[test]
fn fast_enough() {
    // A 200-byte statement, classified many times: a rough guard, generous for debug builds.
    // It names relations, so it is not proven clean.
    let sql = "SELECT a.id, lower(a.name), count(*) FILTER (WHERE b.x > 0) FROM accounts a \
               JOIN balances b ON b.account = a.id WHERE a.name LIKE $1 AND b.t > now() - interval '1 day' \
               GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10";
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        assert!(!classify(std::hint::black_box(sql)).session_clean);
    }
    let per = start.elapsed() / 1000;
    assert!(
        per < std::time::Duration::from_micros(500),
        "{per:?} per classification"
    );
}

/// The operator's guide lists the statements the shared path refuses: the same as
/// `REFUSED_STATEMENTS`, both ways.
#[test]
fn the_operators_guide_lists_the_refused_statements_of_the_code() {
    let guide = include_str!("../../docs/operators-guide.md");
    let start = guide
        .find("- **Refused statements.**")
        .expect("the guide's paragraph on refused statements");
    let para = &guide[start..];
    let para = &para[..para[2..].find("\n- **").map_or(para.len(), |e| e + 2)];
    let list_start = para.find("more than one statement;").expect("its list");
    let list_end = para[list_start..]
        .find("(also after")
        .expect("the end of its list")
        + list_start;
    let list = para[list_start..list_end].replace('\n', " ");
    let listed: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|w| w.split_whitespace().next().unwrap_or("").to_string())
        .filter(|w| !w.is_empty())
        .collect();
    for s in super::lists::REFUSED_STATEMENTS {
        assert!(
            listed.iter().any(|w| w == s.keyword),
            "{} is refused by the code and missing from the guide's list: {listed:?}",
            s.keyword
        );
    }
    for w in &listed {
        assert!(
            super::lists::REFUSED_STATEMENTS
                .iter()
                .any(|s| s.keyword == w),
            "the guide lists {w} as refused; the code does not refuse it"
        );
    }
}

/// Texts made of SQL's tokens, quotes, comment and escape openers and characters of
/// several bytes, in any order: the scanner, the classifier, the label's normaliser and
/// the reading of custom settings return, never panic.
#[test]
fn any_text_is_read_without_a_panic() {
    use proptest::prelude::*;
    const PIECES: &[&str] = &[
        "SELECT",
        "SET",
        "set_config",
        "CREATE",
        "TEMP",
        "TABLE",
        "INTO",
        "INSERT",
        "DO",
        "BEGIN",
        "ROLE",
        "TO",
        "LOCAL",
        "ALTER",
        "UESCAPE",
        "pg_temp",
        "pg_temé",
        "pg_temp_1",
        "'",
        "\"",
        "$$",
        "$a$",
        "$é$",
        "E'",
        "U&'",
        "U&\"",
        "B'",
        "X'",
        "N'",
        "\\",
        "/*",
        "*/",
        "--",
        "\n",
        " ",
        ";",
        "(",
        ")",
        ",",
        ".",
        "=",
        ":=",
        "::",
        "1",
        "1e",
        "0x",
        "1_0",
        "é",
        "日本語",
        "𝕏",
        "😀",
        "\u{2028}",
        "résumé",
        "\u{0}",
        "a",
        "$1",
        "ab日本",
    ];
    let piece = prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ];
    let texts = proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat());
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 4000,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&texts, |sql| {
            let _ = classify(&sql);
            let label = super::normalize::normalize(&sql);
            prop_assert!(label.len() <= sql.len() + 2 * sql.len().max(1));
            let _ = super::tokens::lex(&sql, false);
            let _ = super::settings::custom_settings(&sql);
            Ok(())
        })
        .unwrap();
}
