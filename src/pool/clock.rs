//! The saturating conversions of the pool's clocks (`Duration::MAX` means never); the
//! clocks themselves are the pool state's (`state.rs`).

use std::time::Duration;

/// Whole nanoseconds, saturating: `Duration::MAX` means "never".
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, saturating: `Duration::MAX` means "never".
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
