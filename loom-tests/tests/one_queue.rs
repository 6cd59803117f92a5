//! loom models of the one queue that callers of `acquire()` and the shared path's
//! statements share: the shared path asks for a connection as one waiter in the core's FIFO
//! (on behalf of every statement waiting for room), and a pipelined statement waits on its
//! answer cell until a lane has room for it. A returned connection serves the oldest waiter
//! of either kind: when the shared path's request is the oldest, the connection becomes a
//! lane, the waiting statement is placed on it, and the connection goes back to the core
//! for the caller of `acquire()` behind it. Under every interleaving: no lost wake-up, no
//! connection lost or handed to two, and the order kept.
#![cfg(wirepool_loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;
use wirepool::pool_core::reply::Reply;
use wirepool::pool_core::{Core, Holder, TryAcquire};

fn model(f: impl Fn() + Sync + Send + 'static) {
    wirepool_loom_tests::model(2, f);
}

/// A statement waiting for room on a lane, as the shared path's callers poll it.
struct Placed(Arc<Reply<usize>>);

impl Future for Placed {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        self.0.poll_take(cx)
    }
}

#[test]
fn a_returned_connection_serves_the_shared_path_at_its_turn_then_the_caller_behind_it() {
    model(|| {
        let core: Core<usize> = Core::new(1);
        core.want_open(1).expect("capacity").complete(0);
        let held = match core.try_acquire() {
            TryAcquire::Ready(c) => c,
            other => unreachable!("{other:?}"),
        };
        // The shared path's request for a connection, then a caller of acquire().
        let (lane_request, exclusive) = match (core.try_acquire(), core.try_acquire()) {
            (TryAcquire::Queued { waiter: a, .. }, TryAcquire::Queued { waiter: b, .. }) => (a, b),
            _ => unreachable!(),
        };
        // A pipelined statement waiting for room.
        let statement = Arc::new(Reply::new());
        let caller = {
            let s = statement.clone();
            thread::spawn(move || block_on(Placed(s)))
        };
        let releaser = {
            let core = core.clone();
            thread::spawn(move || assert!(core.release(held, Holder::Caller).is_none()))
        };
        let mut exclusive = exclusive;
        let mut cx = Context::from_waker(Waker::noop());
        // The caller of acquire() came after the shared path's request: not served first.
        assert!(Pin::new(&mut exclusive).poll(&mut cx).is_pending());
        let lane = block_on(lane_request).expect("the shared path's request is served");
        // The lane takes the waiting statement, then gives the connection back.
        assert!(statement.complete(lane), "the statement was waiting");
        assert!(core.release(lane, Holder::Caller).is_none());
        assert_eq!(caller.join().unwrap(), 0);
        releaser.join().unwrap();
        assert_eq!(block_on(exclusive), Ok(0));
        let g = core.gauges();
        assert_eq!((g.size, g.active, g.waiting), (1, 1, 0));
    });
}

#[test]
fn a_caller_of_acquire_queued_first_is_served_before_the_shared_path() {
    model(|| {
        let core: Core<usize> = Core::new(1);
        core.want_open(1).expect("capacity").complete(0);
        let held = match core.try_acquire() {
            TryAcquire::Ready(c) => c,
            other => unreachable!("{other:?}"),
        };
        let (exclusive, lane_request) = match (core.try_acquire(), core.try_acquire()) {
            (TryAcquire::Queued { waiter: a, .. }, TryAcquire::Queued { waiter: b, .. }) => (a, b),
            _ => unreachable!(),
        };
        let releaser = {
            let core = core.clone();
            thread::spawn(move || assert!(core.release(held, Holder::Caller).is_none()))
        };
        let mut lane_request = lane_request;
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut lane_request).poll(&mut cx).is_pending());
        let c = block_on(exclusive).expect("served");
        releaser.join().unwrap();
        assert!(core.release(c, Holder::Caller).is_none());
        assert_eq!(block_on(lane_request), Ok(0));
    });
}
