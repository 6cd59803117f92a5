//! An atomic batch on the shared path (`pool.batch()`, atomic): its statements as one
//! request on one lane, Bind/Execute after Bind/Execute and one Sync after the last, so
//! that all take effect or none, with no connection checked out for the caller. It waits
//! for room, is refused, abandoned and failed as one statement of `pool.query` is (see
//! the module docs and `lane.rs`).

use std::sync::Arc;
use tracing::Instrument;

use super::lane_trace::LaneTrace;
use super::write::enqueue_batch;
use crate::conn::request::Described;
use crate::conn::{BatchItem, Outcome};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::sync::Ordering;
use crate::BatchResult;

impl Pool {
    /// Runs `items` as one atomic request on a lane (see the module docs), traced as a
    /// checked-out connection's batch is: one span under the first statement's text.
    pub(crate) async fn atomic_batch(&self, items: &[BatchItem<'_>]) -> Result<Vec<BatchResult>> {
        let first = items.first().map_or("", |i| i.sql);
        let mut trace = LaneTrace::start(&self.shared, &crate::sql::verdict(first));
        let span = trace.traced.running_span();
        let r = self
            .atomic_batch_placed(items, &mut trace)
            .instrument(span)
            .await;
        trace.end(&self.shared, first, &r, None);
        r
    }

    async fn atomic_batch_placed(
        &self,
        items: &[BatchItem<'_>],
        trace: &mut LaneTrace,
    ) -> Result<Vec<BatchResult>> {
        let shared = &self.shared;
        let path = &shared.path;
        let mut sqls: Vec<Arc<str>> = Vec::with_capacity(items.len());
        let mut reset_after = false;
        // Every statement is checked before anything is sent.
        for (k, item) in items.iter().enumerate() {
            let verdict = crate::sql::verdict(item.sql);
            path.check_allowed(&verdict)
                .map_err(|e| e.with_batch_index(k))?;
            crate::conn::check_parameter_count(item.params.len())
                .map_err(|e| e.with_batch_index(k))?;
            reset_after |= !shared.cfg.session_reset.takes_as_clean(&verdict.class);
            sqls.push(verdict.sql.clone());
        }
        // What the lane logs if the batch changed the session.
        let label: Arc<str> = match &sqls[..] {
            [one] => one.clone(),
            all => Arc::from(format!("a batch of {}: {}", all.len(), all.join("; "))),
        };
        for attempt in 0..2 {
            let mut described: Vec<Described> = Vec::with_capacity(items.len());
            for (k, sql) in sqls.iter().enumerate() {
                let d = match path.described(sql) {
                    Some(d) => d,
                    None => self
                        .describe_shared(sql)
                        .await
                        .map_err(|e| e.with_batch_index(k))?,
                };
                described.push(d);
            }
            let lane = trace.place(shared).await?;
            path.statements
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            let pending = match path.queued(
                &lane,
                enqueue_batch(
                    &lane,
                    &label,
                    &sqls,
                    reset_after,
                    items,
                    &described,
                    trace.traced.running_span(),
                ),
            ) {
                Ok(p) => p,
                // Its lane stopped taking statements between the placement and now: not
                // sent, placed again, once.
                Err(e) if attempt == 0 && path.may_place_again(shared, &e) => continue,
                Err(e) => return Err(e),
            };
            drop(lane);
            let answers = match self.answer(pending).await {
                Ok(Outcome::Batch(a)) => a,
                // Not sent: its lane stopped taking statements before it went out. Placed
                // again, once.
                Err(e) if attempt == 0 && path.may_place_again(shared, &e) => {
                    continue;
                }
                Err(e) => return Err(e),
                Ok(_) => return Err(Error::protocol("another answer to a pipelined batch")),
            };
            match answers.into_results() {
                Ok(results) => return Ok(results),
                Err(e)
                    if attempt == 0
                        && e.as_db_error().is_some_and(crate::conn::stale_statement) =>
                {
                    // A plan or types no longer the server's: nothing took effect (one
                    // Sync); described again and run once more.
                    if let Some(sql) = e.batch_index().and_then(|k| sqls.get(k)) {
                        tracing::debug!(target: "wirepool::pool", code = e.code(), "describing a batch statement again");
                        path.forget(sql);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the second attempt returns")
    }
}
