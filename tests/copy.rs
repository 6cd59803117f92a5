//! COPY through `copy_in` and `copy_out`: a million CSV rows in, checked by count and
//! checksum, in text format too; a malformed line's error with its line number and a
//! usable connection after it; a dropped sink rolled back; COPY out equal to a query, and
//! dropped part-way through the pool; statements that are not the right COPY refused; both
//! through PgBouncer in transaction mode; a binary row write dropped while the connection
//! has no room.

use std::io::Write;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use wirepool::error::sqlstate;
use wirepool::Connection;
use wirepool_testkit::{cluster, Bouncer, PoolMode, Role};

mod common;
use common::proxy::{Mode, Proxy};

/// A CSV file of `n` rows `id,name,score`, with its id sum and name-length sum.
fn csv_file(dir: &std::path::Path, n: u64) -> (std::path::PathBuf, u64, u64) {
    let path = dir.join("rows.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut ids, mut lens) = (0u64, 0u64);
    for i in 1..=n {
        let name = format!("name \"{i}\", quoted");
        writeln!(f, "{i},\"{}\",{}", name.replace('"', "\"\""), i % 97).unwrap();
        ids += i;
        lens += name.chars().count() as u64;
    }
    f.flush().unwrap();
    (path, ids, lens)
}

/// Sends the file in 64 KiB chunks (cut anywhere, not at line ends).
async fn send_file(sink: &mut wirepool::CopyInSink<'_>, path: &std::path::Path) {
    let data = std::fs::read(path).unwrap();
    for chunk in data.chunks(64 * 1024) {
        sink.feed(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn a_million_csv_rows_in_checked_by_count_and_checksum() {
    let pg = cluster();
    let dir = tempdir();
    let (path, ids, lens) = csv_file(&dir, 1_000_000);
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    conn.batch_execute(
        "CREATE TEMP TABLE items (id int8 PRIMARY KEY, name text NOT NULL, score int4);
         CREATE TEMP TABLE items_text (LIKE items)",
    )
    .await
    .unwrap();
    let mut sink = conn
        .copy_in("COPY items FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    send_file(&mut sink, &path).await;
    assert_eq!(sink.finish().await.unwrap(), 1_000_000);
    let row = conn
        .query_one(
            "SELECT count(*), sum(id)::int8, sum(length(name))::int8 FROM items",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1_000_000);
    assert_eq!(row.get::<_, i64>(1) as u64, ids);
    assert_eq!(row.get::<_, i64>(2) as u64, lens);

    // Out as text, in again as text: the same rows.
    let mut out = conn.copy_out("COPY items TO STDOUT").await.unwrap();
    let mut text = Vec::new();
    while let Some(chunk) = out.next().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.rows(), Some(1_000_000));
    drop(out);
    let mut sink = conn.copy_in("COPY items_text FROM STDIN").await.unwrap();
    for chunk in text.chunks(100_000) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 1_000_000);
    let diff: i64 = conn
        .query_one(
            "SELECT count(*) FROM (SELECT * FROM items EXCEPT SELECT * FROM items_text) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(diff, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_malformed_line_names_its_line_and_a_dropped_sink_rolls_back() {
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    conn.batch_execute("CREATE TEMP TABLE t (id int4, name text)")
        .await
        .unwrap();
    let mut sink = conn
        .copy_in("COPY t FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"1,a\n2,b\nthree,c\n4,d\n"))
        .await
        .unwrap();
    let e = sink.finish().await.unwrap_err();
    let db = e.as_db_error().expect("the server's error");
    assert_eq!(db.code(), sqlstate::INVALID_TEXT_REPRESENTATION, "{e}");
    assert!(
        db.where_().unwrap_or("").contains("line 3"),
        "{:?}",
        db.where_()
    );
    let n: i64 = conn
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the failed COPY left nothing");

    // Dropped without finish: CopyFail, nothing copied, the connection usable.
    let mut sink = conn
        .copy_in("COPY t FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"1,a\n2,b\n")).await.unwrap();
    drop(sink);
    let n: i64 = conn
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a dropped sink rolls back");
    assert!(!conn.is_broken());

    // The wrong statement for each: refused, clearly, and the connection stays usable.
    let e = conn.copy_in("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind(), wirepool::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("COPY ... FROM STDIN"), "{e}");
    let e = conn.copy_out("COPY t FROM STDIN").await.unwrap_err();
    assert!(e.to_string().contains("COPY ... TO STDOUT"), "{e}");
    let e = conn.copy_in("COPY nope FROM STDIN").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code(), sqlstate::UNDEFINED_TABLE);
    let v: i32 = conn.query_one("SELECT 5", &[]).await.unwrap().get(0);
    assert_eq!(v, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_matches_a_query_and_a_dropped_one_leaves_the_connection_clean() {
    let pg = cluster();
    let pool = wirepool_testkit::pool(&pg, Role::Scram, 1, 1).await;
    let mut conn = pool.acquire().await.unwrap();
    let mut out = conn
        .copy_out("COPY (SELECT g, g * 2 FROM generate_series(1, 1000) g) TO STDOUT (FORMAT csv)")
        .await
        .unwrap();
    let mut lines = Vec::new();
    while let Some(chunk) = out.next().await {
        lines.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
    }
    drop(out);
    let expected: Vec<String> = conn
        .query("SELECT g, g * 2 FROM generate_series(1, 1000) g", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{},{}\n", r.get::<_, i32>(0), r.get::<_, i32>(1)))
        .collect();
    assert_eq!(lines, expected);

    // Dropped after a few chunks of a huge COPY: cancelled, and the pooled connection is
    // clean for the next caller.
    let mut out = conn
        .copy_out("COPY (SELECT g FROM generate_series(1, 50000000) g) TO STDOUT")
        .await
        .unwrap();
    for _ in 0..5 {
        out.next().await.unwrap().unwrap();
    }
    drop(out);
    drop(conn);
    let mut conn = pool.acquire().await.unwrap();
    let v: i32 = conn.query_one("SELECT 9", &[]).await.unwrap().get(0);
    assert_eq!(v, 9);
    drop(conn);
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test]
async fn copy_in_and_out_through_pgbouncer_in_transaction_mode() {
    let pg = cluster();
    let bouncer =
        Bouncer::start(&pg, PoolMode::Transaction, 3).unwrap_or_else(|e| panic!("PgBouncer: {e}"));
    let pool = bouncer.pool(&pg, 1, 2).await;
    pg.psql("CREATE TABLE bounced (id int4, v text); GRANT ALL ON bounced TO trust_user")
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut sink = conn.copy_in("COPY bounced FROM STDIN").await.unwrap();
    for i in 0..10_000 {
        sink.feed(Bytes::from(format!("{i}\tv{i}\n")))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);
    let mut out = conn
        .copy_out("COPY (SELECT sum(id) FROM bounced) TO STDOUT")
        .await
        .unwrap();
    let sum = out.next().await.unwrap().unwrap();
    assert_eq!(
        &sum[..],
        format!("{}\n", (0..10_000).sum::<i32>()).as_bytes()
    );
    assert!(out.next().await.is_none());
    drop(out);
    drop(conn);
    pool.close().await;
}

/// A fresh directory under the system's temp dir (the caller removes it).
fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "wirepool-copy-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn a_million_binary_rows_in_and_out_typed() {
    use wirepool::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
    use wirepool::Type;
    let pg = cluster();
    let mut conn = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    conn.batch_execute("CREATE TEMP TABLE b (id int8, name text, score float8)")
        .await
        .unwrap();
    let types = [Type::INT8, Type::TEXT, Type::FLOAT8];
    let sink = conn
        .copy_in("COPY b FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let mut w = BinaryCopyInWriter::new(sink, &types);
    let (mut ids, mut lens) = (0i64, 0i64);
    for i in 1..=1_000_000i64 {
        let name = (i % 10 != 0).then(|| format!("n{i}"));
        lens += name.as_ref().map_or(0, |n| n.len() as i64);
        ids += i;
        w.write(&[&i, &name, &(i as f64 / 4.0)]).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), 1_000_000);
    let row = conn
        .query_one(
            "SELECT count(*), sum(id)::int8, sum(length(name))::int8, count(name), sum(score)
               FROM b",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1_000_000);
    assert_eq!(row.get::<_, i64>(1), ids);
    assert_eq!(row.get::<_, i64>(2), lens);
    assert_eq!(row.get::<_, i64>(3), 900_000);
    assert_eq!(row.get::<_, f64>(4), ids as f64 / 4.0);

    let out = conn
        .copy_out("COPY (SELECT * FROM b ORDER BY id) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let mut rows = BinaryCopyOutStream::new(out, &types);
    let (mut n, mut sum, mut nulls) = (0i64, 0i64, 0);
    while let Some(r) = rows.next().await {
        let r = r.unwrap();
        n += 1;
        assert_eq!(r.get::<i64>(0), n);
        sum += r.get::<i64>(0);
        match r.get::<Option<&str>>(1) {
            Some(name) => assert_eq!(name, format!("n{n}")),
            None => nulls += 1,
        }
        assert_eq!(r.get::<f64>(2), n as f64 / 4.0);
        assert!(r.try_get::<i32>(0).is_err(), "an int8 is not an i32");
    }
    assert_eq!((n, sum, nulls), (1_000_000, ids, 100_000));
    drop(rows);
    // A row of the wrong shape is refused before anything is sent.
    let sink = conn
        .copy_in("COPY b FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let mut w = BinaryCopyInWriter::new(sink, &types);
    let e = w.write(&[&1i64]).await.unwrap_err();
    assert_eq!(e.kind(), wirepool::ErrorKind::InvalidInput);
    drop(w);
    let v: i64 = conn
        .query_one("SELECT count(*) FROM b", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 1_000_000);
}

/// A `BinaryCopyInWriter::write` dropped while the connection has no room (the server
/// reads nothing meanwhile) loses no row: neither its own, encoded before its first await,
/// nor those written before it that were waiting for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_write_dropped_while_the_connection_is_full_loses_no_row() {
    use wirepool::binary_copy::BinaryCopyInWriter;
    let pg = cluster();
    let proxy = Proxy::start(pg.port()).await;
    let cfg = pg.config(Role::Trust).with_port(proxy.port());
    let mut c = Connection::connect(&cfg).await.unwrap();
    c.batch_execute("CREATE TEMP TABLE held (id int8, body text)")
        .await
        .unwrap();
    let sink = c
        .copy_in("COPY held FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let mut w = BinaryCopyInWriter::new(sink, &[wirepool::Type::INT8, wirepool::Type::TEXT]);
    proxy.set(Mode::Hold);
    let body = "x".repeat(200);
    let mut acknowledged = 0i64;
    let mut dropped = 0i64;
    let mut id = 0i64;
    // Writes until three have waited and been dropped: the kernel's buffers fill, then
    // the connection's (a write that waits for the socket to take what was handed to it),
    // then the next hand-over waits for the connection to have room.
    while dropped < 3 && id < 2_000_000 {
        let row: [&(dyn wirepool::ToSql + Sync); 2] = [&id, &body];
        match tokio::time::timeout(std::time::Duration::from_millis(300), w.write(&row)).await {
            Ok(r) => {
                r.unwrap();
                acknowledged += 1;
            }
            Err(_) => dropped += 1,
        }
        id += 1;
    }
    assert_eq!(dropped, 3, "writes that waited for room");
    proxy.set(Mode::Pass);
    for _ in 0..10 {
        let row: [&(dyn wirepool::ToSql + Sync); 2] = [&id, &body];
        w.write(&row).await.unwrap();
        id += 1;
    }
    let copied = w.finish().await.unwrap();
    let count: i64 = c
        .query_one("SELECT count(*) FROM held", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied as i64, count);
    assert_eq!(
        count,
        acknowledged + dropped + 10,
        "{acknowledged} rows acknowledged under the stall, {dropped} dropped writes' own \
         rows (encoded before their first await), 10 after"
    );
}
