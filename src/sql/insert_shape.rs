//! The one statement shape `execute_many` may carry by COPY: a single-row
//! `INSERT INTO table [(column, ...)] VALUES ($a, $b, ...)` whose values are each a
//! different parameter, read with PostgreSQL's scanner. Anything else (a `WITH`, an alias,
//! `OVERRIDING`, `ON CONFLICT`, `RETURNING`, an expression, a constant, a cast, a second
//! statement, a subscripted column) is not this shape, and runs statement by statement.
//!
//! Names come out as PostgreSQL resolves them (case-folded unless quoted, de-quoted,
//! truncated), so the `COPY` written from them names the same table and columns.

use super::keywords::Category;
use super::lexer::{Token, TokenKind};
use super::tokens::lex;

/// A single-row `INSERT ... VALUES` of parameters only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InsertShape {
    /// The table's name as written, qualified or not, each part as PostgreSQL reads it.
    pub(crate) table: Vec<String>,
    /// The column list, if the statement has one.
    pub(crate) columns: Option<Vec<String>>,
    /// For each value, in order, its parameter's number (1-based); each number once.
    pub(crate) params: Vec<usize>,
}

impl InsertShape {
    /// The table's name for a statement: each part double-quoted.
    pub(crate) fn quoted_table(&self) -> String {
        self.table
            .iter()
            .map(|p| quote(p))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// `name` as a double-quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The shape of `sql`, if it is a single-row `INSERT ... VALUES` of distinct parameters
/// numbered `1..=n` (any order).
pub(crate) fn insert_shape(sql: &str) -> Option<InsertShape> {
    if sql.contains('\0') {
        return None;
    }
    let all = lex(sql, true);
    if all.iter().any(|t| {
        t.error.is_some()
            || matches!(
                t.kind,
                TokenKind::Unterminated(_) | TokenKind::String(_) | TokenKind::UnicodeIdent
            )
    }) {
        return None;
    }
    let tokens: Vec<&Token<'_>> = all
        .iter()
        .filter(|t| !matches!(t.kind, TokenKind::LineComment | TokenKind::BlockComment))
        .collect();
    let mut at = Cursor {
        tokens: &tokens,
        sql,
        i: 0,
    };
    // Empty statements around it are no statements (PostgreSQL drops them).
    while at.char(b';').is_some() {}
    at.keyword("insert")?;
    at.keyword("into")?;
    let mut table = vec![at.name()?];
    while at.char(b'.').is_some() {
        table.push(at.name()?);
    }
    if table.len() > 3 {
        return None;
    }
    let columns = if at.char(b'(').is_some() {
        let mut cols = vec![at.name()?];
        while at.char(b',').is_some() {
            cols.push(at.name()?);
        }
        at.char(b')')?;
        Some(cols)
    } else {
        None
    };
    at.keyword("values")?;
    at.char(b'(')?;
    let mut params = vec![at.param()?];
    while at.char(b',').is_some() {
        params.push(at.param()?);
    }
    at.char(b')')?;
    while at.char(b';').is_some() {}
    if at.i != tokens.len() {
        return None;
    }
    if columns.as_ref().is_some_and(|c| c.len() != params.len()) {
        return None;
    }
    // Each of 1..=n exactly once.
    let mut seen = vec![false; params.len()];
    for &p in &params {
        let slot = seen.get_mut(p.checked_sub(1)?)?;
        if std::mem::replace(slot, true) {
            return None;
        }
    }
    Some(InsertShape {
        table,
        columns,
        params,
    })
}

struct Cursor<'t, 'a> {
    tokens: &'t [&'t Token<'a>],
    sql: &'t str,
    i: usize,
}

impl Cursor<'_, '_> {
    fn next(&mut self) -> Option<&Token<'_>> {
        let t = self.tokens.get(self.i)?;
        self.i += 1;
        Some(t)
    }

    fn keyword(&mut self, kw: &str) -> Option<()> {
        self.next().filter(|t| t.is_keyword(kw)).map(|_| ())
    }

    fn char(&mut self, c: u8) -> Option<()> {
        let t = self.tokens.get(self.i)?;
        if t.kind == TokenKind::Char(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A `ColId`: an identifier, or a keyword the grammar takes as a name.
    fn name(&mut self) -> Option<String> {
        let t = self.next()?;
        match t.kind {
            TokenKind::Ident
            | TokenKind::QuotedIdent
            | TokenKind::Keyword(Category::Unreserved | Category::ColName) => {
                t.name().map(str::to_owned)
            }
            _ => None,
        }
    }

    /// A parameter, `$n`.
    fn param(&mut self) -> Option<usize> {
        let t = self.tokens.get(self.i)?;
        self.i += 1;
        if t.kind != TokenKind::Param {
            return None;
        }
        self.sql.get(t.start + 1..t.end)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sql: &str) -> Option<(String, Option<Vec<String>>, Vec<usize>)> {
        insert_shape(sql).map(|s| (s.quoted_table(), s.columns, s.params))
    }

    #[test]
    fn plain_inserts_of_parameters_have_the_shape() {
        assert_eq!(
            shape("INSERT INTO many (id, name, score) VALUES ($1, $2, $3)"),
            Some((
                "\"many\"".into(),
                Some(vec!["id".into(), "name".into(), "score".into()]),
                vec![1, 2, 3]
            ))
        );
        assert_eq!(
            shape("insert /* c */ into Public.\"My \"\"T\"\"\" VALUES ($2,$1); -- end"),
            Some(("\"public\".\"My \"\"T\"\"\"".into(), None, vec![2, 1]))
        );
        // Empty statements around it.
        assert_eq!(
            shape(";; INSERT INTO t VALUES ($1);;").map(|s| s.2),
            Some(vec![1])
        );
        // Keywords the grammar takes as names.
        assert_eq!(
            shape("INSERT INTO data (name, value) VALUES ($1, $2)").map(|s| s.1),
            Some(Some(vec!["name".into(), "value".into()]))
        );
    }

    #[test]
    fn anything_else_has_not() {
        for sql in [
            "INSERT INTO t VALUES ($1, $1)",
            "INSERT INTO t VALUES ($1, $3)",
            "INSERT INTO t VALUES ($0)",
            "INSERT INTO t VALUES ($1::int8)",
            "INSERT INTO t VALUES ($1, 2)",
            "INSERT INTO t VALUES ($1, 'x')",
            "INSERT INTO t VALUES ($1), ($2)",
            "INSERT INTO t (a, b) VALUES ($1)",
            "INSERT INTO t (a[1]) VALUES ($1)",
            "INSERT INTO t AS x VALUES ($1)",
            "INSERT INTO t VALUES ($1) RETURNING *",
            "INSERT INTO t VALUES ($1) ON CONFLICT DO NOTHING",
            "INSERT INTO t OVERRIDING SYSTEM VALUE VALUES ($1)",
            "WITH x AS (SELECT 1) INSERT INTO t VALUES ($1)",
            "INSERT INTO t SELECT $1",
            "INSERT INTO t DEFAULT VALUES",
            "INSERT INTO t VALUES ($1); DELETE FROM t",
            "INSERT INTO t VALUES ($1); ; SELECT 1",
            "INSERT INTO U&\"t\" VALUES ($1)",
            "INSERT INTO a.b.c.d VALUES ($1)",
            "INSERT INTO select VALUES ($1)",
            "INSERT INTO t VALUES ($1",
            "INSERT INTO t VALUES ($1) /* open",
            "COPY t FROM STDIN",
            "INSERT INTO t VALUES ($99999999999999999999999)",
            "INSERT INTO t VALUES ($1)\0",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
