//! A pipelined request traced as a checked-out statement is: its span opened before it is
//! placed, the server and the wait for room recorded when it is placed on a lane, and its
//! outcome (span fields, slow-query line, statement metrics, metrics sink) when it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lane::Lane;
use crate::conn::{Runner, Target, Traced};
use crate::error::Result;
use crate::pool::Shared;
use crate::sql::Verdict;

/// One pipelined request's trace.
pub(super) struct LaneTrace {
    pub(super) traced: Traced,
    /// Where it was placed, and how long it waited for room there.
    placed: Option<(Arc<Target>, Duration)>,
}

impl LaneTrace {
    /// Opens the span of a request whose (first) statement is the one `verdict` is on.
    pub(super) fn start(shared: &Shared, verdict: &Verdict) -> LaneTrace {
        let operation = verdict.class.operation.unwrap_or("OTHER");
        LaneTrace {
            traced: shared
                .trace
                .start(&verdict.sql, operation, shared.connect.dbname(), None),
            placed: None,
        }
    }

    /// Places the request on a lane, noting the lane's server and the wait (the clock is
    /// read only when there was one).
    pub(super) async fn place(&mut self, shared: &Arc<Shared>) -> Result<Arc<Lane>> {
        let (lane, wait) = match shared.path.place_now(shared) {
            Some(r) => (r?, Duration::ZERO),
            None => {
                let waited = Instant::now();
                let lane = shared.path.place_queued(shared).await?;
                (lane, waited.elapsed())
            }
        };
        self.traced.placed(&lane.target, wait);
        self.placed = Some((lane.target.clone(), wait));
        Ok(lane)
    }

    /// Closes the span with the request's outcome (`rows`: returned or affected).
    pub(super) fn end<T>(self, shared: &Shared, sql: &str, r: &Result<T>, rows: Option<u64>) {
        let (at, wait) = match self.placed {
            Some(p) => p,
            // Refused, or no lane to be had: the first server of the settings.
            None => (Arc::new(shared.first_target()), Duration::ZERO),
        };
        shared
            .trace
            .end(self.traced, sql, r, rows, &at, Runner::Lane { wait });
    }
}
