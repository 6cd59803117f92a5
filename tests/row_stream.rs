//! `query_raw`: rows read as they are consumed. The same rows as `query`; a gigabyte
//! read in bounded memory (peak RSS of a child process); an error after some rows; a
//! stream dropped part-way on a bare connection (cancelled), inside a transaction (the
//! rest read, the transaction goes on) and, 1,000 times at random points, through the
//! pool; the command timeout bounding each wait.

use std::time::Duration;

use futures_util::StreamExt;
use wirepool::error::sqlstate;
use wirepool::{Connection, Pool};
use wirepool_testkit::{cluster, Role};

#[tokio::test]
async fn a_stream_yields_what_query_returns() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    let sql = "SELECT g, md5(g::text) AS h FROM generate_series(1, $1) g";
    let all = conn.query(sql, &[&1000i32]).await.unwrap();
    let mut stream = conn.query_raw(sql, &[&1000i32]).await.unwrap();
    let mut streamed = Vec::new();
    while let Some(row) = stream.next().await {
        let row = row.unwrap();
        streamed.push((row.get::<_, i32>(0), row.get::<_, String>("h")));
    }
    assert_eq!(stream.rows_affected(), Some(1000));
    drop(stream);
    let collected: Vec<(i32, String)> = all.iter().map(|r| (r.get(0), r.get("h"))).collect();
    assert_eq!(streamed, collected);

    // An error after some rows: the rows, then the error, then a usable connection.
    let mut stream = conn
        .query_raw("SELECT 1 / (g - 501) FROM generate_series(1, 1000) g", &[])
        .await
        .unwrap();
    let mut ok = 0;
    let mut err = None;
    while let Some(r) = stream.next().await {
        match r {
            Ok(_) => ok += 1,
            Err(e) => err = Some(e),
        }
    }
    assert_eq!(stream.rows_affected(), None);
    drop(stream);
    assert!(ok < 501, "{ok} rows before the error");
    assert_eq!(
        err.unwrap().as_db_error().unwrap().code(),
        sqlstate::DIVISION_BY_ZERO
    );
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // A COPY is refused here (copy_in runs it), and the connection goes on.
    conn.batch_execute("CREATE TEMP TABLE c (i int)")
        .await
        .unwrap();
    let mut s = conn.query_raw("COPY c FROM STDIN", &[]).await.unwrap();
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), wirepool::ErrorKind::CopyUnsupported, "{e}");
    assert!(s.next().await.is_none());
    drop(s);
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_dropped_stream_is_cancelled_not_read_to_its_end() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    // Fifty million rows: reading them all would take minutes; the cancel ends it.
    let mut stream = conn
        .query_raw("SELECT g FROM generate_series(1, 50000000) g", &[])
        .await
        .unwrap();
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    let started = std::time::Instant::now();
    let v: i32 = conn.query_one("SELECT 42", &[]).await.unwrap().get(0);
    assert_eq!(v, 42);
    assert!(!conn.is_broken());
    // Reading 50 million rows takes minutes on any machine; the cancel takes a round trip.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the rest was read instead of cancelled: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stream_dropped_inside_a_transaction_leaves_the_transaction_usable() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    conn.batch_execute("DROP TABLE IF EXISTS stream_in_tx; CREATE TABLE stream_in_tx (i int)")
        .await
        .unwrap();
    let mut tx = conn.transaction().await.unwrap();
    tx.execute("INSERT INTO stream_in_tx VALUES (1)", &[])
        .await
        .unwrap();
    // Fifty megabytes: far more than the sockets' buffers hold, so the server is still
    // sending when the stream is dropped (a cancel would hit the statement).
    let mut stream = tx
        .query_raw(
            "SELECT g, repeat('x', 1000) FROM generate_series(1, 50000) g",
            &[],
        )
        .await
        .unwrap();
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    // The transaction goes on: no "current transaction is aborted" (25P02).
    tx.execute("INSERT INTO stream_in_tx VALUES (2)", &[])
        .await
        .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM stream_in_tx", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    tx.commit().await.unwrap();
    drop(conn);

    // The commit took effect: another session sees both rows.
    let mut other = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let rows: Vec<i32> = other
        .query("SELECT i FROM stream_in_tx ORDER BY i", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1, 2]);
    other
        .batch_execute("DROP TABLE stream_in_tx")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_command_timeout_bounds_each_wait() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Scram))
        .min_size(1)
        .max_size(1)
        .command_timeout(Some(Duration::from_millis(300)))
        .build()
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut stream = conn.query_raw("SELECT pg_sleep(30)", &[]).await.unwrap();
    let e = stream.next().await.unwrap().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(stream.next().await.is_none());
    drop(stream);
    let v: i32 = conn.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
    drop(conn);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_dropped_at_random_points_through_the_pool_leave_nothing_behind() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Scram, 4, 4).await;
    // A small deterministic generator: the same rounds in every run.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut tasks = Vec::new();
    for task in 0..4 {
        let rounds: Vec<(i32, u64)> = (0..250)
            .map(|_| (1 + next(3000) as i32, next(3000)))
            .collect();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for (rows, keep) in rounds {
                let mut conn = pool.acquire().await.unwrap();
                let mut s = conn
                    .query_raw(
                        "SELECT g, $2::int4 FROM generate_series(1, $1) g",
                        &[&rows, &task],
                    )
                    .await
                    .unwrap();
                let mut seen = 0u64;
                while seen < keep {
                    match s.next().await {
                        Some(r) => {
                            let r = r.unwrap();
                            assert_eq!(r.get::<_, i32>(0) as u64, seen + 1);
                            assert_eq!(r.get::<_, i32>(1), task);
                            seen += 1;
                        }
                        None => break,
                    }
                }
                // Dropped here, part-way or at the end.
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..4 {
        let mut conns = Vec::new();
        for i in 0..4i32 {
            let mut c = pool.acquire().await.unwrap();
            let v: i32 = c.query_one("SELECT $1::int4", &[&i]).await.unwrap().get(0);
            assert_eq!(v, i);
            conns.push(c);
        }
    }
    wirepool_testkit::eventually("every connection back", || {
        let s = pool.statistics();
        s.active_connections == 0 && s.maintenance_connections == 0
    })
    .await;
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.total_acquisitions, 1000 + 16);
    pool.close().await;
}

/// Peak resident memory of this process, from `/proc/self/status` (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Streams a gigabyte (a million rows of 1,000 bytes) through `query_raw`, then through
/// `copy_out`, and prints the peak RSS; run in a child process by the test below, so the
/// measure is this alone.
#[test]
fn gigabyte_child() {
    let Ok(url) = std::env::var("WIREPOOL_STREAM_CHILD_URL") else {
        return; // only as the child of the test below
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&url.parse().unwrap()).await.unwrap();
        let mut s = conn
            .query_raw(
                "SELECT g, repeat(md5(g::text), 31) || 'abcdefgh' FROM generate_series(1, 1000000) g",
                &[],
            )
            .await
            .unwrap();
        let (mut rows, mut bytes) = (0u64, 0u64);
        while let Some(r) = s.next().await {
            let r = r.unwrap();
            bytes += r.get::<_, &str>(1).len() as u64;
            rows += 1;
        }
        assert_eq!(s.rows_affected(), Some(rows));
        drop(s);
        // The same gigabyte through COPY TO STDOUT.
        let mut out = conn
            .copy_out(
                "COPY (SELECT repeat(md5(g::text), 31) || 'abcdefgh' FROM generate_series(1, 1000000) g) TO STDOUT",
            )
            .await
            .unwrap();
        let mut copied = 0u64;
        while let Some(chunk) = out.next().await {
            copied += chunk.unwrap().len() as u64;
        }
        assert_eq!(out.rows(), Some(1_000_000));
        println!(
            "STREAMED rows={rows} bytes={bytes} copied={copied} peak_rss_kib={}",
            peak_rss_kib()
        );
    });
}

#[test]
fn a_gigabyte_streams_in_bounded_memory() {
    let pg = cluster();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gigabyte_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WIREPOOL_STREAM_CHILD_URL", pg.url(Role::Scram))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("STREAMED ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report: {stdout}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(field("rows"), 1_000_000);
    assert_eq!(field("bytes"), 1_000_000 * 1000);
    assert_eq!(
        field("copied"),
        1_000_000 * 1001,
        "each line and its newline"
    );
    let peak_mib = field("peak_rss_kib") / 1024;
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB for a 1 GB result");
}
