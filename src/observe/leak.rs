//! Leak detection: a checkout held past the leak timeout is reported once, with the
//! connection id, how long it has been held and where it was acquired.
//!
//! # Design
//!
//! - Each connection owns a [`LeakSlot`]: one atomic word holding its checkout generation
//!   (odd while checked out, even while in the pool) and a "reported" bit.
//! - [`LeakDetector::checkout`] bumps the generation and pushes a small record onto a
//!   lock-free queue (crossbeam's `SegQueue`); the acquire path takes no lock.
//! - [`LeakDetector::checkin`] bumps the generation again, which makes every record of that
//!   checkout stale, so nothing has to be cancelled. If the checkout had been reported it
//!   returns how long it was held, for the "returned" message.
//! - One background task calls [`LeakDetector::scan`] every tick. It moves queued records into
//!   a hashed [`TimerWheel`], dropping those already stale (most checkouts are shorter than a
//!   tick, so the wheel holds little more than the connections out right now), advances the
//!   wheel and, for each record due whose generation is still current, sets the reported
//!   bit with a compare-and-swap and returns a [`LeakReport`]. The compare-and-swap makes
//!   the report and the return race-free: a checkout is reported at most once, and a
//!   reported checkout's return always sees the bit.
//!
//! `scan` is pure apart from the queue: `now` is passed in, so it is tested without sleeping.

use std::backtrace::Backtrace;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crossbeam::queue::SegQueue;

use crate::core::wheel::TimerWheel;
use crate::sync::{Arc, AtomicU64, Ordering};

/// The bit of a [`LeakSlot`] word that marks a reported checkout.
const REPORTED: u64 = 1;

/// A connection's checkout generation and reported bit (see the module docs).
#[derive(Debug, Default)]
pub struct LeakSlot {
    /// `generation << 1 | reported`.
    word: AtomicU64,
}

impl LeakSlot {
    /// A slot for a new connection, in the pool.
    pub fn new() -> Arc<LeakSlot> {
        Arc::new(LeakSlot::default())
    }
}

/// One checkout as the detector sees it.
struct Checkout {
    slot: Arc<LeakSlot>,
    generation: u64,
    conn_id: u64,
    site: &'static Location<'static>,
    acquired_ms: u64,
    backtrace: Option<Box<Backtrace>>,
}

/// The proof of a checkout, kept by its holder and given back to [`LeakDetector::checkin`].
#[derive(Debug, Clone, Copy)]
pub struct CheckoutTicket {
    generation: u64,
    acquired_ms: u64,
}

/// A checkout held past the leak timeout.
#[derive(Debug)]
pub struct LeakReport {
    /// The pool's id of the connection.
    pub conn_id: u64,
    /// How long it had been held when reported.
    pub held: Duration,
    /// Where `acquire()` was called.
    pub site: &'static Location<'static>,
    /// The full call stack at acquisition, when backtraces are enabled.
    pub backtrace: Option<Box<Backtrace>>,
}

/// The registration side and the scanning logic of the leak detector.
pub struct LeakDetector {
    queue: SegQueue<Checkout>,
    timeout_ms: u64,
    backtraces: bool,
}

impl fmt::Debug for LeakDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakDetector")
            .field("timeout_ms", &self.timeout_ms)
            .field("backtraces", &self.backtraces)
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl LeakDetector {
    /// A detector reporting checkouts held for `timeout` or longer; with `backtraces`, each
    /// checkout also captures a full backtrace (costly: microseconds per acquire).
    pub fn new(timeout: Duration, backtraces: bool) -> Self {
        LeakDetector {
            queue: SegQueue::new(),
            timeout_ms: (timeout.as_millis() as u64).max(1),
            backtraces,
        }
    }

    /// The wheel's tick for this timeout: a sixteenth of it, between 10 ms and 100 ms, so a
    /// leak is reported at most one tick late and the queue is drained often.
    pub fn tick(&self) -> Duration {
        Duration::from_millis((self.timeout_ms / 16).clamp(10, 100))
    }

    /// A wheel sized for this detector, starting at `now_ms`: one turn covers the timeout.
    pub fn wheel(&self, now_ms: u64) -> TimerWheel<CheckoutRecord> {
        let tick = self.tick();
        let slots = (self.timeout_ms / tick.as_millis() as u64 + 1).clamp(8, 1024) as usize;
        TimerWheel::new(tick, slots, now_ms)
    }

    /// Records that the connection of `slot` was checked out at `now_ms` from `site`. Called
    /// by the sole holder of the connection.
    #[inline]
    pub fn checkout(
        &self,
        slot: &Arc<LeakSlot>,
        conn_id: u64,
        site: &'static Location<'static>,
        now_ms: u64,
    ) -> CheckoutTicket {
        // Only the holder writes the generation, so load + store suffices; the scan reads
        // it with compare-and-swap. Checkout generations are odd, in-pool ones even.
        let generation = (slot.word.load(Ordering::Relaxed) >> 1) + 1;
        slot.word.store(generation << 1, Ordering::Release);
        self.queue.push(Checkout {
            slot: slot.clone(),
            generation,
            conn_id,
            site,
            acquired_ms: now_ms,
            backtrace: self
                .backtraces
                .then(|| Box::new(Backtrace::force_capture())),
        });
        CheckoutTicket {
            generation,
            acquired_ms: now_ms,
        }
    }

    /// Records the return of the checkout `ticket` at `now_ms`. Returns how long it was held
    /// if the detector had reported it as a potential leak.
    #[inline]
    pub fn checkin(slot: &LeakSlot, ticket: CheckoutTicket, now_ms: u64) -> Option<Duration> {
        let prev = slot
            .word
            .swap((ticket.generation + 1) << 1, Ordering::AcqRel);
        (prev == (ticket.generation << 1 | REPORTED))
            .then(|| Duration::from_millis(now_ms.saturating_sub(ticket.acquired_ms)))
    }

    /// Moves queued checkouts into `wheel`, advances it to `now_ms` and reports every
    /// checkout still out past the timeout, appending to `reports`.
    pub fn scan(
        &self,
        wheel: &mut TimerWheel<CheckoutRecord>,
        now_ms: u64,
        reports: &mut Vec<LeakReport>,
    ) {
        while let Some(c) = self.queue.pop() {
            if c.is_current() {
                wheel.insert(c.acquired_ms + self.timeout_ms, CheckoutRecord(c));
            }
        }
        let mut due = Vec::new();
        wheel.advance(now_ms, &mut due);
        for CheckoutRecord(c) in due {
            let out = c.generation << 1;
            if c.slot
                .word
                .compare_exchange(out, out | REPORTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                reports.push(LeakReport {
                    conn_id: c.conn_id,
                    held: Duration::from_millis(now_ms.saturating_sub(c.acquired_ms)),
                    site: c.site,
                    backtrace: c.backtrace,
                });
            }
        }
    }
}

impl Checkout {
    fn is_current(&self) -> bool {
        self.slot.word.load(Ordering::Acquire) == self.generation << 1
    }
}

/// A checkout waiting in the leak detector's wheel.
pub struct CheckoutRecord(Checkout);

impl fmt::Debug for CheckoutRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckoutRecord")
            .field("conn_id", &self.0.conn_id)
            .field("generation", &self.0.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (LeakDetector, TimerWheel<CheckoutRecord>, Arc<LeakSlot>) {
        let d = LeakDetector::new(Duration::from_millis(1000), false);
        let w = d.wheel(0);
        (d, w, LeakSlot::new())
    }

    fn scan(d: &LeakDetector, w: &mut TimerWheel<CheckoutRecord>, now: u64) -> Vec<LeakReport> {
        let mut r = Vec::new();
        d.scan(w, now, &mut r);
        r
    }

    #[test]
    fn a_checkout_held_past_the_timeout_is_reported_once_with_its_site() {
        let (d, mut w, slot) = setup();
        let site = Location::caller();
        let t = d.checkout(&slot, 7, site, 0);
        assert!(scan(&d, &mut w, 500).is_empty());
        assert!(scan(&d, &mut w, 999).is_empty(), "not before the timeout");
        let r = scan(&d, &mut w, 1000 + d.tick().as_millis() as u64);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].conn_id, 7);
        assert_eq!(r[0].site, site);
        assert!(r[0].held >= Duration::from_millis(1000));
        assert!(r[0].backtrace.is_none());
        assert!(scan(&d, &mut w, 100_000).is_empty(), "reported once");
        assert_eq!(
            LeakDetector::checkin(&slot, t, 45_200),
            Some(Duration::from_millis(45_200))
        );
    }

    #[test]
    fn a_returned_checkout_is_never_reported_and_its_record_is_dropped() {
        let (d, mut w, slot) = setup();
        let t = d.checkout(&slot, 1, Location::caller(), 0);
        assert_eq!(LeakDetector::checkin(&slot, t, 10), None);
        assert!(scan(&d, &mut w, 10).is_empty());
        assert!(w.is_empty(), "stale records do not enter the wheel");
        // Returned after entering the wheel: the generation check on expiry drops it.
        let t = d.checkout(&slot, 1, Location::caller(), 20);
        assert!(scan(&d, &mut w, 30).is_empty());
        assert_eq!(w.len(), 1);
        assert_eq!(LeakDetector::checkin(&slot, t, 40), None);
        assert!(scan(&d, &mut w, 5000).is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn only_the_current_checkout_of_a_connection_counts() {
        let (d, mut w, slot) = setup();
        let t1 = d.checkout(&slot, 3, Location::caller(), 0);
        assert!(scan(&d, &mut w, 100).is_empty());
        assert_eq!(LeakDetector::checkin(&slot, t1, 200), None);
        // The same connection out again later: the old record is stale, the new one is not.
        let t2 = d.checkout(&slot, 3, Location::caller(), 600);
        assert!(
            scan(&d, &mut w, 1100).is_empty(),
            "the first checkout ended"
        );
        let r = scan(&d, &mut w, 1700);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].held, Duration::from_millis(1100));
        assert_eq!(
            LeakDetector::checkin(&slot, t2, 2000),
            Some(Duration::from_millis(1400))
        );
        // A later, short checkout is not flagged by the earlier report.
        let t3 = d.checkout(&slot, 3, Location::caller(), 2100);
        assert_eq!(LeakDetector::checkin(&slot, t3, 2200), None);
    }

    #[test]
    fn many_connections_only_the_held_ones_are_reported() {
        let (d, mut w, _) = setup();
        let slots: Vec<_> = (0..50).map(|_| LeakSlot::new()).collect();
        let mut tickets = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            tickets.push(d.checkout(s, i as u64, Location::caller(), i as u64));
        }
        for (i, s) in slots.iter().enumerate() {
            if i % 5 != 0 {
                LeakDetector::checkin(s, tickets[i], 100);
            }
        }
        let mut ids: Vec<u64> = scan(&d, &mut w, 2000).iter().map(|r| r.conn_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..50).step_by(5).collect::<Vec<u64>>());
    }

    #[test]
    fn backtraces_are_captured_when_enabled() {
        let d = LeakDetector::new(Duration::from_millis(10), true);
        let mut w = d.wheel(0);
        let slot = LeakSlot::new();
        d.checkout(&slot, 1, Location::caller(), 0);
        let r = scan(&d, &mut w, 1000);
        assert_eq!(r.len(), 1);
        let bt = r[0].backtrace.as_ref().expect("a backtrace");
        assert_eq!(
            bt.status(),
            std::backtrace::BacktraceStatus::Captured,
            "force_capture ignores RUST_BACKTRACE"
        );
    }
}
