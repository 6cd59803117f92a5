//! The cost of the query spans and the OpenTelemetry metrics on a pooled query, against a
//! throwaway PostgreSQL: acquire + `query_one("SELECT $1::int4")` (cached) + release, one
//! task, on three pools of the same server in the same run, in alternating rounds so that
//! drift in the machine's load hits all three alike:
//!
//! - `off`: no `tracing` subscriber, no meter, no statement metrics;
//! - `statement_metrics`: the same with the statement metrics on (the default, 100 texts),
//!   on the exclusive path (`acquire` + `query_one`) and the pipelined one
//!   (`pool.query_one`, against `off` on the same path);
//! - `default`: the pool's defaults (statement metrics on), a `tracing` subscriber at INFO (a JSON formatter writing to a sink) and the
//!   pool's metrics into an OpenTelemetry SDK meter (in-memory exporter); the query spans
//!   at their default level, DEBUG, so the subscriber builds none;
//! - `info_spans`: the same subscriber, the spans at INFO, so every query's span is built
//!   and formatted (what an application that exports traces pays);
//! - `info_spans+otel`: the same with the meter.
//!
//! Prints the median time per query of each, and the ratios to `off`.
//! `cargo bench --bench observability`

use std::hint::black_box;
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tracing_subscriber::layer::SubscriberExt;
use wirepool::Pool;
use wirepool_testkit::Role;

const ROUNDS: usize = 25;
const PER_ROUND: usize = 2_000;

fn main() {
    let pg = wirepool_testkit::cluster();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = pg.config(Role::Trust);
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let build_with = |otel: bool, level: tracing::Level, statements: usize| {
        let mut b = Pool::builder(cfg.clone())
            .min_size(2)
            .max_size(10)
            .query_span_level(level)
            .statement_metrics_limit(statements);
        if otel {
            b = b.opentelemetry(provider.meter("bench"));
        }
        rt.block_on(b.build()).unwrap()
    };
    let build = |otel: bool, level: tracing::Level| build_with(otel, level, 100);
    use tracing::Level;
    let off = build_with(false, Level::DEBUG, 0);
    let statements = build(false, Level::DEBUG);
    let default = build(true, Level::DEBUG);
    let info = build(false, Level::INFO);
    let info_otel = build(true, Level::INFO);
    let subscriber = || {
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            )
    };
    let round = |pool: &Pool| -> Duration {
        rt.block_on(async {
            let t = Instant::now();
            for i in 0..PER_ROUND {
                let mut c = pool.acquire().await.unwrap();
                let v: i32 = c
                    .query_one("SELECT $1::int4", &[&(i as i32)])
                    .await
                    .unwrap()
                    .get(0);
                black_box(v);
            }
            t.elapsed() / PER_ROUND as u32
        })
    };
    let pipelined_round = |pool: &Pool| -> Duration {
        rt.block_on(async {
            let t = Instant::now();
            for i in 0..PER_ROUND {
                let v: i32 = pool
                    .query_one("SELECT $1::int4", &[&(i as i32)])
                    .await
                    .unwrap()
                    .get(0);
                black_box(v);
            }
            t.elapsed() / PER_ROUND as u32
        })
    };
    // Warm-up: statements prepared, caches filled.
    let pools = [&off, &default, &info, &info_otel];
    for p in pools {
        tracing::subscriber::with_default(subscriber(), || round(p));
    }
    round(&statements);
    pipelined_round(&off);
    pipelined_round(&statements);
    let mut times: [Vec<Duration>; 4] = Default::default();
    // Statement metrics on and off, each path: [exclusive off, on, pipelined off, on].
    let mut stmt: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        times[0].push(round(&off));
        stmt[0].push(*times[0].last().unwrap());
        stmt[1].push(round(&statements));
        stmt[2].push(pipelined_round(&off));
        stmt[3].push(pipelined_round(&statements));
        for (i, p) in pools.iter().enumerate().skip(1) {
            times[i].push(tracing::subscriber::with_default(subscriber(), || round(p)));
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let stmt: Vec<Duration> = stmt.iter_mut().map(median).collect();
    println!("statement metrics, median of {ROUNDS} rounds of {PER_ROUND}:");
    for (path, off_t, on_t) in [
        ("acquire + query_one + release", stmt[0], stmt[1]),
        ("pool.query_one (pipelined)", stmt[2], stmt[3]),
    ] {
        println!(
            "  {path:<32} off {off_t:>10.2?}  on {on_t:>10.2?}  ({:+.0} ns per statement, {:.3}x)",
            (on_t.as_secs_f64() - off_t.as_secs_f64()) * 1e9,
            on_t.as_secs_f64() / off_t.as_secs_f64()
        );
    }
    let med: Vec<Duration> = times
        .iter_mut()
        .map(|v| {
            v.sort_unstable();
            v[v.len() / 2]
        })
        .collect();
    println!(
        "pooled acquire + query_one(\"SELECT $1::int4\") + release, median of {ROUNDS} rounds of {PER_ROUND}:"
    );
    for (name, t) in ["off", "default", "info_spans", "info_spans+otel"]
        .iter()
        .zip(&med)
    {
        println!(
            "  {name:<16} {t:>10.2?} per query ({:.3}x off)",
            t.as_secs_f64() / med[0].as_secs_f64()
        );
    }
    for p in pools {
        rt.block_on(p.close());
    }
    rt.block_on(statements.close());
    provider.shutdown().unwrap();
}
