//! The leak detector's background task: owns the timing wheel, scans it every tick, logs
//! and counts potential leaks. Checkouts are registered by the guards (see
//! [`crate::observe::leak`]).

use std::sync::{Arc, Weak};

use super::Shared;
use crate::observe::leak::LeakReport;
use crate::sync::Ordering;

pub(super) fn spawn(shared: &Arc<Shared>) {
    let Some(detector) = &shared.leak else {
        return;
    };
    let tick = detector.tick();
    let weak = Arc::downgrade(shared);
    shared.runtime.spawn(run(weak, tick));
}

async fn run(weak: Weak<Shared>, tick: std::time::Duration) {
    let mut wheel = match weak.upgrade() {
        Some(s) => match &s.leak {
            Some(d) => d.wheel(s.tick_clock()),
            None => return,
        },
        None => return,
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reports = Vec::new();
    loop {
        interval.tick().await;
        let Some(s) = weak.upgrade() else { return };
        if s.closing.load(Ordering::Acquire) {
            return;
        }
        let Some(detector) = &s.leak else { return };
        detector.scan(&mut wheel, s.tick_clock(), &mut reports);
        for r in reports.drain(..) {
            s.counters.leaks.fetch_add(1, Ordering::Relaxed);
            report(&r);
        }
    }
}

fn report(r: &LeakReport) {
    let id = format!("conn_{}", r.conn_id);
    let held = (r.held.as_secs_f64() * 10.0).round() / 10.0;
    let site = r
        .site
        .map_or_else(|| "unknown".to_string(), |s| s.to_string());
    match &r.backtrace {
        Some(bt) => tracing::warn!(
            target: "wirepool::leak",
            connection_id = %id,
            held_duration_seconds = held,
            acquired_at = %site,
            stack_trace = %bt,
            "Potential connection leak detected: {id} (held {held}s, acquired at {site})"
        ),
        None => tracing::warn!(
            target: "wirepool::leak",
            connection_id = %id,
            held_duration_seconds = held,
            acquired_at = %site,
            "Potential connection leak detected: {id} (held {held}s, acquired at {site})"
        ),
    }
}
