//! Splitting SQL into PostgreSQL's tokens: the scanner (`lexer.rs`, `quoted.rs`), then the
//! `UESCAPE` pass PostgreSQL's parser applies to `U&` tokens.

use super::lexer::{Lexer, Token};
use super::quoted::apply_uescape;

/// Splits `sql` into PostgreSQL's tokens. `standard_conforming_strings` is the server
/// setting of that name (on by default since PostgreSQL 9.1): off, `'…'` takes backslash
/// escapes.
pub(crate) fn lex(sql: &str, standard_conforming_strings: bool) -> Vec<Token<'_>> {
    let mut lexer = Lexer {
        sql,
        b: sql.as_bytes(),
        scs: standard_conforming_strings,
        out: Vec::new(),
    };
    lexer.out.reserve(sql.len() / 4 + 4);
    lexer.run();
    apply_uescape(&mut lexer.out);
    lexer.out
}
