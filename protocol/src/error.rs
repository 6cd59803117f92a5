//! What goes wrong in the protocol layer: the server's bytes are not valid protocol, the
//! server answered with an error, authentication cannot proceed, or what the caller asked
//! to send cannot be encoded.
//!
//! The layer knows nothing of sockets, pools or timeouts; the connection layer turns a
//! [`ProtocolError`] into its own error type (wirepool's `Error`, with `?`, through `From`),
//! keeping the kind and the words.

use std::fmt;

use super::DbError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A protocol-layer failure.
#[derive(Debug)]
pub enum ProtocolError {
    /// The server sent bytes that are not valid protocol here.
    Violation(String),
    /// The server answered with an ErrorResponse.
    Server(Box<DbError>),
    /// Authentication cannot proceed: an unsupported method, a signature that did not
    /// verify.
    Authentication(String),
    /// The server asks for a password and none is given.
    MissingPassword(String),
    /// What the caller asked to send cannot be sent (a NUL byte, a message over the
    /// protocol's size limit); nothing was written.
    InvalidInput(String),
    /// A value cannot be converted to its parameter's type.
    Conversion(String, Option<BoxError>),
    /// The server's answer to the TLS request cannot be used.
    Tls(String),
    /// The server started a COPY, which this path does not run.
    CopyRefused,
    /// A connection setting cannot be sent as it is (a NUL byte in a parameter or the
    /// password).
    Setting(String),
}

/// A protocol-layer result.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

impl ProtocolError {
    #[doc(hidden)]
    pub fn protocol(detail: impl Into<String>) -> Self {
        ProtocolError::Violation(detail.into())
    }

    #[doc(hidden)]
    pub fn db(e: DbError) -> Self {
        ProtocolError::Server(Box::new(e))
    }

    #[doc(hidden)]
    pub fn db_boxed(e: Box<DbError>) -> Self {
        ProtocolError::Server(e)
    }

    #[doc(hidden)]
    pub fn auth(detail: impl Into<String>) -> Self {
        ProtocolError::Authentication(detail.into())
    }

    #[doc(hidden)]
    pub fn missing_password(detail: impl Into<String>) -> Self {
        ProtocolError::MissingPassword(detail.into())
    }

    #[doc(hidden)]
    pub fn invalid_input(detail: impl Into<String>) -> Self {
        ProtocolError::InvalidInput(detail.into())
    }

    #[doc(hidden)]
    pub fn conversion(detail: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ProtocolError::Conversion(detail.into(), Some(source.into()))
    }

    #[doc(hidden)]
    pub fn tls(detail: impl Into<String>) -> Self {
        ProtocolError::Tls(detail.into())
    }

    #[doc(hidden)]
    pub fn config(detail: impl Into<String>) -> Self {
        ProtocolError::Setting(detail.into())
    }

    #[doc(hidden)]
    pub fn copy_unsupported() -> Self {
        ProtocolError::CopyRefused
    }

    /// True when the server's bytes are not valid protocol.
    pub fn is_protocol(&self) -> bool {
        matches!(self, ProtocolError::Violation(_))
    }

    /// The server's error, when this is one.
    pub fn as_db_error(&self) -> Option<&DbError> {
        match self {
            ProtocolError::Server(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Violation(d) => write!(f, "protocol error: {d}"),
            ProtocolError::Server(e) => fmt::Display::fmt(e, f),
            ProtocolError::Authentication(d) => write!(f, "authentication failed: {d}"),
            ProtocolError::MissingPassword(d) => write!(f, "no password: {d}"),
            ProtocolError::InvalidInput(d) => write!(f, "invalid input: {d}"),
            ProtocolError::Conversion(d, _) => write!(f, "conversion error: {d}"),
            ProtocolError::Tls(d) => write!(f, "TLS error: {d}"),
            ProtocolError::CopyRefused => f.write_str("COPY is not run on this path"),
            ProtocolError::Setting(d) => write!(f, "configuration error: {d}"),
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtocolError::Server(e) => Some(&**e),
            ProtocolError::Conversion(_, Some(s)) => Some(&**s),
            _ => None,
        }
    }
}
