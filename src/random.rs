//! Cheap randomness for jitter and host shuffling: never for anything secret.

use std::hash::{BuildHasher, Hasher};

/// A random number in [0, 1): std's per-process random hash keys, fed the clock.
pub(crate) fn fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
