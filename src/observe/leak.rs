//! Leak detection: a checkout held past the leak timeout is reported once, with the
//! connection id, how long it has been held and where it was acquired.
//!
//! # Design
//!
//! - Each connection owns a [`LeakSlot`]: one atomic word holding the time of the current
//!   checkout, an "out" bit and a "reported" bit, plus the acquisition site.
//! - The acquire path ([`LeakDetector::checkout`]) writes the site and then the word: two
//!   plain atomic stores to memory only the holder writes. No lock, no queue, no allocation
//!   (unless full backtraces are on).
//! - The return path ([`LeakDetector::checkin`]) swaps the word back to "in"; if the
//!   checkout had been reported it returns how long it was held, for the "returned" message.
//!   Nothing has to be cancelled.
//! - A hashed [`TimerWheel`] owned by one background task holds one entry per *connection*
//!   (new connections reach it through a lock-free queue, [`LeakDetector::track`]). When an
//!   entry comes due, [`LeakDetector::scan`] reads the word: a checkout held past the timeout
//!   is marked reported with a compare-and-swap and reported; one not yet due is put back at
//!   its own deadline; an idle connection is looked at again a timeout later; a closed
//!   connection (only the wheel still holds its slot) leaves the wheel. The compare-and-swap
//!   makes report and return race-free: a checkout is reported at most once, and the return
//!   of a reported checkout always sees the bit.
//! - So a leak is reported no earlier than the timeout and at most one tick later, and the
//!   wheel's work is proportional to the number of connections, not of checkouts.
//!
//! `scan` is pure apart from the queue: `now` is passed in, so it is tested without sleeping.
//! Times are milliseconds on the caller's monotonic clock.

use std::backtrace::Backtrace;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crossbeam::atomic::AtomicCell;
use crossbeam::queue::SegQueue;

use crate::pool_core::wheel::TimerWheel;
// Loom's under `--cfg wirepool_loom`: `loom-tests/` checks the report/return race.
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

const REPORTED: u64 = 1;
const OUT: u64 = 2;

/// A connection's checkout state for the leak detector (see the module docs).
pub struct LeakSlot {
    conn_id: u64,
    /// `acquired_ms << 2 | OUT | REPORTED`.
    word: AtomicU64,
    site: AtomicCell<Option<&'static Location<'static>>>,
    backtrace: Mutex<Option<Backtrace>>,
}

impl fmt::Debug for LeakSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load(Ordering::Relaxed);
        f.debug_struct("LeakSlot")
            .field("conn_id", &self.conn_id)
            .field("out", &(w & OUT != 0))
            .field("reported", &(w & REPORTED != 0))
            .finish()
    }
}

impl LeakSlot {
    /// The slot of connection `conn_id`, in the pool.
    pub fn new(conn_id: u64) -> Arc<LeakSlot> {
        Arc::new(LeakSlot {
            conn_id,
            word: AtomicU64::new(0),
            site: AtomicCell::new(None),
            backtrace: Mutex::new(None),
        })
    }
}

/// A checkout held past the leak timeout.
#[derive(Debug)]
pub struct LeakReport {
    /// The pool's id of the connection.
    pub conn_id: u64,
    /// How long it had been held when reported.
    pub held: Duration,
    /// Where `acquire()` was called.
    pub site: Option<&'static Location<'static>>,
    /// The full call stack at acquisition, when backtraces are enabled.
    pub backtrace: Option<Backtrace>,
}

/// The registration side and the scanning logic of the leak detector.
pub struct LeakDetector {
    new_slots: SegQueue<Arc<LeakSlot>>,
    timeout_ms: u64,
    backtraces: bool,
}

impl fmt::Debug for LeakDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakDetector")
            .field("timeout_ms", &self.timeout_ms)
            .field("backtraces", &self.backtraces)
            .finish()
    }
}

/// A connection's entry in the leak detector's wheel.
pub struct WheelEntry(Arc<LeakSlot>);

impl fmt::Debug for WheelEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl LeakDetector {
    /// A detector reporting checkouts held for `timeout` or longer; with `backtraces`, each
    /// checkout also captures a full backtrace (costly: microseconds per acquire).
    pub fn new(timeout: Duration, backtraces: bool) -> Self {
        LeakDetector {
            new_slots: SegQueue::new(),
            timeout_ms: u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            backtraces,
        }
    }

    /// The wheel's tick for this timeout: a sixteenth of it, between 10 ms and 100 ms, so a
    /// leak is reported at most one tick late.
    pub fn tick(&self) -> Duration {
        Duration::from_millis((self.timeout_ms / 16).clamp(10, 100))
    }

    /// A wheel sized for this detector, starting at `now_ms`: one turn covers the timeout.
    pub fn wheel(&self, now_ms: u64) -> TimerWheel<WheelEntry> {
        let tick = self.tick();
        let slots = (self.timeout_ms / tick.as_millis() as u64 + 1).clamp(8, 1024) as usize;
        TimerWheel::new(tick, slots, now_ms)
    }

    /// Hands a new connection's slot to the detector (picked up by the next scan).
    pub fn track(&self, slot: Arc<LeakSlot>) {
        self.new_slots.push(slot);
    }

    /// Records that the connection of `slot` was checked out at `now_ms` from `site`. Only
    /// the holder of the connection calls this, and [`checkin`](Self::checkin) after it.
    #[inline]
    pub fn checkout(&self, slot: &LeakSlot, site: &'static Location<'static>, now_ms: u64) {
        if self.backtraces {
            *slot.backtrace.lock() = Some(Backtrace::force_capture());
        }
        slot.site.store(Some(site));
        // Release: a scan that sees this word sees the site too.
        slot.word.store(now_ms << 2 | OUT, Ordering::Release);
    }

    /// Records the return of the connection of `slot` at `now_ms`. Returns how long it was
    /// held if the detector had reported it as a potential leak.
    #[inline]
    pub fn checkin(slot: &LeakSlot, now_ms: u64) -> Option<Duration> {
        let prev = slot.word.swap(now_ms << 2, Ordering::AcqRel);
        (prev & (OUT | REPORTED) == OUT | REPORTED)
            .then(|| Duration::from_millis(now_ms.saturating_sub(prev >> 2)))
    }

    /// Adds new connections to `wheel`, advances it to `now_ms` and reports every checkout
    /// held past the timeout, appending to `reports`.
    pub fn scan(
        &self,
        wheel: &mut TimerWheel<WheelEntry>,
        now_ms: u64,
        reports: &mut Vec<LeakReport>,
    ) {
        while let Some(slot) = self.new_slots.pop() {
            wheel.insert(now_ms.saturating_add(self.timeout_ms), WheelEntry(slot));
        }
        let mut due = Vec::new();
        wheel.advance(now_ms, &mut due);
        for WheelEntry(slot) in due {
            if Arc::strong_count(&slot) == 1 {
                continue; // the connection is gone
            }
            let next = self.visit(&slot, now_ms, reports);
            wheel.insert(next, WheelEntry(slot));
        }
    }

    /// Looks at one connection whose entry came due; returns when to look again.
    fn visit(&self, slot: &LeakSlot, now_ms: u64, reports: &mut Vec<LeakReport>) -> u64 {
        let w = slot.word.load(Ordering::Acquire);
        if w & (OUT | REPORTED) != OUT {
            return now_ms.saturating_add(self.timeout_ms); // in the pool, or already reported
        }
        let acquired = w >> 2;
        let due = acquired.saturating_add(self.timeout_ms);
        if now_ms < due {
            return due;
        }
        match slot
            .word
            .compare_exchange(w, w | REPORTED, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => {
                reports.push(LeakReport {
                    conn_id: slot.conn_id,
                    held: Duration::from_millis(now_ms - acquired),
                    site: slot.site.load(),
                    backtrace: if self.backtraces {
                        slot.backtrace.lock().take()
                    } else {
                        None
                    },
                });
                now_ms.saturating_add(self.timeout_ms)
            }
            // Returned (and maybe out again) meanwhile: look again on the next tick.
            Err(_) => now_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: u64 = 1000;

    fn setup() -> (LeakDetector, TimerWheel<WheelEntry>) {
        let d = LeakDetector::new(Duration::from_millis(TIMEOUT), false);
        let w = d.wheel(0);
        (d, w)
    }

    fn tracked(d: &LeakDetector, id: u64) -> Arc<LeakSlot> {
        let slot = LeakSlot::new(id);
        d.track(slot.clone());
        slot
    }

    fn scan(d: &LeakDetector, w: &mut TimerWheel<WheelEntry>, now: u64) -> Vec<LeakReport> {
        let mut r = Vec::new();
        d.scan(w, now, &mut r);
        r
    }

    /// Scans every tick from `from` to `to` (inclusive), collecting reports with their time.
    fn run(
        d: &LeakDetector,
        w: &mut TimerWheel<WheelEntry>,
        from: u64,
        to: u64,
    ) -> Vec<(u64, LeakReport)> {
        let tick = d.tick().as_millis() as u64;
        let mut out = Vec::new();
        let mut now = from;
        while now <= to {
            out.extend(scan(d, w, now).into_iter().map(|r| (now, r)));
            now += tick;
        }
        out
    }

    #[test]
    fn a_checkout_held_past_the_timeout_is_reported_once_on_time_with_its_site() {
        let (d, mut w) = setup();
        let slot = tracked(&d, 7);
        assert!(scan(&d, &mut w, 0).is_empty());
        let site = Location::caller();
        d.checkout(&slot, site, 250);
        let r = run(&d, &mut w, 0, 10 * TIMEOUT);
        assert_eq!(r.len(), 1, "reported once: {r:?}");
        let (at, r) = &r[0];
        let tick = d.tick().as_millis() as u64;
        assert!(
            (250 + TIMEOUT..=250 + TIMEOUT + tick).contains(at),
            "reported at {at}, not before the timeout and at most a tick late"
        );
        assert_eq!(r.conn_id, 7);
        assert_eq!(r.site, Some(site));
        assert_eq!(r.held, Duration::from_millis(at - 250));
        assert!(r.backtrace.is_none());
        assert_eq!(
            LeakDetector::checkin(&slot, 45_450),
            Some(Duration::from_millis(45_200))
        );
    }

    #[test]
    fn returned_checkouts_are_never_reported() {
        let (d, mut w) = setup();
        let slot = tracked(&d, 1);
        let mut now = 0;
        // Many checkouts, each shorter than the timeout, over ten timeouts.
        while now < 10 * TIMEOUT {
            d.checkout(&slot, Location::caller(), now);
            assert!(scan(&d, &mut w, now + 400).is_empty());
            assert_eq!(LeakDetector::checkin(&slot, now + 900), None);
            assert!(scan(&d, &mut w, now + 950).is_empty());
            now += 950;
        }
        assert_eq!(w.len(), 1, "one entry per connection, not per checkout");
    }

    #[test]
    fn only_the_current_checkout_counts() {
        let (d, mut w) = setup();
        let slot = tracked(&d, 3);
        assert!(scan(&d, &mut w, 0).is_empty());
        d.checkout(&slot, Location::caller(), 0);
        assert!(run(&d, &mut w, 0, 500).is_empty());
        assert_eq!(LeakDetector::checkin(&slot, 500), None);
        // Out again at 600: not due at 1000 (the first checkout's deadline), due at 1600.
        d.checkout(&slot, Location::caller(), 600);
        let r = run(&d, &mut w, 600, 3000);
        assert_eq!(r.len(), 1);
        assert!(r[0].0 >= 1600, "{r:?}");
        assert_eq!(
            LeakDetector::checkin(&slot, 3000),
            Some(Duration::from_millis(2400))
        );
        // A later, short checkout is not flagged by the earlier report.
        d.checkout(&slot, Location::caller(), 3100);
        assert!(run(&d, &mut w, 3100, 3200).is_empty());
        assert_eq!(LeakDetector::checkin(&slot, 3200), None);
        assert!(run(&d, &mut w, 3200, 8000).is_empty());
    }

    #[test]
    fn a_return_racing_the_report_is_seen_by_one_side() {
        // The report's compare-and-swap fails if the return came first; the return sees
        // the bit if the report came first.
        let (d, mut w) = setup();
        let slot = tracked(&d, 9);
        scan(&d, &mut w, 0);
        d.checkout(&slot, Location::caller(), 0);
        assert_eq!(LeakDetector::checkin(&slot, 2000), None);
        assert!(
            run(&d, &mut w, 0, 3000).is_empty(),
            "returned before the scan looked"
        );
    }

    #[test]
    fn many_connections_only_the_held_ones_are_reported_and_closed_ones_leave() {
        let (d, mut w) = setup();
        let slots: Vec<_> = (0..50).map(|i| tracked(&d, i)).collect();
        scan(&d, &mut w, 0);
        for (i, s) in slots.iter().enumerate() {
            d.checkout(s, Location::caller(), i as u64);
        }
        for (i, s) in slots.iter().enumerate() {
            if i % 5 != 0 {
                LeakDetector::checkin(s, 100);
            }
        }
        let mut ids: Vec<u64> = run(&d, &mut w, 0, 3000)
            .iter()
            .map(|(_, r)| r.conn_id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..50).step_by(5).collect::<Vec<u64>>());
        assert_eq!(w.len(), 50);
        drop(slots);
        run(&d, &mut w, 3000, 6000);
        assert!(w.is_empty(), "closed connections leave the wheel");
    }

    #[test]
    fn backtraces_are_captured_when_enabled() {
        let d = LeakDetector::new(Duration::from_millis(10), true);
        let mut w = d.wheel(0);
        let slot = tracked(&d, 1);
        scan(&d, &mut w, 0);
        d.checkout(&slot, Location::caller(), 0);
        let r = run(&d, &mut w, 0, 1000);
        assert_eq!(r.len(), 1);
        let bt = r[0].1.backtrace.as_ref().expect("a backtrace");
        assert_eq!(
            bt.status(),
            std::backtrace::BacktraceStatus::Captured,
            "force_capture ignores RUST_BACKTRACE"
        );
    }
}
