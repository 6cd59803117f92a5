//! The PostgreSQL frontend/backend protocol, versions 3.0 and 3.2, without I/O: wirepool's
//! protocol layer, a crate of its own that imports nothing of the pool, so that the fuzz
//! targets build against it alone.
//!
//! Bytes in, events out: [`FrameDecoder`] splits the server's stream into bounded frames and
//! decodes them into [`BackendMessage`]s; [`Startup`] drives startup and authentication;
//! [`SimpleQuery`] assembles the answer to a simple query, [`extended`] writes and reads the
//! extended query protocol (Parse, Bind, Execute, ...). The connection layer feeds them
//! from a socket; the fuzz targets feed them arbitrary bytes. [`replication`] and
//! [`pgoutput`] read a logical replication stream's messages. Failures are
//! [`ProtocolError`]s, which know nothing of sockets, pools or timeouts.

mod backend;
pub mod copy;
mod db_error;
mod error;
pub mod extended;
mod frame;
mod frontend;
pub mod pgoutput;
pub mod replication;
mod require_auth;
mod row;
mod simple_query;
pub mod sqlstate;
mod startup;
mod version;

pub use backend::{BackendMessage, DataRowBody, FieldDescription, TransactionStatus};
#[doc(hidden)]
pub use db_error::Escaped;
pub use db_error::{DbError, ErrorPosition};
pub use error::{ProtocolError, Result};
pub use frame::{FrameDecoder, DEFAULT_MAX_MESSAGE_SIZE, SHORT_MESSAGE_LIMIT};
pub use frontend::MAX_FRONTEND_MESSAGE;
pub use require_auth::RequireAuth;
pub use row::{Column, FromDataRow, RowIndex, SimpleRow};
pub use simple_query::{QueryEvent, ResultSet, SimpleQuery};
pub use startup::{
    ssl_answer, AuthMethod, BindingMode, SessionInfo, SslAnswer, Startup, StartupParams,
    StartupStatus,
};
pub use version::ProtocolVersion;
