//! Which statements the shared path refuses: those that change or depend on the session's
//! state, which a statement there does not own (the next statement on the connection is
//! another caller's). They run on a connection from `acquire()`.
//!
//! What is detected, from the SQL text: a statement that begins with SET, RESET, LISTEN,
//! UNLISTEN, PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH, MOVE, CLOSE, BEGIN, START,
//! COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, DISCARD, LOCK, COPY, DO or LOAD;
//! `CREATE [GLOBAL | LOCAL] TEMP[ORARY]` and `SELECT ... INTO TEMP`; and, anywhere in the
//! text, `pg_temp`, `set_config(` and the session-level advisory-lock functions
//! (`pg_advisory_lock`, `pg_try_advisory_lock`, `pg_advisory_unlock`, their `_shared`
//! forms and `pg_advisory_unlock_all`; the `_xact_` ones end with the statement and are
//! allowed).
//!
//! What cannot be detected: a function that does any of this inside (a PL/pgSQL function
//! that runs `SET`, creates a temporary table or takes an advisory lock), and a `CALL` of
//! a procedure that does. Such statements must go through `acquire()` too; the shared
//! path cannot tell.

/// The keywords that begin a refused statement.
const REFUSED_FIRST: &[&str] = &[
    "SET",
    "RESET",
    "LISTEN",
    "UNLISTEN",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "DISCARD",
    "LOCK",
    "COPY",
    "DO",
    "LOAD",
];

/// Function names (and a schema) refused anywhere in the text, lower case.
const REFUSED_ANYWHERE: &[&str] = &[
    "pg_temp",
    "set_config",
    "pg_advisory_lock",
    "pg_try_advisory_lock",
    "pg_advisory_unlock",
];

/// Why `sql` may not run on the shared path, if it may not: the words for the error.
pub(super) fn refusal(sql: &str) -> Option<String> {
    let words = leading_words(sql, 4);
    let first = words.first().map(String::as_str).unwrap_or("");
    if REFUSED_FIRST.contains(&first) {
        return Some(format!("{first} changes or depends on the session"));
    }
    if first == "CREATE" {
        let rest: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let temp = matches!(
            rest.as_slice(),
            ["TEMP" | "TEMPORARY", ..]
                | ["GLOBAL" | "LOCAL", "TEMP" | "TEMPORARY", ..]
                | ["OR", "REPLACE", "TEMP" | "TEMPORARY", ..]
        );
        if temp {
            return Some("a temporary object belongs to the session".into());
        }
    }
    let lower = sql.to_ascii_lowercase();
    if let Some(f) = REFUSED_ANYWHERE.iter().find(|f| lower.contains(**f)) {
        return Some(format!("{f} changes or depends on the session"));
    }
    let flat: String = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.contains(" into temp ") || flat.contains(" into temporary ") {
        return Some("a temporary table belongs to the session".into());
    }
    None
}

/// The first `n` words of `sql`, upper case, past blanks, comments and opening
/// parentheses.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut words = Vec::new();
    while i < b.len() && words.len() < n {
        match b[i] {
            c if c.is_ascii_whitespace() || c == b'(' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                words.push(sql[s..i].to_ascii_uppercase());
            }
            // Anything else (a quoted name, a number, an operator) ends the keywords.
            _ => break,
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn session_statements_are_refused() {
        for sql in [
            "SET search_path TO x",
            "  set role admin",
            "-- comment\nBEGIN",
            "/* a /* nested */ comment */ LISTEN ch",
            "DECLARE c CURSOR FOR SELECT 1",
            "PREPARE p AS SELECT 1",
            "CREATE TEMP TABLE t (a int)",
            "create local temporary table t (a int)",
            "SELECT 1 INTO TEMP t",
            "SELECT set_config('a.b', 'c', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_lock_shared(1)",
            "CREATE TABLE pg_temp.t (a int)",
            "COPY t FROM STDIN",
            "DO $$ BEGIN END $$",
            "(COMMIT)",
            "lock table t",
            "SAVEPOINT a",
            "DISCARD ALL",
        ] {
            assert!(refusal(sql).is_some(), "{sql}");
        }
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "SELECT $1::int4",
            "INSERT INTO settings (name) VALUES ('SET x')",
            "UPDATE t SET a = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT pg_advisory_xact_lock(1)",
            "CREATE TABLE temperatures (t int)",
            "DELETE FROM t WHERE reset_at < now()",
            "SELECT 'begin'",
            "VALUES (1)",
            "",
        ] {
            assert!(refusal(sql).is_none(), "{sql}: {:?}", refusal(sql));
        }
    }
}
