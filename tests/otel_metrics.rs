//! The `otel` feature through the OpenTelemetry SDK with its in-memory exporter: after a
//! burst beyond `max_size` and an outage, every instrument of the database semantic
//! conventions is there with its unit, its attributes and sensible values.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use wirepool::error::sqlstate;
use wirepool::Pool;
use wirepool_testkit::{cluster, eventually, fast_config, Role};

const SECRET: &str = "otel-secret-parameter";

/// One data point: its attributes, and its value (a sum's or gauge's) or a histogram's
/// count and sum.
#[derive(Debug, Clone)]
struct Point {
    attrs: BTreeMap<String, String>,
    value: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Seen {
    /// name -> (unit, points of the latest collection)
    metrics: BTreeMap<String, (String, Vec<Point>)>,
}

fn points<T: Copy>(data: &MetricData<T>, f: fn(T) -> f64) -> Vec<Point> {
    let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
        it.map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    match data {
        MetricData::Sum(s) => s
            .data_points()
            .map(|p| Point {
                attrs: attrs(&mut p.attributes()),
                value: f(p.value()),
                count: 0,
            })
            .collect(),
        MetricData::Gauge(g) => g
            .data_points()
            .map(|p| Point {
                attrs: attrs(&mut p.attributes()),
                value: f(p.value()),
                count: 0,
            })
            .collect(),
        MetricData::Histogram(h) => h
            .data_points()
            .map(|p| Point {
                attrs: attrs(&mut p.attributes()),
                value: f(p.sum()),
                count: p.count(),
            })
            .collect(),
        MetricData::ExponentialHistogram(_) => Vec::new(),
    }
}

fn collect(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> Seen {
    provider.force_flush().unwrap();
    let mut seen = Seen::default();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let pts = match m.data() {
                    AggregatedMetrics::F64(d) => points(d, |v| v),
                    AggregatedMetrics::U64(d) => points(d, |v| v as f64),
                    AggregatedMetrics::I64(d) => points(d, |v| v as f64),
                };
                // The latest collection wins.
                seen.metrics
                    .insert(m.name().to_string(), (m.unit().to_string(), pts));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_convention_metric_after_a_burst_and_an_outage() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let mut pg = cluster();
    let mut cfg = fast_config();
    cfg.min_size = 2;
    cfg.max_size = 4;
    cfg.acquire_timeout = Duration::from_millis(500);
    cfg.reconnect_delays = vec![Duration::from_millis(100)];
    let pool = Pool::builder(pg.config(Role::Scram))
        .config(cfg)
        .opentelemetry(provider.meter("wirepool-test"))
        .pool_name("orders")
        .build()
        .await
        .unwrap();

    // A burst: 16 tasks on 4 connections, each holding its connection for a query.
    let mut tasks = Vec::new();
    for i in 0..16i32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let mut c = pool.acquire().await.unwrap();
                c.query("SELECT pg_sleep(0.005), $1::text, $2::int4", &[&SECRET, &i])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A failing statement.
    let mut c = pool.acquire().await.unwrap();
    c.query("SELECT 1 / $1::int4", &[&0i32]).await.unwrap_err();
    drop(c);

    // An outage: acquisitions time out, then the pool reconnects.
    pg.kill().unwrap();
    let mut timed_out = false;
    for _ in 0..20 {
        match pool.acquire().await {
            // A connection from before the outage: its query fails and it is discarded.
            Ok(mut c) => assert!(c.simple_query("SELECT 1").await.is_err()),
            Err(e) => {
                assert!(e.is_timeout(), "{e}");
                timed_out = true;
                break;
            }
        }
    }
    assert!(timed_out, "no acquisition timed out during the outage");
    pg.start_again().unwrap();
    eventually("the reconnection", || {
        pool.statistics().idle_connections >= 2
    })
    .await;
    let stats = pool.statistics();

    let seen = collect(&provider, &exporter);
    let get = |name: &str| {
        seen.metrics
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", seen.metrics.keys()))
    };
    let pool_attr = |p: &Point| {
        assert_eq!(
            p.attrs
                .get("db.client.connection.pool.name")
                .map(String::as_str),
            Some("orders"),
            "{p:?}"
        )
    };
    for (name, unit) in [
        ("db.client.connection.count", "{connection}"),
        ("db.client.connection.idle.max", "{connection}"),
        ("db.client.connection.idle.min", "{connection}"),
        ("db.client.connection.max", "{connection}"),
        ("db.client.connection.pending_requests", "{request}"),
        ("db.client.connection.timeouts", "{timeout}"),
        ("db.client.connection.create_time", "s"),
        ("db.client.connection.wait_time", "s"),
        ("db.client.connection.use_time", "s"),
    ] {
        let (u, pts) = get(name);
        assert_eq!(u, unit, "{name}");
        assert!(!pts.is_empty(), "{name} has no point");
        pts.iter().for_each(pool_attr);
    }
    let value = |name: &str| get(name).1[0].value;
    assert_eq!(value("db.client.connection.idle.max"), 4.0);
    assert_eq!(value("db.client.connection.idle.min"), 2.0);
    assert_eq!(value("db.client.connection.max"), 4.0);
    assert_eq!(value("db.client.connection.pending_requests"), 0.0);
    assert!(value("db.client.connection.timeouts") >= 1.0);
    assert_eq!(
        value("db.client.connection.timeouts"),
        stats.acquire_timeouts as f64
    );
    let counts = &get("db.client.connection.count").1;
    let state = |s: &str| {
        counts
            .iter()
            .find(|p| {
                p.attrs
                    .get("db.client.connection.state")
                    .map(String::as_str)
                    == Some(s)
            })
            .unwrap_or_else(|| panic!("no {s} point: {counts:?}"))
            .value
    };
    assert_eq!(
        state("idle") + state("used"),
        stats.total_connections as f64
    );
    // Every acquisition waited (or not) once, every return held its connection once.
    let hist = |name: &str| get(name).1[0].clone();
    assert_eq!(
        hist("db.client.connection.wait_time").count,
        stats.total_acquisitions
    );
    assert_eq!(
        hist("db.client.connection.use_time").count,
        stats.total_releases
    );
    let used = hist("db.client.connection.use_time");
    assert!(
        used.value >= 80.0 * 0.005,
        "80 holds of at least 5 ms: {used:?}"
    );
    let waited = hist("db.client.connection.wait_time");
    assert!(waited.value > 0.0, "the burst waited: {waited:?}");
    let created = hist("db.client.connection.create_time");
    assert_eq!(created.count, stats.connections_created);
    assert!(created.value > 0.0 && created.value < 60.0, "{created:?}");

    // The operations: one point per (operation, outcome), with the conventions' attributes.
    let (unit, ops) = get("db.client.operation.duration");
    assert_eq!(unit, "s");
    let ok = ops
        .iter()
        .find(|p| !p.attrs.contains_key("error.type"))
        .expect("a successful operation");
    assert_eq!(ok.attrs["db.system.name"], "postgresql");
    assert_eq!(ok.attrs["db.operation.name"], "SELECT");
    assert_eq!(ok.attrs["db.namespace"], "postgres");
    assert_eq!(ok.attrs["server.address"], "127.0.0.1");
    assert_eq!(ok.attrs["server.port"], pg.port().to_string());
    assert!(ok.count >= 80, "{ok:?}");
    assert!(ok.value >= 80.0 * 0.005, "{ok:?}");
    let failed = ops
        .iter()
        .find(|p| p.attrs.get("error.type").map(String::as_str) == Some(sqlstate::DIVISION_BY_ZERO))
        .expect("the failed operation");
    assert_eq!(
        failed.attrs["db.response.status_code"],
        sqlstate::DIVISION_BY_ZERO
    );
    assert_eq!(failed.count, 1);

    let all = format!("{:?}", seen.metrics);
    assert!(
        !all.contains(SECRET),
        "a parameter value in the metrics: {all}"
    );
    pool.close().await;
    provider.shutdown().unwrap();
}
