//! loom models of the real pool core (`wirepool::core`), run with
//! `RUSTFLAGS="--cfg wirepool_loom" cargo test -p wirepool-loom-tests --release`.
#![cfg(wirepool_loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use loom::future::block_on;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use wirepool::pool_core::{Core, Holder, TryAcquire, Unserved};

fn model(f: impl Fn() + Sync + Send + 'static) {
    wirepool_loom_tests::model(2, f);
}

/// A core of `max` holding `n` idle connections numbered from 0.
fn core_with(max: usize, n: usize) -> Core<usize> {
    let core = Core::new(max);
    for i in 0..n {
        core.want_open(n).expect("capacity").complete(i);
    }
    core
}

/// Takes the idle connection that `core_with` put there.
fn check_out_idle(core: &Core<usize>) -> usize {
    match core.try_acquire() {
        TryAcquire::Ready(c) => c,
        other => unreachable!("a connection is idle, got {other:?}"),
    }
}

fn acquire(core: &Core<usize>) -> Result<usize, Unserved> {
    match core.try_acquire() {
        TryAcquire::Ready(c) => Ok(c),
        TryAcquire::Queued { waiter, open, .. } => {
            drop(open);
            block_on(waiter)
        }
        TryAcquire::Closed => Err(Unserved::Closed),
    }
}

/// As `acquire`, with the waker registered as the caller joins the queue (the pool's own
/// `acquire()`): the waiter's first poll takes no lock.
fn acquire_registered(core: &Core<usize>) -> Result<usize, Unserved> {
    block_on(async {
        let tried = std::future::poll_fn(|cx| {
            Poll::Ready(core.try_acquire_registered(|| u64::MAX, cx.waker()))
        })
        .await;
        match tried {
            TryAcquire::Ready(c) => Ok(c),
            TryAcquire::Queued { waiter, open, .. } => {
                drop(open);
                waiter.await
            }
            TryAcquire::Closed => Err(Unserved::Closed),
        }
    })
}

#[test]
fn a_waiter_registered_as_it_queues_is_woken_by_a_release_no_lost_wakeup() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let c2 = core.clone();
        let t = thread::spawn(move || {
            let c = acquire_registered(&c2).expect("not closed");
            assert!(c2.release(c, Holder::Caller).is_none());
        });
        assert!(core.release(held, Holder::Caller).is_none());
        t.join().unwrap();
        let g = core.gauges();
        assert_eq!((g.size, g.idle, g.active, g.waiting), (1, 1, 0, 0));
    });
}

#[test]
fn release_wakes_a_waiter_no_lost_wakeup() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let c2 = core.clone();
        let t = thread::spawn(move || {
            let c = acquire(&c2).expect("not closed");
            assert!(c2.release(c, Holder::Caller).is_none());
        });
        assert!(core.release(held, Holder::Caller).is_none());
        t.join().unwrap();
        let g = core.gauges();
        assert_eq!((g.size, g.idle, g.active, g.waiting), (1, 1, 0, 0));
    });
}

#[test]
fn a_waiter_cancelled_at_any_step_leaves_no_trace() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let c2 = core.clone();
        let t = thread::spawn(move || {
            match c2.try_acquire() {
                TryAcquire::Queued {
                    mut waiter, open, ..
                } => {
                    assert!(open.is_none());
                    // Poll once, then give up (the caller's future is dropped).
                    let mut cx = Context::from_waker(Waker::noop());
                    if let Poll::Ready(Ok(c)) = Pin::new(&mut waiter).poll(&mut cx) {
                        assert!(c2.release(c, Holder::Caller).is_none());
                    }
                    drop(waiter);
                }
                TryAcquire::Ready(c) => assert!(c2.release(c, Holder::Caller).is_none()),
                TryAcquire::Closed => unreachable!(),
            }
        });
        assert!(core.release(held, Holder::Caller).is_none());
        t.join().unwrap();
        let g = core.gauges();
        assert_eq!(
            (g.size, g.idle, g.active, g.waiting),
            (1, 1, 0, 0),
            "the connection is idle again"
        );
    });
}

#[test]
fn hand_off_is_fifo() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let (first, second) = match (core.try_acquire(), core.try_acquire()) {
            (TryAcquire::Queued { waiter: a, .. }, TryAcquire::Queued { waiter: b, .. }) => (a, b),
            _ => unreachable!(),
        };
        let c2 = core.clone();
        let t = thread::spawn(move || {
            assert!(c2.release(held, Holder::Caller).is_none());
        });
        let mut second = second;
        let mut cx = Context::from_waker(Waker::noop());
        // Whatever the interleaving, the second waiter cannot get the connection first.
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        let c = block_on(first).expect("the first waiter is served");
        t.join().unwrap();
        assert!(core.release(c, Holder::Caller).is_none());
        assert_eq!(block_on(second), Ok(0));
    });
}

#[test]
fn max_size_holds_under_concurrent_growth() {
    model(|| {
        let core: Core<usize> = Core::new(1);
        let granted = Arc::new(AtomicUsize::new(0));
        let mut ts = Vec::new();
        for i in 0..2 {
            let (core, granted) = (core.clone(), granted.clone());
            ts.push(thread::spawn(move || match core.try_acquire() {
                TryAcquire::Queued { waiter, open, .. } => {
                    if let Some(p) = open {
                        granted.fetch_add(1, Ordering::SeqCst);
                        assert!(core.gauges().size <= 1);
                        p.complete(i);
                    }
                    let c = block_on(waiter).expect("served");
                    assert!(core.release(c, Holder::Caller).is_none());
                }
                TryAcquire::Ready(c) => assert!(core.release(c, Holder::Caller).is_none()),
                TryAcquire::Closed => unreachable!("not closed"),
            }));
        }
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::SeqCst), 1);
        let g = core.gauges();
        assert_eq!((g.size, g.idle, g.active), (1, 1, 0));
    });
}

#[test]
fn close_racing_acquire_and_release_loses_nothing() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let returned = Arc::new(AtomicUsize::new(0));
        let (c1, r1) = (core.clone(), returned.clone());
        let acquirer = thread::spawn(move || {
            if let Ok(c) = acquire(&c1) {
                if c1.release(c, Holder::Caller).is_some() {
                    r1.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let (c2, r2) = (core.clone(), returned.clone());
        let releaser = thread::spawn(move || {
            if c2.release(held, Holder::Caller).is_some() {
                r2.fetch_add(1, Ordering::SeqCst);
            }
        });
        let idle_at_close = core.close().len();
        acquirer.join().unwrap();
        releaser.join().unwrap();
        let g = core.gauges();
        // The one connection is either returned for closing, handed back by close(), or
        // still counted (never more than one of these).
        assert_eq!(idle_at_close + returned.load(Ordering::SeqCst) + g.size, 1);
        assert_eq!((g.idle, g.active, g.waiting), (0, 0, 0));
    });
}

#[test]
fn discard_hands_its_capacity_to_a_waiter() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let c2 = core.clone();
        let waiter = thread::spawn(move || {
            let c = match c2.try_acquire() {
                TryAcquire::Queued { waiter, open, .. } => {
                    // Queued after the discard: the capacity is free, so this caller has
                    // the replacement opened itself.
                    if let Some(p) = open {
                        assert!(p.complete(7).is_none());
                    }
                    block_on(waiter).expect("not closed")
                }
                other => unreachable!("nothing is idle: {other:?}"),
            };
            assert_eq!(c, 7, "served by the replacement");
            assert!(c2.release(c, Holder::Caller).is_none());
        });
        let _ = held; // the caller found it broken
                      // Queued before the discard: the capacity comes back as a permit for the waiter.
        if let Some(permit) = core.discard(Holder::Caller) {
            assert!(permit.complete(7).is_none());
        }
        waiter.join().unwrap();
        let g = core.gauges();
        assert_eq!((g.size, g.idle, g.active, g.opening), (1, 1, 0, 0));
    });
}

#[test]
fn an_open_completing_while_the_core_closes_is_handed_back_once() {
    model(|| {
        let core: Core<usize> = Core::new(2);
        let permit = core.want_open(1).expect("capacity");
        let c2 = core.clone();
        let opener = thread::spawn(move || permit.complete(5));
        let idle = core.close();
        let returned = opener.join().unwrap();
        // The new connection is either in the idle list close() drained, or handed back
        // to the opener to close: exactly one.
        match (idle.as_slice(), returned) {
            ([5], None) | ([], Some(5)) => {}
            other => panic!("{other:?}"),
        }
        let g = c2.gauges();
        assert_eq!((g.size, g.opening, g.idle), (0, 0, 0));
        assert!(c2.want_open(1).is_none(), "no permits once closed");
    });
}

#[test]
fn maintenance_racing_a_caller_loses_nothing() {
    model(|| {
        let core = core_with(2, 2);
        let c2 = core.clone();
        let maintenance = thread::spawn(move || {
            for c in c2.take_idle(|_| true) {
                assert!(c2.release(c, Holder::Pool).is_none());
            }
        });
        let c = acquire(&core).expect("not closed");
        assert!(core.release(c, Holder::Caller).is_none());
        maintenance.join().unwrap();
        let g = core.gauges();
        assert_eq!(
            (g.size, g.idle, g.active, g.maintenance, g.waiting),
            (2, 2, 0, 0, 0)
        );
    });
}

#[test]
fn three_threads_on_two_connections() {
    model(|| {
        let core = core_with(2, 2);
        let a = check_out_idle(&core);
        let b = check_out_idle(&core);
        let served = Arc::new(AtomicUsize::new(0));
        let mut ts = Vec::new();
        for _ in 0..2 {
            let (core, served) = (core.clone(), served.clone());
            ts.push(thread::spawn(move || {
                let c = acquire(&core).expect("not closed");
                served.fetch_add(1, Ordering::SeqCst);
                assert!(core.release(c, Holder::Caller).is_none());
            }));
        }
        assert!(core.release(a, Holder::Caller).is_none());
        assert!(core.release(b, Holder::Caller).is_none());
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), 2);
        let g = core.gauges();
        assert_eq!((g.size, g.idle, g.active, g.waiting), (2, 2, 0, 0));
    });
}

#[test]
fn a_timeout_racing_a_release_loses_no_connection() {
    model(|| {
        let core = core_with(1, 1);
        let held = check_out_idle(&core);
        let waiter = match core.try_acquire_until(|| 5) {
            TryAcquire::Queued {
                waiter,
                open,
                first,
            } => {
                assert!(open.is_none() && first);
                waiter
            }
            other => unreachable!("the only connection is held, got {other:?}"),
        };
        let c2 = core.clone();
        let t = thread::spawn(move || {
            assert!(c2.release(held, Holder::Caller).is_none());
        });
        // The pool's timeout task, at the deadline.
        assert_eq!(core.expire(5), None, "nothing else is queued");
        match block_on(waiter) {
            // The release came first: the waiter was served, and gives it back.
            Ok(c) => assert!(core.release(c, Holder::Caller).is_none()),
            // The timeout came first: the release found no waiter and left it idle.
            Err(e) => assert_eq!(e, Unserved::TimedOut),
        }
        t.join().unwrap();
        let g = core.gauges();
        assert_eq!((g.size, g.idle, g.active, g.waiting), (1, 1, 0, 0));
    });
}
