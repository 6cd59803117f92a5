//! One statement over many parameter rows, on one connection, in one run, rounds
//! interleaved so that drift in the machine's load hits every client alike
//! (`scripts/bench-peers --many`). The rows are 1,000,000 `(int8, text, int4)` inserted
//! into an unindexed table by:
//!
//! - wirepool `execute_many` (atomic: one Sync after the last row), outside a transaction
//!   block: the statement is a plain INSERT of parameters into a table COPY may fill, so
//!   the rows go by binary COPY;
//! - the same inside `BEGIN` ... `COMMIT`, where they go row by row (a Bind and Execute
//!   each, one Sync);
//! - wirepool `execute_many_independent` (a Sync after every row);
//! - wirepool binary COPY IN (`BinaryCopyInWriter`) of the same rows;
//! - tokio-postgres with the statement prepared and 1,000 `execute` futures joined at a
//!   time (its pipelining);
//! - a loop of wirepool `execute`, one row per round trip, timed on 50,000 rows (a million
//!   would take minutes) and given as rows per second like the rest.
//!
//! All over TCP to 127.0.0.1 as `trust_user`; the table is truncated before each client.
//! Prints each client's median rows/s, and the ratios the targets are stated in. The first
//! `execute_many` runs before anything else has grown the process, so the growth of its
//! peak RSS (VmHWM) over it is what a million rows cost in memory.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use wirepool::ToSql;
use wirepool_testkit::{Cluster, Role};

const ROWS: i64 = 1_000_000;
const LOOP_ROWS: i64 = 50_000;
const INSERT: &str = "INSERT INTO many (id, name, score) VALUES ($1, $2, $3)";

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The process's peak resident set so far, in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The CPU time this process has used (user and system), in seconds.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 a second on Linux).
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn rate(rows: i64, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64()
}

fn main() {
    let pg = Cluster::start().expect("throwaway PostgreSQL");
    pg.psql("CREATE TABLE many (id int8, name text, score int4); GRANT ALL ON many TO trust_user")
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = pg.url(Role::Trust);
    let rounds = if std::env::args().any(|a| a == "--quick") {
        1
    } else {
        3
    };
    let truncate = || pg.psql("TRUNCATE many").unwrap();
    let count = || {
        pg.psql("SELECT count(*) FROM many")
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    rt.block_on(async {
        let mut wp = wirepool::Connection::connect(&url.parse().unwrap())
            .await
            .unwrap();
        let (tp, tp_conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(tp_conn);
        let tp_insert = tp.prepare(INSERT).await.unwrap();
        // Rows/s per client: execute_many, independent, binary COPY, tokio-postgres, loop.
        let mut r: [Vec<f64>; 6] = Default::default();
        let mut rss_growth = None;
        // The client's share of execute_many's time: its CPU seconds over the wall clock.
        let mut client_share = Vec::new();
        for _ in 0..rounds {
            truncate();
            let before = peak_rss_kib();
            let cpu = cpu_seconds();
            let s = Instant::now();
            let n = wp
                .execute_many(
                    INSERT,
                    (1..=ROWS).map(|i| (i, format!("name {i}"), (i % 97) as i32)),
                )
                .await
                .unwrap();
            r[0].push(rate(ROWS, s.elapsed()));
            client_share.push((cpu_seconds() - cpu) / s.elapsed().as_secs_f64());
            rss_growth.get_or_insert(peak_rss_kib().saturating_sub(before));
            assert_eq!(n, ROWS as u64);
            assert_eq!(count(), ROWS);

            truncate();
            let s = Instant::now();
            wp.batch_execute("BEGIN").await.unwrap();
            let n = wp
                .execute_many(
                    INSERT,
                    (1..=ROWS).map(|i| (i, format!("name {i}"), (i % 97) as i32)),
                )
                .await
                .unwrap();
            wp.batch_execute("COMMIT").await.unwrap();
            r[5].push(rate(ROWS, s.elapsed()));
            assert_eq!(n, ROWS as u64);

            truncate();
            let s = Instant::now();
            let n = wp
                .execute_many_independent(
                    INSERT,
                    (1..=ROWS).map(|i| (i, format!("name {i}"), (i % 97) as i32)),
                )
                .await
                .unwrap();
            r[1].push(rate(ROWS, s.elapsed()));
            assert_eq!(n, ROWS as u64);

            truncate();
            let s = Instant::now();
            let sink = wp.copy_in("COPY many FROM STDIN (FORMAT binary)").await.unwrap();
            let mut w = wirepool::binary_copy::BinaryCopyInWriter::new(
                sink,
                &[wirepool::Type::INT8, wirepool::Type::TEXT, wirepool::Type::INT4],
            );
            for i in 1..=ROWS {
                let name = format!("name {i}");
                w.write(&[&i, &name, &((i % 97) as i32)]).await.unwrap();
            }
            assert_eq!(w.finish().await.unwrap(), ROWS as u64);
            r[2].push(rate(ROWS, s.elapsed()));

            truncate();
            let s = Instant::now();
            let mut done = 0u64;
            for chunk in 0..ROWS / 1000 {
                let rows: Vec<(i64, String, i32)> = (chunk * 1000 + 1..=chunk * 1000 + 1000)
                    .map(|i| (i, format!("name {i}"), (i % 97) as i32))
                    .collect();
                type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync); 3];
                let params: Vec<Params<'_>> = rows
                    .iter()
                    .map(|(i, name, score)| -> Params<'_> { [i, name, score] })
                    .collect();
                let runs = params.iter().map(|p| tp.execute(&tp_insert, p));
                for n in join_all(runs).await {
                    done += n.unwrap();
                }
            }
            r[3].push(rate(ROWS, s.elapsed()));
            assert_eq!(done, ROWS as u64);

            truncate();
            let s = Instant::now();
            for i in 1..=LOOP_ROWS {
                let name = format!("name {i}");
                let score = (i % 97) as i32;
                let params: [&(dyn ToSql + Sync); 3] = [&i, &name, &score];
                assert_eq!(wp.execute(INSERT, &params).await.unwrap(), 1);
            }
            r[4].push(rate(LOOP_ROWS, s.elapsed()));
        }
        let m: Vec<f64> = r.iter_mut().map(|v| median(v)).collect();
        println!("1,000,000 rows (int8, text, int4), one connection, median of {rounds} interleaved round(s), rows/s");
        println!("wirepool execute_many (atomic)          {:>10.0}", m[0]);
        println!("wirepool execute_many in a transaction  {:>10.0}  (row by row)", m[5]);
        println!("wirepool execute_many_independent       {:>10.0}  ({:.2}x of atomic)", m[1], m[1] / m[0]);
        println!("wirepool binary COPY IN                 {:>10.0}", m[2]);
        println!("tokio-postgres, 1,000 joined execute    {:>10.0}", m[3]);
        println!("wirepool loop of execute ({LOOP_ROWS} rows) {:>10.0}", m[4]);
        println!(
            "execute_many / loop of execute: {:.1}x (target at least 5x)",
            m[0] / m[4]
        );
        println!(
            "execute_many / binary COPY IN: {:.2}x (target at least 0.5x)",
            m[0] / m[2]
        );
        println!("execute_many / tokio-postgres joined: {:.2}x", m[0] / m[3]);
        println!(
            "execute_many by COPY / row by row in a transaction: {:.1}x",
            m[0] / m[5]
        );
        println!(
            "peak RSS grew {} KiB over the first execute_many of 1,000,000 rows",
            rss_growth.unwrap_or(0)
        );
        println!(
            "execute_many's client CPU: {:.0}% of its wall-clock time (the rest is the server's)",
            median(&mut client_share) * 100.0
        );
    });
}
