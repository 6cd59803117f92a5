//! The counts every checkout updates, kept per connection by whoever holds it: a checkout
//! counts on its connection's own tally, which only the connection's holder of the moment
//! (the caller that checked it out, or the pool) writes. With one writer an add is a load
//! and a store, no locked instruction, and two threads checking out two connections never
//! write the same cache line. The hand-over of a connection between holders goes through
//! the pool's lock, which orders one holder's stores before the next one's loads.
//!
//! A reader sums, under the registry's lock, the tallies of the connections alive and what
//! the closed ones left behind (a tally is folded in when its connection's bookkeeping is
//! dropped, under the same lock): each count only grows, so the sum never goes back
//! between two readings.

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// The buckets of a duration histogram ([`super::stats::ACQUIRE_BUCKETS`] and the overflow).
pub const BUCKETS: usize = 21;

/// One connection's counts. Aligned so that no two tallies share a cache line (128 bytes:
/// adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
struct Tally {
    immediate: AtomicU64,
    waited: AtomicU64,
    wait_sum_nanos: AtomicU64,
    wait_buckets: [AtomicU64; BUCKETS],
    use_sum_nanos: AtomicU64,
    use_buckets: [AtomicU64; BUCKETS],
}

/// An add by the one writer: a load and a store (readers see either value, never a torn
/// one).
#[inline(always)]
fn bump(a: &AtomicU64, by: u64) {
    a.store(
        a.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Tally {
    fn new() -> Tally {
        Tally {
            immediate: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait_sum_nanos: AtomicU64::new(0),
            wait_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            use_sum_nanos: AtomicU64::new(0),
            use_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add_to(&self, c: &mut CheckoutCounts) {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        c.immediate += r(&self.immediate);
        c.waited += r(&self.waited);
        c.wait_sum_nanos += r(&self.wait_sum_nanos);
        c.use_sum_nanos += r(&self.use_sum_nanos);
        for i in 0..BUCKETS {
            c.wait_buckets[i] += r(&self.wait_buckets[i]);
            c.use_buckets[i] += r(&self.use_buckets[i]);
        }
    }
}

/// The counts, summed at one reading.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckoutCounts {
    pub immediate: u64,
    pub waited: u64,
    pub wait_sum_nanos: u64,
    pub wait_buckets: [u64; BUCKETS],
    pub use_sum_nanos: u64,
    pub use_buckets: [u64; BUCKETS],
}

/// The tallies of the connections alive, and the sum of those closed.
#[derive(Default)]
struct Registry {
    live: Vec<Arc<Tally>>,
    closed: CheckoutCounts,
}

/// Checkouts served at once or after a wait, how long the waits and the uses took.
pub struct CheckoutCounters {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for CheckoutCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sum().fmt(f)
    }
}

impl Default for CheckoutCounters {
    fn default() -> CheckoutCounters {
        CheckoutCounters::new()
    }
}

impl CheckoutCounters {
    pub fn new() -> CheckoutCounters {
        CheckoutCounters {
            registry: Arc::new(Mutex::new(Registry::default())),
        }
    }

    /// A tally for a new connection, counted until it is dropped.
    pub fn tally(&self) -> ConnTally {
        let tally = Arc::new(Tally::new());
        self.registry.lock().live.push(tally.clone());
        ConnTally {
            tally,
            registry: self.registry.clone(),
        }
    }

    /// The counts of every connection, alive or closed.
    pub fn sum(&self) -> CheckoutCounts {
        let r = self.registry.lock();
        let mut c = r.closed;
        for t in &r.live {
            t.add_to(&mut c);
        }
        c
    }
}

/// One connection's tally, written through `&mut` by the connection's holder alone; its
/// counts join the closed connections' sum when it is dropped.
pub struct ConnTally {
    tally: Arc<Tally>,
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for ConnTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTally")
            .field("immediate", &self.tally.immediate.load(Ordering::Relaxed))
            .field("waited", &self.tally.waited.load(Ordering::Relaxed))
            .finish()
    }
}

impl ConnTally {
    #[inline]
    pub fn immediate(&mut self) {
        bump(&self.tally.immediate, 1);
    }

    #[inline]
    pub fn waited(&mut self, nanos: u64, bucket: usize) {
        let t = &self.tally;
        bump(&t.waited, 1);
        bump(&t.wait_sum_nanos, nanos);
        bump(&t.wait_buckets[bucket], 1);
    }

    #[inline]
    pub fn used(&mut self, nanos: u64, bucket: usize) {
        let t = &self.tally;
        bump(&t.use_sum_nanos, nanos);
        bump(&t.use_buckets[bucket], 1);
    }
}

impl Drop for ConnTally {
    fn drop(&mut self) {
        let mut r = self.registry.lock();
        if let Some(i) = r.live.iter().position(|t| Arc::ptr_eq(t, &self.tally)) {
            r.live.swap_remove(i);
        }
        self.tally.add_to(&mut r.closed);
    }
}

#[cfg(all(test, not(wirepool_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_sum_sees_every_add_of_live_and_closed_connections() {
        let c = std::sync::Arc::new(CheckoutCounters::new());
        let ts: Vec<_> = (0..20)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut t = c.tally();
                    for _ in 0..1000 {
                        t.immediate();
                        t.waited(2, 1);
                        t.used(3, 20);
                    }
                    // Half the connections close: their counts stay in the sum.
                    (i % 2 == 0).then_some(t)
                })
            })
            .collect();
        let kept: Vec<_> = ts.into_iter().map(|t| t.join().unwrap()).collect();
        let n = 20 * 1000;
        let s = c.sum();
        assert_eq!((s.immediate, s.waited), (n, n));
        assert_eq!((s.wait_sum_nanos, s.wait_buckets[1]), (2 * n, n));
        assert_eq!((s.use_sum_nanos, s.use_buckets[20]), (3 * n, n));
        assert_eq!(c.registry.lock().live.len(), 10);
        drop(kept);
        assert_eq!(c.registry.lock().live.len(), 0);
        assert_eq!(
            c.sum().immediate,
            n,
            "closing a connection loses none of its counts"
        );
    }

    #[test]
    fn a_reading_during_adds_never_goes_back() {
        let c = std::sync::Arc::new(CheckoutCounters::new());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Connections open, count and close, as a pool's do.
                    let mut t = c.tally();
                    for _ in 0..100 {
                        t.immediate();
                    }
                }
            })
        };
        let mut last = 0;
        for _ in 0..10_000 {
            let now = c.sum().immediate;
            assert!(now >= last, "{now} after {last}");
            last = now;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    }
}
