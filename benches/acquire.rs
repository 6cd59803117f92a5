//! The pool core's hot path with in-memory connections: uncontended acquire+release with
//! and without statistics and leak detection, against baselines measured in the same run (two clock reads,
//! two uncontended lock/unlock pairs), and a contended N tasks x M connections matrix.

use std::hint::black_box;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wirepool::observe::checkout_tally::ConnTally;
use wirepool::observe::counters::Counters;
use wirepool::observe::leak::{LeakDetector, LeakSlot};
use wirepool::pool_core::{Core, Holder, TryAcquire};

/// A stand-in connection: its checkout counts (boxed, as the pool holds its connections).
struct Mem(ConnTally);

fn core_with(max: usize, idle: usize, counters: &Counters) -> Core<Box<Mem>> {
    let core = Core::new(max);
    for _ in 0..idle {
        let _ = core
            .want_open(idle)
            .expect("capacity")
            .complete(Box::new(Mem(counters.conn_tally())));
    }
    core
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    g.bench_function("baseline_two_clock_reads", |b| {
        b.iter(|| {
            let t = Instant::now();
            black_box(t.elapsed())
        })
    });
    let m = parking_lot::Mutex::new(0u64);
    g.bench_function("baseline_two_lock_unlock_pairs", |b| {
        b.iter(|| {
            *m.lock() += 1;
            *m.lock() -= 1;
        })
    });
    let counters = Counters::new(Duration::from_millis(100));
    let core = core_with(1, 1, &counters);
    g.bench_function("acquire_release_core_only", |b| {
        b.iter(|| {
            let TryAcquire::Ready(conn) = core.try_acquire() else {
                unreachable!()
            };
            black_box(&conn);
            let _ = core.release(conn, Holder::Caller);
        })
    });
    g.bench_function("acquire_release_with_statistics", |b| {
        b.iter(|| {
            let TryAcquire::Ready(mut conn) = core.try_acquire() else {
                unreachable!()
            };
            counters.record_immediate_acquire(&mut conn.0);
            black_box(&conn);
            counters.record_use(&mut conn.0, Duration::from_nanos(100));
            let _ = core.release(conn, Holder::Caller);
        })
    });
    // The same with leak detection on: record the checkout and its return in the
    // connection's slot while a scanner thread runs the wheel, as the pool's task does.
    let detector = Arc::new(LeakDetector::new(Duration::from_secs(30), false));
    let stop = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (detector, stop) = (detector.clone(), stop.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut wheel = detector.wheel(0);
            let mut reports = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(detector.tick());
                detector.scan(&mut wheel, start.elapsed().as_millis() as u64, &mut reports);
            }
        })
    };
    let slot = LeakSlot::new(1);
    detector.track(slot.clone());
    let site = Location::caller();
    g.bench_function("acquire_release_with_statistics_and_leak_detection", |b| {
        b.iter(|| {
            let TryAcquire::Ready(mut conn) = core.try_acquire() else {
                unreachable!()
            };
            counters.record_immediate_acquire(&mut conn.0);
            detector.checkout(&slot, site, 0);
            black_box(&conn);
            black_box(LeakDetector::checkin(&slot, 0));
            counters.record_use(&mut conn.0, Duration::from_nanos(100));
            let _ = core.release(conn, Holder::Caller);
        })
    });
    stop.store(true, Ordering::Relaxed);
    scanner.join().unwrap();
    g.bench_function("statistics_snapshot_gauges", |b| {
        b.iter(|| black_box(core.gauges()))
    });
    g.finish();
}

fn contended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("contended_per_acquire");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (tasks, conns) in [(2, 1), (8, 2), (32, 4), (100, 10)] {
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{tasks}tasks_x_{conns}conns")),
            &(tasks, conns),
            |b, &(tasks, conns)| {
                b.iter_custom(|iters| {
                    let per_task = (iters as usize).div_ceil(tasks).max(1);
                    let counters = std::sync::Arc::new(Counters::new(Duration::from_millis(100)));
                    let core = core_with(conns, conns, &counters);
                    let start = Instant::now();
                    rt.block_on(async {
                        let mut hs = Vec::new();
                        for _ in 0..tasks {
                            let (core, counters) = (core.clone(), counters.clone());
                            hs.push(tokio::spawn(async move {
                                for _ in 0..per_task {
                                    let t = Instant::now();
                                    let mut conn = match core.try_acquire() {
                                        TryAcquire::Ready(mut c) => {
                                            counters.record_immediate_acquire(&mut c.0);
                                            c
                                        }
                                        TryAcquire::Queued { waiter, .. } => {
                                            let mut c = waiter.await.expect("open");
                                            counters.record_waited_acquire(&mut c.0, t.elapsed());
                                            c
                                        }
                                        TryAcquire::Closed => unreachable!(),
                                    };
                                    tokio::task::yield_now().await;
                                    counters.record_use(&mut conn.0, Duration::from_nanos(100));
                                    let _ = core.release(conn, Holder::Caller);
                                }
                            }));
                        }
                        for h in hs {
                            h.await.unwrap();
                        }
                    });
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_task * tasks) as f64)
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = uncontended, contended
}
criterion_main!(benches);
