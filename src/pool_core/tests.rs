use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::*;

fn poll<C>(w: &mut Waiter<'_, C>) -> Poll<Result<C, Unserved>> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(w).poll(&mut cx)
}

fn queued<C>(t: TryAcquire<'_, C>) -> (Waiter<'_, C>, Option<OpenPermit<C>>) {
    match t {
        TryAcquire::Queued { waiter, open, .. } => (waiter, open),
        other => panic!("expected Queued, got {other:?}"),
    }
}

fn ready<C>(t: TryAcquire<'_, C>) -> C {
    match t {
        TryAcquire::Ready(c) => c,
        other => panic!("expected Ready, got {other:?}"),
    }
}

#[test]
fn idle_connection_is_handed_out_and_returned() {
    let core = Core::new(2);
    let (w, p) = queued(core.try_acquire());
    drop(w);
    assert!(p.unwrap().complete(1u32).is_none());
    assert_eq!(core.gauges().idle, 1);
    let c = ready(core.try_acquire());
    assert_eq!(c, 1);
    assert_eq!(core.gauges().active, 1);
    assert!(core.release(c, Holder::Caller).is_none());
    let g = core.gauges();
    assert_eq!((g.size, g.idle, g.active, g.peak_active), (1, 1, 0, 1));
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let core = Core::new(1);
    let (w0, p) = queued(core.try_acquire());
    drop(w0);
    p.unwrap().complete(0u32);
    let held = ready(core.try_acquire());
    let mut ws: Vec<Waiter<'_, u32>> = (0..3)
        .map(|_| {
            let (w, p) = queued(core.try_acquire());
            assert!(p.is_none(), "max_size 1 is reached");
            w
        })
        .collect();
    assert_eq!(core.gauges().waiting, 3);
    for w in &mut ws {
        assert!(poll(w).is_pending());
    }
    // Release passes the connection from waiter to waiter in order.
    core.release(held, Holder::Caller);
    // A newcomer cannot take it: it queues behind.
    let (mut late, _) = queued(core.try_acquire());
    let mut order = Vec::new();
    for (i, w) in ws.iter_mut().enumerate() {
        match poll(w) {
            Poll::Ready(Ok(c)) => {
                order.push(i);
                core.release(c, Holder::Caller);
            }
            other => panic!("waiter {i}: {other:?}"),
        }
    }
    assert_eq!(order, vec![0, 1, 2]);
    assert!(matches!(poll(&mut late), Poll::Ready(Ok(0))));
}

#[test]
fn a_cancelled_waiter_passes_its_connection_on() {
    let core = Core::new(1);
    let (w, p) = queued(core.try_acquire());
    let (mut second, _) = queued(core.try_acquire());
    assert!(p.unwrap().complete(7u32).is_none()); // goes to the first waiter's slot
    drop(w); // cancelled after the hand-off, before taking it
    assert!(matches!(poll(&mut second), Poll::Ready(Ok(7))));
    let g = core.gauges();
    assert_eq!((g.size, g.active, g.waiting), (1, 1, 0));
}

#[test]
fn permits_never_exceed_max_size_and_follow_demand() {
    let core: Core<u32> = Core::new(2);
    let (w1, p1) = queued(core.try_acquire());
    let (w2, p2) = queued(core.try_acquire());
    let (w3, p3) = queued(core.try_acquire());
    assert!(p1.is_some() && p2.is_some());
    assert!(p3.is_none(), "size is at max");
    assert_eq!(core.gauges().size, 2);
    drop(p1); // the open failed
    assert_eq!(core.gauges().size, 1);
    let p4 = core.want_open(0).expect("waiters still outnumber opens");
    assert!(core.want_open(0).is_none());
    drop((w1, w2, w3, p2, p4));
    let g = core.gauges();
    assert_eq!((g.size, g.opening, g.waiting), (0, 0, 0));
}

#[test]
fn want_open_fills_to_a_target() {
    let core: Core<u32> = Core::new(5);
    let permits: Vec<_> = std::iter::from_fn(|| core.want_open(3)).collect();
    assert_eq!(permits.len(), 3);
    for (i, p) in permits.into_iter().enumerate() {
        p.complete(i as u32);
    }
    assert_eq!(core.gauges().idle, 3);
    assert!(core.want_open(3).is_none());
}

#[test]
fn discard_of_a_held_connection_lets_a_waiter_get_a_new_one() {
    let core = Core::new(1);
    core.want_open(1).unwrap().complete(1u32);
    let c = ready(core.try_acquire());
    let (mut w, p) = queued(core.try_acquire());
    assert!(p.is_none());
    let _ = c; // closed by its holder
    let p = core
        .discard(Holder::Caller)
        .expect("the waiter needs a replacement");
    p.complete(2);
    assert!(matches!(poll(&mut w), Poll::Ready(Ok(2))));
}

#[test]
fn maintenance_take_and_return() {
    let core = Core::new(3);
    for i in 0..3 {
        core.want_open(3).unwrap().complete(i as u32);
    }
    let taken = core.take_idle(|c| *c != 1);
    assert_eq!(taken.len(), 2);
    let g = core.gauges();
    assert_eq!((g.idle, g.maintenance, g.active), (1, 2, 0));
    core.release(taken[0], Holder::Pool);
    drop(core.discard(Holder::Pool));
    let g = core.gauges();
    assert_eq!((g.size, g.idle, g.maintenance), (2, 2, 0));
}

#[test]
fn a_returned_connection_handed_to_the_pool_is_neither_idle_nor_active() {
    let core = Core::new(1);
    core.want_open(1).unwrap().complete(1u32);
    let c = ready(core.try_acquire());
    core.hand_to_pool();
    let g = core.gauges();
    assert_eq!((g.size, g.idle, g.active, g.maintenance), (1, 0, 0, 1));
    // A waiter meanwhile gets it once the pool releases it.
    let (mut w, p) = queued(core.try_acquire());
    assert!(
        p.is_none(),
        "the connection being reset still counts in the size"
    );
    core.release(c, Holder::Pool);
    assert_eq!(poll(&mut w), Poll::Ready(Ok(1)));
    let g = core.gauges();
    assert_eq!((g.size, g.idle, g.active, g.maintenance), (1, 0, 1, 0));
}

#[test]
fn close_fails_waiters_and_returns_connections() {
    let core = Core::new(2);
    core.want_open(2).unwrap().complete(1u32);
    core.want_open(2).unwrap().complete(2u32);
    let held = ready(core.try_acquire());
    let _held2 = ready(core.try_acquire());
    let (mut w, _) = queued(core.try_acquire());
    let idle = core.close();
    assert!(idle.is_empty());
    assert!(matches!(poll(&mut w), Poll::Ready(Err(Unserved::Closed))));
    assert!(matches!(core.try_acquire(), TryAcquire::Closed));
    assert_eq!(core.release(held, Holder::Caller), Some(2));
    assert_eq!(core.gauges().size, 1);
    assert!(core.close().is_empty(), "idempotent");
}

#[test]
fn handing_off_to_an_unpolled_waiter_updates_the_waiting_gauge() {
    let core = Core::new(1);
    core.want_open(1).unwrap().complete(1u32);
    let held = ready(core.try_acquire());
    let (mut w, _) = queued(core.try_acquire());
    assert_eq!(core.gauges().waiting, 1);
    core.release(held, Holder::Caller); // the waiter has no waker yet
    assert_eq!(core.gauges().waiting, 0);
    assert!(matches!(poll(&mut w), Poll::Ready(Ok(1))));
}

#[test]
fn expire_ends_only_the_waits_that_are_due() {
    let core = Core::new(1);
    core.want_open(1).unwrap().complete(1u32);
    let held = ready(core.try_acquire());
    let mut ws: Vec<Waiter<'_, u32>> = [10, 20, 30]
        .into_iter()
        .enumerate()
        .map(|(i, d)| match core.try_acquire_until(|| d) {
            TryAcquire::Queued { waiter, first, .. } => {
                assert_eq!(first, i == 0, "only the first joins an empty queue");
                waiter
            }
            other => panic!("expected Queued, got {other:?}"),
        })
        .collect();
    for w in &mut ws {
        assert!(poll(w).is_pending());
    }
    assert_eq!(core.expire(9), Some(10), "nothing due yet");
    assert_eq!(core.expire(20), Some(30), "two due, the third next");
    assert_eq!(core.gauges().waiting, 1);
    assert_eq!(poll(&mut ws[0]), Poll::Ready(Err(Unserved::TimedOut)));
    assert_eq!(poll(&mut ws[1]), Poll::Ready(Err(Unserved::TimedOut)));
    // The release skips the timed-out waiters and serves the one still waiting.
    assert!(core.release(held, Holder::Caller).is_none());
    assert_eq!(poll(&mut ws[2]), Poll::Ready(Ok(1)));
    assert_eq!(core.expire(u64::MAX), None);
    // Slots are reused: a later wait gets a fresh one, and the old ids match nothing.
    let (mut again, _) = queued(core.try_acquire());
    assert!(poll(&mut again).is_pending());
    assert!(core.release(1, Holder::Caller).is_none());
    assert_eq!(poll(&mut again), Poll::Ready(Ok(1)));
    drop(ws);
    assert!(core.release(1, Holder::Caller).is_none());
    let g = core.gauges();
    assert_eq!((g.size, g.idle, g.active, g.waiting), (1, 1, 0, 0));
}

#[test]
fn a_timed_out_waiter_dropped_unpolled_leaves_no_trace() {
    let core = Core::new(1);
    core.want_open(1).unwrap().complete(1u32);
    let held = ready(core.try_acquire());
    let (w, _) = queued(core.try_acquire_until(|| 5));
    assert_eq!(core.expire(5), None);
    assert_eq!(
        core.gauges().waiting,
        0,
        "gone from the queue without being polled"
    );
    drop(w);
    let (mut w2, _) = queued(core.try_acquire());
    assert!(core.release(held, Holder::Caller).is_none());
    assert_eq!(poll(&mut w2), Poll::Ready(Ok(1)));
}

#[test]
fn the_idle_slot_counts_as_idle_and_is_seen_by_maintenance_queue_and_close() {
    let core = Core::new(3);
    for i in 0..2u32 {
        assert!(core.want_open(2).unwrap().complete(i).is_none());
    }
    let a = ready(core.try_acquire());
    // Returned while nobody waits: into the slot, counted idle, not active.
    assert!(core.release(a, Holder::Caller).is_none());
    assert!(core.0.slot.is_full());
    let g = core.gauges();
    assert_eq!((g.size, g.idle, g.active, g.peak_active), (2, 2, 0, 1));
    // The slot first, then the list; the peak is of connections really held.
    let a = ready(core.try_acquire());
    let b = ready(core.try_acquire());
    let g = core.gauges();
    assert_eq!((g.idle, g.active, g.peak_active), (0, 2, 2));
    assert!(core.release(b, Holder::Caller).is_none());
    // Maintenance takes what is in the slot too.
    let taken = core.take_idle(|_| true);
    assert_eq!(taken, vec![b]);
    assert!(!core.0.slot.is_full());
    let g = core.gauges();
    assert_eq!((g.idle, g.active, g.maintenance), (0, 1, 1));
    assert!(core.release(taken[0], Holder::Pool).is_none());
    // A caller that queues marks the slot: a release goes to it, not into the slot.
    let held = ready(core.try_acquire());
    let (mut w, open) = queued(core.try_acquire());
    drop(open);
    assert!(core.release(held, Holder::Caller).is_none());
    assert!(!core.0.slot.is_full());
    assert_eq!(poll(&mut w), Poll::Ready(Ok(held)));
    drop(w);
    // With the queue empty again, a release uses the slot.
    assert!(core.release(held, Holder::Caller).is_none());
    assert!(core.0.slot.is_full());
    // Closing takes the slot's connection with the rest, and a release after it is refused.
    let mut closed = core.close();
    closed.sort_unstable();
    assert_eq!(
        closed,
        vec![0, 1]
            .into_iter()
            .filter(|&c| c != a)
            .collect::<Vec<_>>()
    );
    assert!(!core.0.slot.is_full());
    assert_eq!(core.release(a, Holder::Caller), Some(a));
    assert_eq!(core.gauges().size, 0);
}
