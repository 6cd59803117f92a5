//! Logical replication: a change stream from a publication, decoded from `pgoutput`.
//!
//! [`ReplicationClient::connect`] opens a replication connection (`replication=database`;
//! the role needs the `REPLICATION` attribute or to be a superuser, and the server
//! `wal_level = logical`). On it:
//!
//! - [`identify_system`](ReplicationClient::identify_system) reads the server's identity
//!   and WAL position;
//! - [`create_slot`](ReplicationClient::create_slot) and
//!   [`drop_slot`](ReplicationClient::drop_slot) manage `pgoutput` slots;
//! - [`start`](ReplicationClient::start) streams a slot's changes for some publications as
//!   a [`ReplicationStream`] of [`ReplicationEvent`]s.
//!
//! The stream reports its positions to the server (the standby status update) when the
//! server asks and every 10 seconds. It reports as flushed only what the application said
//! it has durably processed, through [`ReplicationStream::confirm`]. After a restart the
//! slot resumes from there. Transactions it had delivered but not confirmed come again,
//! with the same commit LSN, which tells a redelivery from a new transaction.
//!
//! A slot is never dropped except by `drop_slot`.
//!
//! A temporary slot (`create_slot(name, true)`) belongs to its connection. It is dropped
//! by the server when that connection ends: a stream on it cannot be resumed after a lost
//! connection. A permanent slot keeps the server's WAL from being removed until its changes
//! are confirmed. Drop a slot that is no longer read: an abandoned slot fills the disk.
//!
//! Values are sent in binary and read with postgres-types ([`Tuple::get`]), as rows are.
//! A TOASTed value that an update did not change is not sent again; it reads as
//! [`Tuple::is_unchanged_toast`].
//!
//! ```no_run
//! # async fn f(cfg: wirepool::ConnectConfig) -> wirepool::Result<()> {
//! use futures_util::StreamExt;
//! use wirepool::replication::{ReplicationClient, ReplicationEvent};
//!
//! let mut client = ReplicationClient::connect(&cfg).await?;
//! client.create_slot("indexer", false).await?;
//! let mut stream = client.start("indexer", &["files_pub"], None).await?;
//! while let Some(event) = stream.next().await {
//!     match event? {
//!         ReplicationEvent::Insert { new, .. } => {
//!             let path: String = new.get("path")?;
//!             println!("new file {path}");
//!         }
//!         ReplicationEvent::Commit { commit_lsn, .. } => stream.confirm(commit_lsn),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod client;
mod event;
mod gauges;
mod resume;
mod stream;

pub use crate::observe::replication_status::{ReplicationStatus, StreamState};
pub use client::{ReplicationClient, Slot, SystemIdentity};
pub use event::{Relation, ReplicationEvent, Tuple};
pub(crate) use gauges::Gauges;
pub use stream::ReplicationStream;
pub use wirepool_protocol::replication::{Lsn, ParseLsnError};
