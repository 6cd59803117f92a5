//! Cheap randomness for jitter and host shuffling: never for anything secret.

use std::hash::{BuildHasher, Hasher};

/// A random number in [0, 1): a fresh `RandomState` (std seeds each from per-process random
/// keys, advanced on every use, so successive ones differ), hashing the wall-clock time.
pub(crate) fn fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn fractions_are_in_range_and_differ() {
        let v: Vec<f64> = (0..64).map(|_| super::fraction()).collect();
        assert!(v.iter().all(|f| (0.0..1.0).contains(f)));
        let mut d = v.clone();
        d.sort_by(f64::total_cmp);
        d.dedup();
        assert!(d.len() > 60, "{} distinct of 64", d.len());
    }
}
