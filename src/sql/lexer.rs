//! A lexer that splits SQL text into the tokens of PostgreSQL's scanner
//! (`src/backend/parser/scan.l`, PostgreSQL 18), rule for rule: the same token boundaries,
//! the same identifier folding and de-quoting, the same keywords. It never panics and always
//! ends; what PostgreSQL would reject is marked (`Token::error`, `TokenKind::Unterminated`)
//! rather than reported, and lexing goes on after it.
//!
//! Besides the scanner proper it applies what PostgreSQL's parser does to the tokens before
//! the grammar sees them (`base_yylex` in `parser.c`): a `U&"…"` identifier or `U&'…'` string
//! takes the escape character of a following `UESCAPE '…'` and is unescaped, and
//! identifiers are truncated to `NAMEDATALEN - 1` bytes (63) at a character boundary.
//!
//! Whitespace is skipped; comments are tokens (as `pg_query::scan` returns them).

use std::borrow::Cow;

use super::keywords::{self, Category};

/// PostgreSQL's `NAMEDATALEN`: names are truncated to one byte less.
pub(super) const NAMEDATALEN: usize = 64;

/// A string constant's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StringKind {
    /// `'…'` (with `standard_conforming_strings` off, backslashes escape, as in `E'…'`).
    Standard,
    /// `E'…'`: backslash escapes.
    Extended,
    /// `B'…'`: a bit string.
    Bit,
    /// `X'…'`: a hexadecimal bit string.
    Hex,
    /// `U&'…'`: Unicode escapes.
    Unicode,
    /// `$tag$…$tag$`.
    Dollar,
}

/// What is left open at the end of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Open {
    /// `/* …`
    Comment,
    /// `'…` in any of its forms.
    String,
    /// `"…` or `U&"…`
    QuotedIdent,
    /// `$tag$…`
    Dollar,
}

/// A token's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An unquoted identifier that is no keyword.
    Ident,
    /// A keyword, with its category.
    Keyword(Category),
    /// `"…"`
    QuotedIdent,
    /// `U&"…"` (its `UESCAPE` clause, if any, follows as separate tokens).
    UnicodeIdent,
    /// A string constant.
    String(StringKind),
    /// An integer constant.
    Integer,
    /// A constant with a fraction or exponent.
    Float,
    /// A trailing-junk or incomplete number (`1abc`, `0x`, `1e+`): always an error.
    BadNumber,
    /// `$1`
    Param,
    /// A multi-character operator other than the ones below.
    Op,
    /// `::`
    Typecast,
    /// `..`
    DotDot,
    /// `:=`
    ColonEquals,
    /// `=>`
    EqualsGreater,
    /// `<=`
    LessEquals,
    /// `>=`
    GreaterEquals,
    /// `<>` or `!=`
    NotEquals,
    /// A single character: one of `, ( ) [ ] . ; : + - * / % ^ < > =`, a lone one-character
    /// operator, or any other character PostgreSQL passes on as itself (`$`, `\`, `{`, …).
    Char(u8),
    /// `-- …` (to the end of the line).
    LineComment,
    /// `/* … */`, nested.
    BlockComment,
    /// A comment, string or quoted identifier that the text ends inside.
    Unterminated(Open),
}

/// A token: its kind, its bytes `start..end` in the text, and for names and strings the
/// value PostgreSQL sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Identifiers: the name (case-folded if unquoted, de-quoted, unescaped, truncated to 63
    /// bytes); keywords: the keyword in lower case; string constants other than bit strings:
    /// the value; [`TokenKind::Op`]: the operator. `None` when it cannot be decoded (then `error` says why).
    pub(crate) text: Option<Cow<'a, str>>,
    /// Why PostgreSQL would reject this token, if it would.
    pub(crate) error: Option<&'static str>,
}

impl Token<'_> {
    /// The name of an identifier or keyword token (`None` for other tokens).
    pub(crate) fn name(&self) -> Option<&str> {
        match self.kind {
            TokenKind::Ident
            | TokenKind::Keyword(_)
            | TokenKind::QuotedIdent
            | TokenKind::UnicodeIdent => self.text.as_deref(),
            _ => None,
        }
    }

    /// Whether this is the keyword `kw` (lower case).
    pub(crate) fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.kind, TokenKind::Keyword(_)) && self.text.as_deref() == Some(kw)
    }
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(super) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

pub(super) fn is_dolq_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

fn is_self(c: u8) -> bool {
    b",()[].;:+-*/%^<>=".contains(&c)
}

pub(super) struct Lexer<'a> {
    pub(super) sql: &'a str,
    pub(super) b: &'a [u8],
    pub(super) scs: bool,
    pub(super) out: Vec<Token<'a>>,
}

impl<'a> Lexer<'a> {
    pub(super) fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    pub(super) fn push(
        &mut self,
        kind: TokenKind,
        start: usize,
        end: usize,
        text: Option<Cow<'a, str>>,
        error: Option<&'static str>,
    ) {
        self.out.push(Token {
            kind,
            start,
            end,
            text,
            error,
        });
    }

    pub(super) fn run(&mut self) {
        let b = self.b;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let next = self.at(i + 1);
            i = match c {
                _ if is_space(c) => i + 1,
                b'-' if next == b'-' => {
                    let end = b[i..]
                        .iter()
                        .position(|&c| c == b'\n' || c == b'\r')
                        .map_or(b.len(), |p| i + p);
                    self.push(TokenKind::LineComment, i, end, None, None);
                    end
                }
                b'/' if next == b'*' => self.block_comment(i),
                b'\'' => self.string(
                    i,
                    i + 1,
                    if self.scs {
                        StringKind::Standard
                    } else {
                        StringKind::Extended
                    },
                    StringKind::Standard,
                ),
                b'"' => self.quoted_ident(i, i + 1, TokenKind::QuotedIdent),
                b'$' => self.dollar(i),
                b'0'..=b'9' => self.number(i),
                b'.' if next.is_ascii_digit() => self.number(i),
                b'.' if next == b'.' => self.fixed(TokenKind::DotDot, i, 2),
                b':' if next == b':' => self.fixed(TokenKind::Typecast, i, 2),
                b':' if next == b'=' => self.fixed(TokenKind::ColonEquals, i, 2),
                _ if is_ident_start(c) => self.word(i),
                _ if is_op_char(c) => self.operator(i),
                _ => self.fixed(TokenKind::Char(c), i, 1),
            };
        }
    }

    pub(super) fn fixed(&mut self, kind: TokenKind, i: usize, len: usize) -> usize {
        self.push(kind, i, i + len, None, None);
        i + len
    }

    /// `/* … */` with nesting, as scan.l's `xc` state.
    fn block_comment(&mut self, start: usize) -> usize {
        let b = self.b;
        let mut depth = 0usize;
        let mut j = start + 2;
        while j < b.len() {
            if b[j] == b'/' && self.at(j + 1) == b'*' {
                depth += 1;
                j += 2;
            } else if b[j] == b'*' {
                let run = b[j..].iter().take_while(|&&c| c == b'*').count();
                j += run;
                if self.at(j) == b'/' {
                    j += 1;
                    if depth == 0 {
                        self.push(TokenKind::BlockComment, start, j, None, None);
                        return j;
                    }
                    depth -= 1;
                }
            } else {
                j += 1;
            }
        }
        self.push(
            TokenKind::Unterminated(Open::Comment),
            start,
            b.len(),
            None,
            Some("unterminated /* comment"),
        );
        b.len()
    }

    /// An identifier or keyword, or one of the quote forms that start with a letter
    /// (`B'`, `X'`, `E'`, `N'`, `U&'`, `U&"`).
    fn word(&mut self, i: usize) -> usize {
        let b = self.b;
        let c = b[i];
        let next = self.at(i + 1);
        match (c.to_ascii_lowercase(), next) {
            (b'b', b'\'') => return self.string(i, i + 2, StringKind::Bit, StringKind::Bit),
            (b'x', b'\'') => return self.string(i, i + 2, StringKind::Hex, StringKind::Hex),
            (b'e', b'\'') => {
                return self.string(i, i + 2, StringKind::Extended, StringKind::Extended)
            }
            (b'n', b'\'') => {
                // scan.l returns the keyword NCHAR for the `n`, then lexes the string.
                self.push(
                    TokenKind::Keyword(Category::ColName),
                    i,
                    i + 1,
                    Some(Cow::Borrowed("nchar")),
                    None,
                );
                return i + 1;
            }
            (b'u', b'&') => match self.at(i + 2) {
                b'\'' => {
                    let kind = StringKind::Unicode;
                    let end = self.string(i, i + 3, kind, kind);
                    if !self.scs {
                        if let Some(t) = self.out.last_mut() {
                            t.error = t
                                .error
                                .or(Some("unsafe use of string constant with Unicode escapes"));
                        }
                    }
                    return end;
                }
                b'"' => return self.quoted_ident(i, i + 3, TokenKind::UnicodeIdent),
                // `u&` not followed by a quote: `u` is an identifier.
                _ => {
                    self.push(
                        TokenKind::Ident,
                        i,
                        i + 1,
                        Some(Cow::Owned("u".to_owned())),
                        None,
                    );
                    return i + 1;
                }
            },
            _ => {}
        }
        let end = i + b[i..].iter().take_while(|&&c| is_ident_cont(c)).count();
        let raw = &self.sql[i..end];
        if let Some((kw, cat)) = keywords::lookup(raw.as_bytes()) {
            self.push(
                TokenKind::Keyword(cat),
                i,
                end,
                Some(Cow::Borrowed(kw)),
                None,
            );
        } else {
            let folded = if raw.bytes().any(|c| c.is_ascii_uppercase()) {
                Cow::Owned(raw.to_ascii_lowercase())
            } else {
                Cow::Borrowed(raw)
            };
            self.push(TokenKind::Ident, i, end, Some(truncate(folded)), None);
        }
        end
    }

    /// A number by scan.l's rules (decinteger, hexinteger, octinteger, bininteger, numeric,
    /// real, and their fail and junk rules), longest match first.
    fn number(&mut self, i: usize) -> usize {
        let b = self.b;
        let digits = |from: usize, ok: fn(u8) -> bool| -> usize {
            // `d(_?d)*` from `from`: its length (0 if no digit there).
            let mut k = from;
            if !b.get(k).is_some_and(|&c| ok(c)) {
                return 0;
            }
            k += 1;
            loop {
                if b.get(k).is_some_and(|&c| ok(c)) {
                    k += 1;
                } else if b.get(k) == Some(&b'_') && b.get(k + 1).is_some_and(|&c| ok(c)) {
                    k += 2;
                } else {
                    return k - from;
                }
            }
        };
        let ident_len = |from: usize| b[from..].iter().take_while(|&&c| is_ident_cont(c)).count();
        let starts_ident = |k: usize| b.get(k).is_some_and(|&c| is_ident_start(c));
        let bad = |this: &mut Self, end: usize| {
            this.push(
                TokenKind::BadNumber,
                i,
                end,
                None,
                Some("trailing junk after numeric literal"),
            );
            end
        };

        if b[i] == b'0' && matches!(self.at(i + 1), b'x' | b'X' | b'o' | b'O' | b'b' | b'B') {
            let ok: fn(u8) -> bool = match self.at(i + 1) {
                b'x' | b'X' => |c| c.is_ascii_hexdigit(),
                b'o' | b'O' => |c| (b'0'..=b'7').contains(&c),
                _ => |c| c == b'0' || c == b'1',
            };
            let mut k = i + 2;
            if self.at(k) == b'_' {
                k += 1;
            }
            let n = digits(k, ok);
            let junk = i + 1 + ident_len(i + 1);
            if n > 0 && k + n >= junk {
                self.push(TokenKind::Integer, i, k + n, None, None);
                return k + n;
            }
            return bad(self, junk.max(k));
        }

        let mut end = i + digits(i, |c| c.is_ascii_digit());
        let mut kind = TokenKind::Integer;
        if end > i && self.at(end) == b'.' && self.at(end + 1) == b'.' {
            // numericfail: the integer, then `..`
            return self.fixed(TokenKind::Integer, i, end - i);
        }
        if self.at(end) == b'.' {
            end += 1;
            end += digits(end, |c| c.is_ascii_digit());
            kind = TokenKind::Float;
        }
        if matches!(self.at(end), b'e' | b'E') {
            let mut k = end + 1;
            let signed = matches!(self.at(k), b'+' | b'-');
            if signed {
                k += 1;
            }
            let n = digits(k, |c| c.is_ascii_digit());
            if n > 0 {
                end = k + n;
                kind = TokenKind::Float;
            } else if signed {
                return bad(self, k); // realfail
            }
        }
        if starts_ident(end) {
            return bad(self, end + ident_len(end));
        }
        self.push(kind, i, end, None, None);
        end
    }

    /// scan.l's `{operator}` rule with its truncation at comment starts and of trailing
    /// `+`/`-`, and the one- and two-character operators it defers to.
    fn operator(&mut self, i: usize) -> usize {
        let b = self.b;
        let run = b[i..].iter().take_while(|&&c| is_op_char(c)).count();
        let text = &b[i..i + run];
        let mut n = (1..run)
            .find(|&k| text[k..].starts_with(b"/*") || text[k..].starts_with(b"--"))
            .unwrap_or(run);
        if n > 1 && matches!(text[n - 1], b'+' | b'-') {
            let qualifying = text[..n - 1].iter().any(|c| b"~!@#^&|`?%".contains(c));
            if !qualifying {
                while n > 1 && matches!(text[n - 1], b'+' | b'-') {
                    n -= 1;
                }
            }
        }
        let kind = match &text[..n] {
            [c] if is_self(*c) => TokenKind::Char(*c),
            b"=>" => TokenKind::EqualsGreater,
            b"<=" => TokenKind::LessEquals,
            b">=" => TokenKind::GreaterEquals,
            b"<>" | b"!=" => TokenKind::NotEquals,
            _ => TokenKind::Op,
        };
        let error = (n >= NAMEDATALEN).then_some("operator too long");
        let text = (kind == TokenKind::Op).then(|| Cow::Borrowed(&self.sql[i..i + n]));
        self.push(kind, i, i + n, text, error);
        i + n
    }
}

pub(super) fn hex_value(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0u32, |a, &d| a * 16 + (d as char).to_digit(16).unwrap_or(0))
}

/// Truncates a name to `NAMEDATALEN - 1` bytes at a character boundary, as PostgreSQL's
/// `truncate_identifier` does (it notices; we needn't).
pub(super) fn truncate(name: Cow<'_, str>) -> Cow<'_, str> {
    if name.len() < NAMEDATALEN {
        return name;
    }
    let mut cut = NAMEDATALEN - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    match name {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
        Cow::Owned(mut s) => {
            s.truncate(cut);
            Cow::Owned(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::tokens::lex;

    fn kinds(sql: &str) -> Vec<(TokenKind, &str)> {
        lex(sql, true)
            .into_iter()
            .map(|t| (t.kind, &sql[t.start..t.end]))
            .collect()
    }

    fn names(sql: &str) -> Vec<String> {
        lex(sql, true)
            .iter()
            .filter_map(|t| t.name().map(str::to_owned))
            .collect()
    }

    #[test]
    fn identifiers_fold_and_unquote() {
        assert_eq!(
            names(r#"SeLeCt "MiXed" FooBar "a""b" U&"\0073et" U&"!0073et" UESCAPE '!'"#),
            ["select", "MiXed", "foobar", "a\"b", "set", "set", "uescape"]
        );
        assert_eq!(names("É_x$1"), ["É_x$1"]);
        let long = "a".repeat(70);
        assert_eq!(names(&long)[0].len(), 63);
        let wide = "é".repeat(40); // 80 bytes: cut to 62 at a character boundary
        assert_eq!(names(&format!("\"{wide}\""))[0].len(), 62);
    }

    #[test]
    fn numbers_params_operators() {
        use TokenKind::*;
        assert_eq!(
            kinds("1 1.5 .5 1e5 1.e-3 0x1F 1_000 $1 1..2"),
            [
                (Integer, "1"),
                (Float, "1.5"),
                (Float, ".5"),
                (Float, "1e5"),
                (Float, "1.e-3"),
                (Integer, "0x1F"),
                (Integer, "1_000"),
                (Param, "$1"),
                (Integer, "1"),
                (DotDot, ".."),
                (Integer, "2")
            ]
        );
        assert!(kinds("1abc 0x 1e+ 1_").iter().all(|k| k.0 == BadNumber));
        assert_eq!(
            kinds("a=-1 ?- <= => :: := !=- @-"),
            [
                (Ident, "a"),
                (Char(b'='), "="),
                (Char(b'-'), "-"),
                (Integer, "1"),
                (Op, "?-"),
                (LessEquals, "<="),
                (EqualsGreater, "=>"),
                (Typecast, "::"),
                (ColonEquals, ":="),
                (Op, "!=-"),
                (Op, "@-")
            ]
        );
        assert_eq!(
            kinds("*/* x */+"),
            [
                (Char(b'*'), "*"),
                (BlockComment, "/* x */"),
                (Char(b'+'), "+")
            ]
        );
    }

    #[test]
    fn comments_nest_and_unterminated_never_panic() {
        assert_eq!(
            kinds("/* a /* b */ c */x"),
            [
                (TokenKind::BlockComment, "/* a /* b */ c */"),
                (TokenKind::Ident, "x")
            ]
        );
        for bad in [
            "/* /* */", "'abc", "E'\\", "\"x", "$a$ x", "U&\"x", "B'01", "--", "$", "e'\\u12'",
        ] {
            let t = lex(bad, true);
            assert!(
                t.iter().any(|t| t.error.is_some()) || bad == "--" || bad == "$",
                "{bad}: {t:?}"
            );
        }
    }
}
