//! The reconnection schedule: a pure function of the attempt number.

use std::time::Duration;

/// Delays between reconnection attempts: 1, 2, 4, 8, 16 s, then 16 s forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    delays: Vec<Duration>,
    jitter: bool,
}

impl Backoff {
    /// A schedule with these delays (the last repeats); with `jitter`, each delay is drawn
    /// from [delay/2, delay].
    pub(crate) fn new(delays: Vec<Duration>, jitter: bool) -> Backoff {
        let delays = if delays.is_empty() {
            vec![Duration::from_secs(1)]
        } else {
            delays
        };
        Backoff { delays, jitter }
    }

    /// The number of delays before the schedule repeats its last one (5 for the default).
    pub(crate) fn initial_attempts(&self) -> usize {
        self.delays.len()
    }

    /// The delay before attempt `attempt` (1-based) without jitter.
    pub(crate) fn nominal(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[i]
    }

    /// The delay before attempt `attempt`; `random` in [0, 1) draws the jitter.
    pub(crate) fn delay(&self, attempt: u32, random: f64) -> Duration {
        let d = self.nominal(attempt);
        if self.jitter {
            d.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
        } else {
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_schedule() {
        let b = Backoff::new([1, 2, 4, 8, 16].map(Duration::from_secs).to_vec(), false);
        let got: Vec<u64> = (1..=8).map(|n| b.delay(n, 0.3).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 16, 16, 16]);
        assert_eq!(b.initial_attempts(), 5);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let b = Backoff::new(vec![Duration::from_secs(4)], true);
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        for _ in 0..100 {
            let r = crate::random::fraction();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
