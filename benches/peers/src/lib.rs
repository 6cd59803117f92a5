//! What the peer benchmarks share: running tasks against a pool for a while with their
//! latencies, the median round, and pgbench on the same server.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirepool_testkit::Cluster;

/// Latency quantiles of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lat {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

pub fn lat(mut v: Vec<Duration>) -> Lat {
    v.sort_unstable();
    let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    Lat {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: *v.last().unwrap(),
    }
}

/// `tasks` tasks doing `op` for `secs`: ops/s and the latencies `op` returns.
pub async fn run_tasks<F, Fut>(tasks: usize, secs: Duration, op: F) -> (f64, Lat)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Duration> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (op, stop) = (op.clone(), stop.clone());
            tokio::spawn(async move {
                let mut v = Vec::with_capacity(1 << 14);
                while !stop.load(Ordering::Relaxed) {
                    v.push(op().await);
                }
                v
            })
        })
        .collect();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = start.elapsed();
    (all.len() as f64 / elapsed.as_secs_f64(), lat(all))
}

/// The round whose throughput is the median.
pub fn median_round(mut v: Vec<(f64, Lat)>) -> (f64, Lat) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `pgbench -n -M <mode> -c 10 -j 2` for `secs` with `script` (which runs `per_tx`
/// statements a transaction) against `pg` as trust_user: statements per second.
pub fn pgbench(
    pg: &Cluster,
    mode: &str,
    script: &str,
    per_tx: u32,
    secs: u64,
) -> Result<f64, String> {
    let bin = wirepool_testkit::find_bin_dir()
        .map_err(|e| e.to_string())?
        .join("pgbench");
    let path = std::env::temp_dir().join(format!(
        "wirepool-peers-{}-{}.sql",
        std::process::id(),
        mode
    ));
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(bin)
        .args([
            "-n",
            "-M",
            mode,
            "-c",
            "10",
            "-j",
            "2",
            "-T",
            &secs.to_string(),
        ])
        .arg("-f")
        .arg(&path)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "trust_user",
            "postgres",
        ])
        .env_remove("PGPASSWORD")
        .output()
        .map_err(|e| format!("running pgbench: {e}"))?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .map(|tps| tps * f64::from(per_tx))
        .ok_or_else(|| {
            format!(
                "no tps in pgbench's output: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The ceiling of pipelining with a Sync per statement on this machine and server: 10
/// bare sockets on the current runtime (as trust_user), each writing `per_write` prepared
/// `SELECT $1::int4` statements at a time (Bind, Execute, Sync each, no library, no
/// parsing beyond message lengths) and reading their `per_write` ReadyForQuery before the
/// next write. Statements per second.
pub async fn bare_pipelined(port: u16, secs: Duration, per_write: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Reads until `n` ReadyForQuery messages have come; panics on an ErrorResponse.
    async fn ready(s: &mut TcpStream, buf: &mut Vec<u8>, mut n: usize) {
        let mut chunk = [0u8; 16 * 1024];
        let mut i = 0;
        buf.clear();
        while n > 0 {
            let got = s.read(&mut chunk).await.expect("read");
            assert!(got > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..got]);
            while i + 5 <= buf.len() {
                let len =
                    u32::from_be_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]) as usize;
                if i + 1 + len > buf.len() {
                    break;
                }
                assert!(
                    buf[i] != b'E',
                    "server error: {:?}",
                    String::from_utf8_lossy(&buf[i..i + 1 + len])
                );
                if buf[i] == b'Z' {
                    n -= 1;
                }
                i += 1 + len;
            }
        }
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.set_nodelay(true).unwrap();
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for part in ["user", "trust_user", "database", "postgres", ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend(body);
        s.write_all(&startup).await.expect("startup");
        ready(&mut s, &mut Vec::new(), 1).await;
        let mut parse = b"bare_s\0SELECT $1::int4\0".to_vec();
        parse.extend_from_slice(&1i16.to_be_bytes());
        parse.extend_from_slice(&23u32.to_be_bytes());
        let mut prep = message(b'P', &parse);
        prep.extend(message(b'S', &[]));
        s.write_all(&prep).await.expect("parse");
        ready(&mut s, &mut Vec::new(), 1).await;
        conns.push(s);
    }
    let mut bind = b"\0bare_s\0".to_vec();
    for v in [1i16, 1, 1] {
        bind.extend_from_slice(&v.to_be_bytes());
    }
    bind.extend_from_slice(&4i32.to_be_bytes());
    bind.extend_from_slice(&7i32.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    let mut one = message(b'B', &bind);
    one.extend(message(b'E', b"\0\0\0\0\0"));
    one.extend(message(b'S', &[]));
    let batch: Arc<Vec<u8>> = Arc::new(one.repeat(per_write));
    let start = Instant::now();
    let hs: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let (stop, batch) = (stop.clone(), batch.clone());
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(&batch).await.expect("write");
                    ready(&mut s, &mut buf, per_write).await;
                    n += per_write as u64;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in hs {
        total += h.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}
