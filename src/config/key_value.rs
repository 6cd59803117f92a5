//! libpq's `key=value` connection strings: quoting with single quotes and backslashes.

use super::*;

pub(super) fn parse_key_value(s: &str) -> Result<Partial> {
    let mut p = Partial::default();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            // After an unquoted password with a space in it, the "keyword" is the rest of
            // the password: not echoed.
            return Err(Error::config(if p.after_password {
                "missing `=` after the password's value in connection string (quote a \
                 password that contains spaces: password='a b')"
                    .to_string()
            } else {
                format!("missing `=` after `{key}` in connection string")
            }));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(e) => value.push(e),
                        None => break,
                    },
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(Error::config(format!(
                    "unterminated quoted value for `{key}`"
                )));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(e) = chars.next() {
                        value.push(e);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if p.after_password && !KEYWORDS.contains(&key.as_str()) {
            // Most likely the rest of an unquoted password with a space in it: not echoed.
            return Err(Error::config(
                "invalid connection string after the password's value (quote a password \
                 that contains spaces: password='a b')",
            ));
        }
        apply(&mut p, &key, value)?;
        p.after_password = key == "password";
    }
    Ok(p)
}
