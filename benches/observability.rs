//! The cost of the query spans and the OpenTelemetry metrics on a pooled query, against a
//! throwaway PostgreSQL: acquire + `query_one("SELECT $1::int4")` (cached) + release, one
//! task, on three pools of the same server in the same run, in alternating rounds so that
//! drift in the machine's load hits all three alike:
//!
//! - `off`: no `tracing` subscriber, no meter;
//! - `default`: a `tracing` subscriber at INFO (a JSON formatter writing to a sink) and the
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
    let build = |otel: bool, level: tracing::Level| {
        let mut b = Pool::builder(cfg.clone())
            .min_size(2)
            .max_size(10)
            .query_span_level(level);
        if otel {
            b = b.opentelemetry(provider.meter("bench"));
        }
        rt.block_on(b.build()).unwrap()
    };
    use tracing::Level;
    let off = build(false, Level::DEBUG);
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
    // Warm-up: statements prepared, caches filled.
    let pools = [&off, &default, &info, &info_otel];
    for p in pools {
        tracing::subscriber::with_default(subscriber(), || round(p));
    }
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        times[0].push(round(&off));
        for (i, p) in pools.iter().enumerate().skip(1) {
            times[i].push(tracing::subscriber::with_default(subscriber(), || round(p)));
        }
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
    provider.shutdown().unwrap();
}
