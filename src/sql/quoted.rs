//! The quoted forms of PostgreSQL's scanner: quoted identifiers (`"…"`, `U&"…"`), string
//! constants in all their forms (`'…'`, `E'…'`, `B'…'`, `X'…'`, `U&'…'`, `$tag$…$tag$`) with
//! their continuation across newlines, and the `UESCAPE` unescaping PostgreSQL's parser
//! applies to `U&` tokens afterwards.

use std::borrow::Cow;

use super::lexer::{
    hex_value, is_dolq_cont, is_ident_start, is_space, truncate, Lexer, Open, StringKind, Token,
    TokenKind,
};

impl<'a> Lexer<'a> {
    /// `"…"` or `U&"…"` from `body` (just past the opening quote).
    pub(super) fn quoted_ident(&mut self, start: usize, body: usize, kind: TokenKind) -> usize {
        let b = self.b;
        let mut j = body;
        let mut doubled = false;
        loop {
            match b[j..].iter().position(|&c| c == b'"') {
                None => {
                    self.push(
                        TokenKind::Unterminated(Open::QuotedIdent),
                        start,
                        b.len(),
                        None,
                        Some("unterminated quoted identifier"),
                    );
                    return b.len();
                }
                Some(p) if self.at(j + p + 1) == b'"' => {
                    doubled = true;
                    j += p + 2;
                }
                Some(p) => {
                    let inner = &self.sql[body..j + p];
                    let end = j + p + 1;
                    let name = if doubled {
                        Cow::Owned(inner.replace("\"\"", "\""))
                    } else {
                        Cow::Borrowed(inner)
                    };
                    let error = inner
                        .is_empty()
                        .then_some("zero-length delimited identifier");
                    // A U& identifier is unescaped (and then truncated) once its UESCAPE is known.
                    let name = if kind == TokenKind::QuotedIdent {
                        truncate(name)
                    } else {
                        name
                    };
                    self.push(kind, start, end, Some(name), error);
                    return end;
                }
            }
        }
    }

    /// A quoted string from `body` (past its opening quote), in scan.l's state for `kind`
    /// (`Extended` for backslash escapes), reported as `report`; continuation across
    /// whitespace with a newline (`'a'\n'b'`) joins segments.
    pub(super) fn string(
        &mut self,
        start: usize,
        body: usize,
        kind: StringKind,
        report: StringKind,
    ) -> usize {
        let b = self.b;
        let mut value: Vec<u8> = Vec::new();
        let mut simple = true; // the value is the single segment's bytes, nothing unescaped
        let mut error: Option<&'static str> = None;
        let mut j = body;
        let mut seg_start = body;
        let mut high_surrogate: Option<u32> = None;
        let mut segments = 0;
        loop {
            if j >= b.len() {
                self.push(
                    TokenKind::Unterminated(Open::String),
                    start,
                    b.len(),
                    None,
                    Some("unterminated quoted string"),
                );
                return b.len();
            }
            let c = b[j];
            if high_surrogate.is_some() && !(c == b'\\' && matches!(self.at(j + 1), b'u' | b'U')) {
                error = error.or(Some("invalid Unicode surrogate pair"));
                high_surrogate = None;
            }
            if c == b'\'' {
                if kind != StringKind::Bit && kind != StringKind::Hex && self.at(j + 1) == b'\'' {
                    value.push(b'\'');
                    simple = false;
                    j += 2;
                    continue;
                }
                if segments == 0 && simple {
                    seg_start = j; // marks the end of the only segment
                }
                segments += 1;
                match continuation(b, j + 1) {
                    Some(k) => {
                        simple = false;
                        j = k;
                        continue;
                    }
                    None => {
                        let end = j + 1;
                        let text = match kind {
                            StringKind::Bit | StringKind::Hex => None,
                            _ if simple && segments == 1 => {
                                Some(Cow::Borrowed(&self.sql[body..seg_start]))
                            }
                            _ => match String::from_utf8(value) {
                                Ok(s) => Some(Cow::Owned(s)),
                                Err(_) => {
                                    error =
                                        error.or(Some("invalid byte sequence for encoding UTF8"));
                                    None
                                }
                            },
                        };
                        if text.as_deref().is_some_and(|t| t.contains('\0')) {
                            error = error.or(Some("invalid byte sequence for encoding UTF8"));
                        }
                        self.push(TokenKind::String(report), start, end, text, error);
                        return end;
                    }
                }
            }
            if c == b'\\' && kind == StringKind::Extended {
                simple = false;
                let e = self.at(j + 1);
                if j + 1 >= b.len() {
                    value.push(b'\\');
                    j += 1;
                    continue;
                }
                match e {
                    b'0'..=b'7' => {
                        let n = b[j + 1..]
                            .iter()
                            .take(3)
                            .take_while(|c| (b'0'..=b'7').contains(c))
                            .count();
                        let v = b[j + 1..j + 1 + n]
                            .iter()
                            .fold(0u32, |a, &d| a * 8 + u32::from(d - b'0'));
                        value.push(v as u8);
                        j += 1 + n;
                    }
                    b'x' if self.at(j + 2).is_ascii_hexdigit() => {
                        let n = b[j + 2..]
                            .iter()
                            .take(2)
                            .take_while(|c| c.is_ascii_hexdigit())
                            .count();
                        let v = hex_value(&b[j + 2..j + 2 + n]);
                        value.push(v as u8);
                        j += 2 + n;
                    }
                    b'u' | b'U' => {
                        let want = if e == b'u' { 4 } else { 8 };
                        let n = b[j + 2..]
                            .iter()
                            .take(want)
                            .take_while(|c| c.is_ascii_hexdigit())
                            .count();
                        if n < want {
                            error = error.or(Some("invalid Unicode escape"));
                            j += 2 + n;
                            continue;
                        }
                        let cp = hex_value(&b[j + 2..j + 2 + n]);
                        j += 2 + n;
                        let cp = match (high_surrogate.take(), cp) {
                            (Some(hi), 0xDC00..=0xDFFF) => {
                                0x10000 + ((hi - 0xD800) << 10) + (cp - 0xDC00)
                            }
                            (Some(_), _) => {
                                error = error.or(Some("invalid Unicode surrogate pair"));
                                continue;
                            }
                            (None, 0xD800..=0xDBFF) => {
                                high_surrogate = Some(cp);
                                continue;
                            }
                            (None, cp) => cp,
                        };
                        match char::from_u32(cp).filter(|&ch| ch != '\0') {
                            Some(ch) => {
                                value.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes())
                            }
                            None => error = error.or(Some("invalid Unicode escape value")),
                        }
                    }
                    // `\'` is allowed with a UTF-8 client encoding (backslash_quote's default).
                    _ => {
                        value.push(match e {
                            b'b' => 0x08,
                            b'f' => 0x0c,
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'v' => 0x0b,
                            other => other,
                        });
                        j += 2;
                    }
                }
                continue;
            }
            value.push(c);
            j += 1;
        }
    }

    /// `$tag$…$tag$`, `$1`, or a lone `$`.
    pub(super) fn dollar(&mut self, i: usize) -> usize {
        let b = self.b;
        let next = self.at(i + 1);
        if next.is_ascii_digit() {
            let end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let too_large = self.sql[i + 1..end].parse::<i32>().is_err();
            self.push(
                TokenKind::Param,
                i,
                end,
                None,
                too_large.then_some("parameter number too large"),
            );
            return end;
        }
        let mut j = i + 1;
        if is_ident_start(next) {
            j += b[j..].iter().take_while(|&&c| is_dolq_cont(c)).count();
        }
        if self.at(j) != b'$' || j >= b.len() {
            // Not a delimiter: the `$` is a character of its own (scan.l's dolqfailed).
            return self.fixed(TokenKind::Char(b'$'), i, 1);
        }
        let delim = &self.sql[i..=j];
        let body = j + 1;
        match self.sql[body..].find(delim) {
            Some(p) => {
                let end = body + p + delim.len();
                self.push(
                    TokenKind::String(StringKind::Dollar),
                    i,
                    end,
                    Some(Cow::Borrowed(&self.sql[body..body + p])),
                    None,
                );
                end
            }
            None => {
                self.push(
                    TokenKind::Unterminated(Open::Dollar),
                    i,
                    b.len(),
                    None,
                    Some("unterminated dollar-quoted string"),
                );
                b.len()
            }
        }
    }
}

/// scan.l's `{quotecontinue}` after a closing quote at `from - 1`: whitespace that includes
/// a newline (and `--` comments), then a quote; returns the position past that quote.
fn continuation(b: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    let mut newline = false;
    while j < b.len() {
        match b[j] {
            b' ' | b'\t' | 0x0c => j += 1,
            0x0b if newline => j += 1,
            b'\n' | b'\r' => {
                newline = true;
                j += 1;
            }
            b'-' if b.get(j + 1) == Some(&b'-') => {
                let p = b[j..].iter().position(|&c| c == b'\n' || c == b'\r')?;
                j += p;
            }
            b'\'' if newline => return Some(j + 1),
            _ => return None,
        }
    }
    None
}
/// What `base_yylex` does to `U&"…"` and `U&'…'` tokens: take the escape character of a
/// following `UESCAPE 'c'` (comments between are skipped) or `\`, and unescape.
pub(super) fn apply_uescape(tokens: &mut [Token<'_>]) {
    let significant = |tokens: &[Token<'_>], from: usize| {
        (from..tokens.len()).find(|&k| {
            !matches!(
                tokens[k].kind,
                TokenKind::LineComment | TokenKind::BlockComment
            )
        })
    };
    for i in 0..tokens.len() {
        let is_ident = tokens[i].kind == TokenKind::UnicodeIdent;
        if !is_ident && tokens[i].kind != TokenKind::String(StringKind::Unicode) {
            continue;
        }
        let mut escape = Some(b'\\');
        if let Some(u) = significant(tokens, i + 1).filter(|&u| tokens[u].is_keyword("uescape")) {
            escape = significant(tokens, u + 1)
                .filter(|&s| {
                    matches!(
                        tokens[s].kind,
                        TokenKind::String(
                            StringKind::Standard | StringKind::Extended | StringKind::Dollar
                        )
                    )
                })
                .and_then(|s| tokens[s].text.as_deref())
                .and_then(|e| match e.as_bytes() {
                    [c] if !c.is_ascii_hexdigit()
                        && !matches!(c, b'+' | b'\'' | b'"')
                        && !is_space(*c) =>
                    {
                        Some(*c)
                    }
                    _ => None,
                });
        }
        let decoded = match (escape, tokens[i].text.as_deref()) {
            (Some(e), Some(raw)) => udeescape(raw, e),
            _ => None,
        };
        let t = &mut tokens[i];
        match decoded {
            Some(s) => {
                t.text = Some(if is_ident {
                    truncate(Cow::Owned(s))
                } else {
                    Cow::Owned(s)
                })
            }
            None => {
                t.text = None;
                t.error = t.error.or(Some("invalid Unicode escape"));
            }
        }
    }
}

/// PostgreSQL's `str_udeescape`: `e` followed by four hex digits, `+` and six, or `e` again.
fn udeescape(raw: &str, e: u8) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut hi: Option<u32> = None;
    let mut i = 0;
    let hex = |from: usize, n: usize| -> Option<u32> {
        let d = b.get(from..from + n)?;
        d.iter().all(u8::is_ascii_hexdigit).then(|| hex_value(d))
    };
    while i < b.len() {
        if b[i] != e {
            if hi.is_some() {
                return None;
            }
            let ch = raw[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let cp;
        if b.get(i + 1) == Some(&e) {
            if hi.is_some() {
                return None;
            }
            out.push(e as char);
            i += 2;
            continue;
        } else if let Some(v) = hex(i + 1, 4) {
            cp = v;
            i += 5;
        } else if b.get(i + 1) == Some(&b'+') {
            cp = hex(i + 2, 6)?;
            i += 8;
        } else {
            return None;
        }
        let cp = match (hi.take(), cp) {
            (Some(h), 0xDC00..=0xDFFF) => 0x10000 + ((h - 0xD800) << 10) + (cp - 0xDC00),
            (Some(_), _) | (None, 0xDC00..=0xDFFF) => return None,
            (None, 0xD800..=0xDBFF) => {
                hi = Some(cp);
                continue;
            }
            (None, cp) => cp,
        };
        out.push(char::from_u32(cp).filter(|&c| c != '\0')?);
    }
    hi.is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::lexer::{StringKind, TokenKind};
    use super::super::tokens::lex;

    #[test]
    fn strings_and_continuations() {
        let t = lex(
            "'a''b' E'x\\'y' 'p'\n  'q' B'01' X'1F' $$a;b$$ $t$ $$ $t$ U&'\\0041'",
            true,
        );
        let v: Vec<_> = t
            .iter()
            .map(|t| (t.kind, t.text.as_deref().map(str::to_owned)))
            .collect();
        use StringKind::*;
        assert_eq!(
            v,
            [
                (TokenKind::String(Standard), Some("a'b".into())),
                (TokenKind::String(Extended), Some("x'y".into())),
                (TokenKind::String(Standard), Some("pq".into())),
                (TokenKind::String(Bit), None),
                (TokenKind::String(Hex), None),
                (TokenKind::String(Dollar), Some("a;b".into())),
                (TokenKind::String(Dollar), Some(" $$ ".into())),
                (TokenKind::String(Unicode), Some("A".into())),
            ]
        );
        // No continuation without a newline, nor across a /* comment */.
        assert_eq!(lex("'a' 'b'", true).len(), 2);
        assert_eq!(lex("'a' /* */\n'b'", true).len(), 3);
        assert_eq!(lex("'a' -- c\n -- d\n'b'", true).len(), 1);
        // standard_conforming_strings off: backslash escapes the quote.
        assert_eq!(lex(r"'\';SET x=1;'", false).len(), 1);
    }
}
