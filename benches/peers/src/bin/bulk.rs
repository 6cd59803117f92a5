//! Bulk transfer on one throwaway PostgreSQL, in one run, rounds interleaved so that drift
//! in the machine's load hits every client alike (`scripts/bench-peers --bulk`):
//!
//! - COPY IN of 1,000,000 CSV rows from a file: wirepool `copy_in` (64 KiB chunks),
//!   tokio-postgres `copy_in` (same chunks), and `psql -c "\copy ... FROM file"`;
//! - binary COPY IN of the same 1,000,000 rows: wirepool's and tokio-postgres's
//!   `BinaryCopyInWriter`;
//! - 1,000,000 rows read through wirepool's `RowStream` and tokio-postgres's `query_raw`.
//!
//! All over TCP to 127.0.0.1 as `trust_user`; the table is truncated before each COPY.
//! Prints each client's median and its ratio to wirepool's.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use wirepool_testkit::{Cluster, Role};

const ROWS: i64 = 1_000_000;

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn write_csv(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 1..=ROWS {
        writeln!(f, "{i},name {i},{}", i % 97).unwrap();
    }
    f.flush().unwrap();
}

fn psql_copy(pg: &Cluster, file: &Path) -> Duration {
    let bin = wirepool_testkit::find_bin_dir().unwrap().join("psql");
    let t = Instant::now();
    let out = std::process::Command::new(bin)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(pg.port().to_string())
        .args(["-U", "trust_user", "-d", "postgres", "-c"])
        .arg(format!(
            "\\copy bulk FROM '{}' (FORMAT csv)",
            file.display()
        ))
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let pg = Cluster::start().expect("throwaway PostgreSQL");
    pg.psql("CREATE TABLE bulk (id int8, name text, score int4); GRANT ALL ON bulk TO trust_user")
        .unwrap();
    let dir = std::env::temp_dir().join(format!("wirepool-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rows.csv");
    write_csv(&file);
    let data = std::fs::read(&file).unwrap();
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

    rt.block_on(async {
        let mut wp = wirepool::Connection::connect(&url.parse().unwrap())
            .await
            .unwrap();
        let (tp, tp_conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(tp_conn);
        let truncate = || async {
            pg.psql("TRUNCATE bulk").unwrap();
        };

        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        let mut b = [Vec::new(), Vec::new()];
        let copies = if std::env::var_os("BULK_STREAM_ONLY").is_some() { 0 } else { rounds };
        if copies == 0 {
            let mut sink = wp.copy_in("COPY bulk FROM STDIN (FORMAT csv)").await.unwrap();
            sink.send(Bytes::from(data.clone())).await.unwrap();
            sink.finish().await.unwrap();
        }
        for _ in 0..copies {
            // Text COPY: wirepool, tokio-postgres, psql.
            truncate().await;
            let s = Instant::now();
            let mut sink = wp.copy_in("COPY bulk FROM STDIN (FORMAT csv)").await.unwrap();
            for chunk in data.chunks(64 * 1024) {
                sink.feed(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            assert_eq!(sink.finish().await.unwrap(), ROWS as u64);
            t[0].push(s.elapsed());

            truncate().await;
            let s = Instant::now();
            let sink = tp
                .copy_in::<_, Bytes>("COPY bulk FROM STDIN (FORMAT csv)")
                .await
                .unwrap();
            futures_util::pin_mut!(sink);
            for chunk in data.chunks(64 * 1024) {
                sink.feed(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            assert_eq!(sink.finish().await.unwrap(), ROWS as u64);
            t[1].push(s.elapsed());

            truncate().await;
            t[2].push(psql_copy(&pg, &file));

            // Binary COPY: wirepool, tokio-postgres.
            truncate().await;
            let s = Instant::now();
            let sink = wp.copy_in("COPY bulk FROM STDIN (FORMAT binary)").await.unwrap();
            let mut w = wirepool::binary_copy::BinaryCopyInWriter::new(
                sink,
                &[wirepool::Type::INT8, wirepool::Type::TEXT, wirepool::Type::INT4],
            );
            for i in 1..=ROWS {
                let name = format!("name {i}");
                w.write(&[&i, &name, &((i % 97) as i32)]).await.unwrap();
            }
            assert_eq!(w.finish().await.unwrap(), ROWS as u64);
            b[0].push(s.elapsed());

            truncate().await;
            let s = Instant::now();
            let sink = tp.copy_in("COPY bulk FROM STDIN (FORMAT binary)").await.unwrap();
            let w = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
                sink,
                &[
                    tokio_postgres::types::Type::INT8,
                    tokio_postgres::types::Type::TEXT,
                    tokio_postgres::types::Type::INT4,
                ],
            );
            futures_util::pin_mut!(w);
            for i in 1..=ROWS {
                let name = format!("name {i}");
                w.as_mut()
                    .write(&[&i, &name, &((i % 97) as i32)])
                    .await
                    .unwrap();
            }
            assert_eq!(w.finish().await.unwrap(), ROWS as u64);
            b[1].push(s.elapsed());
        }

        // Streaming rows: the table as it now is (1,000,000 rows).
        let sql = "SELECT id, name, score FROM bulk";
        let mut r = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            let s = Instant::now();
            let mut rows = wp.query_raw(sql, &[]).await.unwrap();
            let mut n = 0i64;
            while let Some(row) = rows.next().await {
                let row = row.unwrap();
                n += row.get::<_, i64>(0) - row.get::<_, i64>(0) + 1;
                std::hint::black_box(row.get::<_, &str>(1));
            }
            assert_eq!(n, ROWS);
            drop(rows);
            r[0].push(s.elapsed());

            let s = Instant::now();
            let rows = tp
                .query_raw(sql, std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>())
                .await
                .unwrap();
            futures_util::pin_mut!(rows);
            let mut n = 0i64;
            while let Some(row) = rows.next().await {
                let row = row.unwrap();
                n += row.get::<_, i64>(0) - row.get::<_, i64>(0) + 1;
                std::hint::black_box(row.get::<_, &str>(1));
            }
            assert_eq!(n, ROWS);
            r[1].push(s.elapsed());
        }

        if copies == 0 {
            let (wr, tr) = (median(&mut r[0]), median(&mut r[1]));
            println!("RowStream wirepool {wr:?} tokio-postgres {tr:?}");
            return;
        }
        let (wt, tt, pt) = (median(&mut t[0]), median(&mut t[1]), median(&mut t[2]));
        let (wb, tb) = (median(&mut b[0]), median(&mut b[1]));
        let (wr, tr) = (median(&mut r[0]), median(&mut r[1]));
        let ratio = |ours: Duration, theirs: Duration| theirs.as_secs_f64() / ours.as_secs_f64();
        println!("1,000,000 rows, median of {rounds} interleaved round(s); speed relative to wirepool (>1: wirepool faster)");
        println!("COPY IN csv     wirepool {wt:>9.2?}  tokio-postgres {tt:>9.2?} ({:.2}x)  psql \\copy {pt:>9.2?} ({:.2}x)", ratio(wt, tt), ratio(wt, pt));
        println!("COPY IN binary  wirepool {wb:>9.2?}  tokio-postgres {tb:>9.2?} ({:.2}x)", ratio(wb, tb));
        println!("RowStream       wirepool {wr:>9.2?}  tokio-postgres query_raw {tr:>9.2?} ({:.2}x)", ratio(wr, tr));
    });
    let _ = std::fs::remove_dir_all(&dir);
}
