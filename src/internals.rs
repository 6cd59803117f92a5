//! What the crate's own tests, benchmarks and loom models reach beyond the public API
//! (feature `internals`, hidden from the docs, unstable: it may change in any release).
//! The modules `pool_core`, `observe::counters` and `observe::leak` are public under the
//! same feature.

use crate::Connection;

/// Bytes of a request not yet sent (its future was dropped while writing).
pub fn unsent_bytes(conn: &Connection) -> usize {
    conn.unsent_bytes()
}

/// The checkout's check of an idle connection (see the pool's `acquire`).
pub fn check_idle(conn: &mut Connection) -> bool {
    conn.check_idle()
}
