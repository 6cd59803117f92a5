//! The application's whole workload on one pool of four connections at once: short
//! transactions through `acquire()`, pipelined statements through `pool.execute` /
//! `pool.query_one`, LISTEN/NOTIFY through `pool.listener()` and `pool.notify`, and a
//! COPY of 1,000 rows every 500 ms. Every kind must make progress, no call may take more
//! than 2 s, no call may fail, and every acknowledged write must be in the table. A second
//! run restarts the server half-way; a third checks that a pipelined caller waiting for
//! the only connection is served soon after it is released.
//!
//! `WIREPOOL_MIXED_SECONDS` sets the length of the steady run (default 20 s); run with
//! `--nocapture` to see the share and the p99 latency of each kind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use wirepool::{Connection, Error, ListenerEvent, Pool};
use wirepool_testkit::{cluster, fast_config, Cluster, Role};

const CHANNEL: &str = "mixed_workload";
const TX_TASKS: usize = 8;
const PIPELINED_TASKS: usize = 16;
/// The most any single call may take in the steady run.
const CALL_LIMIT: Duration = Duration::from_secs(2);

/// Counts and latencies of one kind of work.
#[derive(Default)]
struct Kind {
    /// Units of work completed (a statement, a committed transaction, a COPY, a NOTIFY).
    done: AtomicU64,
    /// Of those, units started after the server was back.
    done_after_restart: AtomicU64,
    /// The latency of each completed unit.
    latencies: Mutex<Vec<Duration>>,
    /// The longest single call (one `await` on the pool or a connection).
    longest_call: Mutex<Duration>,
}

impl Kind {
    async fn timed<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let r = fut.await;
        let took = t.elapsed();
        let mut longest = self.longest_call.lock().unwrap();
        if took > *longest {
            *longest = took;
        }
        r
    }

    fn completed(&self, w: &Workload, started: Instant) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if w.restarted_at().is_some_and(|r| started >= r) {
            self.done_after_restart.fetch_add(1, Ordering::Relaxed);
        }
        self.latencies.lock().unwrap().push(started.elapsed());
    }

    fn p99(&self) -> Duration {
        let mut l = self.latencies.lock().unwrap().clone();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort();
        l[(l.len() * 99 / 100).min(l.len() - 1)]
    }
}

/// A failed call: what it was, when it started, the error, and `may_have_run()`.
struct Failure {
    what: String,
    started: Instant,
    error: String,
}

/// What every task of the workload shares.
#[derive(Default)]
struct Workload {
    stop: AtomicBool,
    next_id: AtomicI64,
    /// Ids whose write was acknowledged (Ok from `execute`, `commit`, `finish`).
    acked: Mutex<HashSet<i64>>,
    /// Ids whose write must not be in the table, with why.
    absent: Mutex<Vec<(i64, String)>>,
    failures: Mutex<Vec<Failure>>,
    /// Wrong answers (never allowed, outage or not).
    wrong: Mutex<Vec<String>>,
    restarted_at: Mutex<Option<Instant>>,
    pipelined: Kind,
    transactions: Kind,
    copies: Kind,
    notifies: Kind,
    /// Payloads whose `pool.notify` returned Ok, with when the call started.
    sent: Mutex<Vec<(u64, Instant)>>,
    received: Mutex<HashSet<u64>>,
    /// When the listener said it was back after a connection loss.
    reconnected_at: Mutex<Vec<Instant>>,
    received_after_restart: AtomicU64,
}

impl Workload {
    fn id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn restarted_at(&self) -> Option<Instant> {
        *self.restarted_at.lock().unwrap()
    }
    fn ack(&self, ids: impl IntoIterator<Item = i64>) {
        self.acked.lock().unwrap().extend(ids);
    }
    fn fail(&self, what: impl Into<String>, started: Instant, e: &Error) {
        self.failures.lock().unwrap().push(Failure {
            what: what.into(),
            started,
            error: format!(
                "{e} (kind {:?}, may_have_run {:?})",
                e.kind(),
                e.may_have_run()
            ),
        });
    }
    fn must_be_absent(&self, ids: impl IntoIterator<Item = i64>, why: &str) {
        self.absent
            .lock()
            .unwrap()
            .extend(ids.into_iter().map(|id| (id, why.to_string())));
    }
}

async fn setup(pg: &Cluster, max_size: usize) -> Pool {
    // The throwaway cluster runs with synchronous_commit = off, under which an immediate
    // stop may lose a commit the server acknowledged; the pool's role commits durably so
    // that "acknowledged" means what an application means by it. Checkpointed so that the
    // role setting and the table survive a kill.
    pg.psql(
        "ALTER ROLE wirepool_admin SET synchronous_commit = on; \
         CREATE TABLE mixed (id int8 PRIMARY KEY, kind text NOT NULL); CHECKPOINT",
    )
    .unwrap();
    let mut cfg = fast_config();
    cfg.reconnect_delays = [100, 250, 500, 1000].map(Duration::from_millis).to_vec();
    Pool::builder(pg.config(Role::Admin))
        .config(cfg)
        .min_size(2)
        .max_size(max_size)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

async fn transactions(pool: Pool, w: Arc<Workload>) {
    let k = &w.transactions;
    while !w.stopped() {
        let id = w.id();
        let started = Instant::now();
        let mut stage = "acquire";
        let r: Result<(), Error> = async {
            let mut conn = k.timed(pool.acquire()).await?;
            stage = "transaction()";
            let mut tx = k.timed(conn.transaction()).await?;
            stage = "insert";
            let n = k
                .timed(tx.execute(
                    "INSERT INTO mixed (id, kind) VALUES ($1, 'transaction')",
                    &[&id],
                ))
                .await?;
            if n != 1 {
                w.wrong
                    .lock()
                    .unwrap()
                    .push(format!("transaction insert said {n} rows"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            stage = "commit";
            k.timed(tx.commit()).await
        }
        .await;
        match r {
            Ok(()) => {
                w.ack([id]);
                k.completed(&w, started);
            }
            Err(e) => {
                // Before COMMIT was sent nothing of it can have been committed.
                if stage != "commit" {
                    w.must_be_absent([id], "its transaction failed before COMMIT");
                }
                w.fail(format!("transaction of id {id} at {stage}"), started, &e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn pipelined(pool: Pool, w: Arc<Workload>, task: i64) {
    let k = &w.pipelined;
    let mut i: i64 = 0;
    while !w.stopped() {
        let started = Instant::now();
        if i % 2 == 0 {
            let id = w.id();
            let sql = "INSERT INTO mixed (id, kind) VALUES ($1, 'pipelined')";
            match k.timed(pool.execute(sql, &[&id])).await {
                Ok(1) => {
                    w.ack([id]);
                    k.completed(&w, started);
                }
                Ok(n) => w
                    .wrong
                    .lock()
                    .unwrap()
                    .push(format!("INSERT of {id} said {n} rows")),
                Err(e) => {
                    if e.may_have_run() == Some(false) {
                        w.must_be_absent([id], "pool.execute said may_have_run() == Some(false)");
                    }
                    w.fail(format!("pipelined INSERT of id {id}"), started, &e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        } else {
            let n = task * 1_000_000_000 + i;
            match k.timed(pool.query_one("SELECT $1::int8 + 1", &[&n])).await {
                Ok(row) => match row.try_get::<_, i64>(0) {
                    Ok(v) if v == n + 1 => k.completed(&w, started),
                    other => w
                        .wrong
                        .lock()
                        .unwrap()
                        .push(format!("SELECT {n} + 1 answered {other:?}")),
                },
                Err(e) => {
                    w.fail(format!("pipelined SELECT {n} + 1"), started, &e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn copies(pool: Pool, w: Arc<Workload>) {
    let k = &w.copies;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if w.stopped() {
            break;
        }
        let ids: Vec<i64> = (0..1000).map(|_| w.id()).collect();
        let mut data = String::new();
        for id in &ids {
            data.push_str(&format!("{id}\tcopy\n"));
        }
        let started = Instant::now();
        let mut stage = "acquire";
        let r: Result<u64, Error> = async {
            let mut conn = k.timed(pool.acquire()).await?;
            stage = "copy_in";
            let mut sink = k
                .timed(conn.copy_in("COPY mixed (id, kind) FROM STDIN"))
                .await?;
            stage = "send";
            k.timed(sink.send(Bytes::from(data))).await?;
            stage = "finish";
            k.timed(sink.finish()).await
        }
        .await;
        match r {
            Ok(1000) => {
                w.ack(ids);
                k.completed(&w, started);
            }
            Ok(n) => w
                .wrong
                .lock()
                .unwrap()
                .push(format!("COPY of 1000 rows said {n}")),
            Err(e) => {
                if stage != "finish" {
                    w.must_be_absent(ids, "its COPY failed before CopyDone");
                }
                w.fail(format!("COPY at {stage}"), started, &e);
            }
        }
    }
}

async fn notifier(pool: Pool, w: Arc<Workload>) {
    let k = &w.notifies;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        every.tick().await;
        if w.stopped() {
            break;
        }
        n += 1;
        let started = Instant::now();
        match k.timed(pool.notify(CHANNEL, &n.to_string())).await {
            Ok(()) => {
                w.sent.lock().unwrap().push((n, started));
                k.completed(&w, started);
            }
            Err(e) => w.fail(format!("notify {n}"), started, &e),
        }
    }
}

/// Receives until `done` is notified (`recv` is cancelled only then, never in the middle
/// of a reconnection).
async fn listen(mut listener: wirepool::Listener, w: Arc<Workload>, done: Arc<Notify>) {
    loop {
        let ev = tokio::select! {
            ev = listener.recv() => ev,
            () = done.notified() => return,
        };
        match ev {
            Ok(ListenerEvent::Notification(n)) => {
                if n.channel() != CHANNEL {
                    w.wrong
                        .lock()
                        .unwrap()
                        .push(format!("notification on {}", n.channel()));
                    continue;
                }
                match n.payload().parse::<u64>() {
                    Ok(p) => {
                        w.received.lock().unwrap().insert(p);
                        if w.restarted_at().is_some() {
                            w.received_after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => w
                        .wrong
                        .lock()
                        .unwrap()
                        .push(format!("payload {:?}", n.payload())),
                }
            }
            Ok(ListenerEvent::Reconnected) => w.reconnected_at.lock().unwrap().push(Instant::now()),
            Ok(other) => w
                .wrong
                .lock()
                .unwrap()
                .push(format!("listener event {other:?}")),
            Err(e) => {
                w.fail("listener.recv()", Instant::now(), &e);
                return;
            }
        }
    }
}

/// The ids in the table, read on a connection of its own (not the pool's).
async fn ids_in_table(pg: &Cluster) -> HashSet<i64> {
    let mut c = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let rows = c.query("SELECT id FROM mixed", &[]).await.unwrap();
    rows.iter().map(|r| r.get::<_, i64>(0)).collect()
}

struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    listener: tokio::task::JoinHandle<()>,
    listener_done: Arc<Notify>,
}

async fn start(pool: &Pool, w: &Arc<Workload>) -> Running {
    let mut listener = pool.listener().await.unwrap();
    listener.listen(CHANNEL).await.unwrap();
    let listener_done = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(listener, w.clone(), listener_done.clone()));
    let mut tasks = Vec::new();
    for _ in 0..TX_TASKS {
        tasks.push(tokio::spawn(transactions(pool.clone(), w.clone())));
    }
    for t in 0..PIPELINED_TASKS {
        tasks.push(tokio::spawn(pipelined(pool.clone(), w.clone(), t as i64)));
    }
    tasks.push(tokio::spawn(copies(pool.clone(), w.clone())));
    tasks.push(tokio::spawn(notifier(pool.clone(), w.clone())));
    Running {
        tasks,
        listener,
        listener_done,
    }
}

/// Stops the workload, waits for its tasks and for the notifications sent (those that
/// will arrive: all of them, or those sent after the listener was back).
async fn stop(run: Running, w: &Arc<Workload>, notifications_from: Option<Instant>) {
    w.stop.store(true, Ordering::Relaxed);
    for t in run.tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a workload task ends within 60 s of the stop")
            .expect("a workload task does not panic");
    }
    let expected: Vec<u64> = w
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| notifications_from.is_none_or(|from| *at >= from))
        .map(|(n, _)| *n)
        .collect();
    let received = || {
        let r = w.received.lock().unwrap();
        expected.iter().all(|n| r.contains(n))
    };
    // Waited for within the testkit's patience; what is missing then is reported below.
    let t = Instant::now();
    while !received() && t.elapsed() < wirepool_testkit::PATIENCE {
        tokio::time::sleep(wirepool_testkit::POLL).await;
    }
    run.listener_done.notify_one();
    run.listener
        .await
        .expect("the listener task does not panic");
}

fn summary(w: &Workload) -> String {
    let pipe = w.pipelined.done.load(Ordering::Relaxed);
    let excl = w.transactions.done.load(Ordering::Relaxed);
    let share = |n: u64| 100.0 * n as f64 / (pipe + excl).max(1) as f64;
    let line = |name: &str, k: &Kind| {
        format!(
            "  {name:<13} {:>7} completed ({:>5} after restart), p99 {:>9.3?}, longest call {:>9.3?}\n",
            k.done.load(Ordering::Relaxed),
            k.done_after_restart.load(Ordering::Relaxed),
            k.p99(),
            *k.longest_call.lock().unwrap(),
        )
    };
    format!(
        "pipelined share of completions {:.1} %, exclusive (transactions) {:.1} %\n{}{}{}{}  \
         notifications received {} ({} after restart), listener reconnects {}, failures {}",
        share(pipe),
        share(excl),
        line("pipelined", &w.pipelined),
        line("transactions", &w.transactions),
        line("copies", &w.copies),
        line("notifies", &w.notifies),
        w.received.lock().unwrap().len(),
        w.received_after_restart.load(Ordering::Relaxed),
        w.reconnected_at.lock().unwrap().len(),
        w.failures.lock().unwrap().len(),
    )
}

fn failures_text(fs: &[Failure], limit: usize) -> String {
    let mut s = String::new();
    for f in fs.iter().take(limit) {
        s.push_str(&format!("\n    {}: {}", f.what, f.error));
    }
    if fs.len() > limit {
        s.push_str(&format!("\n    ... and {} more", fs.len() - limit));
    }
    s
}

/// Problems both runs share: wrong answers, acknowledged writes missing, writes the pool
/// said never ran present.
fn write_problems(w: &Workload, table: &HashSet<i64>, problems: &mut Vec<String>) {
    let wrong = w.wrong.lock().unwrap();
    if !wrong.is_empty() {
        problems.push(format!(
            "{} wrong answers, first: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        ));
    }
    let acked = w.acked.lock().unwrap();
    let mut missing: Vec<i64> = acked.difference(table).copied().collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        problems.push(format!(
            "{} acknowledged writes are not in the table, first: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    let present: Vec<(i64, String)> = w
        .absent
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| table.contains(id))
        .cloned()
        .collect();
    if !present.is_empty() {
        problems.push(format!(
            "{} writes that cannot have run are in the table, first: {:?}",
            present.len(),
            &present[..present.len().min(5)]
        ));
    }
}

fn progress_problems(w: &Workload, problems: &mut Vec<String>) {
    for (name, k) in [
        ("pipelined statements", &w.pipelined),
        ("transactions", &w.transactions),
        ("copies", &w.copies),
        ("notifications sent", &w.notifies),
    ] {
        if k.done.load(Ordering::Relaxed) == 0 {
            problems.push(format!("no {name} completed"));
        }
    }
}

fn seconds_from_env() -> u64 {
    std::env::var("WIREPOOL_MIXED_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("WIREPOOL_MIXED_SECONDS is a number of seconds")
        })
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_work_progresses_on_one_pool_without_a_failure() {
    let pg = cluster();
    let pool = setup(&pg, 4).await;
    let w = Arc::new(Workload::default());
    let run = start(&pool, &w).await;
    tokio::time::sleep(Duration::from_secs(seconds_from_env())).await;
    stop(run, &w, None).await;
    let table = ids_in_table(&pg).await;
    let stats = summary(&w);
    println!("steady run:\n{stats}");

    let mut problems = Vec::new();
    progress_problems(&w, &mut problems);
    {
        let failures = w.failures.lock().unwrap();
        if !failures.is_empty() {
            problems.push(format!(
                "{} calls failed:{}",
                failures.len(),
                failures_text(&failures, 10)
            ));
        }
    }
    for (name, k) in [
        ("pipelined", &w.pipelined),
        ("transactions", &w.transactions),
        ("copies", &w.copies),
        ("notifies", &w.notifies),
    ] {
        let longest = *k.longest_call.lock().unwrap();
        if longest > CALL_LIMIT {
            problems.push(format!(
                "a call of the {name} took {longest:?} (limit {CALL_LIMIT:?})"
            ));
        }
    }
    let sent: Vec<u64> = w.sent.lock().unwrap().iter().map(|(n, _)| *n).collect();
    let lost: Vec<u64> = {
        let received = w.received.lock().unwrap();
        sent.iter()
            .filter(|n| !received.contains(n))
            .copied()
            .collect()
    };
    if !lost.is_empty() {
        problems.push(format!(
            "{} of {} notifications sent never arrived, first: {:?}",
            lost.len(),
            sent.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    let reconnects = w.reconnected_at.lock().unwrap().len();
    if reconnects > 0 {
        problems.push(format!(
            "the listener lost its connection {reconnects} times"
        ));
    }
    write_problems(&w, &table, &mut problems);
    let extra = {
        let acked = w.acked.lock().unwrap();
        table.iter().filter(|id| !acked.contains(id)).count()
    };
    if extra > 0 {
        problems.push(format!(
            "{extra} rows in the table that no call acknowledged"
        ));
    }
    assert!(
        problems.is_empty(),
        "mixed workload:\n- {}\n{stats}",
        problems.join("\n- ")
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_workload_survives_a_server_restart() {
    let mut pg = cluster();
    let pool = setup(&pg, 4).await;
    let w = Arc::new(Workload::default());
    let began = Instant::now();
    let run = start(&pool, &w).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| pg.kill()).unwrap();
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    let restarted = Instant::now();
    *w.restarted_at.lock().unwrap() = Some(restarted);
    // At least 10 s in all, and 6 s after the server is back whatever the restart took.
    let end = (began + Duration::from_secs(10)).max(restarted + Duration::from_secs(6));
    tokio::time::sleep_until(end.into()).await;
    let listener_back = w.reconnected_at.lock().unwrap().first().copied();
    stop(run, &w, Some(listener_back.unwrap_or(restarted))).await;
    let table = ids_in_table(&pg).await;
    let stats = summary(&w);
    println!("run with a restart:\n{stats}");

    let mut problems = Vec::new();
    progress_problems(&w, &mut problems);
    for (name, k) in [
        ("pipelined statements", &w.pipelined),
        ("transactions", &w.transactions),
        ("copies", &w.copies),
        ("notifications sent", &w.notifies),
    ] {
        if k.done_after_restart.load(Ordering::Relaxed) == 0 {
            problems.push(format!("no {name} completed after the restart"));
        }
    }
    if w.received_after_restart.load(Ordering::Relaxed) == 0 {
        problems.push("no notification arrived after the restart".to_string());
    }
    match listener_back {
        None => problems.push("the listener never said it was back (Reconnected)".to_string()),
        Some(back) => {
            // Sent after the listener was listening again: every one must arrive.
            let received = w.received.lock().unwrap();
            let lost: Vec<u64> = w
                .sent
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, at)| *at >= back && !received.contains(n))
                .map(|(n, _)| *n)
                .collect();
            if !lost.is_empty() {
                problems.push(format!(
                    "{} notifications sent after the listener was back never arrived: {:?}",
                    lost.len(),
                    &lost[..lost.len().min(10)]
                ));
            }
        }
    }
    // Failures are allowed during the outage: for calls started before the server had
    // been back 4 s (its reconnection takes well under half a second here).
    let late: Vec<Failure> = w
        .failures
        .lock()
        .unwrap()
        .drain(..)
        .filter(|f| f.started >= restarted + Duration::from_secs(4))
        .collect();
    if !late.is_empty() {
        problems.push(format!(
            "{} calls started 4 s or more after the restart failed:{}",
            late.len(),
            failures_text(&late, 10)
        ));
    }
    write_problems(&w, &table, &mut problems);
    assert!(
        problems.is_empty(),
        "mixed workload with a restart:\n- {}\n{stats}",
        problems.join("\n- ")
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_caller_gets_the_only_connection_soon_after_its_release() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Admin))
        .config(fast_config())
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let released_at = Arc::new(Mutex::new(None::<Instant>));
    let started = Instant::now();
    let caller = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let r = pool.query_one("SELECT 1", &[]).await;
            (r, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    *released_at.lock().unwrap() = Some(Instant::now());
    drop(held);
    let (r, answered_at) = tokio::time::timeout(Duration::from_secs(10), caller)
        .await
        .expect("pool.query_one answers within 10 s")
        .unwrap();
    let row = r.unwrap_or_else(|e| {
        panic!(
            "pool.query_one(\"SELECT 1\") failed after {:?} (the connection was released after \
             200 ms; acquire timeout 5 s): {e} (kind {:?})",
            started.elapsed(),
            e.kind()
        )
    });
    assert_eq!(row.get::<_, i32>(0), 1);
    let released = released_at.lock().unwrap().unwrap();
    assert!(
        answered_at >= released,
        "the statement was answered while the only connection was held"
    );
    let total = answered_at - started;
    assert!(
        total < Duration::from_secs(3),
        "pool.query_one waited {total:?} in all for a connection released after 200 ms \
         ({:?} after the release)",
        answered_at - released
    );
    pool.close().await;
}
