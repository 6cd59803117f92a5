//! What a SQL text does to the session, decided over the lexer's tokens: whether it may run
//! on the pipelined path (where the next statement on the connection belongs to another
//! caller) and whether it is proven to leave the session as it found it.
//!
//! The rules err one way: a text is refused when in doubt, and called clean only when every
//! part of it is known. Refusing costs the caller an error it can avoid by taking a
//! connection of its own; a wrong "clean" only skips a reset the pool would have done.

use std::fmt;

use super::keywords::Category;
use super::lexer::{StringKind, Token, TokenKind};
use super::lists::{
    RefusedStatement, SessionFunction, BUILTIN_OPERATORS, BUILTIN_TYPES, CLEAN_FUNCTIONS,
    CLEAN_OPERATIONS, OPERATIONS, REFUSED_STATEMENTS, SESSION_FUNCTIONS, SESSION_VIEWS,
};
use super::tokens::lex;

/// What [`classify`] finds in a SQL text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    /// Non-empty statements in the text (`;BEGIN` is one; `SELECT 1; SELECT 2` two).
    pub(crate) statements: usize,
    /// Why the text may not run on the pipelined path (`None`: allowed).
    pub(crate) refusal: Option<Refusal>,
    /// True only when the text is proven to leave no session state behind: one statement,
    /// refused for nothing but transaction control (which the pool sees in the transaction
    /// status of ReadyForQuery), an operation in [`CLEAN_OPERATIONS`] that names no
    /// relation, every function it calls in [`CLEAN_FUNCTIONS`] (or a transaction-local
    /// `set_config`) and qualified with `pg_catalog` or called without arguments, every type
    /// it names PostgreSQL's own ([`BUILTIN_TYPES`]) and every operator too
    /// ([`BUILTIN_OPERATORS`]). Anything else may run a function of the application, and
    /// what that does to the session no text shows.
    pub(crate) session_clean: bool,
    /// The weaker reading [`SessionReset::WhenDirty`](crate::SessionReset::WhenDirty)
    /// takes: one statement, refused for nothing but transaction control, an operation in
    /// [`CLEAN_OPERATIONS`] (relations allowed), and every function the text calls in
    /// [`CLEAN_FUNCTIONS`], unqualified or in `pg_catalog`. Blind to what a relation, a
    /// type, an operator or an overload runs.
    pub(crate) known_calls_only: bool,
    /// The statement's operation keyword, upper case (`SELECT`, `INSERT`, `CREATE`, …; for
    /// `WITH …` the main statement's keyword if determinable, else `WITH`; `EXPLAIN` for an
    /// `EXPLAIN`). `None` for an empty text or one whose first word starts no statement.
    pub(crate) operation: Option<&'static str>,
}

/// Why a text may not run on the pipelined path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// PostgreSQL would reject the text as it scans it (an unterminated quote or comment, a
    /// bad escape or number), or it holds a NUL byte; the reason is PostgreSQL's message.
    Unscannable(&'static str),
    /// More than one statement.
    MultipleStatements,
    /// A statement of [`REFUSED_STATEMENTS`].
    Statement(&'static RefusedStatement),
    /// A temporary object, or a name in a temporary schema (`pg_temp`, `pg_temp_N`).
    TemporaryObject,
    /// A call of a function of [`SESSION_FUNCTIONS`] (other than a transaction-local
    /// `set_config`).
    SessionFunction(&'static SessionFunction),
    /// `pg_settings` named by anything but a plain `SELECT` (its update rule calls
    /// `set_config(…, false)`).
    PgSettings,
    /// A view of [`SESSION_VIEWS`]: the session's own prepared statements or cursors.
    SessionView(&'static str),
    /// A `BEGIN ATOMIC … END` routine body: its semicolons do not end the statement, and the
    /// statements in it are not checked.
    AtomicBody,
    /// A text longer than [`super::verdicts::MAX_READ`]: not read at all.
    TooLong,
}

impl Refusal {
    /// What the refused text leaves, no session reset undoes (a `LOAD`ed library, a
    /// random seed, a dblink connection): the connection that ran it must be closed.
    pub(crate) fn outlives_reset(&self) -> bool {
        match self {
            Refusal::Statement(s) => s.keyword == "LOAD",
            Refusal::SessionFunction(f) => f.outlives_reset,
            _ => false,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unscannable(why) => write!(f, "PostgreSQL would reject the text ({why})"),
            Refusal::MultipleStatements => f.write_str("more than one statement"),
            Refusal::Statement(s) => f.write_str(s.reason),
            Refusal::TemporaryObject => f.write_str("a temporary object belongs to the session"),
            Refusal::SessionFunction(s) => write!(f, "{}() {}", s.name, s.reason),
            Refusal::PgSettings => f.write_str("writing pg_settings changes the session"),
            Refusal::SessionView(v) => write!(f, "{v} reads the session's own objects"),
            Refusal::AtomicBody => {
                f.write_str("a BEGIN ATOMIC body is not checked statement by statement")
            }
            Refusal::TooLong => f.write_str("a text over 1 MiB is not read"),
        }
    }
}

/// Classifies `sql` (see [`Class`]).
pub(crate) fn classify(sql: &str) -> Class {
    let tokens = lex(sql, true);
    let mut class = analyze(&tokens);
    if sql.contains('\0') {
        class.refusal = Some(Refusal::Unscannable("a NUL byte in the text"));
        class.session_clean = false;
        class.known_calls_only = false;
    }
    // With standard_conforming_strings off (a server setting the pool does not control), a
    // backslash in '…' escapes: such a text must pass both readings. A text that does not
    // scan in the other reading runs nothing on a server reading it so.
    let backslash = tokens.iter().any(|t| {
        t.kind == TokenKind::String(StringKind::Standard) && sql[t.start..t.end].contains('\\')
    });
    if backslash {
        let other = analyze(&lex(sql, false));
        if !matches!(other.refusal, Some(Refusal::Unscannable(_))) {
            class.refusal = class.refusal.or(other.refusal);
            class.session_clean &= other.session_clean && other.refusal.is_none();
            class.known_calls_only &= other.known_calls_only && other.refusal.is_none();
        }
        if other.statements > 1 && class.refusal.is_none() {
            class.refusal = Some(Refusal::MultipleStatements);
        }
    }
    class
}

fn is_char(t: &Token<'_>, c: u8) -> bool {
    t.kind == TokenKind::Char(c)
}

fn kw(t: Option<&&Token<'_>>, k: &str) -> bool {
    t.is_some_and(|t| t.is_keyword(k))
}

fn analyze(tokens: &[Token<'_>]) -> Class {
    // The tokens the grammar sees: no comments, and a U& name's UESCAPE clause (already
    // applied to its name) dropped.
    let mut sig: Vec<&Token<'_>> = Vec::with_capacity(tokens.len());
    let mut skip = 0;
    for (i, t) in tokens.iter().enumerate() {
        if matches!(t.kind, TokenKind::LineComment | TokenKind::BlockComment) {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if matches!(
            t.kind,
            TokenKind::UnicodeIdent | TokenKind::String(StringKind::Unicode)
        ) && tokens[i + 1..]
            .iter()
            .find(|t| !matches!(t.kind, TokenKind::LineComment | TokenKind::BlockComment))
            .is_some_and(|t| t.is_keyword("uescape"))
        {
            skip = 2;
        }
        sig.push(t);
    }
    let unscannable = tokens.iter().find_map(|t| t.error);

    let (statements, absorbed) = split(&sig);
    let first = statements.first().map_or(&sig[..0], |r| &sig[r.clone()]);
    let (explained, operation) = lead(first);
    let head = explained.first().map(|t| t.text.as_deref().unwrap_or(""));
    let refused_statement = head.and_then(|h| {
        explained[0].name().and_then(|_| {
            REFUSED_STATEMENTS
                .iter()
                .find(|r| r.keyword.eq_ignore_ascii_case(h))
        })
    });
    let explained_op = lead(explained).1;

    let mut calls_clean = true;
    let mut calls_known = true;
    let mut refusal = unscannable.map(Refusal::Unscannable);
    if statements.len() > 1 {
        refusal = refusal.or(Some(Refusal::MultipleStatements));
    }
    if let Some(r) = refused_statement {
        refusal = refusal.or(Some(Refusal::Statement(r)));
    }
    if temporary(&sig) {
        refusal = refusal.or(Some(Refusal::TemporaryObject));
    }
    if sig.iter().any(|t| {
        t.name()
            .is_some_and(|n| n.eq_ignore_ascii_case("pg_settings"))
    }) && (explained_op != Some("SELECT")
        || sig.iter().any(|t| {
            ["update", "insert", "delete", "merge"]
                .iter()
                .any(|k| t.is_keyword(k))
        }))
    {
        refusal = refusal.or(Some(Refusal::PgSettings));
    }
    let calls = calls(&sig);
    let names_clean = names_only_builtins(&sig, &calls);
    if let Some(v) = sig.iter().find_map(|t| {
        let n = t.name()?;
        SESSION_VIEWS
            .iter()
            .find(|v| v.eq_ignore_ascii_case(n))
            .copied()
    }) {
        refusal = refusal.or(Some(Refusal::SessionView(v)));
    }
    for call in &calls {
        let name = call.name;
        let builtin = call.schema.is_none_or(|s| s == "pg_catalog");
        if let Some(f) = SESSION_FUNCTIONS
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            // A transaction-local set_config is over with the transaction, like SET LOCAL.
            if f.name == "set_config"
                && name == "set_config"
                && builtin
                && set_config_is_local(&sig, call.open)
            {
                continue;
            }
            if !(f.name == "set_config" && set_config_is_local(&sig, call.open)) {
                refusal = refusal.or(Some(Refusal::SessionFunction(f)));
            }
        }
        let listed = builtin && CLEAN_FUNCTIONS.binary_search(&name).is_ok();
        let no_arguments = sig.get(call.open + 1).is_some_and(|t| is_char(t, b')'));
        calls_known &= listed;
        calls_clean &= listed && (call.schema.is_some() || no_arguments);
    }
    if absorbed {
        refusal = refusal.or(Some(Refusal::AtomicBody));
    }

    let transaction = refused_statement.is_some_and(|r| r.transaction);
    let refusal_ok = match refusal {
        None => true,
        Some(Refusal::Statement(r)) => r.transaction,
        Some(_) => false,
    };
    let op_clean = transaction || explained_op.is_some_and(|op| CLEAN_OPERATIONS.contains(&op));
    Class {
        statements: statements.len(),
        refusal,
        known_calls_only: statements.len() == 1 && refusal_ok && op_clean && calls_known,
        session_clean: statements.len() == 1
            && refusal_ok
            && op_clean
            && calls_clean
            // SHOW names a setting, nothing that runs code.
            && (transaction || explained_op == Some("SHOW") || names_clean),
        operation,
    }
}

/// Whether a text names nothing but what PostgreSQL defines: no relation (no `FROM`,
/// `INTO`, `JOIN`, nor a statement that writes one), and every other name a function
/// call (judged by its caller), a `pg_catalog` qualifier, a column alias, or a type of
/// [`BUILTIN_TYPES`] (or a type keyword); every operator of [`BUILTIN_OPERATORS`] or one
/// character long.
fn names_only_builtins(sig: &[&Token<'_>], calls: &[Call<'_>]) -> bool {
    const RELATION_KEYWORDS: [&str; 9] = [
        "from", "into", "join", "table", "update", "insert", "delete", "merge", "using",
    ];
    let typed = |k: usize| {
        let mut p = k;
        // `pg_catalog.name`
        if p >= 2 && is_char(sig[p - 1], b'.') && sig[p - 2].name() == Some("pg_catalog") {
            p -= 2;
        }
        p.checked_sub(1).map(|b| sig[b])
    };
    for (k, t) in sig.iter().enumerate() {
        match t.kind {
            TokenKind::Keyword(c) => {
                if RELATION_KEYWORDS.iter().any(|w| t.is_keyword(w)) {
                    return false;
                }
                // A keyword in a type's place: the grammar's type keywords are built in, an
                // unreserved one may name an application's type.
                let in_type_place = typed(k).is_some_and(|b| b.kind == TokenKind::Typecast);
                if in_type_place
                    && c != Category::ColName
                    && BUILTIN_TYPES
                        .binary_search(&t.text.as_deref().unwrap_or(""))
                        .is_err()
                {
                    return false;
                }
            }
            TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::UnicodeIdent => {
                let name = t.text.as_deref().unwrap_or("");
                if calls.iter().any(|c| c.open == k + 1) {
                    continue;
                }
                if name == "pg_catalog" && sig.get(k + 1).is_some_and(|n| is_char(n, b'.')) {
                    continue;
                }
                let builtin_type = BUILTIN_TYPES.binary_search(&name).is_ok();
                match typed(k) {
                    Some(b) if b.kind == TokenKind::Typecast => {
                        if !builtin_type {
                            return false;
                        }
                    }
                    // `AS x` is an alias, unless it closes a CAST (or a subquery: both read
                    // as a type, to err on the safe side).
                    Some(b) if b.is_keyword("as") => {
                        let closes = sig.get(k + 1).is_some_and(|n| is_char(n, b')'));
                        if closes && !builtin_type {
                            return false;
                        }
                    }
                    _ => return false,
                }
            }
            TokenKind::Op => {
                let op = t.text.as_deref().unwrap_or("");
                if op.len() > 1 && BUILTIN_OPERATORS.binary_search(&op).is_err() {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// The non-empty statements (ranges of `sig`), split at semicolons except inside a
/// `BEGIN ATOMIC … END` body of `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, with CASE … END
/// nested in it (the heuristic psql uses); and whether a semicolon was inside such a body.
fn split(sig: &[&Token<'_>]) -> (Vec<std::ops::Range<usize>>, bool) {
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut absorbed = false;
    for (k, t) in sig.iter().enumerate() {
        if is_char(t, b';') {
            if depth > 0 {
                absorbed = true;
                continue;
            }
            if k > start {
                out.push(start..k);
            }
            start = k + 1;
        } else if (t.is_keyword("begin")
            && kw(sig.get(k + 1), "atomic")
            && is_routine(&sig[start..]))
            || (depth > 0 && t.is_keyword("case"))
        {
            depth += 1;
        } else if depth > 0 && t.is_keyword("end") {
            depth -= 1;
        }
    }
    if start < sig.len() {
        out.push(start..sig.len());
    }
    (out, absorbed || depth > 0)
}

fn is_routine(stmt: &[&Token<'_>]) -> bool {
    let mut k = 1;
    if !kw(stmt.first(), "create") {
        return false;
    }
    if kw(stmt.get(1), "or") && kw(stmt.get(2), "replace") {
        k = 3;
    }
    kw(stmt.get(k), "function") || kw(stmt.get(k), "procedure")
}

/// Skips `EXPLAIN` prefixes: the explained statement's tokens, and the statement's operation.
fn lead<'s, 't>(stmt: &'s [&'t Token<'t>]) -> (&'s [&'t Token<'t>], Option<&'static str>) {
    let mut k = 0;
    while kw(stmt.get(k), "explain") {
        k += 1;
        if stmt.get(k).is_some_and(|t| is_char(t, b'(')) {
            k = matching(stmt, k).map_or(stmt.len(), |c| c + 1);
        } else {
            while ["analyze", "analyse", "verbose"]
                .iter()
                .any(|w| kw(stmt.get(k), w))
            {
                k += 1;
            }
        }
    }
    let explained = &stmt[k.min(stmt.len())..];
    let operation = if k > 0 {
        Some("EXPLAIN")
    } else {
        let word = stmt
            .iter()
            .find(|t| !is_char(t, b'('))
            .filter(|t| matches!(t.kind, TokenKind::Keyword(_)));
        let op = word.and_then(|t| {
            OPERATIONS
                .iter()
                .copied()
                .find(|o| o.eq_ignore_ascii_case(t.text.as_deref().unwrap_or("")))
        });
        if op == Some("WITH") {
            Some(with_main(stmt).unwrap_or("WITH"))
        } else {
            op
        }
    };
    (explained, operation)
}

/// The main statement of a `WITH …`: the first statement keyword outside parentheses.
fn with_main(stmt: &[&Token<'_>]) -> Option<&'static str> {
    let mut depth = 0i32;
    for t in stmt {
        match t.kind {
            TokenKind::Char(b'(') => depth += 1,
            TokenKind::Char(b')') => depth -= 1,
            TokenKind::Keyword(_) if depth == 0 => {
                let found = [
                    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE",
                ]
                .into_iter()
                .find(|o| o.eq_ignore_ascii_case(t.text.as_deref().unwrap_or("")));
                if found.is_some() {
                    return found;
                }
            }
            _ => {}
        }
    }
    None
}

/// The index of the `)` matching the `(` at `open`.
fn matching(sig: &[&Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in sig.iter().enumerate().skip(open) {
        match t.kind {
            TokenKind::Char(b'(') => depth += 1,
            TokenKind::Char(b')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// A temporary object anywhere in the text: `CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP…`,
/// `INTO [GLOBAL|LOCAL] TEMP…` (not `INSERT INTO` / `MERGE INTO`), or a name `pg_temp` or
/// `pg_temp_…` (any case).
fn temporary(sig: &[&Token<'_>]) -> bool {
    let temp_after = |mut k: usize| {
        if kw(sig.get(k), "global") || kw(sig.get(k), "local") {
            k += 1;
        }
        kw(sig.get(k), "temp") || kw(sig.get(k), "temporary")
    };
    sig.iter().enumerate().any(|(k, t)| {
        if t.is_keyword("create") {
            let k = if kw(sig.get(k + 1), "or") && kw(sig.get(k + 2), "replace") {
                k + 3
            } else {
                k + 1
            };
            return temp_after(k);
        }
        if t.is_keyword("into") {
            let target = k > 0 && (kw(sig.get(k - 1), "insert") || kw(sig.get(k - 1), "merge"));
            return !target && temp_after(k + 1);
        }
        matches!(
            t.kind,
            TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::UnicodeIdent
        ) && t.text.as_deref().is_some_and(|n| {
            n.len() >= 7
                && n.as_bytes()[..7].eq_ignore_ascii_case(b"pg_temp")
                && (n.len() == 7 || n.as_bytes()[7] == b'_')
        })
    })
}

/// A function call: a name (qualified or not) followed by `(`.
struct Call<'t> {
    name: &'t str,
    schema: Option<&'t str>,
    /// The index of the `(` in `sig`.
    open: usize,
}

/// Every function call in the text, over-approximated: an identifier, or an unreserved or
/// type/function-name keyword (any keyword after a `.`), followed by `(`. Not calls: a name
/// after `INTO` or `AS` (a target's or alias's column list), `ON CONFLICT (`, and `FILTER (`,
/// `OVER (` after a call's closing parenthesis.
fn calls<'t>(sig: &[&'t Token<'t>]) -> Vec<Call<'t>> {
    let mut out = Vec::new();
    for k in 1..sig.len() {
        if !is_char(sig[k], b'(') {
            continue;
        }
        let prev = sig[k - 1];
        let dotted = k >= 2 && is_char(sig[k - 2], b'.');
        let callable = match prev.kind {
            TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::UnicodeIdent => true,
            TokenKind::Keyword(Category::Unreserved | Category::TypeFuncName) => true,
            TokenKind::Keyword(_) => dotted,
            _ => false,
        };
        let mut first = k - 1;
        while first >= 2 && is_char(sig[first - 1], b'.') && sig[first - 2].name().is_some() {
            first -= 2;
        }
        let before = first.checked_sub(1).map(|p| sig[p]);
        let clause_after_call = (prev.is_keyword("filter") || prev.is_keyword("over"))
            && k >= 2
            && is_char(sig[k - 2], b')')
            && was_closed_paren_of_call(sig, k - 2, &out);
        let not_call = kw(before.as_ref(), "into")
            || kw(before.as_ref(), "as")
            || (prev.is_keyword("conflict") && kw(before.as_ref(), "on"))
            || clause_after_call;
        if callable && !not_call {
            let schema = dotted.then(|| {
                if k >= 3 {
                    sig[k - 3].name().unwrap_or("")
                } else {
                    ""
                }
            });
            out.push(Call {
                name: prev.text.as_deref().unwrap_or(""),
                schema,
                open: k,
            });
        }
    }
    out
}

/// Whether the `)` at `close` closes a call's parentheses (or those of its `WITHIN GROUP`
/// or `FILTER` clause).
fn was_closed_paren_of_call(sig: &[&Token<'_>], close: usize, calls: &[Call<'_>]) -> bool {
    let mut depth = 0usize;
    for k in (0..=close).rev() {
        match sig[k].kind {
            TokenKind::Char(b')') => depth += 1,
            TokenKind::Char(b'(') => {
                depth -= 1;
                if depth == 0 {
                    let prev = k.checked_sub(1).map(|p| sig[p]);
                    return calls.iter().any(|c| c.open == k)
                        || prev.is_some_and(|p| p.is_keyword("filter") || p.is_keyword("group"));
                }
            }
            _ => {}
        }
    }
    false
}

/// Whether the `set_config(` at `open` has exactly three arguments, the third the literal
/// `true` or `'true'`.
fn set_config_is_local(sig: &[&Token<'_>], open: usize) -> bool {
    let Some(close) = matching(sig, open) else {
        return false;
    };
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    for k in open + 1..close {
        match sig[k].kind {
            TokenKind::Char(b'(' | b'[') => depth += 1,
            TokenKind::Char(b')' | b']') => depth = depth.saturating_sub(1),
            TokenKind::Char(b',') if depth == 0 => {
                args.push(&sig[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    args.push(&sig[start..close]);
    match args.as_slice() {
        [_, _, [t]] => {
            t.is_keyword("true")
                || (matches!(
                    t.kind,
                    TokenKind::String(StringKind::Standard | StringKind::Extended)
                ) && t.text.as_deref() == Some("true"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_characters_of_several_bytes_are_read_whole() {
        // The pg_temp check looked at the first seven bytes of every name as text.
        for sql in [
            "SELECT 1 AS résumé",
            "SELECT 1 AS 日本語",
            "SELECT 1 AS \"𝕏😀\"",
            "SELECT 1 AS \"ab日本\"",
        ] {
            assert!(classify(sql).refusal.is_none(), "{sql}");
        }
        assert_eq!(
            classify("CREATE TABLE pg_temé.t (a int)").refusal,
            classify("CREATE TABLE pg_teme.t (a int)").refusal
        );
        assert_eq!(
            classify("CREATE TABLE pg_temp_1.tëst (a int)").refusal,
            classify("CREATE TABLE pg_temp_1.test (a int)").refusal
        );
    }

    #[test]
    fn tables_are_sorted_and_lower_case() {
        assert!(CLEAN_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(SESSION_FUNCTIONS
            .iter()
            .all(|f| f.name == f.name.to_lowercase()));
        assert!(SESSION_FUNCTIONS
            .iter()
            .all(|f| CLEAN_FUNCTIONS.binary_search(&f.name).is_err()));
        assert!(REFUSED_STATEMENTS
            .iter()
            .all(|r| OPERATIONS.contains(&r.keyword)));
    }

    #[test]
    fn display() {
        assert_eq!(
            classify("SET x = 1").refusal.unwrap().to_string(),
            "SET changes the session"
        );
        assert_eq!(
            classify("select set_config('a', 'b', false)")
                .refusal
                .unwrap()
                .to_string(),
            "set_config() with is_local false changes the session"
        );
        assert_eq!(
            classify("SELECT 1; SELECT 2").refusal.unwrap().to_string(),
            "more than one statement"
        );
        assert_eq!(
            classify("CREATE TEMP TABLE t (a int)")
                .refusal
                .unwrap()
                .to_string(),
            "a temporary object belongs to the session"
        );
    }

    #[test]
    fn operations() {
        let op = |s| classify(s).operation;
        assert_eq!(op(""), None);
        assert_eq!(op("  -- x\n"), None);
        assert_eq!(op("select 1"), Some("SELECT"));
        assert_eq!(op("(SELECT 1)"), Some("SELECT"));
        assert_eq!(
            op("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a"),
            Some("INSERT")
        );
        assert_eq!(op("EXPLAIN ANALYZE SELECT 1"), Some("EXPLAIN"));
        assert_eq!(op("frobnicate"), None);
    }

    #[test]
    fn clean() {
        for s in [
            "SELECT $1::int4",
            "SELECT $1::pg_catalog.int8 + 1, $2::text || 'x'",
            "SELECT CAST($1 AS integer) AS n",
            "SELECT now(), pg_backend_pid()",
            "SELECT pg_catalog.lower($1) AS l",
            "SELECT '{\"a\": 1}'::jsonb -> 'a'",
            "VALUES (1, 'a')",
            "COMMIT",
            "SELECT set_config('a.b', 'c', true)",
            "SHOW search_path",
        ] {
            let c = classify(s);
            assert!(c.session_clean, "{s}: {c:?}");
        }
        for s in [
            // Relations: a view, trigger, rule, default, check or index expression may call
            // the application's functions.
            "SELECT count(*) FROM t WHERE a = $1",
            "SELECT h FROM v_hop",
            "TABLE v_hop",
            "VALUES ((SELECT h FROM v_hop))",
            "INSERT INTO t (a, b) VALUES ($1, now()) ON CONFLICT (a) DO NOTHING",
            "EXPLAIN ANALYZE UPDATE t SET a = 1",
            "SELECT * FROM f AS x(a int)",
            // Types, operators and overloads that may be the application's.
            "SELECT 1::hopdom AS v",
            "SELECT CAST(2 AS hopdom) AS v",
            "SELECT (5::hopbox).v",
            "SELECT 1::data",
            "SELECT 1 ### 1",
            "SELECT now(1)",
            "SELECT lower(42)",
            // Sequence state.
            "SELECT nextval('s')",
            "SELECT pg_catalog.setval('s', 1)",
            "SELECT my_func(1)",
            "SELECT myschema.lower(1)",
            "SELECT \"COUNT\"(1) FROM t",
            "CREATE TABLE t (a int)",
            "DO $$ BEGIN END $$",
            "SET x = 1",
            "SELECT 1; SELECT 2",
            "",
            "PREPARE p AS SELECT 1",
        ] {
            assert!(!classify(s).session_clean, "{s}");
        }
    }
}
