//! The idle slot: one idle connection passed from a caller's release to the next checkout
//! without the core's lock, one locked instruction each way instead of a lock and an
//! unlock.
//!
//! One atomic word is the slot's whole state: empty, a connection, "callers are queued" or
//! "closed". A release puts its connection in only while the slot is empty, so never while
//! a caller waits (the oldest waiter gets it, under the lock) or once the core closed. The
//! last two states change only under the core's lock; a connection in the slot still counts
//! as held by a caller in the locked sizes, and [`Core::gauges`](super::Core::gauges) counts
//! it as idle.

use std::marker::PhantomData;

use crate::sync::{AtomicUsize, Ordering};

/// A connection type the idle slot can hold in one word.
///
/// # Safety
///
/// [`InWord::into_word`] gives a word of 3 or more, and [`InWord::from_word`] the value
/// back from it (the slot calls it once per word).
pub unsafe trait InWord: Sized {
    /// The word that stands for `self`, at least 3.
    fn into_word(self) -> usize;
    /// The value `w` stands for.
    ///
    /// # Safety
    ///
    /// `w` came from [`InWord::into_word`] and is taken back once.
    unsafe fn from_word(w: usize) -> Self;
}

// SAFETY: a heap address of a value of non-zero size is never 0, 1 or 2, and the box is
// rebuilt once from the pointer it gave.
unsafe impl<T> InWord for Box<T> {
    #[inline]
    fn into_word(self) -> usize {
        const {
            assert!(
                std::mem::size_of::<T>() != 0,
                "a zero-sized box has no address"
            )
        };
        Box::into_raw(self) as usize
    }
    #[inline]
    unsafe fn from_word(w: usize) -> Self {
        // SAFETY: the caller's promise: `w` is a pointer `into_word` gave.
        unsafe { Box::from_raw(w as *mut T) }
    }
}

// SAFETY: 3 plus the value, which fits (a u32 in a word of 64 or 32 bits is checked).
unsafe impl InWord for u32 {
    fn into_word(self) -> usize {
        usize::try_from(self)
            .ok()
            .and_then(|v| v.checked_add(3))
            .expect("a u32 connection number fits a word")
    }
    unsafe fn from_word(w: usize) -> Self {
        (w - 3) as u32
    }
}

// SAFETY: 3 plus the value; the largest three values are refused.
unsafe impl InWord for usize {
    fn into_word(self) -> usize {
        self.checked_add(3)
            .expect("a usize connection number below usize::MAX - 2")
    }
    unsafe fn from_word(w: usize) -> Self {
        w - 3
    }
}

const EMPTY: usize = 0;
const QUEUED: usize = 1;
const CLOSED: usize = 2;

/// The slot (see the module's documentation).
pub(super) struct IdleSlot<C> {
    word: AtomicUsize,
    /// Drops the connection a word stands for (the slot's own drop, with no bound on `C`).
    drop_word: unsafe fn(usize),
    _conn: PhantomData<C>,
}

// SAFETY: the slot passes a `C` between threads whole, as a mutex does.
unsafe impl<C: Send> Sync for IdleSlot<C> {}

unsafe fn drop_word<C: InWord>(w: usize) {
    // SAFETY: the slot drops a word it holds, once.
    drop(unsafe { C::from_word(w) });
}

impl<C> IdleSlot<C> {
    /// True while a connection is in the slot.
    #[inline]
    pub(super) fn is_full(&self) -> bool {
        self.word.load(Ordering::Relaxed) > CLOSED
    }

    /// Under the core's lock, once its queue is empty: a release may use the slot again.
    #[inline]
    pub(super) fn unmark_queued(&self) {
        // Nobody else changes the word while it says "queued": a release or a checkout
        // acts only on an empty or a full slot, and the rest is done under the lock.
        if self.word.load(Ordering::Relaxed) == QUEUED {
            self.word.store(EMPTY, Ordering::Release);
        }
    }
}

impl<C: InWord> IdleSlot<C> {
    pub(super) fn new() -> Self {
        IdleSlot {
            word: AtomicUsize::new(EMPTY),
            drop_word: drop_word::<C>,
            _conn: PhantomData,
        }
    }

    /// Takes the connection in the slot, if there is one.
    #[inline]
    pub(super) fn take(&self) -> Option<C> {
        let w = self.word.load(Ordering::Relaxed);
        if w <= CLOSED {
            return None;
        }
        self.word
            .compare_exchange(w, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            // SAFETY: the exchange took the word out of the slot: this is its one taker.
            .map(|w| unsafe { C::from_word(w) })
    }

    /// Puts `conn` in the slot if it is empty (nobody queued, not closed, no connection
    /// there); else gives it back.
    #[inline]
    pub(super) fn put(&self, conn: C) -> Result<(), C> {
        // A load first: while callers wait, a failed exchange would cost each release a
        // locked instruction for nothing.
        if self.word.load(Ordering::Relaxed) != EMPTY {
            return Err(conn);
        }
        let w = conn.into_word();
        match self
            .word
            .compare_exchange(EMPTY, w, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            // SAFETY: the word was not stored: it is still this caller's.
            Err(_) => Err(unsafe { C::from_word(w) }),
        }
    }

    /// Under the core's lock, as its queue gets its first waiter: releases go through the
    /// lock from now on. Returns the connection the slot held, if any.
    pub(super) fn mark_queued(&self) -> Option<C> {
        self.replace(QUEUED)
    }

    /// Under the core's lock, as it closes: nothing goes into the slot again. Returns the
    /// connection it held, if any.
    pub(super) fn close(&self) -> Option<C> {
        self.replace(CLOSED)
    }

    fn replace(&self, state: usize) -> Option<C> {
        let w = self.word.swap(state, Ordering::AcqRel);
        // SAFETY: the swap took the word out of the slot: this is its one taker.
        (w > CLOSED).then(|| unsafe { C::from_word(w) })
    }
}

impl<C> Drop for IdleSlot<C> {
    fn drop(&mut self) {
        let w = self.word.load(Ordering::Relaxed);
        if w > CLOSED {
            // SAFETY: the slot held this word; nothing else can take it now.
            unsafe { (self.drop_word)(w) }
        }
    }
}
