//! A hashed timing wheel (Varghese & Lauck, "Hashed and Hierarchical Timing Wheels",
//! scheme 6): `N` slots of unsorted lists, an entry due at tick `t` lives in slot `t mod N`
//! and carries its own deadline, so deadlines beyond one turn of the wheel need no second
//! level; a slot visit keeps what is not yet due.
//!
//! Pure: time is passed in as milliseconds on any monotonic clock the caller chooses, so
//! the wheel is tested without sleeping. Insert is O(1); advancing one tick visits one
//! slot (n/N entries on average); advancing by more than a turn visits each slot once.
//!
//! There is no cancel: the leak detector's entries carry a checkout generation that is
//! checked on expiry, and entries known to be stale can simply be dropped before insertion.

use std::fmt;
use std::time::Duration;

/// A hashed timing wheel of `T` (see the module docs).
pub struct TimerWheel<T> {
    tick_ms: u64,
    slots: Vec<Vec<(u64, T)>>,
    /// The next tick to process; every entry in `slots` has a deadline tick `>= next`.
    next: u64,
    /// Entries inserted with a deadline already processed: due on the next advance.
    overdue: Vec<T>,
    len: usize,
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("tick_ms", &self.tick_ms)
            .field("slots", &self.slots.len())
            .field("next", &self.next)
            .field("len", &self.len)
            .finish()
    }
}

impl<T> TimerWheel<T> {
    /// A wheel of `slots` slots of `tick` each (at least 1 ms and 1 slot), starting at `now_ms`.
    pub fn new(tick: Duration, slots: usize, now_ms: u64) -> Self {
        let tick_ms = (tick.as_millis() as u64).max(1);
        TimerWheel {
            tick_ms,
            slots: (0..slots.max(1)).map(|_| Vec::new()).collect(),
            next: now_ms / tick_ms,
            overdue: Vec::new(),
            len: 0,
        }
    }

    /// The tick length in milliseconds.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` for `deadline_ms`. It is returned by the first [`advance`](Self::advance)
    /// whose `now_ms` is at or past the deadline, never earlier; a deadline already past is
    /// returned by the next advance.
    pub fn insert(&mut self, deadline_ms: u64, item: T) {
        // Round up: an entry fires on the first tick boundary at or after its deadline.
        let tick = deadline_ms.div_ceil(self.tick_ms);
        self.len += 1;
        if tick < self.next {
            self.overdue.push(item);
            return;
        }
        let n = self.slots.len() as u64;
        self.slots[(tick % n) as usize].push((tick, item));
    }

    /// Moves time to `now_ms` and appends every entry now due to `expired`. Time never
    /// goes back: an earlier `now_ms` than a previous call processes nothing.
    pub fn advance(&mut self, now_ms: u64, expired: &mut Vec<T>) {
        self.len -= self.overdue.len();
        expired.append(&mut self.overdue);
        let target = now_ms / self.tick_ms;
        if target < self.next {
            return;
        }
        let n = self.slots.len() as u64;
        // Past one full turn every slot is visited once; the deadline check does the rest.
        let visits = (target - self.next + 1).min(n);
        for i in 0..visits {
            let slot = &mut self.slots[((self.next + i) % n) as usize];
            let mut k = 0;
            while k < slot.len() {
                if slot[k].0 <= target {
                    let (_, item) = slot.swap_remove(k);
                    expired.push(item);
                    self.len -= 1;
                } else {
                    k += 1;
                }
            }
        }
        self.next = target + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn fires_at_the_deadline_never_before() {
        let mut w = TimerWheel::new(Duration::from_millis(10), 8, 0);
        w.insert(25, 1);
        w.insert(30, 2);
        assert!(drain(&mut w, 24).is_empty());
        assert!(
            drain(&mut w, 29).is_empty(),
            "deadline 25 rounds up to tick 3 = 30 ms"
        );
        assert_eq!(drain(&mut w, 30), vec![1, 2]);
        assert!(w.is_empty());
        assert!(drain(&mut w, 1000).is_empty());
    }

    #[test]
    fn deadlines_beyond_one_turn_wait_their_round() {
        let mut w = TimerWheel::new(Duration::from_millis(1), 4, 0);
        w.insert(2, 1);
        w.insert(6, 2); // same slot as 2, one turn later
        w.insert(10, 3); // same slot, two turns later
        assert_eq!(drain(&mut w, 2), vec![1]);
        assert!(drain(&mut w, 5).is_empty());
        assert_eq!(drain(&mut w, 6), vec![2]);
        assert_eq!(w.len(), 1);
        assert!(drain(&mut w, 9).is_empty());
        assert_eq!(drain(&mut w, 10), vec![3]);
    }

    #[test]
    fn a_long_jump_visits_every_slot_once_and_fires_everything_due() {
        let mut w = TimerWheel::new(Duration::from_millis(1), 16, 0);
        for i in 0..100u32 {
            w.insert(u64::from(i) * 7, i);
        }
        let due: Vec<u32> = (0..100u32).filter(|i| u64::from(*i) * 7 <= 350).collect();
        assert_eq!(drain(&mut w, 350), due);
        assert_eq!(w.len(), 100 - due.len());
        let rest: Vec<u32> = (0..100u32).filter(|i| u64::from(*i) * 7 > 350).collect();
        assert_eq!(drain(&mut w, 10_000), rest);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_advance_and_time_never_goes_back() {
        let mut w = TimerWheel::new(Duration::from_millis(5), 8, 1000);
        w.insert(10, 1); // long past
        assert_eq!(drain(&mut w, 1000), vec![1]);
        w.insert(1100, 2);
        assert!(drain(&mut w, 500).is_empty());
        assert_eq!(drain(&mut w, 1100), vec![2]);
    }

    #[test]
    fn matches_a_sorted_reference_on_pseudo_random_schedules() {
        // A small LCG: deterministic, no dependency.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move |m: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % m
        };
        let mut w = TimerWheel::new(Duration::from_millis(3), 7, 0);
        let mut reference: Vec<(u64, u32)> = Vec::new();
        let mut now = 0;
        for id in 0..2000u32 {
            let deadline = now + rnd(200);
            w.insert(deadline, id);
            reference.push((deadline, id));
            if rnd(4) == 0 {
                now += rnd(50);
                let mut got = drain(&mut w, now);
                let tick_end = (now / 3) * 3; // only whole ticks have passed
                let mut want: Vec<u32> = reference
                    .iter()
                    .filter(|(d, _)| d.div_ceil(3) * 3 <= tick_end)
                    .map(|(_, i)| *i)
                    .collect();
                reference.retain(|(d, _)| d.div_ceil(3) * 3 > tick_end);
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "at now = {now}");
                assert_eq!(w.len(), reference.len());
            }
        }
    }
}
