//! A caller's place in the core's queue, as a future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Core, Place, SlotState, Unserved};
use crate::sync::Arc;

/// A place in the queue: a future that resolves to a connection (now held by the caller),
/// or to [`Unserved`] when the pool closes or the deadline passes.
///
/// # Cancel safety
///
/// Dropping it at any point is safe: it leaves the queue, and a connection already handed
/// to it goes on to the next waiter.
#[must_use = "a waiter does nothing unless awaited"]
pub struct Waiter<'a, C> {
    pub(super) core: &'a Core<C>,
    pub(super) place: Arc<Place<C>>,
    pub(super) done: bool,
    /// Its task's waker was registered as it joined the queue, and it was not polled yet
    /// (see [`Core::try_acquire_registered`]).
    pub(super) registered: bool,
}

impl<C> fmt::Debug for Waiter<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter").field("done", &self.done).finish()
    }
}

impl<C> Future for Waiter<'_, C> {
    type Output = Result<C, Unserved>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Waiter holds no self-references; it is Unpin.
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Unserved::Closed));
        }
        if std::mem::take(&mut this.registered) {
            // This poll's waker is the one registered: whatever happens to the place now
            // wakes this task, and the next poll looks.
            return Poll::Pending;
        }
        // The place's own lock, not the core's.
        let mut p = this.place.0.lock();
        let out = match std::mem::replace(&mut p.state, SlotState::Waiting) {
            SlotState::Waiting => {
                match &mut p.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            SlotState::Ready(conn) => Ok(conn),
            SlotState::Closed => Err(Unserved::Closed),
            SlotState::TimedOut => Err(Unserved::TimedOut),
        };
        // Out of the queue since its wait ended: `Closed` keeps a drop from looking again.
        p.state = SlotState::Closed;
        drop(p);
        this.done = true;
        Poll::Ready(out)
    }
}

impl<C> Drop for Waiter<'_, C> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut l = self.core.lock();
        let state = std::mem::replace(&mut self.place.0.lock().state, SlotState::Closed);
        let waker = match state {
            SlotState::Waiting => {
                if let Some(pos) =
                    l.st.queue
                        .iter()
                        .position(|q| Arc::ptr_eq(&q.place, &self.place))
                {
                    l.st.queue.remove(pos);
                }
                None
            }
            SlotState::Ready(conn) => {
                // Handed over but never taken: pass it on.
                l.st.active -= 1;
                if l.st.closed {
                    l.st.size -= 1;
                    l.publish_all();
                    drop(l);
                    drop(conn);
                    return;
                }
                l.hand_off(conn)
            }
            SlotState::Closed | SlotState::TimedOut => None,
        };
        l.publish_all();
        drop(l);
        if let Some(w) = waker {
            w.wake();
        }
    }
}
