//! loom models of the leak detector's report/return race (`wirepool::observe::leak`):
//! the scan's compare-and-swap against the holder's swap. Every report is seen by exactly
//! one return, a returned checkout is never reported, and a checkout is reported at most
//! once, under every interleaving.
#![cfg(wirepool_loom)]

use std::panic::Location;
use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use wirepool::observe::leak::{LeakDetector, LeakSlot, WheelEntry};
use wirepool::pool_core::wheel::TimerWheel;

fn model(f: impl Fn() + Sync + Send + 'static) {
    wirepool_loom_tests::model(3, f);
}

const TIMEOUT_MS: u64 = 10;

/// A detector whose wheel holds one connection, checked out at time 0.
fn checked_out() -> (LeakDetector, TimerWheel<WheelEntry>, Arc<LeakSlot>) {
    let d = LeakDetector::new(Duration::from_millis(TIMEOUT_MS), false);
    let slot = LeakSlot::new(1);
    d.track(slot.clone());
    let mut wheel = d.wheel(0);
    d.scan(&mut wheel, 0, &mut Vec::new());
    d.checkout(&slot, Location::caller(), 0);
    (d, wheel, slot)
}

#[test]
fn a_report_and_a_return_see_each_other() {
    model(|| {
        let (d, mut wheel, slot) = checked_out();
        let mut reports = Vec::new();

        let holder = {
            let slot = slot.clone();
            thread::spawn(move || LeakDetector::checkin(&slot, 100))
        };
        d.scan(&mut wheel, 100, &mut reports);
        let returned = holder.join().unwrap();
        // Reported before the return: the return sees it. Returned first: no report.
        assert_eq!(reports.len(), usize::from(returned.is_some()));
        // Nothing more to report later.
        d.scan(&mut wheel, 1000, &mut reports);
        assert!(reports.len() <= 1);
    });
}

#[test]
fn a_new_checkout_at_the_same_instant_is_not_confused_with_the_old_one() {
    model(|| {
        let (d, mut wheel, slot) = checked_out();
        let mut reports = Vec::new();

        // The holder returns the connection and takes it again, both at the same time as
        // the first checkout (the same slot word), while the scan runs.
        let holder = {
            let slot = slot.clone();
            let d2 = LeakDetector::new(Duration::from_millis(TIMEOUT_MS), false);
            thread::spawn(move || {
                let first = LeakDetector::checkin(&slot, 0);
                d2.checkout(&slot, Location::caller(), 0);
                first
            })
        };
        d.scan(&mut wheel, 100, &mut reports);
        let first = holder.join().unwrap();
        let second = LeakDetector::checkin(&slot, 200);
        // Each report is seen by exactly one of the two returns.
        let seen = usize::from(first.is_some()) + usize::from(second.is_some());
        assert_eq!(reports.len(), seen);
        assert!(reports.len() <= 1, "one scan reports a connection once");
    });
}
