//! The differential proof: the lexer and the classifier against PostgreSQL's own scanner
//! and grammar (libpg_query, through the `pg_query` crate), over the table of `tests.rs`
//! and a few thousand texts from a small deterministic generator. For every text:
//!
//! - the tokens agree with `pg_query::scan` (byte boundaries and kind) whenever it scans the
//!   text; when it does not, the lexer still ends without panicking;
//! - the statement count agrees with `pg_query::parse` whenever it parses;
//! - refusal is sound: whatever a reference classifier over the parse tree finds
//!   session-changing is refused, and a text called clean holds nothing it finds.

use pg_query::protobuf::{self, a_const, node::Node as N, KeywordKind, Token as Pg};
use pg_query::{NodeRef, ParserOptions};

use super::keywords::Category;
use super::lexer::{StringKind, TokenKind};
use super::lists::SESSION_FUNCTIONS;
use super::tokens::lex;
use super::{classify, tests::TABLE};

/// A token's kind as both sides can say it.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Ident,
    Keyword(i32),
    String,
    Number,
    Param,
    /// Operators and punctuation, by pg_query's token number (a character's is its code).
    Punct(i32),
    Comment,
}

fn ours(k: TokenKind) -> Kind {
    match k {
        TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::UnicodeIdent => Kind::Ident,
        TokenKind::Keyword(c) => Kind::Keyword(match c {
            Category::Unreserved => KeywordKind::UnreservedKeyword,
            Category::ColName => KeywordKind::ColNameKeyword,
            Category::TypeFuncName => KeywordKind::TypeFuncNameKeyword,
            Category::Reserved => KeywordKind::ReservedKeyword,
        } as i32),
        TokenKind::String(_) => Kind::String,
        TokenKind::Integer | TokenKind::Float | TokenKind::BadNumber => Kind::Number,
        TokenKind::Param => Kind::Param,
        TokenKind::Op => Kind::Punct(Pg::Op as i32),
        TokenKind::Typecast => Kind::Punct(Pg::Typecast as i32),
        TokenKind::DotDot => Kind::Punct(Pg::DotDot as i32),
        TokenKind::ColonEquals => Kind::Punct(Pg::ColonEquals as i32),
        TokenKind::EqualsGreater => Kind::Punct(Pg::EqualsGreater as i32),
        TokenKind::LessEquals => Kind::Punct(Pg::LessEquals as i32),
        TokenKind::GreaterEquals => Kind::Punct(Pg::GreaterEquals as i32),
        TokenKind::NotEquals => Kind::Punct(Pg::NotEquals as i32),
        TokenKind::Char(c) => Kind::Punct(i32::from(c)),
        TokenKind::LineComment | TokenKind::BlockComment | TokenKind::Unterminated(_) => {
            Kind::Comment
        }
    }
}

fn theirs(t: &protobuf::ScanToken) -> Kind {
    if t.keyword_kind != KeywordKind::NoKeyword as i32 {
        return Kind::Keyword(t.keyword_kind);
    }
    match Pg::try_from(t.token) {
        Ok(Pg::Ident | Pg::Uident) => Kind::Ident,
        Ok(Pg::Sconst | Pg::Usconst | Pg::Bconst | Pg::Xconst) => Kind::String,
        Ok(Pg::Iconst | Pg::Fconst) => Kind::Number,
        Ok(Pg::Param) => Kind::Param,
        Ok(Pg::SqlComment | Pg::CComment) => Kind::Comment,
        _ => Kind::Punct(t.token),
    }
}

/// Checks the tokens; returns whether pg_query scanned the text.
fn same_tokens(sql: &str) -> bool {
    let mine = lex(sql, true);
    let Ok(scan) = pg_query::scan(sql) else {
        return false;
    };
    let a: Vec<_> = mine
        .iter()
        .map(|t| (t.start as i32, t.end as i32, ours(t.kind)))
        .collect();
    let b: Vec<_> = scan
        .tokens
        .iter()
        .map(|t| (t.start, t.end, theirs(t)))
        .collect();
    assert_eq!(a, b, "tokens of {sql:?}");
    // What scans in PostgreSQL has no scanner error here (UESCAPE is the parser's business).
    for t in &mine {
        let unicode = matches!(
            t.kind,
            TokenKind::UnicodeIdent | TokenKind::String(StringKind::Unicode)
        );
        assert!(t.error.is_none() || unicode, "{sql:?}: {t:?}");
    }
    true
}

/// What the reference finds in a parse tree.
#[derive(Debug, Default)]
struct Reference {
    /// Something that must be refused on the pipelined path.
    refuse: bool,
    /// Something that changes the session (transaction control aside).
    session: bool,
}

fn name_of(n: &protobuf::Node) -> Option<&str> {
    match n.node.as_ref()? {
        N::String(s) => Some(&s.sval),
        _ => None,
    }
}

fn is_pg_temp(schema: &str) -> bool {
    schema == "pg_temp" || schema.starts_with("pg_temp_")
}

fn reference(parsed: &pg_query::ParseResult) -> Reference {
    let mut r = Reference {
        refuse: parsed.protobuf.stmts.len() > 1,
        ..Default::default()
    };
    let both = |r: &mut Reference| {
        r.refuse = true;
        r.session = true;
    };
    let dml_on_settings =
        |rel: &Option<protobuf::RangeVar>| rel.as_ref().is_some_and(|v| v.relname == "pg_settings");
    for (node, ..) in parsed.protobuf.nodes() {
        match node {
            NodeRef::FuncCall(f) => {
                let Some(name) = f.funcname.last().and_then(name_of) else {
                    continue;
                };
                if !SESSION_FUNCTIONS.iter().any(|s| s.name == name) {
                    continue;
                }
                let local = name == "set_config"
                    && f.args.len() == 3
                    && match f.args[2].node.as_ref() {
                        Some(N::AConst(c)) => match &c.val {
                            Some(a_const::Val::Boolval(b)) => b.boolval,
                            Some(a_const::Val::Sval(s)) => s.sval == "true",
                            _ => false,
                        },
                        _ => false,
                    };
                if !local {
                    both(&mut r);
                }
            }
            NodeRef::RangeVar(v) if v.relpersistence == "t" || is_pg_temp(&v.schemaname) => {
                both(&mut r)
            }
            NodeRef::IntoClause(i) if i.rel.as_ref().is_some_and(|v| v.relpersistence == "t") => {
                both(&mut r)
            }
            NodeRef::CreateFunctionStmt(f)
                if f.funcname.len() > 1
                    && f.funcname.first().and_then(name_of).is_some_and(is_pg_temp) =>
            {
                both(&mut r)
            }
            NodeRef::UpdateStmt(s) if dml_on_settings(&s.relation) => both(&mut r),
            NodeRef::InsertStmt(s) if dml_on_settings(&s.relation) => both(&mut r),
            NodeRef::DeleteStmt(s) if dml_on_settings(&s.relation) => both(&mut r),
            NodeRef::MergeStmt(s) if dml_on_settings(&s.relation) => both(&mut r),
            NodeRef::TransactionStmt(_) => r.refuse = true,
            NodeRef::VariableSetStmt(_)
            | NodeRef::ListenStmt(_)
            | NodeRef::UnlistenStmt(_)
            | NodeRef::PrepareStmt(_)
            | NodeRef::ExecuteStmt(_)
            | NodeRef::DeallocateStmt(_)
            | NodeRef::DeclareCursorStmt(_)
            | NodeRef::FetchStmt(_)
            | NodeRef::ClosePortalStmt(_)
            | NodeRef::DiscardStmt(_)
            | NodeRef::LockStmt(_)
            | NodeRef::CopyStmt(_)
            | NodeRef::DoStmt(_)
            | NodeRef::CallStmt(_)
            | NodeRef::LoadStmt(_) => both(&mut r),
            _ => {}
        }
    }
    r
}

/// Runs every check on `sql`; returns (scanned, parsed, refused by the reference, clean).
fn check(sql: &str) -> (bool, bool, bool, bool) {
    let scanned = same_tokens(sql);
    let class = classify(sql);
    // A server with standard_conforming_strings off reads '\' differently: the verdict
    // must hold for that reading too.
    if let Ok(parsed) = pg_query::parse(sql, ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS) {
        let r = reference(&parsed);
        assert!(
            !r.refuse || class.refusal.is_some(),
            "{sql:?} (scs off) must be refused: {r:?} {class:?}"
        );
        assert!(
            !class.session_clean || !r.session,
            "{sql:?} (scs off) is not clean: {r:?} {class:?}"
        );
    }
    let Ok(parsed) = pg_query::parse(sql, ParserOptions::DEFAULT) else {
        return (scanned, false, false, false);
    };
    assert_eq!(
        class.statements,
        parsed.protobuf.stmts.len(),
        "statements of {sql:?}"
    );
    let r = reference(&parsed);
    assert!(
        !r.refuse || class.refusal.is_some(),
        "{sql:?} must be refused: {r:?} {class:?}"
    );
    assert!(
        !class.session_clean || !r.session,
        "{sql:?} is not clean: {r:?} {class:?}"
    );
    (scanned, true, r.refuse, class.session_clean)
}

/// A small deterministic generator (xorshift64*).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const WS: &[&str] = &[
    " ",
    " ",
    " ",
    "\n",
    "\t",
    "/* c */",
    "/* a /* b */ c */",
    "-- c\n",
    " --\n ",
];
const FUNCS: &[&str] = &[
    "set_config",
    "SET_CONFIG",
    "\"set_config\"",
    "U&\"\\0073et_config\"",
    "U&\"!0073et_config\" UESCAPE '!'",
    "pg_catalog.set_config",
    "\"pg_catalog\".\"set_config\"",
    "pg_catalog /* x */ . set_config",
    "lastval",
    "currval",
    "pg_advisory_lock",
    "PG_TRY_ADVISORY_LOCK",
    "setseed",
    "pg_listening_channels",
    "count",
    "lower",
    "now",
    "my_func",
    "myschema.lower",
    "pg_catalog.now",
    "left",
    "replace",
    "nextval",
    "\"COUNT\"",
    "format",
    "U&\"\\006Cower\"",
    "pg_catalog.pg_advisory_unlock_all",
];
const NAMES: &[&str] = &[
    "t",
    "items",
    "\"T x\"",
    "temp",
    "\"set\"",
    "pg_temp.t",
    "\"pg_temp\".t",
    "pg_temp_3.t",
    "public.t",
    "pg_settings",
    "pg_catalog.pg_settings",
    "U&\"pg\\005ftemp\".t",
    "é",
    "x$1",
    "\"a\"\"b\"",
];
const EXPRS: &[&str] = &[
    "1",
    "'x'",
    "$1",
    "1.5e3",
    ".5",
    "0x1F",
    "1_000",
    "E'\\';SET x=1'",
    "$$;SET$$",
    "$q$ ; $q$",
    "'it''s'",
    "B'01'",
    "X'ff'",
    "N'n'",
    "'a'\n'b'",
    "U&'\\0041'",
    "NULL",
    "true",
    "a",
    "\"A\"",
    "$1::int4",
    "-1",
    "x || 'y'",
    "a=-1",
    "a <= 2",
    "a != 2",
    "a @- b",
    "ARRAY[1,2]",
    "(SELECT 1)",
    "CASE WHEN a THEN 1 END",
    "interval '1 day'",
];
const BOOLS: &[&str] = &[
    "true",
    "false",
    "'true'",
    "'false'",
    "TRUE",
    "1 = 1",
    "is_local => true",
];
const TEMPLATES: &[&str] = &[
    "SELECT {e} FROM {n}",
    "SELECT {f}({e})",
    "SELECT {f}('a.b', {e}, {b})",
    "SELECT {f}()",
    "SELECT count(*) FILTER (WHERE {e}) OVER () FROM {n}",
    "INSERT INTO {n} (a) VALUES ({e}) ON CONFLICT (a) DO NOTHING",
    "INSERT INTO {n} SELECT {f}({e})",
    "UPDATE {n} SET a = {e} WHERE b = {e}",
    "DELETE FROM {n} WHERE a = {f}({e})",
    "CREATE {t}TABLE {n} (a int)",
    "CREATE {t}VIEW {n} AS SELECT {e}",
    "CREATE {t}SEQUENCE {n}",
    "CREATE TABLE {n} AS SELECT {e}",
    "SELECT {e} INTO {t}{n} FROM {n}",
    "WITH a AS (SELECT {f}({e})) SELECT * FROM a",
    "WITH a AS (UPDATE {n} SET a = {e} RETURNING 1) SELECT * FROM a",
    "EXPLAIN {x}SELECT {f}({e})",
    "EXPLAIN {x}CREATE {t}TABLE {n} AS SELECT {e}",
    "SET {n} = {e}",
    "SET LOCAL search_path = {n}",
    "BEGIN",
    ";BEGIN",
    "COMMIT",
    "LISTEN ch",
    "DO $$ BEGIN PERFORM {f}({e}); END $$",
    "PREPARE p AS SELECT {e}",
    "DECLARE c CURSOR FOR SELECT {e}",
    "COPY {n} FROM STDIN",
    "LOCK TABLE {n}",
    "CALL {f}({e})",
    "CREATE FUNCTION {n}() RETURNS int LANGUAGE sql AS $$ SELECT {e} $$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT {e}; END",
    "SELECT {e}; SELECT {e}",
    "SELECT {e};",
    "VALUES ({e}), ({e})",
    "SHOW search_path",
    "SELECT * FROM {n} AS x(a, b) JOIN {n} USING (a)",
];

fn expand(g: &mut Gen, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(p) = rest.find(['{', ' ']) {
        out.push_str(&rest[..p]);
        if rest.as_bytes()[p] == b' ' {
            out.push_str(g.pick(WS));
            rest = &rest[p + 1..];
            continue;
        }
        let hole = &rest[p..p + 3];
        rest = &rest[p + 3..];
        let fill = match hole {
            "{e}" if g.chance(15) => format!("{}({})", g.pick(FUNCS), g.pick(EXPRS)),
            "{e}" => g.pick(EXPRS).to_owned(),
            "{f}" => g.pick(FUNCS).to_owned(),
            "{n}" => g.pick(NAMES).to_owned(),
            "{b}" => g.pick(BOOLS).to_owned(),
            "{t}" => g
                .pick(&[
                    "",
                    "",
                    "TEMP ",
                    "temporary ",
                    "GLOBAL TEMP ",
                    "LOCAL TEMPORARY ",
                    "OR REPLACE TEMP ",
                ])
                .to_owned(),
            "{x}" => g
                .pick(&[
                    "",
                    "ANALYZE ",
                    "ANALYZE VERBOSE ",
                    "(ANALYZE, COSTS OFF) ",
                    "VERBOSE ",
                ])
                .to_owned(),
            _ => hole.to_owned(),
        };
        out.push_str(&fill);
    }
    out.push_str(rest);
    out
}

/// Token soup: pieces of every lexical kind (and broken ones) glued with or without space.
fn soup(g: &mut Gen) -> String {
    const PIECES: &[&str] = &[
        "SELECT",
        "set",
        "x",
        "\"q\"\"q\"",
        "U&\"\\0041\"",
        "U&\"!0041\" UESCAPE '!'",
        "'s'",
        "E'\\x41\\101\\u0041'",
        "E'\\''",
        "$$",
        "$a$",
        "$1",
        "$",
        "1",
        "1.",
        ".5",
        "1e",
        "1e+",
        "1e5",
        "0x",
        "0b101",
        "0o17",
        "1_",
        "1..2",
        "1abc",
        "::",
        ":=",
        ":",
        ".",
        "..",
        "+",
        "-",
        "*",
        "/",
        "/*",
        "*/",
        "--",
        "\n",
        "=>",
        "<>",
        "!=",
        "~",
        "@-",
        "?-",
        "+-",
        "=-",
        "*-",
        "|/",
        "#",
        "(",
        ")",
        "[",
        "]",
        ";",
        ",",
        "'",
        "\"",
        "b'1'",
        "x'f'",
        "n'n'",
        "u&",
        "é",
        "\\",
        "{",
        "'a'\n'b'",
        "'a' 'b'",
        "e'\\",
        "$q$x$q$",
        "$$a$$",
        "_x",
        "x$",
        "U&'\\+000041'",
    ];
    let n = 1 + g.next() % 8;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(g.pick(PIECES));
        if g.chance(50) {
            s.push_str(g.pick(&[" ", "\n", "\t"]));
        }
    }
    s
}

#[test]
fn against_postgresql() {
    let mut texts: Vec<String> = TABLE.iter().map(|(s, _)| (*s).to_owned()).collect();
    let mut g = Gen(0x005E_ED0F_F00D_CAFE);
    for _ in 0..3000 {
        let t = g.pick(TEMPLATES);
        texts.push(expand(&mut g, t));
    }
    for _ in 0..3000 {
        texts.push(soup(&mut g));
    }
    let (mut scanned, mut parsed, mut refused, mut clean) = (0, 0, 0, 0);
    for sql in &texts {
        let (s, p, r, c) = check(sql);
        scanned += usize::from(s);
        parsed += usize::from(p);
        refused += usize::from(r);
        clean += usize::from(c);
    }
    // The generator must keep producing texts PostgreSQL accepts, or the proof proves little.
    assert!(parsed > 2000, "{parsed} of {} texts parsed", texts.len());
    assert!(scanned > 4000, "{scanned} of {} texts scanned", texts.len());
    // Both sides of the soundness checks are exercised.
    assert!(
        refused > 500 && clean > 300,
        "{refused} refused by the reference, {clean} clean"
    );
    eprintln!(
        "{} texts: {scanned} scanned, {parsed} parsed, {refused} refused by the reference, {clean} clean",
        texts.len()
    );
}

#[test]
fn the_table_parses() {
    // Every text of the table that is meant to be valid SQL is accepted by PostgreSQL.
    for (sql, want) in TABLE {
        let rejected = want.is_some_and(|w| w == "reject");
        assert_eq!(
            pg_query::parse(sql, ParserOptions::DEFAULT).is_ok(),
            !rejected,
            "{sql:?}"
        );
    }
}
