//! The pool's monitor: one task that refills to `min_size`, runs the reconnection schedule
//! while the database is unreachable, retires old and surplus idle connections, validates
//! idle connections in the background, and keeps the lifecycle state current.
//!
//! It holds the pool only weakly between ticks, so it ends once the last handle is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

// tokio's clock, so that the schedule can be checked under paused time.
use tokio::time::Instant;

use super::{Backoff, Shared};
use crate::observe::{CloseReason, ErrorType};
use crate::pool_core::Holder;
use crate::sync::Ordering;

/// How long a background validation may take.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn spawn(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    shared.runtime.spawn(run(weak));
}

/// The reconnection schedule's progress.
#[derive(Debug, Default)]
struct Reconnect {
    attempt: u32,
    next_at: Option<Instant>,
    /// When the last probe (a connection tried for waiting callers) began.
    last_probe: Option<Instant>,
}

async fn run(weak: Weak<Shared>) {
    let mut rc = Reconnect::default();
    loop {
        let Some(s) = weak.upgrade() else { return };
        if s.closing.load(Ordering::Acquire) {
            return;
        }
        s.tick_clock();
        super::use_clock::calibrate();
        let (stats, _, state) = s.evaluate_health();
        sample(&s, &stats, state);
        refill_or_reconnect(&s, &mut rc);
        retire(&s);
        keepalive(&s);
        let mut wait = match rc.next_at {
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .min(s.cfg.monitor_interval),
            None => s.cfg.monitor_interval,
        };
        // The next probe's time, while one is due (callers wait on a database that is
        // down); never a wait of zero, which would spin.
        if let (Some(every), Some(at)) = (s.cfg.reconnect_probe_interval, rc.last_probe) {
            let due = (at + every).saturating_duration_since(Instant::now());
            if s.connects_failing() && callers_want(&s, every) && !due.is_zero() {
                wait = wait.min(due);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = s.wake_monitor.notified() => {}
            _ = s.stop_monitor.notified() => return,
        }
    }
}

/// The reconnection schedule as the status page shows it.
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // read by the status page
#[derive(Debug, Clone)]
pub(crate) struct ReconnectPlan {
    /// The attempt the schedule is at (1 for the first).
    pub(crate) attempt: u32,
    /// Its delay.
    pub(crate) delay: Duration,
    /// When it is due; `None` while it is under way.
    pub(crate) next_at: Option<std::time::SystemTime>,
    /// The database refused the pool (not a transient failure): retried at the slowest
    /// pace.
    pub(crate) refused: bool,
}

/// A sample of the last second for the status page's history, once a second.
fn sample(s: &Shared, stats: &crate::observe::PoolStatistics, state: crate::LifecycleState) {
    let now = std::time::Instant::now();
    if !s.history.due(now) {
        return;
    }
    let statements = s
        .trace
        .statements
        .as_ref()
        .map_or([0; 21], |m| m.histogram_sum());
    s.history
        .record(stats, state, statements, now, std::time::SystemTime::now());
}

fn refill_or_reconnect(s: &Arc<Shared>, rc: &mut Reconnect) {
    let failures = s.connect_failures.load(Ordering::Acquire);
    if failures == 0 {
        if rc.attempt > 0 {
            *s.reconnect_plan.lock() = None;
        }
        *rc = Reconnect::default();
        while let Some(p) = s.core.want_open(s.cfg.min_size) {
            if !s.spawn_open(p) {
                break; // one open after a loss decides first
            }
        }
        // RECOVERING ends once min_size validated connections are back.
        if s.reconnecting.load(Ordering::Acquire) && s.core.gauges().open() >= s.cfg.min_size.max(1)
        {
            s.mark_recovered();
        }
        return;
    }
    if s.core.gauges().opening > 0 {
        return; // an attempt is under way
    }
    if probe(s, rc) {
        return;
    }
    let backoff = Backoff::new(s.cfg.reconnect_delays.clone(), s.cfg.reconnect_jitter);
    match rc.next_at {
        None => {
            rc.attempt += 1;
            // A refusal that will not pass by itself (wrong password, unknown role or
            // database) is retried at the schedule's slowest pace: no tight loop against
            // the server, yet a fix (say, the password restored) is picked up unattended.
            let refusal = s
                .last_connect_error
                .lock()
                .as_ref()
                .filter(|(e, _)| !e.is_transient())
                .map(|(e, _)| super::open::error_text(e));
            let delay = match &refusal {
                Some(_) => backoff.delay(u32::MAX, crate::random::fraction()),
                None => backoff.delay(rc.attempt, crate::random::fraction()),
            };
            if let Some(why) = &refusal {
                tracing::error!(
                    target: "wirepool::reconnect",
                    attempt = rc.attempt,
                    "Database refused the pool's connection: {why}; retrying every {}s until it is accepted",
                    fmt_secs(delay)
                );
            }
            let n = backoff.initial_attempts();
            // The log counts the first attempts as "N/5"; after them the schedule
            // repeats its last delay for as long as it takes, which the line says.
            if (rc.attempt as usize) <= n {
                tracing::info!(
                    target: "wirepool::reconnect",
                    attempt = rc.attempt,
                    delay_seconds = delay.as_secs_f64(),
                    "Reconnection attempt {}/{n} (delay: {}s)",
                    rc.attempt,
                    fmt_secs(delay)
                );
            } else {
                tracing::info!(
                    target: "wirepool::reconnect",
                    attempt = rc.attempt,
                    delay_seconds = delay.as_secs_f64(),
                    "Reconnection attempt {} (every {}s)",
                    rc.attempt,
                    fmt_secs(delay)
                );
            }
            rc.next_at = Some(Instant::now().checked_add(delay).unwrap_or_else(far_future));
            *s.reconnect_plan.lock() = Some(ReconnectPlan {
                attempt: rc.attempt,
                delay,
                next_at: std::time::SystemTime::now().checked_add(delay),
                refused: refusal.is_some(),
            });
            s.reconnecting.store(true, Ordering::Release);
        }
        Some(at) if Instant::now() >= at => {
            rc.next_at = None;
            if let Some(plan) = s.reconnect_plan.lock().as_mut() {
                plan.next_at = None;
            }
            s.counters
                .reconnect_attempts
                .fetch_add(1, Ordering::Relaxed);
            if let Some(p) = s.core.want_open(s.cfg.min_size.max(1)) {
                let _ = s.spawn_open(p);
            }
        }
        Some(_) => {}
    }
}

/// While callers wait and the server is down (not refusing for another reason), tries one
/// connection every `reconnect_probe_interval`, besides the schedule: the first that
/// succeeds goes to the oldest waiter, and clears the failures, so the next tick refills at
/// once. True if a probe was started.
fn probe(s: &Arc<Shared>, rc: &mut Reconnect) -> bool {
    let Some(every) = s.cfg.reconnect_probe_interval else {
        return false;
    };
    if !callers_want(s, every) || rc.last_probe.is_some_and(|t| t.elapsed() < every) {
        return false;
    }
    let down = s
        .last_connect_error
        .lock()
        .as_ref()
        .is_some_and(|(e, _)| server_down(e));
    if !down {
        return false;
    }
    // One connection: for the waiters, or for a pool emptied by the outage whose
    // callers were refused (under fail_fast nobody waits).
    let Some(permit) = s.core.want_open(1) else {
        return false;
    };
    rc.last_probe = Some(Instant::now());
    s.counters.reconnect_probes.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(target: "wirepool::reconnect", "Probing the database for waiting callers");
    s.spawn_open(permit)
}

/// Whether callers want a connection while the database is down: one waits, or, under
/// `fail_fast` (where nobody waits), one was refused within the last probe interval.
fn callers_want(s: &Shared, every: Duration) -> bool {
    if s.core.gauges().waiting > 0 {
        return true;
    }
    match s.refused_at_ms.load(Ordering::Relaxed) {
        0 => false,
        at => (s.tick_clock() + 1).saturating_sub(at) <= super::millis(every),
    }
}

/// Whether a connect error says the server is down or starting up (refused, reset, timed
/// out, closed, `57P03`), as opposed to refusing this client (too many connections,
/// authentication, an unknown database), which no faster retry helps.
fn server_down(e: &crate::Error) -> bool {
    use crate::ErrorKind as K;
    match e.kind() {
        K::Io | K::ConnectTimeout | K::Closed => true,
        K::Db => e
            .as_db_error()
            .is_some_and(|d| d.code() == crate::error::sqlstate::CANNOT_CONNECT_NOW),
        K::AllHostsFailed => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<crate::Error>())
            .is_some_and(server_down),
        _ => false,
    }
}

/// A point no schedule reaches (about 30 years ahead), for delays too long to add.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

fn fmt_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", d.as_secs_f64())
    }
}

fn retire(s: &Arc<Shared>) {
    let now = s.now_ms();
    let mut surplus = s.core.gauges().open().saturating_sub(s.cfg.min_size);
    let idle_limit = s.cfg.idle_timeout.map(super::millis);
    let taken = s.core.take_idle(|p| {
        if p.expires_ms <= now {
            return true;
        }
        match idle_limit {
            Some(limit) if surplus > 0 && now.saturating_sub(p.last_used_ms) >= limit => {
                surplus -= 1;
                true
            }
            _ => false,
        }
    });
    for p in taken {
        let reason = if p.expires_ms <= now {
            CloseReason::MaxLifetime
        } else {
            CloseReason::IdleTimeout
        };
        s.discard(p, Holder::Pool, reason);
    }
}

/// Validates idle connections unused for `keepalive_interval`, and removes at once any
/// idle connection the server has closed or sent an error to: a database restart is
/// noticed within a monitor tick, not when a caller meets a dead connection. The check of
/// an idle connection's socket costs an atomic load unless something arrived.
///
/// Each validation measures the round trip shown as `latency_ms`; when none was measured
/// for `keepalive_interval` (a busy pool's connections are never idle that long), one idle
/// connection is validated anyway, so the figure is never older than that.
fn keepalive(s: &Arc<Shared>) {
    let Some(interval) = s.cfg.keepalive_interval else {
        return;
    };
    let now = s.now_ms();
    let limit = super::millis(interval);
    let mut want_sample = s.counters.latency_age().is_none_or(|age| age >= interval);
    for mut p in s.core.take_idle(|p| {
        if !p.conn.check_idle(true) || now.saturating_sub(p.last_used_ms.max(p.checked_ms)) >= limit
        {
            return true;
        }
        std::mem::take(&mut want_sample)
    }) {
        if p.conn.is_broken() {
            s.discard(p, Holder::Pool, CloseReason::ServerClosed);
            continue;
        }
        let s = s.clone();
        s.runtime.clone().spawn(async move {
            let t = std::time::Instant::now();
            // The pool's own statement: bounded by the keepalive's limit, not by the
            // callers' command timeout.
            let limit = p.conn.replace_command_timeout(Some(KEEPALIVE_TIMEOUT));
            let ok = matches!(
                tokio::time::timeout(KEEPALIVE_TIMEOUT, p.conn.simple_query_untraced("")).await,
                Ok(Ok(_))
            );
            p.conn.replace_command_timeout(limit);
            if ok && p.conn.server_kind_changed() {
                // It answered, and reported that its server is no longer of the kind the
                // pool asked for (a standby promoted, a primary demoted).
                s.server_kind_changed(&p.conn);
                s.discard(p, Holder::Pool, CloseReason::ValidationFailed);
            } else if ok {
                s.counters.record_latency(t.elapsed());
                p.checked_ms = s.tick_clock();
                if let Some(p) = s.core.release(p, Holder::Pool) {
                    s.close_conn(p, CloseReason::Shutdown);
                }
            } else {
                s.record_connection_error(
                    ErrorType::Validation,
                    "Connection validation failed: idle connection did not answer",
                    s.wall(p.last_used_ms),
                );
                s.discard(p, Holder::Pool, CloseReason::ValidationFailed);
            }
        });
    }
}
