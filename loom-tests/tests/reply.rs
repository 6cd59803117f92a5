//! loom models of the shared path's answer cell (`wirepool::pool_core::reply`): the lane's
//! task completing an answer races the caller polling for it and the caller leaving. A
//! caller that stays gets exactly its answer and is woken for it; a caller that leaves
//! never gets one, and the producer learns which happened (its answer was taken, or it
//! must discard it); an answer that came just as the caller left goes back to the caller
//! side (to return the lane's slot), under every interleaving.
#![cfg(wirepool_loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use loom::sync::Arc;
use loom::thread;
use wirepool::pool_core::reply::{Left, Reply};

fn model(f: impl Fn() + Sync + Send + 'static) {
    wirepool_loom_tests::model(3, f);
}

/// A future over the cell, as the shared path's callers poll it.
struct Take(Arc<Reply<u32>>);

impl Future for Take {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.0.poll_take(cx)
    }
}

#[test]
fn a_caller_that_waits_gets_its_answer() {
    model(|| {
        let r = Arc::new(Reply::new());
        let producer = {
            let r = r.clone();
            thread::spawn(move || r.complete(7))
        };
        let v = loom::future::block_on(Take(r.clone()));
        assert_eq!(v, 7);
        assert!(producer.join().unwrap(), "the answer was delivered");
        assert!(!r.is_abandoned());
    });
}

#[test]
fn a_caller_that_leaves_never_gets_an_answer_and_the_producer_knows() {
    model(|| {
        let r = Arc::new(Reply::new());
        let producer = {
            let r = r.clone();
            thread::spawn(move || r.complete(7))
        };
        let left = r.abandon();
        let delivered = producer.join().unwrap();
        match left {
            // Left first: the producer's answer is discarded.
            Left::Early => assert!(!delivered),
            // The answer came first: the caller side gets it back, to give its slot back.
            Left::Late(v) => {
                assert_eq!(v, 7);
                assert!(delivered);
            }
            Left::Taken => panic!("nothing was taken"),
        }
        assert!(r.is_abandoned());
        assert!(!r.complete(8), "no second answer");
    });
}

#[test]
fn polling_then_leaving_races_the_answer() {
    model(|| {
        let r = Arc::new(Reply::new());
        let producer = {
            let r = r.clone();
            thread::spawn(move || r.complete(1))
        };
        // One poll (registers a waker or takes the answer), then the caller leaves.
        let waker = futures_noop();
        let mut cx = Context::from_waker(&waker);
        let polled = r.poll_take(&mut cx);
        let left = match polled {
            Poll::Ready(_) => Left::Taken,
            Poll::Pending => r.abandon(),
        };
        let delivered = producer.join().unwrap();
        match (polled, left) {
            (Poll::Ready(v), _) => {
                assert_eq!(v, 1);
                assert!(delivered);
            }
            (Poll::Pending, Left::Early) => assert!(!delivered),
            (Poll::Pending, Left::Late(v)) => {
                assert_eq!(v, 1);
                assert!(delivered);
            }
            (Poll::Pending, Left::Taken) => panic!("taken without a Ready"),
        }
    });
}

fn futures_noop() -> std::task::Waker {
    std::task::Waker::noop().clone()
}
