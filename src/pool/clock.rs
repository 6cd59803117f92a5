//! The pool's clocks: the cheap millisecond clock the hot path reads (advanced by the
//! monitor), the waiters' deadline clock (tokio's, so that paused-time tests work), and
//! the saturating conversions (`Duration::MAX` means never).

use super::*;

/// Whole nanoseconds, saturating: `Duration::MAX` means "never".
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, saturating: `Duration::MAX` means "never".
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    /// Advances the cheap clock to the real time.
    pub(crate) fn tick_clock(&self) -> u64 {
        let ms = self.started.elapsed().as_millis() as u64;
        self.clock_ms.fetch_max(ms, Ordering::Relaxed);
        ms
    }

    /// Nanoseconds on the waiters' deadline clock.
    pub(crate) fn deadline_clock(&self) -> u64 {
        nanos(self.deadline_origin.elapsed())
    }

    /// A deadline-clock reading as an instant (far in the future for "never").
    pub(crate) fn deadline_instant(&self, d: u64) -> tokio::time::Instant {
        self.deadline_origin
            .checked_add(Duration::from_nanos(d))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365))
    }

    /// The wall-clock time of a monitor-clock reading.
    pub(crate) fn wall(&self, ms: u64) -> SystemTime {
        self.created_at + Duration::from_millis(ms)
    }
}
