//! The status page's data (`GET /status/data` of [`crate::http`]): the pool now, its last
//! 15 minutes, the leaks in progress, the last errors, the reconnection schedule and the
//! statement table, as one JSON object. Built only when asked for.
//!
//! Nothing in it is a secret or a parameter value: errors carry the health report's
//! messages, statements their normalised text (constants as `?`).

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use super::Pool;
use crate::observe::health::classify_with_cause;
use crate::observe::history::Sample;
use crate::observe::report::{json_f64, json_string, replication_json, rfc3339_millis};
use crate::observe::statement_metrics::StatementRow;

/// A JSON array of `f` over the samples.
fn column(out: &mut String, name: &str, samples: &[Sample], f: impl Fn(&Sample) -> String) {
    let _ = write!(out, "\"{name}\":[");
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&f(s));
    }
    out.push(']');
}

fn history(out: &mut String, samples: &[Sample]) {
    out.push('{');
    column(out, "t", samples, |s| s.at_ms.to_string());
    out.push(',');
    column(out, "state", samples, |s| {
        format!("\"{}\"", s.state.as_str())
    });
    for (name, f) in [
        ("total", (|s: &Sample| s.total) as fn(&Sample) -> u32),
        ("idle", |s| s.idle),
        ("active", |s| s.active),
        ("waiting", |s| s.waiting),
        ("in_flight", |s| s.in_flight),
    ] {
        out.push(',');
        column(out, name, samples, |s| f(s).to_string());
    }
    out.push(',');
    column(out, "pipelined_per_s", samples, |s| {
        json_f64(f64::from(s.pipelined_per_s))
    });
    for (i, q) in ["p50", "p95", "p99"].iter().enumerate() {
        out.push(',');
        column(out, &format!("acquire_{q}_ms"), samples, |s| {
            json_f64(f64::from(s.acquire_ms[i]))
        });
        out.push(',');
        column(out, &format!("statement_{q}_ms"), samples, |s| {
            json_f64(f64::from(s.statement_ms[i]))
        });
    }
    out.push('}');
}

fn statements(out: &mut String, rows: &[StatementRow]) {
    out.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let c = &r.counts;
        let mean_ms = if c.calls > 0 {
            c.duration_seconds * 1e3 / c.calls as f64
        } else {
            f64::NAN
        };
        let p95 = crate::observe::stats::quantile_ms(&c.histogram, 0.95).unwrap_or(f64::NAN);
        let mut codes = String::from("{");
        for (j, (code, n)) in c.errors.iter().enumerate() {
            let sep = if j > 0 { "," } else { "" };
            let _ = write!(codes, "{sep}{}:{n}", json_string(code));
        }
        codes.push('}');
        let _ = write!(
            out,
            "{{\"statement\":{},\"calls\":{},\"errors\":{},\"error_codes\":{codes},\"rows\":{},\"total_s\":{},\"mean_ms\":{},\"p95_ms\":{},\"wait_s\":{}}}",
            json_string(&r.statement),
            c.calls,
            c.error_count(),
            c.rows,
            json_f64(c.duration_seconds),
            json_f64(mean_ms),
            json_f64(p95),
            json_f64(c.wait_seconds),
        );
    }
    out.push(']');
}

impl Pool {
    /// The status page's data as JSON (see the module docs and `docs/operators-guide.md`).
    pub(crate) fn status_json(&self) -> String {
        let s = &self.shared;
        let (stats, _, state) = s.evaluate_health();
        let wall = SystemTime::now();
        let (status, cause) = classify_with_cause(&stats, state, &s.cfg.health, wall);
        let now_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut out = String::with_capacity(16 * 1024);
        let _ = write!(
            out,
            "{{\"now\":{now_ms},\"status\":\"{}\",\"state\":\"{}\",\"ready\":{},\"reason\":{},",
            status.as_str(),
            state.as_str(),
            crate::observe::can_serve(&stats, state),
            json_string(&cause.describe(state, &s.cfg.health)),
        );
        let _ = write!(
            out,
            "\"host\":{},\"uptime_s\":{},\"latency_ms\":{},",
            stats
                .current_host
                .as_deref()
                .map_or_else(|| "null".to_string(), json_string),
            json_f64(
                wall.duration_since(stats.pool_created_at)
                    .map_or(0.0, |d| d.as_secs_f64())
            ),
            stats
                .latency_ms
                .map_or_else(|| "null".to_string(), json_f64),
        );
        let _ = write!(
            out,
            "\"pool\":{{\"total\":{},\"idle\":{},\"active\":{},\"waiting\":{},\"opening\":{},\"min_size\":{},\"max_size\":{},\"pipelined_connections\":{},\"in_flight\":{},\"pipeline_depth\":{},\"acquisitions\":{},\"acquire_timeouts\":{},\"leaks_detected\":{},\"reconnect_attempts\":{},\"pipelined_statements\":{}}},",
            stats.total_connections,
            stats.idle_connections,
            stats.active_connections,
            stats.waiting_requests,
            stats.opening_connections,
            stats.min_size,
            stats.max_size,
            stats.pipelined_connections,
            stats.statements_in_flight,
            stats.pipeline_depth,
            stats.total_acquisitions,
            stats.acquire_timeouts,
            stats.leaks_detected,
            stats.reconnect_attempts,
            stats.pipelined_statements,
        );
        out.push_str("\"history\":");
        history(&mut out, &s.history.samples());
        out.push_str(",\"leaks\":[");
        let now = Instant::now();
        for (i, l) in s.open_leaks.lock().iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let held = l
                .since
                .map_or(f64::NAN, |t| now.duration_since(t).as_secs_f64());
            let site = l
                .site
                .map_or_else(|| "unknown".to_string(), |x| x.to_string());
            let _ = write!(
                out,
                "{sep}{{\"connection\":\"conn_{}\",\"acquired_at\":{},\"held_s\":{}}}",
                l.conn_id,
                json_string(&site),
                json_f64(held),
            );
        }
        out.push_str("],\"errors\":[");
        // Newest first; a run of the same error (every attempt of an outage) is one entry
        // with its count and the time of its first.
        let recent = s.counters.recent_errors();
        let mut runs: Vec<(&crate::observe::counters::RecentError, SystemTime, usize)> = Vec::new();
        for e in recent.iter().rev() {
            match runs.last_mut() {
                Some((newest, first, n))
                    if newest.kind == e.kind && newest.message == e.message =>
                {
                    *first = e.at;
                    *n += 1;
                }
                _ => runs.push((e, e.at, 1)),
            }
        }
        for (i, (e, first, n)) in runs.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(
                out,
                "{sep}{{\"at\":\"{}\",\"first_at\":\"{}\",\"count\":{n},\"type\":\"{}\",\"message\":{}}}",
                rfc3339_millis(e.at),
                rfc3339_millis(*first),
                e.kind.as_str(),
                json_string(&e.message),
            );
        }
        out.push_str("],\"reconnect\":");
        match s.reconnect_plan.lock().clone() {
            None => out.push_str("null"),
            Some(p) => {
                let schedule: Vec<String> = s
                    .cfg
                    .reconnect_delays
                    .iter()
                    .map(|d| json_f64(d.as_secs_f64()))
                    .collect();
                let (at, next_in) = match p.next_at {
                    Some(t) => (
                        format!("\"{}\"", rfc3339_millis(t)),
                        json_f64(t.duration_since(wall).map_or(0.0, |d| d.as_secs_f64())),
                    ),
                    None => ("null".to_string(), "0".to_string()),
                };
                let _ = write!(
                    out,
                    "{{\"attempt\":{},\"delay_s\":{},\"next_at\":{at},\"next_in_s\":{next_in},\"refused\":{},\"schedule_s\":[{}],\"failures\":{}}}",
                    p.attempt,
                    json_f64(p.delay.as_secs_f64()),
                    p.refused,
                    schedule.join(","),
                    stats.connect_failures,
                );
            }
        }
        out.push_str(",\"statements\":");
        statements(&mut out, &self.statement_metrics());
        out.push_str(",\"replication\":");
        out.push_str(&replication_json(&self.replication_status()));
        let _ = write!(
            out,
            ",\"statement_metrics\":{}}}",
            s.trace.statements.is_some()
        );
        out
    }
}
