//! Acquire timeouts: one timer for the pool's whole queue of waiters, instead of one per
//! waiting caller. Every waiter has the same timeout, so the queue's head always has the
//! earliest deadline; this task sleeps until it, ends the waits that are due
//! ([`Core::expire`](crate::pool_core::Core::expire)), and sleeps until the next. A caller that
//! finds the queue empty wakes it to learn the new deadline.
//!
//! Registering a tokio timer per waiting acquire cost about a quarter of a contended
//! acquire+release; this costs nothing per acquire.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use crate::sync::Ordering;

/// How long the task waits with an empty queue before it checks that the pool still
/// exists (it holds it only weakly in between).
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub(super) fn spawn(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    shared.runtime.spawn(run(weak));
}

async fn run(weak: Weak<Shared>) {
    let Some(first_waiter) = weak.upgrade().map(|s| s.first_waiter.clone()) else {
        return;
    };
    loop {
        // Registered before looking, so a first waiter arriving meanwhile is not missed.
        let arrived = first_waiter.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let wait_until = {
            let Some(s) = weak.upgrade() else { return };
            if s.closing.load(Ordering::Acquire) {
                return;
            }
            match s.core.expire(s.deadline_clock()) {
                Some(d) => s.deadline_instant(d),
                None => Instant::now() + IDLE_CHECK,
            }
        };
        // The pool is held only weakly while this sleeps: dropping its last handle ends
        // the task at its next turn.
        tokio::select! {
            _ = tokio::time::sleep_until(wait_until) => {}
            _ = arrived => {}
        }
    }
}
