//! The pool core: idle connections, a FIFO queue of waiters with direct hand-off, and
//! capacity accounting. Generic over the connection type and free of I/O, so that loom
//! (`loom-tests/`) and the benchmarks drive exactly this code with in-memory connections.
//!
//! # Fairness
//!
//! Waiters are served strictly in arrival order. A connection that comes back
//! ([`Core::release`]) or is newly opened ([`OpenPermit::complete`]) goes straight into the
//! place of the oldest waiter, under the lock, before anyone else can see it. Idle
//! connections exist only while nobody waits, so a newcomer can never take a connection
//! ahead of a waiter.
//!
//! # Capacity
//!
//! `size` counts open connections *and* connections being opened. Opening starts with an
//! [`OpenPermit`], granted under the lock only while `size < max_size`, so `max_size` holds
//! under every interleaving. A permit that is dropped without [`OpenPermit::complete`]
//! gives its capacity back. A waiter is granted a permit only while fewer connections are
//! being opened than there are waiters, so a storm of callers does not become a storm of
//! connects.
//!
//! # Cancellation
//!
//! A [`Waiter`] dropped at any point leaves no trace: if it was still queued it leaves the
//! queue; if a connection had already been handed to it, that connection goes on to the
//! next waiter (or to the idle list).
//!
//! # Locks
//!
//! One lock guards the idle list, the queue and the sizes. Each waiter's place (what it is
//! handed, its waker) has a lock of its own, taken after the core's by whoever ends the
//! wait and alone by the waiter's poll: a waiter that was handed a connection takes it
//! without the core's lock, so a checkout that waits takes the core's lock twice (joining
//! the queue, and the release that serves it), not three times. A place is allocated
//! before the core's lock is taken.
//!
//! # The idle slot
//!
//! A caller's release puts its connection in the idle slot (`idle_slot.rs`) without the
//! lock while nobody waits, and a checkout looks there first: an uncontended checkout and
//! return take one locked instruction each instead of a lock and an unlock. A caller that
//! joins an empty queue takes the slot's connection, or marks the slot so that releases go
//! through the lock, to the oldest waiter, for as long as anyone waits.
//!
//! # Gauges
//!
//! Sizes are mirrored into atomics under the lock, so [`Core::gauges`] reads them without
//! locking; each value is exact, the set of them is not one consistent cut. The one
//! connection of the idle slot is read from the slot.

use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;

use crate::sync::{Arc, AtomicUsize, Mutex, MutexGuard, Ordering};
use idle_slot::IdleSlot;
pub use idle_slot::InWord;

mod idle_slot;
pub mod reply;
mod waiter;
pub use waiter::Waiter;
pub mod wheel;

/// Who holds a connection taken out of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A caller of acquire: counts as active.
    Caller,
    /// The pool itself, for maintenance (validation, retirement): counts as neither idle nor
    /// active.
    Pool,
}

/// The outcome of [`Core::try_acquire`].
#[must_use]
pub enum TryAcquire<'a, C> {
    /// An idle connection, now checked out to the caller.
    Ready(C),
    /// No idle connection: the caller is queued. If `open` is set, the caller should have a
    /// connection opened (outside its own future) and hand it to [`OpenPermit::complete`].
    Queued {
        /// The place in the queue; await it.
        waiter: Waiter<'a, C>,
        /// Capacity reserved for one new connection, if the pool may grow.
        open: Option<OpenPermit<C>>,
        /// The queue was empty: this waiter is at its head, and whoever expires waiters
        /// (see [`Core::expire`]) should learn of its deadline.
        first: bool,
    },
    /// The pool is closed.
    Closed,
}

impl<C> fmt::Debug for TryAcquire<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquire::Ready(_) => f.write_str("Ready"),
            TryAcquire::Queued { open, first, .. } => f
                .debug_struct("Queued")
                .field("open", &open.is_some())
                .field("first", first)
                .finish(),
            TryAcquire::Closed => f.write_str("Closed"),
        }
    }
}

/// Why a [`Waiter`] got no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unserved {
    /// The pool closed while it waited.
    Closed,
    /// Its deadline passed (see [`Core::expire`]).
    TimedOut,
}

/// A snapshot of the core's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gauges {
    /// Open connections plus connections being opened.
    pub size: usize,
    /// Connections being opened.
    pub opening: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections held by callers.
    pub active: usize,
    /// Connections held by the pool for maintenance.
    pub maintenance: usize,
    /// Queued waiters.
    pub waiting: usize,
    /// The most connections held by callers at once.
    pub peak_active: usize,
    /// The configured maximum.
    pub max_size: usize,
}

impl Gauges {
    /// Open connections: `size - opening`.
    pub fn open(&self) -> usize {
        self.size.saturating_sub(self.opening)
    }
}

enum SlotState<C> {
    Waiting,
    Ready(C),
    Closed,
    TimedOut,
}

/// One waiter's place: what the pool hands it, and the waker of its task. The queue and
/// the waiter each hold it; it has a lock of its own, so the waiter takes what it was
/// handed without the core's lock (one contended lock fewer for every checkout that waits).
/// Locks are taken core first, then place; the waiter's poll takes its place's alone.
struct Place<C>(Mutex<PlaceState<C>>);

struct PlaceState<C> {
    state: SlotState<C>,
    waker: Option<Waker>,
}

/// A place in the queue, with its deadline on the caller's clock (`u64::MAX`: never).
struct Queued<C> {
    place: Arc<Place<C>>,
    deadline: u64,
}

impl<C> Queued<C> {
    /// Ends this wait with `state` if it is still waiting; returns its waker to wake once
    /// the core's lock is released, or gives `state` back if the wait already ended.
    fn end(&self, state: SlotState<C>) -> Result<Option<Waker>, SlotState<C>> {
        let mut p = self.place.0.lock();
        if !matches!(p.state, SlotState::Waiting) {
            return Err(state);
        }
        p.state = state;
        Ok(p.waker.take())
    }
}

struct State<C> {
    /// Idle connections but the slot's.
    idle: VecDeque<C>,
    /// The waiters, oldest first. A place is here exactly while its state is `Waiting`
    /// (both change under the core's lock).
    queue: VecDeque<Queued<C>>,
    size: usize,
    opening: usize,
    /// Connections held by callers, and the slot's.
    active: usize,
    maintenance: usize,
    peak_active: usize,
    closed: bool,
    /// The deadline of the last caller queued (see [`Core::try_acquire_until`]).
    last_deadline: u64,
}

struct AtomicGauges {
    size: AtomicUsize,
    opening: AtomicUsize,
    idle: AtomicUsize,
    active: AtomicUsize,
    maintenance: AtomicUsize,
    waiting: AtomicUsize,
    peak_active: AtomicUsize,
}

struct Inner<C> {
    state: Mutex<State<C>>,
    slot: IdleSlot<C>,
    gauges: AtomicGauges,
    max_size: usize,
}

/// The pool core; a cheap handle (clones share one core).
pub struct Core<C>(Arc<Inner<C>>);

impl<C> Clone for Core<C> {
    fn clone(&self) -> Self {
        Core(self.0.clone())
    }
}

impl<C> fmt::Debug for Core<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("gauges", &self.gauges())
            .finish()
    }
}

/// The lock guard plus the publishing of changed sizes when it is released.
struct Locked<'a, C> {
    st: MutexGuard<'a, State<C>>,
    g: &'a AtomicGauges,
    slot: &'a IdleSlot<C>,
}

impl<C> Locked<'_, C> {
    #[inline]
    fn publish_idle_active(&mut self) {
        self.g.idle.store(self.st.idle.len(), Ordering::Relaxed);
        self.g.active.store(self.st.active, Ordering::Relaxed);
        // The slot's connection is counted in `active` while it is there.
        let active = self
            .st
            .active
            .saturating_sub(usize::from(self.slot.is_full()));
        if active > self.st.peak_active {
            self.st.peak_active = active;
            self.g.peak_active.store(active, Ordering::Relaxed);
        }
    }

    fn publish_all(&mut self) {
        if self.st.queue.is_empty() {
            self.slot.unmark_queued();
        }
        self.publish_idle_active();
        self.g.size.store(self.st.size, Ordering::Relaxed);
        self.g.opening.store(self.st.opening, Ordering::Relaxed);
        self.g
            .maintenance
            .store(self.st.maintenance, Ordering::Relaxed);
        self.g.waiting.store(self.st.queue.len(), Ordering::Relaxed);
    }

    /// Gives `conn` (not counted anywhere yet) to the oldest waiter, or to the idle list.
    /// Returns the waiter's waker to wake once the lock is released.
    fn hand_off(&mut self, mut conn: C) -> Option<Waker> {
        while let Some(q) = self.st.queue.pop_front() {
            match q.end(SlotState::Ready(conn)) {
                Ok(waker) => {
                    self.st.active += 1;
                    return waker;
                }
                Err(SlotState::Ready(c)) => conn = c,
                Err(_) => unreachable!("end gives back the state it was given"),
            }
        }
        self.st.idle.push_back(conn);
        None
    }

    /// A permit to open one connection, if waiters outnumber the connections being opened
    /// and the pool may grow.
    fn permit_for_waiters(&mut self, core: &Core<C>) -> Option<OpenPermit<C>> {
        if !self.st.closed
            && self.st.size < core.0.max_size
            && self.st.opening < self.st.queue.len()
        {
            Some(self.grant(core))
        } else {
            None
        }
    }

    fn grant(&mut self, core: &Core<C>) -> OpenPermit<C> {
        self.st.size += 1;
        self.st.opening += 1;
        OpenPermit {
            core: Some(core.clone()),
        }
    }
}

impl<C: InWord> Locked<'_, C> {
    /// An idle connection, or the pool's closing; `None` when the caller has to wait.
    #[inline]
    fn take<'a>(&mut self) -> Option<TryAcquire<'a, C>> {
        if self.st.closed {
            return Some(TryAcquire::Closed);
        }
        let Some(conn) = self.st.idle.pop_back() else {
            // Counted as held already.
            return self.slot.take().map(TryAcquire::Ready);
        };
        self.st.active += 1;
        self.publish_idle_active();
        Some(TryAcquire::Ready(conn))
    }

    /// Moves a connection taken out of the slot (counted as held there) to the idle list,
    /// for what looks at the whole list.
    fn keep_idle(&mut self, from_slot: Option<C>) {
        if let Some(c) = from_slot {
            self.st.active -= 1;
            self.st.idle.push_back(c);
        }
    }
}

impl<C> Core<C> {
    #[inline]
    fn lock(&self) -> Locked<'_, C> {
        Locked {
            st: self.0.state.lock(),
            g: &self.0.gauges,
            slot: &self.0.slot,
        }
    }

    /// The configured maximum.
    pub fn max_size(&self) -> usize {
        self.0.max_size
    }

    /// True once [`Core::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().st.closed
    }

    /// The sizes, read without the lock.
    pub fn gauges(&self) -> Gauges {
        let g = &self.0.gauges;
        let in_slot = usize::from(self.0.slot.is_full());
        Gauges {
            size: g.size.load(Ordering::Relaxed),
            opening: g.opening.load(Ordering::Relaxed),
            idle: g.idle.load(Ordering::Relaxed) + in_slot,
            active: g.active.load(Ordering::Relaxed).saturating_sub(in_slot),
            maintenance: g.maintenance.load(Ordering::Relaxed),
            waiting: g.waiting.load(Ordering::Relaxed),
            peak_active: g.peak_active.load(Ordering::Relaxed),
            max_size: self.0.max_size,
        }
    }
}

impl<C: InWord> Core<C> {
    /// A core that holds at most `max_size` connections (open or being opened).
    ///
    /// # Panics
    ///
    /// If `max_size` is 0.
    pub fn new(max_size: usize) -> Core<C> {
        assert!(max_size > 0, "max_size must be at least 1");
        Core(Arc::new(Inner {
            state: Mutex::new(State {
                idle: VecDeque::with_capacity(max_size),
                queue: VecDeque::new(),
                size: 0,
                opening: 0,
                active: 0,
                maintenance: 0,
                peak_active: 0,
                closed: false,
                last_deadline: 0,
            }),
            slot: IdleSlot::new(),
            gauges: AtomicGauges {
                size: AtomicUsize::new(0),
                opening: AtomicUsize::new(0),
                idle: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
                maintenance: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                peak_active: AtomicUsize::new(0),
            },
            max_size,
        }))
    }

    /// Takes an idle connection if one is idle, or `None` (none idle, or the core closed).
    #[inline]
    pub fn try_take_idle(&self) -> Option<C> {
        if let Some(c) = self.0.slot.take() {
            return Some(c);
        }
        if self.0.gauges.idle.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.lock().take()? {
            TryAcquire::Ready(c) => Some(c),
            _ => None,
        }
    }

    /// Takes an idle connection, or joins the queue with no deadline.
    #[inline]
    pub fn try_acquire(&self) -> TryAcquire<'_, C> {
        self.try_acquire_until(|| u64::MAX)
    }

    /// Takes an idle connection, or joins the queue until `deadline()` (on the clock the
    /// caller passes to [`Core::expire`]; asked only when the caller has to wait, so the
    /// fast path reads no clock). Every waiter's deadline must be at least the one before
    /// it (one timeout for all waiters keeps it so): the head of the queue then has the
    /// earliest.
    #[inline]
    pub fn try_acquire_until(&self, deadline: impl FnOnce() -> u64) -> TryAcquire<'_, C> {
        self.try_acquire_with(deadline, None)
    }

    /// As [`Core::try_acquire_until`], with the waker of the task that will poll the
    /// [`Waiter`] registered as it joins the queue: the waiter's first poll, in the same
    /// poll of that task, then returns `Pending` without taking the lock again (a hand-off
    /// before it wakes this waker). One lock fewer for every checkout that waits.
    #[inline]
    pub fn try_acquire_registered(
        &self,
        deadline: impl FnOnce() -> u64,
        waker: &Waker,
    ) -> TryAcquire<'_, C> {
        self.try_acquire_with(deadline, Some(waker))
    }

    #[inline]
    fn try_acquire_with(
        &self,
        deadline: impl FnOnce() -> u64,
        waker: Option<&Waker>,
    ) -> TryAcquire<'_, C> {
        if let Some(c) = self.0.slot.take() {
            return TryAcquire::Ready(c);
        }
        // The clock is read outside the lock (under contention it would lengthen every
        // other caller's wait for it): first when no connection looks idle, else only
        // when the one that looked idle was taken meanwhile.
        if self.0.gauges.idle.load(Ordering::Relaxed) > 0 {
            if let Some(r) = self.lock().take() {
                return r;
            }
        }
        let deadline = deadline();
        // Allocated before the lock is taken, so the critical section allocates nothing.
        let place = Arc::new(Place(Mutex::new(PlaceState {
            state: SlotState::Waiting,
            waker: waker.cloned(),
        })));
        let queued = place.clone();
        let mut l = self.lock();
        if let Some(r) = l.take() {
            return r;
        }
        // Read before the lock, a deadline may be earlier than that of a caller queued
        // meanwhile: it is not, so the queue's deadlines stay in order.
        let first = l.st.queue.is_empty();
        if first {
            // From now on releases go through the lock; one put in the slot meanwhile is
            // this caller's.
            if let Some(c) = l.slot.mark_queued() {
                l.slot.unmark_queued();
                return TryAcquire::Ready(c);
            }
        }
        let deadline = deadline.max(l.st.last_deadline);
        l.st.last_deadline = deadline;
        l.st.queue.push_back(Queued {
            place: queued,
            deadline,
        });
        let open = l.permit_for_waiters(self);
        l.publish_all();
        drop(l);
        TryAcquire::Queued {
            waiter: Waiter {
                core: self,
                place,
                done: false,
                registered: waker.is_some(),
            },
            open,
            first,
        }
    }

    /// Ends the waits whose deadline is at or before `now`: they leave the queue and
    /// resolve to [`Unserved::TimedOut`]. Returns the earliest deadline still queued.
    /// One timer for the whole queue, instead of one per waiter.
    pub fn expire(&self, now: u64) -> Option<u64> {
        let mut l = self.lock();
        let mut wakers = Vec::new();
        let queued = l.st.queue.len();
        let next = loop {
            let Some(q) = l.st.queue.front() else {
                break None;
            };
            if q.deadline > now {
                break Some(q.deadline);
            }
            // A waiter not polled yet has no waker: it finds out when polled.
            if let Ok(w) = q.end(SlotState::TimedOut) {
                wakers.extend(w);
            }
            l.st.queue.pop_front();
        };
        if l.st.queue.len() != queued {
            l.publish_all();
        }
        drop(l);
        for w in wakers {
            w.wake();
        }
        next
    }

    /// Returns a connection held by `holder`. It goes to the oldest waiter, or to the idle
    /// list. If the pool is closed, the connection is given back to the caller to close
    /// (and no longer counted).
    #[inline]
    pub fn release(&self, conn: C, holder: Holder) -> Option<C> {
        let conn = match holder {
            // Nobody waits and the core is open: the slot, without the lock.
            Holder::Caller => match self.0.slot.put(conn) {
                Ok(()) => return None,
                Err(conn) => conn,
            },
            Holder::Pool => conn,
        };
        let mut l = self.lock();
        match holder {
            Holder::Caller => l.st.active -= 1,
            Holder::Pool => l.st.maintenance -= 1,
        }
        if l.st.closed {
            l.st.size -= 1;
            l.publish_all();
            return Some(conn);
        }
        let had_waiters = !l.st.queue.is_empty();
        let waker = l.hand_off(conn);
        if had_waiters || holder == Holder::Pool {
            l.publish_all();
        } else {
            l.publish_idle_active();
        }
        drop(l);
        if let Some(w) = waker {
            w.wake();
        }
        None
    }

    /// A connection held by a caller passes to the pool (which resets it before it is
    /// released or discarded with [`Holder::Pool`]): it no longer counts as active.
    pub fn hand_to_pool(&self) {
        let mut l = self.lock();
        l.st.active -= 1;
        l.st.maintenance += 1;
        l.publish_all();
    }

    /// Forgets a connection held by `holder` that was closed or found broken. Returns a
    /// permit to open a replacement if waiters need one.
    pub fn discard(&self, holder: Holder) -> Option<OpenPermit<C>> {
        let mut l = self.lock();
        match holder {
            Holder::Caller => l.st.active -= 1,
            Holder::Pool => l.st.maintenance -= 1,
        }
        l.st.size -= 1;
        let permit = l.permit_for_waiters(self);
        l.publish_all();
        permit
    }

    /// A permit to open one more connection if the pool holds fewer than `target`
    /// (counting those being opened) or waiters outnumber the connections being opened.
    pub fn want_open(&self, target: usize) -> Option<OpenPermit<C>> {
        let mut l = self.lock();
        let permit = if l.st.closed {
            None
        } else if l.st.size < target.min(self.0.max_size) {
            Some(l.grant(self))
        } else {
            l.permit_for_waiters(self)
        };
        l.publish_all();
        permit
    }

    /// Takes out of the idle list every connection for which `pick` is true, for
    /// maintenance by the pool. Each must come back through [`Core::release`] or
    /// [`Core::discard`] with [`Holder::Pool`].
    pub fn take_idle(&self, mut pick: impl FnMut(&mut C) -> bool) -> Vec<C> {
        let mut l = self.lock();
        let from_slot = l.slot.take();
        l.keep_idle(from_slot);
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(l.st.idle.len());
        while let Some(mut c) = l.st.idle.pop_front() {
            if pick(&mut c) {
                taken.push(c);
            } else {
                kept.push_back(c);
            }
        }
        l.st.idle = kept;
        l.st.maintenance += taken.len();
        l.publish_all();
        taken
    }

    /// Closes the core: no more acquires, every queued waiter resolves to
    /// [`Unserved::Closed`], and
    /// the idle connections are returned for the caller to close. Connections still held
    /// come back through [`Core::release`], which then returns them. Idempotent.
    pub fn close(&self) -> Vec<C> {
        let mut l = self.lock();
        l.st.closed = true;
        let from_slot = l.slot.close();
        l.keep_idle(from_slot);
        let mut wakers = Vec::new();
        while let Some(q) = l.st.queue.pop_front() {
            if let Ok(w) = q.end(SlotState::Closed) {
                wakers.extend(w);
            }
        }
        let idle: Vec<C> = l.st.idle.drain(..).collect();
        l.st.size -= idle.len();
        l.publish_all();
        drop(l);
        for w in wakers {
            w.wake();
        }
        idle
    }
}

/// Capacity reserved for one connection being opened. Hand the new connection to
/// [`OpenPermit::complete`]; dropping the permit instead (the open failed) gives the
/// capacity back.
#[must_use = "dropping the permit gives the reserved capacity back"]
pub struct OpenPermit<C> {
    core: Option<Core<C>>,
}

impl<C> fmt::Debug for OpenPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenPermit")
    }
}

impl<C> OpenPermit<C> {
    /// Adds the newly opened connection: to the oldest waiter, or to the idle list. If the
    /// pool closed meanwhile, the connection is given back to be closed.
    pub fn complete(mut self, conn: C) -> Option<C> {
        let core = self.core.take().expect("a permit is completed once");
        let mut l = core.lock();
        l.st.opening -= 1;
        if l.st.closed {
            l.st.size -= 1;
            l.publish_all();
            return Some(conn);
        }
        let waker = l.hand_off(conn);
        l.publish_all();
        drop(l);
        if let Some(w) = waker {
            w.wake();
        }
        None
    }
}

impl<C> Drop for OpenPermit<C> {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            let mut l = core.lock();
            l.st.opening -= 1;
            l.st.size -= 1;
            l.publish_all();
        }
    }
}

#[cfg(all(test, not(wirepool_loom)))]
mod tests;
