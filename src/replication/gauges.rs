//! A stream's live figures, shared by the stream and the pools that watch it
//! ([`Pool::watch_replication`](crate::Pool::watch_replication)).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::{Lsn, ReplicationStatus, StreamState};

/// The live figures.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub(crate) slot: String,
    pub(crate) state: AtomicU8,
    pub(crate) server: AtomicU64,
    pub(crate) confirmed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Gauges {
    pub(crate) fn new(slot: &str) -> Gauges {
        Gauges {
            slot: slot.to_string(),
            state: AtomicU8::new(StreamState::Streaming as u8),
            server: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_state(&self, s: StreamState) {
        self.state.store(s as u8, Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> ReplicationStatus {
        let server = Lsn(self.server.load(Ordering::Acquire));
        let confirmed = Lsn(self.confirmed.load(Ordering::Acquire));
        ReplicationStatus {
            slot: self.slot.clone(),
            state: match self.state.load(Ordering::Acquire) {
                0 => StreamState::Streaming,
                1 => StreamState::Reconnecting,
                _ => StreamState::Ended,
            },
            server_lsn: server,
            confirmed_lsn: confirmed,
            lag_bytes: server.0.saturating_sub(confirmed.0),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}
