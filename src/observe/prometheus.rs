//! Prometheus text exposition (format 0.0.4) and OpenMetrics 1.0 text of a statistics
//! snapshot.
//!
//! Names follow Prometheus conventions: counters end in `_total`, durations are in seconds,
//! gauges have no `_total`. Where a conventional dashboard name breaks a rule the conventional
//! name is used; the operator's guide (`docs/operators-guide.md`) lists the mapping (the
//! gauge `connections_total` is exported as `connections`).
//!
//! The two formats carry the same samples. OpenMetrics names a counter family without its
//! `_total` suffix in `# TYPE`/`# HELP` and ends with `# EOF`.

use std::fmt::Write as _;

use super::health::{headroom, idle_ratio, HealthStatus, LifecycleState};
use super::statement_metrics::StatementRow;
use super::stats::{PoolStatistics, ACQUIRE_BUCKETS};

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an HTTP `Accept` header asks for: OpenMetrics if it names
    /// `application/openmetrics-text`, else Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

/// A label value with `\\`, `"` and newlines escaped, as the text format requires.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders `s` in Prometheus text format with metric names starting `prefix_`.
pub fn render(
    s: &PoolStatistics,
    status: HealthStatus,
    state: LifecycleState,
    uptime_seconds: f64,
    prefix: &str,
) -> String {
    render_as(Format::Prometheus, s, status, state, uptime_seconds, prefix)
}

/// Renders `s` in `format` with metric names starting `prefix_`.
pub fn render_as(
    format: Format,
    s: &PoolStatistics,
    status: HealthStatus,
    state: LifecycleState,
    uptime_seconds: f64,
    prefix: &str,
) -> String {
    render_with_statements(format, s, status, state, uptime_seconds, prefix, &[])
}

/// As [`render_as`], with the statement metrics' families: `statement_calls_total`,
/// `statement_errors_total` (by `sqlstate`), `statement_duration_seconds` (a histogram),
/// `statement_rows_total` and `statement_wait_seconds_total`, each by `statement`.
pub fn render_with_statements(
    format: Format,
    s: &PoolStatistics,
    status: HealthStatus,
    state: LifecycleState,
    uptime_seconds: f64,
    prefix: &str,
    statements: &[StatementRow],
) -> String {
    render_all(
        format,
        s,
        (status, state),
        uptime_seconds,
        prefix,
        statements,
        &[],
    )
}

/// As [`render_with_statements`], with the replication streams the pool watches.
pub(crate) fn render_all(
    format: Format,
    s: &PoolStatistics,
    (status, state): (HealthStatus, LifecycleState),
    uptime_seconds: f64,
    prefix: &str,
    statements: &[StatementRow],
    replication: &[super::replication_status::ReplicationStatus],
) -> String {
    let om = format == Format::OpenMetrics;
    // The family name in # TYPE / # HELP of a counter.
    let family = |name: &str| -> String {
        if om {
            name.to_string()
        } else {
            format!("{name}_total")
        }
    };
    let mut o = String::with_capacity(4096);
    let p = prefix;
    let gauge = |o: &mut String, name: &str, help: &str, v: f64| {
        let _ = writeln!(
            o,
            "# HELP {p}_{name} {help}\n# TYPE {p}_{name} gauge\n{p}_{name} {v}"
        );
    };
    gauge(
        &mut o,
        "connections",
        "Open connections in the pool (idle + active + maintenance).",
        s.total_connections as f64,
    );
    gauge(
        &mut o,
        "connections_idle",
        "Idle connections available for immediate use.",
        s.idle_connections as f64,
    );
    gauge(
        &mut o,
        "connections_active",
        "Connections checked out to callers.",
        s.active_connections as f64,
    );
    gauge(
        &mut o,
        "connections_opening",
        "Connections being opened.",
        s.opening_connections as f64,
    );
    gauge(
        &mut o,
        "connections_encrypted",
        "Open connections that are encrypted (TLS).",
        s.encrypted_connections as f64,
    );
    let _ = writeln!(
        o,
        "# HELP {p}_connections_by_host Open connections per server.\n# TYPE {p}_connections_by_host gauge"
    );
    for (host, n) in &s.connections_by_host {
        let _ = writeln!(
            o,
            "{p}_connections_by_host{{host=\"{}\"}} {n}",
            label_value(host)
        );
    }
    gauge(
        &mut o,
        "connections_max",
        "Configured maximum pool size.",
        s.max_size as f64,
    );
    gauge(
        &mut o,
        "connections_min",
        "Configured minimum pool size.",
        s.min_size as f64,
    );
    gauge(
        &mut o,
        "connections_peak_active",
        "Most connections checked out at once since start.",
        s.peak_active_connections as f64,
    );
    gauge(
        &mut o,
        "waiting_requests",
        "Callers queued for a connection.",
        s.waiting_requests as f64,
    );
    gauge(
        &mut o,
        "health_status",
        "Pool health: 0 healthy, 1 degraded, 2 unhealthy.",
        f64::from(status.gauge_value()),
    );
    let _ = writeln!(
        o,
        "# HELP {p}_state Lifecycle state: 1 for the current one, 0 for the others.\n# TYPE {p}_state gauge"
    );
    for st in LifecycleState::ALL {
        let _ = writeln!(
            o,
            "{p}_state{{state=\"{}\"}} {}",
            st.as_str(),
            u8::from(st == state)
        );
    }
    gauge(
        &mut o,
        "headroom_ratio",
        "Share of max_size a new caller can have without waiting: (idle + max - open - opening) / max.",
        headroom(s),
    );
    gauge(
        &mut o,
        "idle_ratio",
        "Idle connections as a share of open connections (0 with none open).",
        idle_ratio(s),
    );
    gauge(
        &mut o,
        "connect_failures",
        "Connect attempts that failed in a row (0 while the database answers).",
        s.connect_failures as f64,
    );
    gauge(
        &mut o,
        "peak_wait_seconds",
        "Longest time any acquisition waited.",
        s.peak_wait_time_ms / 1e3,
    );
    gauge(
        &mut o,
        "uptime_seconds",
        "Seconds since the pool was created.",
        uptime_seconds,
    );
    if let Some(l) = s.latency_ms {
        gauge(
            &mut o,
            "database_latency_seconds",
            "Round trip of the last validation query.",
            l / 1e3,
        );
    }

    let histogram = |o: &mut String, name: &str, help: &str, counts: &[u64; 21], sum: f64| {
        let _ = writeln!(o, "# HELP {p}_{name} {help}\n# TYPE {p}_{name} histogram");
        let mut cumulative = 0u64;
        for (i, le) in ACQUIRE_BUCKETS.iter().enumerate() {
            cumulative += counts[i];
            let _ = writeln!(o, "{p}_{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += counts[20];
        let _ = writeln!(o, "{p}_{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(o, "{p}_{name}_sum {sum}");
        let _ = writeln!(o, "{p}_{name}_count {cumulative}");
    };
    histogram(
        &mut o,
        "acquisition_duration_seconds",
        "Time to acquire a connection from the pool.",
        &s.acquisition_histogram,
        s.acquisition_time_sum_seconds,
    );
    histogram(
        &mut o,
        "connection_use_duration_seconds",
        "How long callers held a connection, checkout to return.",
        &s.use_histogram,
        s.use_time_sum_seconds,
    );

    let counter = |o: &mut String, name: &str, help: &str, v: u64| {
        let f = family(name);
        let _ = writeln!(
            o,
            "# HELP {p}_{f} {help}\n# TYPE {p}_{f} counter\n{p}_{name}_total {v}"
        );
    };
    counter(
        &mut o,
        "acquisitions",
        "Connections handed out.",
        s.total_acquisitions,
    );
    counter(
        &mut o,
        "releases",
        "Connections handed back.",
        s.total_releases,
    );
    counter(
        &mut o,
        "acquisitions_waited",
        "Acquisitions that had to wait for a connection.",
        s.acquisitions_waited,
    );
    counter(
        &mut o,
        "acquire_timeouts",
        "Acquisitions that timed out.",
        s.acquire_timeouts,
    );
    counter(
        &mut o,
        "acquires_cancelled",
        "Acquisitions abandoned by the caller while waiting.",
        s.acquires_cancelled,
    );
    counter(
        &mut o,
        "connections_created",
        "Connections opened.",
        s.connections_created,
    );
    counter(
        &mut o,
        "leaks_detected",
        "Connections held past the leak-detection timeout.",
        s.leaks_detected,
    );
    counter(
        &mut o,
        "reconnect_attempts",
        "Reconnection attempts while the database was unreachable.",
        s.reconnect_attempts,
    );
    counter(
        &mut o,
        "reconnect_probes",
        "Connections tried at the probe interval while the database was unreachable and callers waited.",
        s.reconnect_probes,
    );
    gauge(
        &mut o,
        "listeners",
        "Open LISTEN/NOTIFY listeners (their connections are outside max_size).",
        s.listeners as f64,
    );
    gauge(
        &mut o,
        "listeners_connected",
        "Listeners connected now (the others are reconnecting).",
        s.listeners_connected as f64,
    );
    counter(
        &mut o,
        "listener_reconnects",
        "Reconnection attempts of the listeners.",
        s.listener_reconnects,
    );
    counter(
        &mut o,
        "notifications_received",
        "Notifications the listeners delivered.",
        s.notifications_received,
    );
    gauge(
        &mut o,
        "pipelined_connections",
        "Connections serving pool.query/pool.execute (counted as active).",
        s.pipelined_connections as f64,
    );
    gauge(
        &mut o,
        "statements_in_flight",
        "Statements of pool.query/pool.execute sent or queued on a connection, not answered.",
        s.statements_in_flight as f64,
    );
    gauge(
        &mut o,
        "pipeline_depth",
        "The most statements of pool.query/pool.execute in flight per connection.",
        s.pipeline_depth as f64,
    );
    counter(
        &mut o,
        "pipelined_statements",
        "Statements run through pool.query/pool.execute.",
        s.pipelined_statements,
    );
    counter(
        &mut o,
        "pipelined_session_changes",
        "Statements of pool.query/pool.execute after which the server said the session changed (rolled back or reset).",
        s.pipelined_session_changes,
    );
    counter(
        &mut o,
        "statement_cache_hits",
        "Queries whose statement was already prepared on their connection.",
        s.statement_cache_hits,
    );
    counter(
        &mut o,
        "statement_cache_misses",
        "Queries that had to prepare their statement first.",
        s.statement_cache_misses,
    );

    let f = family("connections_closed");
    let _ = writeln!(
        o,
        "# HELP {p}_{f} Connections closed, by reason.\n# TYPE {p}_{f} counter"
    );
    for (reason, n) in &s.connections_closed {
        let _ = writeln!(
            o,
            "{p}_connections_closed_total{{reason=\"{}\"}} {n}",
            reason.as_str()
        );
    }
    let f = family("errors");
    let _ = writeln!(
        o,
        "# HELP {p}_{f} Pool errors, by type.\n# TYPE {p}_{f} counter"
    );
    for (ty, n) in &s.errors {
        let _ = writeln!(o, "{p}_errors_total{{error_type=\"{}\"}} {n}", ty.as_str());
    }
    if !statements.is_empty() {
        render_statements(&mut o, om, statements, p);
    }
    super::replication_status::render_prometheus(&mut o, om, p, replication);
    if om {
        o.push_str("# EOF\n");
    }
    o
}

/// The statement metrics' families.
fn render_statements(o: &mut String, om: bool, rows: &[StatementRow], p: &str) {
    let family = |name: &str| -> String {
        if om {
            name.to_string()
        } else {
            format!("{name}_total")
        }
    };
    let labelled: Vec<(String, &StatementRow)> = rows
        .iter()
        .map(|r| (label_value(&r.statement), r))
        .collect();
    // A counter family with one sample per statement.
    let per_statement =
        |o: &mut String, name: &str, help: &str, v: &dyn Fn(&StatementRow) -> f64| {
            let f = family(name);
            let _ = writeln!(o, "# HELP {p}_{f} {help}\n# TYPE {p}_{f} counter");
            for (l, r) in &labelled {
                let _ = writeln!(o, "{p}_{name}_total{{statement=\"{l}\"}} {}", v(r));
            }
        };
    per_statement(
        o,
        "statement_calls",
        "Statements run, by statement (its text with constants as ?; past the bound, other).",
        &|r| r.counts.calls as f64,
    );
    let f = family("statement_errors");
    let _ = writeln!(
        o,
        "# HELP {p}_{f} Statements that failed, by statement and SQLSTATE (or the error's kind for a failure on the client's side).\n# TYPE {p}_{f} counter"
    );
    for (l, r) in &labelled {
        for (code, n) in &r.counts.errors {
            let _ = writeln!(
                o,
                "{p}_statement_errors_total{{statement=\"{l}\",sqlstate=\"{}\"}} {n}",
                label_value(code)
            );
        }
    }
    per_statement(
        o,
        "statement_rows",
        "Rows returned or affected, by statement.",
        &|r| r.counts.rows as f64,
    );
    per_statement(
        o,
        "statement_wait_seconds",
        "Time statements waited for a connection (a checkout, counted on its first statement) or for room on a lane (pipelined), by statement.",
        &|r| r.counts.wait_seconds,
    );
    let name = "statement_duration_seconds";
    let _ = writeln!(
        o,
        "# HELP {p}_{name} Statement latency, by statement.\n# TYPE {p}_{name} histogram"
    );
    for (l, r) in &labelled {
        let mut cumulative = 0u64;
        for (i, le) in ACQUIRE_BUCKETS.iter().enumerate() {
            cumulative += r.counts.histogram[i];
            let _ = writeln!(
                o,
                "{p}_{name}_bucket{{statement=\"{l}\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += r.counts.histogram[20];
        let _ = writeln!(
            o,
            "{p}_{name}_bucket{{statement=\"{l}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            o,
            "{p}_{name}_sum{{statement=\"{l}\"}} {}",
            r.counts.duration_seconds
        );
        let _ = writeln!(o, "{p}_{name}_count{{statement=\"{l}\"}} {cumulative}");
    }
}
