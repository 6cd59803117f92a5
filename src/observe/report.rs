//! The health report and its JSON form (the schema of `docs/operators-guide.md`).

use std::fmt::Write as _;
use std::time::SystemTime;

use super::health::{HealthStatus, LifecycleState};
use super::replication_status::ReplicationStatus;
use super::stats::{PoolStatistics, ACQUIRE_BUCKETS};

/// The pool's health, computed from cached state (no database round trip).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The three-tier status.
    pub status: HealthStatus,
    /// The lifecycle state (`state` in the JSON, beside the schema's fields: it tells
    /// RECOVERING from UNHEALTHY, and a drain from an outage).
    pub state: LifecycleState,
    /// True while a caller can be served now (see [`can_serve`](super::can_serve)): an
    /// HTTP health endpoint answers 503 when this is false, and only then. A saturated
    /// pool shows `unhealthy` in `status` and still serves.
    pub ready: bool,
    /// When the report was made.
    pub timestamp: SystemTime,
    /// `connected` while the pool has at least one open connection, else `disconnected`.
    pub database_status: &'static str,
    /// Open connections.
    pub total: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections held by callers.
    pub active: usize,
    /// Queued callers.
    pub waiting: usize,
    /// Round trip of the pool's last validation query, in milliseconds (`null` before the
    /// first).
    pub latency_ms: Option<f64>,
    /// The server (`host:port`) of the newest connection (`database.host`, beside the
    /// schema's fields).
    pub host: Option<String>,
    /// The last error, if it happened within the health error window.
    pub last_error: Option<String>,
    /// Seconds since the pool was created.
    pub uptime_seconds: f64,
    /// The replication streams the pool watches
    /// ([`Pool::watch_replication`](crate::Pool::watch_replication)); `replication` in the
    /// JSON, present only when there is one.
    pub replication: Vec<ReplicationStatus>,
}

impl HealthReport {
    pub(crate) fn new(
        s: &PoolStatistics,
        status: HealthStatus,
        state: LifecycleState,
        now: SystemTime,
        error_window: std::time::Duration,
    ) -> HealthReport {
        let recent_error = match (&s.last_error, s.last_error_time) {
            (Some(e), Some(t)) if now.duration_since(t).map_or(true, |a| a <= error_window) => {
                Some(e.clone())
            }
            _ => None,
        };
        HealthReport {
            status,
            state,
            ready: super::can_serve(s, state),
            timestamp: now,
            database_status: if s.total_connections > 0 {
                "connected"
            } else {
                "disconnected"
            },
            total: s.total_connections,
            idle: s.idle_connections,
            active: s.active_connections,
            waiting: s.waiting_requests,
            latency_ms: s.latency_ms,
            host: s.current_host.clone(),
            last_error: recent_error,
            uptime_seconds: now
                .duration_since(s.pool_created_at)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            replication: Vec::new(),
        }
    }

    /// The report as JSON, the schema plus the lifecycle state and the server:
    /// `{"status", "state", "timestamp", "database": {"status", "pool": {"total", "idle",
    /// "active", "waiting"}, "latency_ms", "last_error", "host"}, "uptime_seconds"}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        let latency = match self.latency_ms {
            Some(l) => format!("{}", round3(l)),
            None => "null".to_string(),
        };
        let last_error = match &self.last_error {
            Some(e) => json_string(e),
            None => "null".to_string(),
        };
        let host = match &self.host {
            Some(h) => json_string(h),
            None => "null".to_string(),
        };
        let _ = write!(
            out,
            "{{\"status\":\"{}\",\"state\":\"{}\",\"timestamp\":\"{}\",\"database\":{{\"status\":\"{}\",\"pool\":{{\"total\":{},\"idle\":{},\"active\":{},\"waiting\":{}}},\"latency_ms\":{},\"last_error\":{},\"host\":{}}},\"uptime_seconds\":{}}}",
            self.status.as_str(),
            self.state.as_str(),
            rfc3339_millis(self.timestamp),
            self.database_status,
            self.total,
            self.idle,
            self.active,
            self.waiting,
            latency,
            last_error,
            host,
            round3(self.uptime_seconds),
        );
        if !self.replication.is_empty() {
            out.pop();
            out.push_str(",\"replication\":");
            out.push_str(&replication_json(&self.replication));
            out.push('}');
        }
        out
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A JSON number, or `null` for a value JSON cannot carry (NaN, infinity).
pub(crate) fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{}", round3(v))
    } else {
        "null".to_string()
    }
}

fn json_opt_time(t: Option<SystemTime>) -> String {
    t.map_or_else(
        || "null".to_string(),
        |t| format!("\"{}\"", rfc3339_millis(t)),
    )
}

impl PoolStatistics {
    /// The statistics the monitoring guide names, as [`PoolStatistics::to_json`] keys them.
    pub const GUIDE_FIELDS: [&'static str; 13] = [
        "total_connections",
        "idle_connections",
        "active_connections",
        "waiting_requests",
        "avg_acquisition_time_ms",
        "peak_active_connections",
        "peak_wait_time_ms",
        "total_acquisitions",
        "total_releases",
        "pool_created_at",
        "last_health_check",
        "last_error",
        "last_error_time",
    ];

    /// The whole snapshot as one JSON object: the statistics under their schema names
    /// (`total_connections`, `avg_acquisition_time_ms`, `pool_created_at`, ...), then the
    /// extras: sizes, opening and maintenance counts, counters by close reason and error
    /// type, leaks, reconnect attempts, acquisition quantiles and the histogram (bucket
    /// upper bounds in seconds, counts not cumulative). Times are RFC 3339 in UTC.
    pub fn to_json(&self) -> String {
        let mut o = String::with_capacity(1536);
        let _ = write!(
            o,
            "{{\"total_connections\":{},\"idle_connections\":{},\"active_connections\":{},\"waiting_requests\":{},\"avg_acquisition_time_ms\":{},\"peak_active_connections\":{},\"peak_wait_time_ms\":{},\"total_acquisitions\":{},\"total_releases\":{},\"pool_created_at\":\"{}\",\"last_health_check\":{},\"last_error\":{},\"last_error_time\":{},\"leak_count\":{}",
            self.total_connections,
            self.idle_connections,
            self.active_connections,
            self.waiting_requests,
            json_f64(self.avg_acquisition_time_ms),
            self.peak_active_connections,
            json_f64(self.peak_wait_time_ms),
            self.total_acquisitions,
            self.total_releases,
            rfc3339_millis(self.pool_created_at),
            json_opt_time(self.last_health_check),
            self.last_error.as_deref().map_or_else(|| "null".to_string(), json_string),
            json_opt_time(self.last_error_time),
            self.leak_count(),
        );
        let _ = write!(
            o,
            ",\"min_size\":{},\"max_size\":{},\"opening_connections\":{},\"maintenance_connections\":{},\"encrypted_connections\":{},\"acquisitions_waited\":{},\"acquire_timeouts\":{},\"acquires_cancelled\":{},\"connections_created\":{},\"leaks_detected\":{},\"reconnect_attempts\":{},\"reconnect_probes\":{},\"listeners\":{},\"listeners_connected\":{},\"listener_reconnects\":{},\"notifications_received\":{},\"pipelined_connections\":{},\"statements_in_flight\":{},\"pipeline_depth\":{},\"pipeline_waiting\":{},\"pipelined_statements\":{},\"pipelined_session_changes\":{},\"latency_ms\":{}",
            self.min_size,
            self.max_size,
            self.opening_connections,
            self.maintenance_connections,
            self.encrypted_connections,
            self.acquisitions_waited,
            self.acquire_timeouts,
            self.acquires_cancelled,
            self.connections_created,
            self.leaks_detected,
            self.reconnect_attempts,
            self.reconnect_probes,
            self.listeners,
            self.listeners_connected,
            self.listener_reconnects,
            self.notifications_received,
            self.pipelined_connections,
            self.statements_in_flight,
            self.pipeline_depth,
            self.pipeline_waiting,
            self.pipelined_statements,
            self.pipelined_session_changes,
            self.latency_ms.map_or_else(|| "null".to_string(), json_f64),
        );
        let _ = write!(
            o,
            ",\"headroom\":{},\"idle_ratio\":{},\"connect_failures\":{},\"recovered_at\":{},\"statement_cache_hits\":{},\"statement_cache_misses\":{}",
            json_f64(super::headroom(self)),
            json_f64(super::idle_ratio(self)),
            self.connect_failures,
            json_opt_time(self.recovered_at),
            self.statement_cache_hits,
            self.statement_cache_misses,
        );
        o.push_str(",\"connections_closed\":{");
        for (i, (r, n)) in self.connections_closed.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}\"{}\":{n}", r.as_str());
        }
        o.push_str("},\"errors\":{");
        for (i, (t, n)) in self.errors.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}\"{}\":{n}", t.as_str());
        }
        o.push_str("},\"acquisition_ms\":{");
        for (i, (name, q)) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]
            .iter()
            .enumerate()
        {
            let sep = if i == 0 { "" } else { "," };
            let v = self
                .acquisition_quantile_ms(*q)
                .map_or_else(|| "null".to_string(), json_f64);
            let _ = write!(o, "{sep}\"{name}\":{v}");
        }
        o.push_str("},\"acquisition_histogram\":[");
        for (i, n) in self.acquisition_histogram.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let le = ACQUIRE_BUCKETS
                .get(i)
                .map_or_else(|| "\"+Inf\"".to_string(), |b| format!("{b}"));
            let _ = write!(o, "{sep}{{\"le\":{le},\"count\":{n}}}");
        }
        o.push(']');
        let _ = write!(
            o,
            ",\"avg_use_time_ms\":{},\"use_ms\":{{",
            json_f64(self.avg_use_time_ms)
        );
        for (i, (name, q)) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]
            .iter()
            .enumerate()
        {
            let sep = if i == 0 { "" } else { "," };
            let v = self
                .use_quantile_ms(*q)
                .map_or_else(|| "null".to_string(), json_f64);
            let _ = write!(o, "{sep}\"{name}\":{v}");
        }
        o.push_str("},\"use_histogram\":[");
        for (i, n) in self.use_histogram.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let le = ACQUIRE_BUCKETS
                .get(i)
                .map_or_else(|| "\"+Inf\"".to_string(), |b| format!("{b}"));
            let _ = write!(o, "{sep}{{\"le\":{le},\"count\":{n}}}");
        }
        o.push_str("]}");
        o
    }
}

impl ReplicationStatus {
    /// `{"slot", "state", "server_lsn", "confirmed_lsn", "lag_bytes", "reconnects"}`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"slot\":{},\"state\":\"{}\",\"server_lsn\":\"{}\",\"confirmed_lsn\":\"{}\",\"lag_bytes\":{},\"reconnects\":{}}}",
            json_string(&self.slot),
            self.state.as_str(),
            self.server_lsn,
            self.confirmed_lsn,
            self.lag_bytes,
            self.reconnects
        )
    }
}

/// The streams as a JSON array of [`ReplicationStatus::to_json`] objects.
pub(crate) fn replication_json(streams: &[ReplicationStatus]) -> String {
    let items: Vec<String> = streams.iter().map(ReplicationStatus::to_json).collect();
    format!("[{}]", items.join(","))
}

/// A JSON string literal for `s`.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `2025-10-13T14:30:00.000Z` for a time after 1970.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_760_365_800_123);
        assert_eq!(rfc3339_millis(t), "2025-10-13T14:30:00.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn statistics_json_is_valid_and_complete() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_760_365_800_000);
        let mut s = PoolStatistics::empty(now);
        s.total_acquisitions = 3;
        s.acquisition_histogram[0] = 3;
        s.avg_acquisition_time_ms = f64::NAN; // never emitted as an invalid number
        s.last_error = Some("quote \" and newline\n".into());
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).expect("valid JSON");
        for key in PoolStatistics::GUIDE_FIELDS {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["total_acquisitions"], 3);
        assert_eq!(v["pool_created_at"], "2025-10-13T14:30:00.000Z");
        assert!(v["avg_acquisition_time_ms"].is_null());
        assert_eq!(v["last_error"], "quote \" and newline\n");
        assert_eq!(v["connections_closed"]["broken"], 0);
        assert_eq!(v["errors"]["connect"], 0);
        assert_eq!(v["acquisition_histogram"].as_array().unwrap().len(), 21);
        assert_eq!(v["acquisition_histogram"][20]["le"], "+Inf");
        assert_eq!(v["acquisition_histogram"][0]["count"], 3);
        assert!(v["acquisition_ms"]["p99"].is_number());
    }

    #[test]
    fn json_has_the_guides_shape() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_760_365_800_000);
        let mut s = PoolStatistics::empty(now - Duration::from_millis(3_600_500));
        s.total_connections = 5;
        s.idle_connections = 4;
        s.active_connections = 1;
        s.latency_ms = Some(2.3);
        let r = HealthReport::new(
            &s,
            HealthStatus::Healthy,
            LifecycleState::Healthy,
            now,
            Duration::from_secs(60),
        );
        assert_eq!(
            r.to_json(),
            r#"{"status":"healthy","state":"HEALTHY","timestamp":"2025-10-13T14:30:00.000Z","database":{"status":"connected","pool":{"total":5,"idle":4,"active":1,"waiting":0},"latency_ms":2.3,"last_error":null,"host":null},"uptime_seconds":3600.5}"#
        );
        s.last_error = Some("Database connection refused: \"x\"\n".into());
        s.last_error_time = Some(now);
        let r = HealthReport::new(
            &s,
            HealthStatus::Degraded,
            LifecycleState::Degraded,
            now,
            Duration::from_secs(60),
        );
        assert!(r
            .to_json()
            .contains(r#""last_error":"Database connection refused: \"x\"\n""#));
    }
}
