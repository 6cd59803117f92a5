//! The counters every checkout updates, striped by connection: a checkout adds to its
//! connection's stripe, on cache lines of its own, so two runtime threads checking out two
//! connections at once do not pass the same lines back and forth (under contention each
//! shared add cost a transfer between cores). Connection ids are consecutive, so a pool of
//! up to [`STRIPES`] connections has a stripe per connection. A reader sums the stripes;
//! each stripe only grows, so the sum never goes back between two readings.

use crate::sync::{AtomicU64, Ordering};

/// How many stripes (connections beyond share them); a power of two, so a connection's
/// stripe is a mask of its id.
const STRIPES: usize = 16;

/// The buckets of a duration histogram ([`super::stats::ACQUIRE_BUCKETS`] and the overflow).
pub(crate) const BUCKETS: usize = 21;

/// One thread's share of the counts. Aligned so that no two stripes share a cache line
/// (128 bytes: adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
struct Stripe {
    immediate: AtomicU64,
    waited: AtomicU64,
    wait_sum_nanos: AtomicU64,
    wait_buckets: [AtomicU64; BUCKETS],
    use_sum_nanos: AtomicU64,
    use_buckets: [AtomicU64; BUCKETS],
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            immediate: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait_sum_nanos: AtomicU64::new(0),
            wait_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            use_sum_nanos: AtomicU64::new(0),
            use_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The sums of the stripes at one reading.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CheckoutCounts {
    pub(crate) immediate: u64,
    pub(crate) waited: u64,
    pub(crate) wait_sum_nanos: u64,
    pub(crate) wait_buckets: [u64; BUCKETS],
    pub(crate) use_sum_nanos: u64,
    pub(crate) use_buckets: [u64; BUCKETS],
}

/// Checkouts served at once or after a wait, how long the waits and the uses took.
pub(crate) struct CheckoutCounters {
    stripes: Box<[Stripe; STRIPES]>,
}

impl std::fmt::Debug for CheckoutCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sum().fmt(f)
    }
}

impl CheckoutCounters {
    pub(crate) fn new() -> CheckoutCounters {
        CheckoutCounters {
            stripes: Box::new(std::array::from_fn(|_| Stripe::new())),
        }
    }

    /// The stripe of the connection numbered `conn`.
    #[inline]
    fn of(&self, conn: u64) -> &Stripe {
        &self.stripes[conn as usize & (STRIPES - 1)]
    }

    #[inline]
    pub(crate) fn immediate(&self, conn: u64) {
        self.of(conn).immediate.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn waited(&self, conn: u64, nanos: u64, bucket: usize) {
        let s = self.of(conn);
        s.waited.fetch_add(1, Ordering::Relaxed);
        s.wait_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        s.wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn used(&self, conn: u64, nanos: u64, bucket: usize) {
        let s = self.of(conn);
        s.use_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        s.use_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, summed over the stripes.
    pub(crate) fn sum(&self) -> CheckoutCounts {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut c = CheckoutCounts::default();
        for s in self.stripes.iter() {
            c.immediate += r(&s.immediate);
            c.waited += r(&s.waited);
            c.wait_sum_nanos += r(&s.wait_sum_nanos);
            c.use_sum_nanos += r(&s.use_sum_nanos);
            for i in 0..BUCKETS {
                c.wait_buckets[i] += r(&s.wait_buckets[i]);
                c.use_buckets[i] += r(&s.use_buckets[i]);
            }
        }
        c
    }
}

#[cfg(all(test, not(wirepool_loom)))]
mod tests {
    use super::*;

    #[test]
    fn connections_add_to_stripes_and_the_sum_sees_every_add() {
        let c = std::sync::Arc::new(CheckoutCounters::new());
        let ts: Vec<_> = (0..STRIPES as u64 + 3)
            .map(|conn| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.immediate(conn);
                        c.waited(conn, 2, 1);
                        c.used(conn, 3, 20);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        let n = (STRIPES as u64 + 3) * 1000;
        let s = c.sum();
        assert_eq!((s.immediate, s.waited), (n, n));
        assert_eq!((s.wait_sum_nanos, s.wait_buckets[1]), (2 * n, n));
        assert_eq!((s.use_sum_nanos, s.use_buckets[20]), (3 * n, n));
        let spread = c
            .stripes
            .iter()
            .filter(|s| s.immediate.load(Ordering::Relaxed) > 0)
            .count();
        assert_eq!(spread, STRIPES, "consecutive connections fill every stripe");
    }
}
