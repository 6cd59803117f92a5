//! `/health` under load: `wirepool serve` (release build) against a throwaway PostgreSQL,
//! driven on loopback by keep-alive HTTP/1.1 clients in this process. Reports requests per
//! second and latency percentiles for `/health`, `/metrics`, and a baseline measured in the
//! same run: a path the router answers 404 (the HTTP stack alone, no pool). Also the
//! server's resident memory (VmRSS, VmHWM) with max_size 10.
//!
//! `cargo bench -p wirepool-server --bench health` (BENCH_SECONDS per path, default 5;
//! BENCH_CONNECTIONS, default 32).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wirepool_testkit::Role;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing and
    // should stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs = if benching {
        env_u64("BENCH_SECONDS", 5)
    } else {
        1
    };
    let conns = env_u64("BENCH_CONNECTIONS", 32) as usize;

    let pg = wirepool_testkit::cluster();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wirepool"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", pg.url(Role::Trust))
        .env("POOL_MAX_SIZE", "10")
        .env("LOG_LEVEL", "INFO")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wirepool starts");
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("wirepool logs before it exits")
            .expect("UTF-8 logs");
        if let Some(rest) = line.split("Listening on http://").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .expect("an address after Listening on");
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rss_idle = rss_kib(pid);
    println!("wirepool serve, max_size 10, {conns} keep-alive connections, {secs} s per path");
    println!(
        "{:<16} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "path", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    let mut results = Vec::new();
    for path in ["/does-not-exist", "/health", "/metrics"] {
        // Warm up, then measure.
        rt.block_on(load(addr, path, conns, Duration::from_millis(500)));
        let r = rt.block_on(load(addr, path, conns, Duration::from_secs(secs)));
        println!(
            "{path:<16} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
            r.rps,
            r.pct(0.50),
            r.pct(0.99),
            r.pct(0.999),
            r.pct(1.0)
        );
        results.push((path, r));
    }
    let base = &results[0].1;
    let health = &results[1].1;
    println!(
        "/health vs baseline: {:.2}x the throughput, {:.2}x the p99",
        health.rps / base.rps,
        health.pct(0.99) / base.pct(0.99)
    );
    let (rss, hwm) = (rss_kib(pid), hwm_kib(pid));
    println!(
        "server memory: RSS {:.1} MiB idle, {:.1} MiB after the load (peak {:.1} MiB)",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
}

struct Outcome {
    rps: f64,
    /// Latencies in microseconds, sorted.
    lat: Vec<f64>,
}

impl Outcome {
    fn pct(&self, q: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 * q).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i]
    }
}

/// `conns` clients, each sending `GET path` back to back on one keep-alive connection.
async fn load(addr: SocketAddr, path: &'static str, conns: usize, d: Duration) -> Outcome {
    let deadline = Instant::now() + d;
    let start = Instant::now();
    let req: Arc<[u8]> = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .into_bytes()
        .into();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                s.write_all(&req).await.expect("write");
                read_response(&mut s, &mut buf).await;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Outcome {
        rps: lat.len() as f64 / elapsed,
        lat,
    }
}

/// Reads one response with a Content-Length body (axum sets it for these routes).
async fn read_response(s: &mut TcpStream, buf: &mut [u8]) {
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).await.expect("read");
        assert!(n > 0, "server closed the connection");
        have += n;
        let text = &buf[..have];
        if let Some(end) = find(text, b"\r\n\r\n") {
            let head = std::str::from_utf8(&text[..end]).expect("ASCII headers");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length");
            if have >= end + 4 + len {
                assert_eq!(have, end + 4 + len, "one response at a time");
                return;
            }
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}
