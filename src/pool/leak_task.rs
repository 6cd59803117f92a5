//! The leak detector's background task: owns the timing wheel, scans it every tick, logs
//! and counts potential leaks. Checkouts are registered by the guards (see
//! [`crate::observe::leak`]), which log a reported checkout's return with
//! [`returned`].

use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::Duration;

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

async fn run(weak: Weak<Shared>, tick: Duration) {
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
            s.open_leaks.lock().push(OpenLeak {
                conn_id: r.conn_id,
                site: r.site,
                since: std::time::Instant::now().checked_sub(r.held),
            });
        }
    }
}

/// Seconds to one decimal, as the leak report writes them (`held_duration_seconds: 45.2`).
fn tenths(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

fn report(r: &LeakReport) {
    let id = format!("conn_{}", r.conn_id);
    let held = tenths(r.held);
    let site = r
        .site
        .map_or_else(|| "unknown".to_string(), |s| s.to_string());
    tracing::warn!(
        target: "wirepool::leak",
        connection_id = %id,
        held_duration_seconds = held,
        acquired_at = %site,
        stack_trace = r.backtrace.as_ref().map(tracing::field::display),
        "Potential connection leak detected: {id} (held {held}s, acquired at {site})"
    );
}

/// A reported checkout that has not come back (the status page lists them).
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // read by the status page
#[derive(Debug, Clone)]
pub(crate) struct OpenLeak {
    pub(crate) conn_id: u64,
    pub(crate) site: Option<&'static Location<'static>>,
    /// When it was checked out.
    pub(crate) since: Option<std::time::Instant>,
}

/// A reported checkout came back: no longer open; logged unless the pool took it over
/// (a lane of the shared path).
pub(super) fn returned(s: &Shared, conn_id: u64, held: Duration, site: &Location<'_>, log: bool) {
    s.open_leaks.lock().retain(|l| l.conn_id != conn_id);
    if log {
        log_returned(conn_id, held, site);
    }
}

/// The INFO line when a reported checkout finally comes back.
fn log_returned(conn_id: u64, held: Duration, site: &Location<'_>) {
    let held = tenths(held);
    tracing::info!(
        target: "wirepool::leak",
        connection_id = %format_args!("conn_{conn_id}"),
        held_duration_seconds = held,
        acquired_at = %site,
        "Previously reported connection leak returned: conn_{conn_id} (held {held}s, acquired at {site})"
    );
}
