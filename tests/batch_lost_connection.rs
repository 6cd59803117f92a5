//! A batch's connection lost before its answer, through a loopback proxy that reads the
//! client's messages: cut just after the Sync that commits the batch went through (the
//! rows are stored, the answer never comes, or a FATAL error comes in its place) or just before the batch's rows reach the
//! server (nothing is stored). `Error::may_have_run` says which, for the batch as a whole:
//! `execute_many` by COPY and row by row, and an atomic `conn.batch()`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wirepool::{Connection, ToSql};
use wirepool_testkit::{cluster, Cluster, Role};

#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Forward the batch's Sync, then never answer and close.
    AfterCommit,
    /// Forward the batch's Sync; in place of the server's answer, a FATAL error (as a
    /// backend terminated as it commits sends), then close.
    FatalAfterCommit,
    /// Close as the batch's rows arrive, forwarding none of them.
    BeforeRows,
}

/// The batch's rows: CopyData, or the tenth Execute of one exchange.
const EXECUTES: usize = 10;

/// A proxy to `upstream` that cuts the first connection whose client sends a batch.
async fn proxy(upstream: u16, cut: Cut) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
            tokio::spawn(pump(client, server, cut, f.clone()));
        }
    });
    (port, fired)
}

async fn pump(client: TcpStream, server: TcpStream, cut: Cut, fired: Arc<AtomicBool>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let silenced = Arc::new(AtomicBool::new(false));
    let s2 = silenced.clone();
    // The client asked for TLS first: the server's first answer is one byte.
    let asked_tls = Arc::new(AtomicBool::new(false));
    let tls2 = asked_tls.clone();
    let down = tokio::spawn(async move {
        let (mut buf, mut pending) = (vec![0u8; 64 * 1024], Vec::new());
        let mut first = true;
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            // Whole messages only, so that a FATAL put in place of the rest starts one.
            let mut whole = 0;
            if std::mem::take(&mut first) && tls2.load(Ordering::SeqCst) {
                whole = 1;
            }
            while let Some(head) = pending.get(whole..whole + 5) {
                let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
                if pending.len() < whole + 1 + len {
                    break;
                }
                whole += 1 + len;
            }
            if s2.load(Ordering::SeqCst) {
                if cut == Cut::FatalAfterCommit {
                    // The server answered the Sync: it committed.
                    let _ = cw.write_all(&fatal()).await;
                    let _ = cw.shutdown().await;
                    break;
                }
                continue;
            }
            if cw.write_all(&pending[..whole]).await.is_err() {
                break;
            }
            pending.drain(..whole);
        }
    });
    let (mut buf, mut tmp) = (Vec::new(), vec![0u8; 64 * 1024]);
    let (mut started, mut rows_seen, mut executes) = (false, false, 0usize);
    'read: loop {
        let n = match cr.read(&mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        let mut off = 0;
        loop {
            let at = off;
            if !started {
                // The startup packet (and an SSL or GSS request before it): no type byte.
                let Some(len) = buf.get(off..off + 4) else {
                    break;
                };
                let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                if buf.len() < off + len.max(8) {
                    break;
                }
                let code = u32::from_be_bytes(buf[off + 4..off + 8].try_into().unwrap());
                started = code != 80_877_103 && code != 80_877_104;
                if code == 80_877_103 {
                    asked_tls.store(true, Ordering::SeqCst);
                }
                off += len;
                continue;
            }
            let Some(head) = buf.get(off..off + 5) else {
                break;
            };
            let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
            if buf.len() < off + 1 + len {
                break;
            }
            off += 1 + len;
            match head[0] {
                b'E' => executes += 1,
                b'S' => executes = 0,
                _ => {}
            }
            let rows_now = head[0] == b'd' || executes >= EXECUTES;
            if fired.load(Ordering::SeqCst) {
                continue;
            }
            if cut == Cut::BeforeRows && rows_now {
                fired.store(true, Ordering::SeqCst);
                silenced.store(true, Ordering::SeqCst);
                let _ = sw.write_all(&buf[..at]).await;
                break 'read;
            }
            rows_seen |= rows_now || head[0] == b'd';
            let after_commit = matches!(cut, Cut::AfterCommit | Cut::FatalAfterCommit);
            if after_commit && head[0] == b'S' && rows_seen {
                fired.store(true, Ordering::SeqCst);
                silenced.store(true, Ordering::SeqCst);
                let _ = sw.write_all(&buf[..off]).await;
                // Let the server commit, then close with its answer unsent.
                tokio::time::sleep(Duration::from_millis(300)).await;
                break 'read;
            }
        }
        if sw.write_all(&buf[..off]).await.is_err() {
            break;
        }
        buf.drain(..off);
    }
    let _ = sw.shutdown().await;
    if cut == Cut::FatalAfterCommit && fired.load(Ordering::SeqCst) {
        // Until the server's answer came and the FATAL went in its place.
        let _ = down.await;
    } else {
        down.abort();
    }
}

/// An ErrorResponse: FATAL 57P01, as `pg_terminate_backend` makes a backend send.
fn fatal() -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P01"),
        (b'M', "terminating connection due to administrator command"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// The rows stored, once the cut connection's server process has ended (it may still be
/// working through what reached it, on a loaded machine).
async fn count(pg: &Cluster) -> i64 {
    let mut c = Connection::connect(&pg.config(Role::Admin)).await.unwrap();
    let others = "SELECT count(*) FROM pg_stat_activity \
                  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = c.query_one(others, &[]).await.unwrap().get(0);
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut session did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.query_one("SELECT count(*) FROM lc", &[])
        .await
        .unwrap()
        .get(0)
}

/// Plain: 1,000 rows or more go by COPY.
const INSERT: &str = "INSERT INTO lc (id, v) VALUES ($1, $2)";
/// With a cast, not the plain shape: row by row whatever the number of rows.
const INSERT_CAST: &str = "INSERT INTO lc (id, v) VALUES ($1, $2::text)";

/// Runs `how` (`execute_many` of `sql`, or an atomic `batch`) of `rows` rows through a
/// proxy cutting as `cut` says; returns the error and the rows stored.
async fn run(cut: Cut, how: &str, sql: &str, rows: i64) -> (wirepool::Error, i64) {
    let pg = cluster();
    pg.psql("CREATE TABLE lc (id int8 PRIMARY KEY, v text)")
        .unwrap();
    let (port, fired) = proxy(pg.port(), cut).await;
    let mut c = Connection::connect(&pg.config(Role::Admin).with_port(port))
        .await
        .unwrap();
    let data: Vec<(i64, String)> = (0..rows).map(|i| (i, format!("v{i}"))).collect();
    let params: Vec<[&(dyn ToSql + Sync); 2]> =
        data.iter().map(|(i, v)| [i as _, v as _]).collect();
    let run = async {
        if how == "execute_many" {
            c.execute_many(sql, params.iter().map(|p| &p[..]))
                .await
                .map(|_| ())
        } else {
            let mut b = c.batch();
            for p in &params {
                b = b.execute(sql, &p[..]);
            }
            b.run().await.map(|_| ())
        }
    };
    let e = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("no hang")
        .expect_err("the connection was cut");
    assert!(fired.load(Ordering::SeqCst), "the proxy cut");
    (e, count(&pg).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_went_through_may_have_run() {
    for (how, sql, rows) in [
        ("execute_many", INSERT, 50_000),
        ("execute_many", INSERT_CAST, 20_000),
        ("batch", INSERT, 40),
    ] {
        let (e, stored) = run(Cut::AfterCommit, how, sql, rows).await;
        assert_eq!(stored, rows, "{how} {sql} of {rows}: committed");
        assert_eq!(e.may_have_run(), Some(true), "{how} {sql} of {rows}: {e}");
    }
}

/// The server committed and, instead of the rest of its answer, sent a FATAL error: the
/// batch may have run (not "the server said no").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answered_with_a_fatal_error_after_its_commit_may_have_run() {
    for (how, sql, rows) in [
        ("execute_many", INSERT, 50_000),
        ("execute_many", INSERT_CAST, 2_000),
        ("batch", INSERT, 40),
    ] {
        let (e, stored) = run(Cut::FatalAfterCommit, how, sql, rows).await;
        assert_eq!(stored, rows, "{how} {sql} of {rows}: committed");
        assert_eq!(e.code(), Some("57P01"), "{how} {sql} of {rows}: {e}");
        assert_eq!(e.may_have_run(), Some(true), "{how} {sql} of {rows}: {e}");
    }
}

/// Cut before the Sync was written (more rows than are written ahead of the answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_before_its_commit_was_written_did_not_run() {
    for sql in [INSERT, INSERT_CAST] {
        let (e, stored) = run(Cut::BeforeRows, "execute_many", sql, 500_000).await;
        assert_eq!(stored, 0, "{sql}");
        assert_eq!(e.may_have_run(), Some(false), "{sql}: {e}");
    }
}
