//! A statement's text with its constants taken out, for the statement metrics' label: a
//! string or number constant becomes `?`, comments go, and the spaces between tokens
//! become one. So a password written into `ALTER ROLE ... PASSWORD '...'`, or a token in a
//! comment, never reaches a label, and texts that differ by a constant count as one
//! statement. Tokens are PostgreSQL's own (the scanner of `tokens.rs`, with
//! `standard_conforming_strings` on, the default). Text the scanner cannot read to its end
//! (an unterminated string or comment, a malformed token) keeps only what comes before it,
//! then `?`.

use super::lexer::TokenKind;
use super::tokens::lex;

/// `sql` with its constants as `?`, its comments removed and its spaces collapsed.
pub(crate) fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().min(1024));
    let mut last_end = 0;
    for t in lex(sql, true) {
        let gap = t.start > last_end;
        last_end = t.end;
        let piece = match t.kind {
            TokenKind::LineComment | TokenKind::BlockComment => {
                // A comment separates what is around it, as a space would.
                last_end = t.start.min(last_end);
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
                continue;
            }
            TokenKind::String(_) | TokenKind::Integer | TokenKind::Float => "?",
            TokenKind::BadNumber | TokenKind::Unterminated(_) => {
                push(&mut out, gap, "?");
                return out;
            }
            _ if t.error.is_some() => {
                push(&mut out, gap, "?");
                return out;
            }
            _ => &sql[t.start..t.end],
        };
        push(&mut out, gap, piece);
    }
    out.trim_end().to_string()
}

fn push(out: &mut String, gap: bool, piece: &str) {
    if gap && !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
    out.push_str(piece);
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn constants_and_comments_are_taken_out() {
        for (sql, label) in [
            ("SELECT $1::int4", "SELECT $1::int4"),
            ("SELECT 1", "SELECT ?"),
            (
                "select  *\n from t where id = 42 and name = 'bob'",
                "select * from t where id = ? and name = ?",
            ),
            (
                "ALTER ROLE app PASSWORD 'hunter2'",
                "ALTER ROLE app PASSWORD ?",
            ),
            (
                "SELECT E'a\\'b' || $$dollar$$ || 1.5e3",
                "SELECT ? || ? || ?",
            ),
            ("SELECT 1 /* token=abc */ + 2 -- secret", "SELECT ? + ?"),
            ("SELECT x/*c*/FROM t", "SELECT x FROM t"),
            ("SELECT 'unterminated", "SELECT ?"),
            (
                "SELECT \"Quoted Name\" FROM \"T\"",
                "SELECT \"Quoted Name\" FROM \"T\"",
            ),
            ("", ""),
        ] {
            assert_eq!(normalize(sql), label, "{sql}");
        }
    }

    #[test]
    fn no_constant_survives() {
        for sql in [
            "INSERT INTO t VALUES ('s3cr3t', 123456, B'1010', X'ff', U&'d\\0061t')",
            "SELECT 's3cr3t' WHERE 123456 > 1",
            "SELECT $q$s3cr3t$q$, 123456",
        ] {
            let l = normalize(sql);
            assert!(
                !l.contains("s3cr3t") && !l.contains("123456"),
                "{sql} -> {l}"
            );
        }
    }
}
