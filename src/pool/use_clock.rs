//! The clock of the use-time statistic: two readings a checkout, when it begins and when
//! it ends. `Instant::now` costs about 40 ns on this kind of virtual machine, a sixth of an
//! uncontended `acquire()` + drop; the CPU's time-stamp counter costs a few.
//!
//! The counter is used only where the kernel itself keeps time with it (x86-64 with the
//! `tsc` clocksource: the kernel has found it invariant and synchronised across CPUs), so
//! its durations are as good as `Instant`'s. Ticks become nanoseconds at a rate measured
//! against `Instant` from the first pool's creation on, refined at each monitor tick (see
//! [`calibrate`]). Anywhere else the stamps are `Instant`s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A reading: counter ticks, or nanoseconds since [`anchor`]'s instant where the counter is
/// not used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp(u64);

/// The first reading of both clocks, and whether the counter is used.
struct Anchor {
    ticks: u64,
    at: Instant,
    counter: bool,
}

/// Nanoseconds per tick in 32.32 fixed point (a multiplication and a shift per reading,
/// where a float conversion took twenty instructions); 0 until measured over [`MIN_SPAN`].
static NANOS_PER_TICK: AtomicU64 = AtomicU64::new(0);

/// Ticks in a millisecond, for comparisons without a conversion: 0 until the rate is
/// measured; a million where the stamps are nanoseconds.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Publishes a measured rate (nanoseconds per tick).
fn store_rate(rate: f64) -> u64 {
    let f = fixed(rate);
    NANOS_PER_TICK.store(f, Ordering::Relaxed);
    TICKS_PER_MS.store((1e6 / rate) as u64, Ordering::Relaxed);
    f
}

/// A rate in nanoseconds per tick as 32.32 fixed point (never 0: 0 means "not measured").
fn fixed(rate: f64) -> u64 {
    ((rate * (1u64 << 32) as f64) as u64).max(1)
}

/// The shortest span a rate is measured over: the two clocks are read a few tens of
/// nanoseconds apart, a relative error under 1e-4 over this span.
const MIN_SPAN: Duration = Duration::from_millis(1);

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let counter = counter_is_the_kernels_clock();
        if !counter {
            TICKS_PER_MS.store(1_000_000, Ordering::Relaxed);
        }
        Anchor {
            ticks: if counter { ticks() } else { 0 },
            at: Instant::now(),
            counter,
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn counter_is_the_kernels_clock() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

#[cfg(not(target_arch = "x86_64"))]
fn counter_is_the_kernels_clock() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn ticks() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64; it reads a register.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn ticks() -> u64 {
    0
}

/// The rate over the span since the anchor (`None` while it is under [`MIN_SPAN`]).
fn measure(a: &Anchor) -> Option<f64> {
    let span = a.at.elapsed();
    let t = ticks().wrapping_sub(a.ticks);
    (span >= MIN_SPAN && t > 0).then(|| span.as_nanos() as f64 / t as f64)
}

/// Refines the rate over the span since the first call; a pool's builder calls it first,
/// then its monitor at each tick.
pub(crate) fn calibrate() {
    let a = anchor();
    if a.counter {
        if let Some(rate) = measure(a) {
            store_rate(rate);
        }
    }
}

impl Stamp {
    /// Now.
    #[inline]
    pub(crate) fn now() -> Stamp {
        let a = anchor();
        if a.counter {
            Stamp(ticks())
        } else {
            Stamp(u64::try_from(a.at.elapsed().as_nanos()).unwrap_or(u64::MAX))
        }
    }

    /// Whether `earlier` is at least `ms` milliseconds before this stamp: a subtraction and
    /// a comparison, no conversion (true while the rate is not measured yet).
    #[inline]
    pub(crate) fn at_least_ms_after(self, earlier: Stamp, ms: u64) -> bool {
        let per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
        per_ms == 0 || self.0.saturating_sub(earlier.0) >= ms.saturating_mul(per_ms)
    }

    /// The time from `earlier` to this stamp (zero if the clock seems to have gone back).
    #[inline]
    pub(crate) fn since(self, earlier: Stamp) -> Duration {
        let a = anchor();
        let delta = self.0.saturating_sub(earlier.0);
        if !a.counter {
            return Duration::from_nanos(delta);
        }
        let rate = match NANOS_PER_TICK.load(Ordering::Relaxed) {
            0 => match measure(a) {
                Some(r) => store_rate(r),
                // The first millisecond: the rate so far, however short the span.
                None => {
                    let span = a.at.elapsed().as_nanos() as f64;
                    let t = ticks().wrapping_sub(a.ticks).max(1) as f64;
                    fixed(span / t)
                }
            },
            r => r,
        };
        let nanos = (u128::from(delta) * u128::from(rate)) >> 32;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_compare_in_ticks_as_in_time() {
        let _ = Stamp::now();
        std::thread::sleep(MIN_SPAN * 2);
        calibrate();
        let s = Stamp::now();
        assert!(
            !Stamp::now().at_least_ms_after(s, 1_000),
            "a second has not passed"
        );
        std::thread::sleep(Duration::from_millis(12));
        let later = Stamp::now();
        assert!(later.at_least_ms_after(s, 10), "12 ms passed");
        assert!(
            !s.at_least_ms_after(later, 1),
            "the clock does not run backwards"
        );
    }

    #[test]
    fn durations_agree_with_instant() {
        std::thread::sleep(MIN_SPAN);
        calibrate();
        for wait in [Duration::from_millis(5), Duration::from_millis(30)] {
            let s = Stamp::now();
            let i = Instant::now();
            std::thread::sleep(wait);
            let (ours, std) = (Stamp::now().since(s), i.elapsed());
            assert!(ours >= wait, "{ours:?} < {wait:?}");
            // Within 5 % (and 1 ms) of Instant's measure of the same span.
            let diff = ours.abs_diff(std);
            assert!(
                diff <= std / 20 + Duration::from_millis(1),
                "{ours:?} against {std:?}"
            );
        }
    }
}
