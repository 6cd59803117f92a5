//! What the crate's own tests, benchmarks and loom models reach beyond the public API
//! (feature `internals`, hidden from the docs, unstable: it may change in any release).
//! The modules `pool_core`, `observe::counters` and `observe::leak` are public under the
//! same feature.

use crate::Connection;

/// Bytes of a request not yet sent (its future was dropped while writing).
pub fn unsent_bytes(conn: &Connection) -> usize {
    conn.unsent_bytes()
}

/// The catalog queries run by the connection's type cache (the pool's, for a pooled
/// connection) and the number of types it holds.
pub fn type_cache_counts(conn: &Connection) -> (u64, usize) {
    conn.type_cache_counts()
}

/// The checkout's check of an idle connection (see the pool's `acquire`).
pub fn check_idle(conn: &mut Connection) -> bool {
    conn.check_idle(false)
}

/// The binary COPY reader's decoding of one chunk (see [`crate::binary_copy`]): the row
/// in it, or `None` at the trailer; `has_oids` is learnt from the header in the first.
pub fn decode_binary_copy(
    chunk: bytes::Bytes,
    has_oids: &mut Option<bool>,
    types: &std::sync::Arc<[crate::Type]>,
) -> crate::Result<Option<crate::binary_copy::BinaryCopyOutRow>> {
    crate::binary_copy::decode(chunk, has_oids, types)
}

/// Turns the shared path's refusal of session statements off (or on again), so that tests
/// can show what the server's answers alone catch beneath it.
pub fn set_shared_path_refusal(pool: &crate::Pool, on: bool) {
    pool.shared_path_refusal(on);
}
