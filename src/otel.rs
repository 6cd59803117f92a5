//! The pool's metrics under OpenTelemetry's database client semantic conventions, through
//! the [`opentelemetry`](https://docs.rs/opentelemetry) API (feature `otel`). The
//! application brings the SDK, its exporter and a [`Meter`]; the pool records into it:
//!
//! ```no_run
//! # async fn f(cfg: wirepool::ConnectConfig) -> wirepool::Result<()> {
//! let meter = opentelemetry::global::meter("my-app");
//! let pool = wirepool::Pool::builder(cfg)
//!     .opentelemetry(meter)
//!     .pool_name("orders")
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! | instrument | kind | unit | attributes |
//! |---|---|---|---|
//! | `db.client.connection.count` | async up-down counter | `{connection}` | `db.client.connection.state` = `idle` \| `used` |
//! | `db.client.connection.idle.max` | async up-down counter | `{connection}` | |
//! | `db.client.connection.idle.min` | async up-down counter | `{connection}` | |
//! | `db.client.connection.max` | async up-down counter | `{connection}` | |
//! | `db.client.connection.pending_requests` | async up-down counter | `{request}` | |
//! | `db.client.connection.timeouts` | async counter | `{timeout}` | |
//! | `db.client.connection.create_time` | histogram | `s` | |
//! | `db.client.connection.wait_time` | histogram | `s` | |
//! | `db.client.connection.use_time` | histogram | `s` | |
//! | `db.client.operation.duration` | histogram | `s` | `db.system.name`, `db.namespace`, `db.operation.name`, `server.address`, `server.port`, and on failure `error.type`, `db.response.status_code` |
//!
//! Every `db.client.connection.*` instrument carries `db.client.connection.pool.name`: the
//! builder's [`pool_name`](crate::pool::Builder::pool_name), by default
//! `host:port/database` of the first host. `idle.max` and `max` are the pool's `max_size`
//! (an idle connection is never closed for being one too many), `idle.min` its `min_size`;
//! `used` counts connections checked out and those the pool holds to reset or validate.
//! No attribute carries SQL text or a parameter's value.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::KeyValue;

use crate::conn::{Operation, OperationSink};
use crate::observe::PoolStatistics;

/// The pool's statistics when the SDK collects; `None` once the pool is gone.
pub(crate) type StatisticsSource = Arc<dyn Fn() -> Option<PoolStatistics> + Send + Sync>;

/// The buckets the conventions advise for durations, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 10.0,
];

/// Reads a gauge's values from the pool's statistics, each with its
/// `db.client.connection.state`.
type Reading = fn(&PoolStatistics) -> Vec<(i64, Option<&'static str>)>;

/// The instruments a pool records into.
pub(crate) struct Instruments {
    create_time: Histogram<f64>,
    wait_time: Histogram<f64>,
    use_time: Histogram<f64>,
    operation: Histogram<f64>,
    pool: [KeyValue; 1],
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("pool", &self.pool)
            .finish()
    }
}

fn histogram(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build()
}

impl Instruments {
    /// Registers the instruments with `meter`; the asynchronous ones read `pool`'s
    /// statistics when the SDK collects (and report nothing once it is gone).
    pub(crate) fn new(meter: &Meter, pool: StatisticsSource, name: String) -> Instruments {
        let pool_attr = KeyValue::new("db.client.connection.pool.name", name);
        let gauge =
            |metric: &'static str, unit: &'static str, description: &'static str, read: Reading| {
                let pool = pool.clone();
                let attr = pool_attr.clone();
                meter
                    .i64_observable_up_down_counter(metric)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |o| {
                        let Some(s) = pool() else { return };
                        for (v, state) in read(&s) {
                            match state {
                                Some(st) => o.observe(
                                    v,
                                    &[
                                        attr.clone(),
                                        KeyValue::new("db.client.connection.state", st),
                                    ],
                                ),
                                None => o.observe(v, std::slice::from_ref(&attr)),
                            }
                        }
                    })
                    .build();
            };
        gauge(
            "db.client.connection.count",
            "{connection}",
            "The number of connections that are currently in the state described by the state attribute.",
            |s| {
                let idle = s.idle_connections as i64;
                let used = s.total_connections.saturating_sub(s.idle_connections) as i64;
                vec![(idle, Some("idle")), (used, Some("used"))]
            },
        );
        gauge(
            "db.client.connection.idle.max",
            "{connection}",
            "The maximum number of idle open connections allowed.",
            |s| vec![(s.max_size as i64, None)],
        );
        gauge(
            "db.client.connection.idle.min",
            "{connection}",
            "The minimum number of idle open connections allowed.",
            |s| vec![(s.min_size as i64, None)],
        );
        gauge(
            "db.client.connection.max",
            "{connection}",
            "The maximum number of open connections allowed.",
            |s| vec![(s.max_size as i64, None)],
        );
        gauge(
            "db.client.connection.pending_requests",
            "{request}",
            "The number of current pending requests for an open connection.",
            |s| vec![(s.waiting_requests as i64, None)],
        );
        {
            let pool = pool.clone();
            let attr = pool_attr.clone();
            meter
                .u64_observable_counter("db.client.connection.timeouts")
                .with_unit("{timeout}")
                .with_description(
                    "The number of connection timeouts that have occurred trying to obtain a connection from the pool.",
                )
                .with_callback(move |o| {
                    if let Some(s) = pool() {
                        o.observe(s.acquire_timeouts, std::slice::from_ref(&attr));
                    }
                })
                .build();
        }
        Instruments {
            create_time: histogram(
                meter,
                "db.client.connection.create_time",
                "The time it took to create a new connection.",
            ),
            wait_time: histogram(
                meter,
                "db.client.connection.wait_time",
                "The time it took to obtain an open connection from the pool.",
            ),
            use_time: histogram(
                meter,
                "db.client.connection.use_time",
                "The time between borrowing a connection and returning it to the pool.",
            ),
            operation: histogram(
                meter,
                "db.client.operation.duration",
                "Duration of database client operations.",
            ),
            pool: [pool_attr],
        }
    }

    pub(crate) fn created(&self, took: Duration) {
        self.create_time.record(took.as_secs_f64(), &self.pool);
    }

    pub(crate) fn waited(&self, took: Duration) {
        self.wait_time.record(took.as_secs_f64(), &self.pool);
    }

    pub(crate) fn used(&self, held: Duration) {
        self.use_time.record(held.as_secs_f64(), &self.pool);
    }

    /// The sink for the connections' statements: `db.client.operation.duration`.
    pub(crate) fn operation_sink(self: &Arc<Self>) -> OperationSink {
        let me = self.clone();
        Arc::new(move |op: &Operation<'_>| {
            // No allocation on success: static strings and shared ones (`Arc<str>`).
            let base = [
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", op.namespace.clone()),
                KeyValue::new("db.operation.name", op.name),
                KeyValue::new("server.address", op.server_address.clone()),
                KeyValue::new("server.port", i64::from(op.server_port)),
            ];
            let secs = op.duration.as_secs_f64();
            let summary = op
                .summary
                .map(|s| KeyValue::new("db.query.summary", s.clone()));
            match (op.error_type, summary) {
                (None, None) => me.operation.record(secs, &base),
                (None, Some(s)) => {
                    let [a, b, c, d, e] = base;
                    me.operation.record(secs, &[a, b, c, d, e, s]);
                }
                (Some(t), summary) => {
                    let mut attrs = base.to_vec();
                    attrs.extend(summary);
                    attrs.push(KeyValue::new("error.type", t.to_string()));
                    if let Some(c) = op.status_code {
                        attrs.push(KeyValue::new("db.response.status_code", c.to_string()));
                    }
                    me.operation.record(secs, &attrs);
                }
            }
        })
    }
}
