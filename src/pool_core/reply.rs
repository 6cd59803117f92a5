//! A one-shot answer between a caller and the task that reads it off a pipelined
//! connection, which the caller may give up on at any point (its future dropped, its
//! command timeout). Free of I/O, so loom (`loom-tests/`) checks the race between an
//! answer arriving and its caller leaving.
//!
//! The producer learns of the abandonment ([`Reply::is_abandoned`]) and discards the
//! answer when it comes ([`Reply::complete`] returns false); an answer is never given to a
//! caller that left, and a caller that stays gets exactly its own.

use std::fmt;
use std::task::{Context, Poll, Waker};

use crate::sync::Mutex;

enum State<T> {
    /// No answer yet; the caller's waker, once it polled.
    Waiting(Option<Waker>),
    Ready(T),
    /// The caller left before its answer.
    Abandoned,
    /// The caller took its answer.
    Taken,
}

/// The cell an answer goes into.
pub struct Reply<T> {
    state: Mutex<State<T>>,
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match &*self.state.lock() {
            State::Waiting(_) => "waiting",
            State::Ready(_) => "ready",
            State::Abandoned => "abandoned",
            State::Taken => "taken",
        };
        f.debug_tuple("Reply").field(&s).finish()
    }
}

impl<T> Default for Reply<T> {
    fn default() -> Self {
        Reply::new()
    }
}

impl<T> Reply<T> {
    /// An empty cell.
    pub fn new() -> Self {
        Reply {
            state: Mutex::new(State::Waiting(None)),
        }
    }

    /// Puts the answer in and wakes the caller. False (and `value` dropped) if the caller
    /// left, or an answer was already given.
    pub fn complete(&self, value: T) -> bool {
        let waker = {
            let mut s = self.state.lock();
            match &mut *s {
                State::Waiting(w) => {
                    let w = w.take();
                    *s = State::Ready(value);
                    w
                }
                _ => return false,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// True once the caller left without its answer.
    pub fn is_abandoned(&self) -> bool {
        matches!(&*self.state.lock(), State::Abandoned)
    }

    /// The answer, or `Pending` with the task registered for it.
    ///
    /// # Panics
    ///
    /// If polled again after it returned `Ready`, or after [`Reply::abandon`].
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.lock();
        match std::mem::replace(&mut *s, State::Taken) {
            State::Ready(v) => Poll::Ready(v),
            State::Waiting(w) => {
                let w = match w {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *s = State::Waiting(Some(w));
                Poll::Pending
            }
            State::Abandoned | State::Taken => panic!("a reply is taken once"),
        }
    }

    /// The caller leaves. [`Left::Early`] if its answer had not come yet (the producer
    /// will discard it); [`Left::Late`] with the answer if it had come and was not taken
    /// (for the caller to give back what it holds); [`Left::Taken`] if it was taken.
    pub fn abandon(&self) -> Left<T> {
        let old = {
            let mut s = self.state.lock();
            match &*s {
                State::Waiting(_) | State::Ready(_) => std::mem::replace(&mut *s, State::Abandoned),
                State::Abandoned | State::Taken => return Left::Taken,
            }
        };
        match old {
            State::Ready(v) => Left::Late(v),
            _ => Left::Early,
        }
    }
}

/// What [`Reply::abandon`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Left<T> {
    /// No answer yet.
    Early,
    /// The answer had come.
    Late(T),
    /// The answer was taken (or the reply abandoned before).
    Taken,
}

#[cfg(all(test, not(wirepool_loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn answer_then_take() {
        let r = Reply::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(r.poll_take(&mut cx).is_pending());
        assert!(r.complete(7));
        assert_eq!(r.poll_take(&mut cx), Poll::Ready(7));
        assert_eq!(r.abandon(), Left::Taken, "taken: nothing to abandon");
    }

    #[test]
    fn an_abandoned_reply_discards_its_answer() {
        let r = Reply::new();
        assert_eq!(r.abandon(), Left::Early);
        assert!(r.is_abandoned());
        assert!(!r.complete(1));
        let r = Reply::new();
        assert!(r.complete(1));
        assert_eq!(r.abandon(), Left::Late(1), "the answer had come");
        assert!(!r.complete(2));
    }
}
