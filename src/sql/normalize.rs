//! A statement's text with its constants taken out, for the statement metrics' label: a
//! string or number constant becomes `?`, comments go, and the spaces between tokens
//! become one; the value of a `SET` becomes `?` whatever its spelling. So a password written into `ALTER ROLE ... PASSWORD '...'`, or a token in a
//! comment, never reaches a label, and texts that differ by a constant count as one
//! statement. Tokens are PostgreSQL's own (the scanner of `tokens.rs`, with
//! `standard_conforming_strings` on, the default). Text the scanner cannot read to its end
//! (an unterminated string or comment, a malformed token) keeps only what comes before it,
//! then `?`.

use super::lexer::{Token, TokenKind};
use super::tokens::lex;

/// `sql` with its constants as `?`, its comments removed and its spaces collapsed.
///
/// Two more things are taken out, because PostgreSQL's grammar reads them as values:
/// - The value of a `SET`, whether it is written as a constant, a bare word or a quoted
///   name (`SET app.token = s3cr3t`, `SET ROLE admin`, `SET search_path TO a, b`):
///   `SET name = ?`, `SET name TO ?`, `SET ROLE ?`. The same for `ALTER ... SET name =/TO
///   value`.
/// - A text whose strings read differently with `standard_conforming_strings` off (a
///   backslash in a `'...'` string) is normalised both ways, and only what the two
///   readings share is kept: the label then holds nothing that either reading takes for a
///   constant.
pub(crate) fn normalize(sql: &str) -> String {
    let standard = normalize_as(sql, true);
    if !sql.contains('\\') {
        return standard;
    }
    let escaped = normalize_as(sql, false);
    if standard == escaped {
        return standard;
    }
    let mut shared = standard
        .char_indices()
        .zip(escaped.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    // End on a whole token: back to the last space.
    shared = standard[..shared].rfind(' ').unwrap_or(0);
    let mut out = standard[..shared].to_string();
    out.push_str(if out.is_empty() { "?" } else { " ?" });
    out
}

fn normalize_as(sql: &str, standard_conforming_strings: bool) -> String {
    let tokens = lex(sql, standard_conforming_strings);
    let hidden = set_values(&tokens);
    let mut out = String::with_capacity(sql.len().min(1024));
    let mut last_end = 0;
    for (i, t) in tokens.iter().enumerate() {
        let gap = t.start > last_end;
        last_end = t.end;
        if hidden[i] {
            // One `?` for the whole value.
            if !(i > 0 && hidden[i - 1]) {
                push(&mut out, true, "?");
            }
            continue;
        }
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

fn is_comment(t: &Token<'_>) -> bool {
    matches!(t.kind, TokenKind::LineComment | TokenKind::BlockComment)
}

fn is_name(t: &Token<'_>) -> bool {
    matches!(
        t.kind,
        TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::UnicodeIdent | TokenKind::Keyword(_)
    )
}

/// Which tokens are the value of a `SET`: of a statement that starts with `SET`, or of
/// `SET name =/TO` in a statement that starts with `ALTER`. Up to the statement's `;`.
fn set_values(tokens: &[Token<'_>]) -> Vec<bool> {
    let mut hidden = vec![false; tokens.len()];
    // The significant tokens' indexes, statement by statement.
    let mut statement: Vec<usize> = Vec::new();
    let flush = |statement: &mut Vec<usize>, hidden: &mut Vec<bool>| {
        mark(tokens, statement, hidden);
        statement.clear();
    };
    for (i, t) in tokens.iter().enumerate() {
        if is_comment(t) {
            continue;
        }
        if t.kind == TokenKind::Char(b';') {
            flush(&mut statement, &mut hidden);
        } else {
            statement.push(i);
        }
    }
    flush(&mut statement, &mut hidden);
    hidden
}

fn mark(tokens: &[Token<'_>], sig: &[usize], hidden: &mut [bool]) {
    let kw = |k: usize, w: &str| sig.get(k).is_some_and(|&i| tokens[i].is_keyword(w));
    let assigns = |k: usize| {
        sig.get(k)
            .is_some_and(|&i| tokens[i].kind == TokenKind::Char(b'=') || tokens[i].is_keyword("to"))
    };
    // After `name` (dotted, as `app.token`) at `k`: the index of `=`/`TO`, if it follows.
    let assignment_after = |mut k: usize| {
        if !sig.get(k).is_some_and(|&i| is_name(&tokens[i])) {
            return None;
        }
        k += 1;
        while sig
            .get(k)
            .is_some_and(|&i| tokens[i].kind == TokenKind::Char(b'.'))
            && sig.get(k + 1).is_some_and(|&i| is_name(&tokens[i]))
        {
            k += 2;
        }
        assigns(k).then_some(k)
    };
    let hide_from = |k: usize, hidden: &mut [bool]| {
        for &i in &sig[k.min(sig.len())..] {
            hidden[i] = true;
        }
    };
    if kw(0, "set") {
        let k = if kw(1, "session") || kw(1, "local") {
            2
        } else {
            1
        };
        match assignment_after(k) {
            Some(eq) => hide_from(eq + 1, hidden),
            // `SET ROLE x`, `SET TIME ZONE x`, `SET SESSION AUTHORIZATION x`, ...
            None => hide_from(k + 1, hidden),
        }
    } else if kw(0, "alter") {
        for k in 1..sig.len() {
            if kw(k, "set") {
                if let Some(eq) = assignment_after(k + 1) {
                    hide_from(eq + 1, hidden);
                    return;
                }
            }
        }
    }
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
            (
                "SET application_name = BAREWORD",
                "SET application_name = ?",
            ),
            (
                "set local app.token to s3cr3t43",
                "set local app.token to ?",
            ),
            (
                "SET application_name TO \"s3cr3t11\"",
                "SET application_name TO ?",
            ),
            (
                "SET search_path TO s3cr3t42, public",
                "SET search_path TO ?",
            ),
            ("SET ROLE s3cr3t44", "SET ROLE ?"),
            (
                "SET SESSION AUTHORIZATION s3cr3t",
                "SET SESSION AUTHORIZATION ?",
            ),
            ("SET TIME ZONE 'Europe/Paris'", "SET TIME ?"),
            (
                "ALTER ROLE app SET search_path = s3cr3t",
                "ALTER ROLE app SET search_path = ?",
            ),
            ("SET x = 1; SELECT a FROM t", "SET x = ?; SELECT a FROM t"),
            ("UPDATE t SET a = b", "UPDATE t SET a = b"),
            // A backslash in a string: the two readings of standard_conforming_strings.
            ("SELECT 'it\\', CONSTANTSECRET --'", "SELECT ?"),
            ("SELECT 'a\\b' FROM t", "SELECT ? FROM t"),
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
