//! The custom settings (`app.tenant`, names with a dot) a text sets: PostgreSQL lists
//! them nowhere a query can read (they are not in `pg_settings`), so the pool notes the
//! ones its connect hooks set, to apply them again after the shared path's `RESET ALL`.

use super::lexer::{StringKind, Token, TokenKind};
use super::tokens::lex;

/// The dotted names set by `SET [SESSION] a.b ...` and `set_config('a.b', ...)` in `sql`.
pub(crate) fn custom_settings(sql: &str) -> Vec<String> {
    let tokens: Vec<Token<'_>> = lex(sql, true)
        .into_iter()
        .filter(|t| !matches!(t.kind, TokenKind::LineComment | TokenKind::BlockComment))
        .collect();
    let mut out = Vec::new();
    let mut starts = true;
    for (k, t) in tokens.iter().enumerate() {
        if t.kind == TokenKind::Char(b';') {
            starts = true;
            continue;
        }
        let first = std::mem::take(&mut starts);
        if first && t.is_keyword("set") {
            let mut j = k + 1;
            if tokens.get(j).is_some_and(|n| n.is_keyword("session")) {
                j += 1;
            }
            let mut parts = Vec::new();
            while let Some(name) = tokens.get(j).and_then(|n| n.name()) {
                parts.push(name.to_string());
                if tokens
                    .get(j + 1)
                    .is_some_and(|n| n.kind == TokenKind::Char(b'.'))
                {
                    j += 2;
                } else {
                    break;
                }
            }
            if parts.len() > 1 {
                out.push(parts.join("."));
            }
        } else if t.name() == Some("set_config")
            && tokens
                .get(k + 1)
                .is_some_and(|n| n.kind == TokenKind::Char(b'('))
        {
            if let Some(arg) = tokens.get(k + 2) {
                if matches!(
                    arg.kind,
                    TokenKind::String(
                        StringKind::Standard | StringKind::Extended | StringKind::Dollar
                    )
                ) && arg.text.as_deref().is_some_and(|v| v.contains('.'))
                {
                    out.push(arg.text.as_deref().unwrap_or_default().to_string());
                }
            }
        }
    }
    out.retain(|n| !n.contains(['\'', '\\', '\0']));
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::custom_settings;

    #[test]
    fn dotted_names_set_by_set_and_set_config_are_found() {
        assert_eq!(custom_settings("SET wp.mark = 'init'"), ["wp.mark"]);
        assert_eq!(
            custom_settings("set session App.Tenant to 7; SELECT set_config('a.b', 'x', false)"),
            ["a.b", "app.tenant"]
        );
        assert_eq!(custom_settings("SET \"My\".\"Name\" = 1"), ["My.Name"]);
        assert!(custom_settings("SET search_path = app").is_empty());
        assert!(custom_settings("SELECT 'SET a.b = 1'").is_empty());
        assert!(custom_settings("SELECT set_config($1, 'x', false)").is_empty());
    }
}
