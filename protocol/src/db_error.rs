//! The server's own errors and notices, with every field they carry; and how server text is
//! shown: control characters escaped, so that an error message or a log line cannot carry
//! terminal escape sequences (`\x1b[31m`) or forged lines from the server.

use std::error::Error as StdError;
use std::fmt;

/// Text from the server, shown with its control characters escaped: `\x1b` for ESC, `\n`
/// for a newline, and so on, as Rust's escapes spell them; the rest as it is.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(char::is_control) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("a char at i");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Where in the query text an error points.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorPosition {
    /// A 1-based character index into the query the client sent.
    Original(u32),
    /// A position in an internally generated query.
    Internal {
        /// 1-based character index into `query`.
        position: u32,
        /// The internally generated query text.
        query: String,
    },
}

/// An ErrorResponse (or NoticeResponse) from the server, with every field it carried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbError {
    severity: String,
    parsed_severity: Option<String>,
    code: String,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
    position: Option<ErrorPosition>,
    where_: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    column: Option<String>,
    datatype: Option<String>,
    constraint: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    routine: Option<String>,
}

impl DbError {
    /// Builds a `DbError` from the `(field type, value)` pairs of an ErrorResponse.
    /// Unknown field types are ignored, as the protocol asks; invalid UTF-8 is replaced.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (u8, &'a [u8])>) -> DbError {
        let mut e = DbError::default();
        let mut internal_position: Option<u32> = None;
        let mut internal_query: Option<String> = None;
        for (ty, value) in fields {
            let v = String::from_utf8_lossy(value).into_owned();
            match ty {
                b'S' => e.severity = v,
                b'V' => e.parsed_severity = Some(v),
                b'C' => e.code = v,
                b'M' => e.message = v,
                b'D' => e.detail = Some(v),
                b'H' => e.hint = Some(v),
                b'P' => {
                    if let Ok(p) = v.parse() {
                        e.position = Some(ErrorPosition::Original(p));
                    }
                }
                b'p' => internal_position = v.parse().ok(),
                b'q' => internal_query = Some(v),
                b'W' => e.where_ = Some(v),
                b's' => e.schema = Some(v),
                b't' => e.table = Some(v),
                b'c' => e.column = Some(v),
                b'd' => e.datatype = Some(v),
                b'n' => e.constraint = Some(v),
                b'F' => e.file = Some(v),
                b'L' => e.line = v.parse().ok(),
                b'R' => e.routine = Some(v),
                _ => {}
            }
        }
        if let (Some(position), None) = (internal_position, &e.position) {
            e.position = Some(ErrorPosition::Internal {
                position,
                query: internal_query.unwrap_or_default(),
            });
        }
        e
    }

    /// The fields of this error as `(type, value)` pairs, in protocol order; the inverse of
    /// [`DbError::from_fields`] (used to encode server messages in tests and fake servers;
    /// feature `internals`).
    #[cfg(any(test, feature = "internals"))]
    #[doc(hidden)]
    pub fn to_fields(&self) -> Vec<(u8, String)> {
        let mut out = vec![(b'S', self.severity.clone())];
        if let Some(v) = &self.parsed_severity {
            out.push((b'V', v.clone()));
        }
        out.push((b'C', self.code.clone()));
        out.push((b'M', self.message.clone()));
        let opt = [
            (b'D', &self.detail),
            (b'H', &self.hint),
            (b'W', &self.where_),
            (b's', &self.schema),
            (b't', &self.table),
            (b'c', &self.column),
            (b'd', &self.datatype),
            (b'n', &self.constraint),
            (b'F', &self.file),
            (b'R', &self.routine),
        ];
        for (ty, v) in opt {
            if let Some(v) = v {
                out.push((ty, v.clone()));
            }
        }
        match &self.position {
            Some(ErrorPosition::Original(p)) => out.push((b'P', p.to_string())),
            Some(ErrorPosition::Internal { position, query }) => {
                out.push((b'p', position.to_string()));
                out.push((b'q', query.clone()));
            }
            None => {}
        }
        if let Some(line) = self.line {
            out.push((b'L', line.to_string()));
        }
        out
    }

    /// Builds an error with the given severity, SQLSTATE and message (for the crate's fake
    /// servers; feature `internals`).
    #[cfg(any(test, feature = "internals"))]
    #[doc(hidden)]
    pub fn new(severity: &str, code: &str, message: &str) -> DbError {
        DbError {
            severity: severity.to_string(),
            parsed_severity: Some(severity.to_string()),
            code: code.to_string(),
            message: message.to_string(),
            ..DbError::default()
        }
    }

    /// The severity as the server sent it (possibly localized): ERROR, FATAL, PANIC,
    /// WARNING, NOTICE, ...
    pub fn severity(&self) -> &str {
        &self.severity
    }
    /// The severity, never localized (PostgreSQL 9.6 and later).
    pub fn parsed_severity(&self) -> Option<&str> {
        self.parsed_severity.as_deref()
    }
    /// The SQLSTATE code, e.g. `28P01` for a wrong password: a string, as in
    /// tokio-postgres's `DbError::code().code()`; the codes wirepool tests for have names in
    /// [`sqlstate`].
    pub fn code(&self) -> &str {
        &self.code
    }
    /// The primary human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// An optional secondary message with more detail.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// An optional suggestion what to do about the problem.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    /// Where in the query the error occurred.
    pub fn position(&self) -> Option<&ErrorPosition> {
        self.position.as_ref()
    }
    /// The context (call stack) in which the error occurred.
    pub fn where_(&self) -> Option<&str> {
        self.where_.as_deref()
    }
    /// The schema of the object the error is about.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
    /// The table the error is about.
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }
    /// The column the error is about.
    pub fn column(&self) -> Option<&str> {
        self.column.as_deref()
    }
    /// The data type the error is about.
    pub fn datatype(&self) -> Option<&str> {
        self.datatype.as_deref()
    }
    /// The constraint the error is about.
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }
    /// The server source file that reported the error.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }
    /// The line in the server source file.
    pub fn line(&self) -> Option<u32> {
        self.line
    }
    /// The server source routine that reported the error.
    pub fn routine(&self) -> Option<&str> {
        self.routine.as_deref()
    }

    /// True for FATAL and PANIC: the server ends the session after sending it.
    pub fn is_fatal(&self) -> bool {
        let sev = self.parsed_severity.as_deref().unwrap_or(&self.severity);
        sev == "FATAL" || sev == "PANIC"
    }
}

/// `SEVERITY CODE: message (detail: ...) (hint: ...)`, the server's text with its control
/// characters escaped (see [`Escaped`]); the accessors give it as it came.
impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            Escaped(&self.severity),
            Escaped(&self.code),
            Escaped(&self.message)
        )?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {})", Escaped(detail))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {})", Escaped(hint))?;
        }
        Ok(())
    }
}

impl StdError for DbError {}
