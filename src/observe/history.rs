//! The pool's last 15 minutes, one sample a second, for the status page: the connection
//! gauges, the lifecycle state, and the acquisition and statement latency percentiles of
//! each second (from the differences of the cumulative histograms).
//!
//! The monitor task takes the samples from the statistics it computes anyway; nothing on
//! the acquire or query path writes here. 900 samples of 64 bytes: under 60 KiB a pool.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use super::health::LifecycleState;
use super::stats::{quantile_ms, PoolStatistics};
use parking_lot::Mutex;

/// How far back the history goes.
pub(crate) const SPAN: Duration = Duration::from_secs(15 * 60);

/// The time between samples.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// One second of the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Unix milliseconds.
    pub(crate) at_ms: u64,
    pub(crate) state: LifecycleState,
    pub(crate) total: u32,
    pub(crate) idle: u32,
    pub(crate) active: u32,
    pub(crate) waiting: u32,
    /// Pipelined statements sent and not yet answered.
    pub(crate) in_flight: u32,
    /// Pipelined statements run per second over the interval.
    pub(crate) pipelined_per_s: f32,
    /// Acquisition time p50, p95, p99 over the interval, in ms (`NaN`: none).
    pub(crate) acquire_ms: [f32; 3],
    /// Statement latency p50, p95, p99 over the interval, in ms (`NaN`: none, or
    /// statement metrics off).
    pub(crate) statement_ms: [f32; 3],
}

/// The percentiles each sample keeps.
pub(crate) const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

#[derive(Debug)]
struct Previous {
    at: Instant,
    acquire: [u64; 21],
    statements: [u64; 21],
    pipelined: u64,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<Sample>,
    previous: Option<Previous>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    ring: Mutex<Ring>,
}

fn delta(now: &[u64; 21], before: &[u64; 21]) -> [u64; 21] {
    std::array::from_fn(|i| now[i].saturating_sub(before[i]))
}

fn percentiles(h: &[u64; 21]) -> [f32; 3] {
    QUANTILES.map(|q| quantile_ms(h, q).map_or(f32::NAN, |v| v as f32))
}

impl History {
    /// True when a sample is due at `now` (a second since the last).
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.ring
            .lock()
            .previous
            .as_ref()
            .is_none_or(|p| now.duration_since(p.at) >= EVERY)
    }

    /// Takes a sample of `s` in `state`; `statements` is the statement latency histogram
    /// summed over every statement (cumulative), zero when statement metrics are off.
    pub(crate) fn record(
        &self,
        s: &PoolStatistics,
        state: LifecycleState,
        statements: [u64; 21],
        now: Instant,
        wall: SystemTime,
    ) {
        let mut ring = self.ring.lock();
        let (acquire_ms, statement_ms, pipelined_per_s) = match &ring.previous {
            Some(p) => {
                let secs = now.duration_since(p.at).as_secs_f64().max(1e-3);
                (
                    percentiles(&delta(&s.acquisition_histogram, &p.acquire)),
                    percentiles(&delta(&statements, &p.statements)),
                    (s.pipelined_statements.saturating_sub(p.pipelined) as f64 / secs) as f32,
                )
            }
            None => ([f32::NAN; 3], [f32::NAN; 3], 0.0),
        };
        ring.previous = Some(Previous {
            at: now,
            acquire: s.acquisition_histogram,
            statements,
            pipelined: s.pipelined_statements,
        });
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let sample = Sample {
            at_ms: wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            state,
            total: n(s.total_connections),
            idle: n(s.idle_connections),
            active: n(s.active_connections),
            waiting: n(s.waiting_requests),
            in_flight: n(s.statements_in_flight),
            pipelined_per_s,
            acquire_ms,
            statement_ms,
        };
        let keep = (SPAN.as_secs() / EVERY.as_secs()) as usize;
        if ring.samples.len() == keep {
            ring.samples.pop_front();
        }
        ring.samples.push_back(sample);
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // read by the status page
    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.ring.lock().samples.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_per_interval_and_the_ring_is_bounded() {
        let h = History::default();
        let mut s = PoolStatistics::empty(SystemTime::UNIX_EPOCH);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        // 100 fast acquisitions before the first sample: not part of any interval.
        s.acquisition_histogram[0] = 100;
        h.record(&s, LifecycleState::Healthy, [0; 21], t0, wall);
        assert!(h.samples()[0].acquire_ms[0].is_nan());
        // Then 10 acquisitions in a slow bucket and 50 pipelined statements in 1 s.
        s.acquisition_histogram[10] = 10;
        s.pipelined_statements = 50;
        s.total_connections = 3;
        let t1 = t0 + EVERY;
        assert!(!h.due(t0 + EVERY / 2));
        assert!(h.due(t1));
        h.record(&s, LifecycleState::Degraded, [0; 21], t1, wall);
        let last = *h.samples().last().unwrap();
        let lo = crate::observe::ACQUIRE_BUCKETS[9] * 1e3;
        assert!(last.acquire_ms[0] as f64 >= lo, "{:?}", last.acquire_ms);
        assert_eq!(last.pipelined_per_s, 50.0);
        assert_eq!(last.total, 3);
        assert_eq!(last.state, LifecycleState::Degraded);
        assert!(last.statement_ms[0].is_nan());
        for i in 0..1000u32 {
            h.record(
                &s,
                LifecycleState::Healthy,
                [0; 21],
                t1 + EVERY * (i + 1),
                wall,
            );
        }
        assert_eq!(h.samples().len(), 900);
    }
}
