//! The HTTP listener against clients that are slow, idle or greedy, from raw sockets on
//! loopback: unfinished request heads and idle keep-alive connections are cut off, request
//! bodies are bounded on every route, MCP sessions are capped, and `/health` stays
//! answerable while hundreds of idle sockets sit on a server with a 256-descriptor limit.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use wirepool_testkit::{cluster, Role};

use common::{command, get, request, Proc};

fn env(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("DATABASE_URL", url),
        ("WIREPOOL_BIND", "127.0.0.1:0"),
        ("POOL_MIN_SIZE", "1"),
        ("POOL_MAX_SIZE", "4"),
    ]
}

fn serve(url: &str) -> Proc {
    Proc::spawn(command(&["serve"], &env(url)))
}

/// Seconds until the server closes `s` (reads return end of stream or an error), up to
/// `limit`.
fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while t.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(t.elapsed()),
        }
    }
    None
}

fn connect(addr: SocketAddr) -> TcpStream {
    assert!(addr.ip().is_loopback());
    TcpStream::connect(addr).unwrap()
}

#[test]
fn unfinished_heads_and_idle_keep_alive_connections_are_cut_off() {
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust));
    let addr = p.wait_listening();
    // Half a request head, never finished.
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let took = closed_within(s, Duration::from_secs(40));
    assert!(took.is_some(), "an unfinished head kept its connection");
    // A whole request answered, then nothing: the keep-alive connection is closed too.
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let took = closed_within(s, Duration::from_secs(40));
    assert!(took.is_some(), "an idle keep-alive connection stayed open");
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn request_bodies_are_bounded_on_every_route() {
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust));
    let addr = p.wait_listening();
    // A declared 100 MB body: refused before any of it is read.
    for path in ["/mcp", "/messages?session_id=x", "/health"] {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 104857600\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 413", "{path}");
    }
    // A chunked body that grows past the limit: refused when it crosses it.
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..32 {
        // 2 MiB in all; the server may stop reading, and close, once past 1 MiB.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.starts_with("HTTP/1.1 2"),
        "a 2 MiB body was taken: {}",
        text.lines().next().unwrap_or("")
    );
    assert_eq!(get(addr, "/health", &[]).status, 200);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

#[test]
fn mcp_sessions_are_capped_and_health_still_answers() {
    let pg = cluster();
    let mut p = serve(&pg.url(Role::Trust));
    let addr = p.wait_listening();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..300 {
        let status = request(
            addr,
            "POST",
            "/mcp",
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ],
            init,
        )
        .status;
        match status {
            200 => ok += 1,
            503 => refused += 1,
            other => panic!("initialize answered {other}"),
        }
    }
    assert_eq!((ok, refused), (256, 44), "sessions are capped at 256");
    assert_eq!(get(addr, "/health", &[]).status, 200);
    // HTTP+SSE sessions too: 256 open streams, then 503.
    let open: Vec<TcpStream> = (0..256)
        .map(|i| {
            let (status, s) = sse(addr);
            assert_eq!(status, 200, "stream {i}");
            s
        })
        .collect();
    assert_eq!(sse(addr).0, 503);
    assert_eq!(get(addr, "/health", &[]).status, 200);
    drop(open);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}

/// Opens an SSE stream: its status, and the socket (the stream stays open while it lives).
fn sse(addr: SocketAddr) -> (u16, TcpStream) {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (status, s)
}

#[test]
fn idle_sockets_past_the_descriptor_limit_do_not_starve_health() {
    let pg = cluster();
    // The server with 256 descriptors, as a small container might give it.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" serve")
        .arg(env!("CARGO_BIN_EXE_wirepool"));
    for v in common::vars() {
        cmd.env_remove(v);
    }
    let url = pg.url(Role::Trust);
    for (k, v) in env(&url) {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn(cmd);
    let addr = p.wait_listening();
    // 300 clients that send half a request head and wait.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    for round in 0..5 {
        let t = Instant::now();
        let r = get(addr, "/health", &[]);
        assert_eq!(r.status, 200, "round {round}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "round {round}: /health took {:?}",
            t.elapsed()
        );
    }
    drop(idle);
    assert!(
        !p.stderr_text().contains("Too many open files"),
        "{}",
        p.stderr_text()
    );
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(35)).success());
}
