//! Whether a statement is a `COPY` whose data goes through the client (`FROM STDIN`,
//! `TO STDOUT`), read over the tokens as PostgreSQL's grammar reads a `CopyStmt`:
//! `COPY [BINARY] name [(columns)] {FROM | TO} [PROGRAM] file` or
//! `COPY (query) TO [PROGRAM] file`, where `file` is a string constant or the keyword
//! `STDIN` / `STDOUT`.

use super::lexer::{Token, TokenKind};
use super::tokens::lex;

/// True for a `COPY … FROM STDIN` or `COPY … TO STDOUT` (which needs the copy sub-protocol,
/// not a statement's Bind and Execute); false for any other text, a `COPY` from or to a
/// server file or program included.
pub(crate) fn copies_with_client(sql: &str) -> bool {
    let tokens = lex(sql, true);
    let mut words = tokens.iter().filter(|t| {
        !matches!(
            t.kind,
            TokenKind::Char(b';') | TokenKind::LineComment | TokenKind::BlockComment
        )
    });
    if !words.next().is_some_and(|t| keyword(t, "copy")) {
        return false;
    }
    let mut depth = 0usize;
    let mut direction_seen = false;
    for t in words {
        match t.kind {
            TokenKind::Char(b'(') => depth += 1,
            TokenKind::Char(b')') => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if !direction_seen => direction_seen = keyword(t, "from") || keyword(t, "to"),
            _ if keyword(t, "program") => {}
            _ => return keyword(t, "stdin") || keyword(t, "stdout"),
        }
    }
    false
}

fn keyword(t: &Token<'_>, word: &str) -> bool {
    matches!(t.kind, TokenKind::Keyword(_)) && t.text.as_deref() == Some(word)
}

#[cfg(test)]
mod tests {
    use super::copies_with_client;

    #[test]
    fn the_client_copies_and_no_other() {
        for sql in [
            "COPY t FROM STDIN",
            "copy t (a, b) from stdin with (format binary)",
            ";COPY t FROM STDIN",
            "COPY BINARY t FROM STDIN",
            "COPY (SELECT 1 FROM t) TO STDOUT",
            "/* c */ COPY s.t TO stdout (FORMAT csv)",
        ] {
            assert!(copies_with_client(sql), "{sql}");
        }
        for sql in [
            "COPY t FROM '/tmp/f'",
            "COPY t TO PROGRAM 'gzip > /tmp/f'",
            "COPY t FROM 'stdin'",
            "COPY t (stdin) FROM '/tmp/f'",
            "COPY (SELECT stdin FROM t) TO '/tmp/f'",
            "SELECT 'COPY t FROM STDIN'",
            "INSERT INTO t VALUES (1)",
            "",
        ] {
            assert!(!copies_with_client(sql), "{sql}");
        }
    }
}
