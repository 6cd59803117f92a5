//! Connection correctness against a real server: a request cut off while being written is
//! finished, never resent; a connection the server closed while it sat idle is never handed
//! out; a session whose client_encoding left UTF8 is closed; oversized queries are refused
//! before anything is written; TCP keepalives are set as configured; a server that is not
//! PostgreSQL is named as such.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wirepool::error::sqlstate;
use wirepool::observe::CloseReason;
use wirepool::protocol::MAX_FRONTEND_MESSAGE;
use wirepool::{ConnectConfig, Connection, ErrorKind, Pool, PoolConfig};
use wirepool_testkit::{cluster, Cluster, Role};

use common::proxy::{Mode, Proxy};

/// A query of about `mb` megabytes whose answer is its own length.
fn big_query(mb: usize) -> (String, String) {
    let payload = "x".repeat(mb * 1024 * 1024);
    (
        format!("SELECT length('{payload}')"),
        payload.len().to_string(),
    )
}

/// What the server logs when a client desynchronizes: a frontend message it cannot read.
fn assert_no_protocol_errors(pg: &Cluster) {
    let log = pg.server_log();
    for bad in [
        "invalid frontend message type",
        "invalid message length",
        "unexpected EOF",
        "incomplete message",
        sqlstate::PROTOCOL_VIOLATION,
    ] {
        assert!(!log.contains(bad), "server log shows `{bad}`:\n{log}");
    }
}

async fn select_1(c: &mut Connection) {
    let rows = c.simple_query("SELECT 1").await.unwrap();
    assert_eq!(rows[0].get(0), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_dropped_while_being_written_is_finished_never_resent() {
    let pg = cluster();
    // Through a proxy that holds the request while the query is polled: the 8 MiB request
    // backs up in the kernel's buffers, so each round really stops part-way, however fast
    // or busy the machine. The proxy lets it through before the connection is used again.
    let proxy = Proxy::start(pg.port()).await;
    let cfg = pg.config(Role::Trust).with_port(proxy.port());
    let mut c = Connection::connect(&cfg).await.unwrap();
    let (sql, answer) = big_query(8);
    let mut cut_short = 0;
    // Poll the query a few times (each poll writes what the socket takes), then drop it:
    // the request is cut off at a different point each round.
    for polls in 1..=12 {
        proxy.set(Mode::Hold);
        {
            let mut fut = pin!(c.simple_query(&sql));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                    assert_eq!(r.unwrap()[0].get(0), Some(answer.as_str()));
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200 * polls as u64)).await;
            }
        }
        if wirepool::internals::unsent_bytes(&c) > 0 {
            cut_short += 1;
        }
        proxy.set(Mode::Pass);
        select_1(&mut c).await;
        assert!(!c.is_busy() && !c.is_broken());
    }
    // And under a timeout of its own, at growing delays.
    for micros in (0..4000).step_by(250) {
        proxy.set(Mode::Hold);
        let r = tokio::time::timeout(Duration::from_micros(micros), c.simple_query(&sql)).await;
        if r.is_err() && wirepool::internals::unsent_bytes(&c) > 0 {
            cut_short += 1;
        }
        proxy.set(Mode::Pass);
        select_1(&mut c).await;
    }
    assert!(
        cut_short >= 20,
        "only {cut_short} rounds stopped part-way through the write"
    );
    assert_no_protocol_errors(&pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_command_timeout_never_leaves_a_half_sent_query() {
    let pg = cluster();
    let pool = Pool::builder(pg.config(Role::Trust))
        .min_size(1)
        .max_size(2)
        .command_timeout(Some(Duration::from_millis(1)))
        .build()
        .await
        .unwrap();
    let (sql, _) = big_query(8);
    let mut timed_out = 0;
    for _ in 0..15 {
        let mut c = pool.acquire().await.unwrap();
        match c.simple_query(&sql).await {
            Err(e) if e.kind() == ErrorKind::CommandTimeout => timed_out += 1,
            Err(e) => panic!("{e:?}"),
            Ok(_) => {}
        }
        drop(c);
        let mut c = pool.acquire().await.unwrap();
        // The check must not time out itself: it may first finish reading the abandoned
        // query's answer, which takes longer than 1 ms on a busy machine.
        c.set_command_timeout(Some(Duration::from_secs(30)));
        let rows = c.simple_query("SELECT 1").await.unwrap();
        assert_eq!(rows[0].get(0), Some("1"));
        c.set_command_timeout(Some(Duration::from_millis(1)));
    }
    assert!(timed_out > 0, "a 1 ms timeout never hit an 8 MB query");
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.closed(CloseReason::Broken), 0, "{s:?}");
    pool.close().await;
    assert_no_protocol_errors(&pg);
}

/// The connection keeps one timer for its command timeout and moves its deadline at every
/// query: each query gets the whole limit counted from its own start, after many queries
/// and after the timer has fired while the connection sat idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_gets_the_whole_command_timeout_from_its_own_start() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    c.set_command_timeout(Some(Duration::from_millis(600)));
    // Quick queries for longer than the limit: a deadline left at the first query's start
    // would cut the query below short.
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_millis(900) {
        select_1(&mut c).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
    // Idle past the deadline of the last query: the timer fires with nobody waiting.
    tokio::time::sleep(Duration::from_millis(900)).await;
    c.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
    // And it still fires.
    let t = std::time::Instant::now();
    let e = c.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    select_1(&mut c).await;
}

/// A connection used from one runtime after another: its command timeout's timer follows
/// it, even after the runtime that made the timer is gone.
#[test]
fn the_command_timeout_works_in_each_runtime_a_connection_is_used_in() {
    let pg = cluster();
    let rt = |threads| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    };
    // The socket's runtime stays up throughout; the queries run in two others in turn.
    let home = rt(1);
    let mut c = home
        .block_on(Connection::connect(&pg.config(Role::Trust)))
        .unwrap();
    c.set_command_timeout(Some(Duration::from_millis(500)));
    for round in 0..2 {
        let other = rt(1);
        other.block_on(async {
            select_1(&mut c).await;
            let e = c.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::CommandTimeout, "round {round}: {e:?}");
            select_1(&mut c).await;
        });
        drop(other);
    }
}

fn no_keepalive(min: usize, max: usize) -> PoolConfig {
    let mut cfg = PoolConfig::default();
    cfg.min_size = min;
    cfg.max_size = max;
    // The monitor must not find the dead connections first: this is about checkout.
    cfg.keepalive_interval = None;
    cfg.acquire_timeout = Duration::from_secs(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_idle_backend_is_not_handed_out() {
    let pg = cluster();
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), no_keepalive(1, 2)).await;
    for round in 0..5 {
        let pid = pool.acquire().await.unwrap().process_id();
        pg.psql(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = pool.acquire().await.unwrap();
        assert_ne!(c.process_id(), pid, "round {round}");
        let rows = c.simple_query("SELECT 1").await.unwrap();
        assert_eq!(rows[0].get(0), Some("1"));
    }
    assert!(pool.statistics().closed(CloseReason::ServerClosed) >= 5);
    pool.close().await;
}

/// The runtime learns that a socket has input only when one of its threads polls for
/// events: with both workers busy, a backend that ended meanwhile left its FATAL and the end
/// of its stream in the socket without the runtime knowing. A checkout of a connection that
/// rested a while asks the kernel too, so it is still not handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_ended_while_no_worker_polled_is_not_handed_out() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let pg = cluster();
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), no_keepalive(1, 1)).await;
    for round in 0..5 {
        let pid = {
            let mut c = pool.acquire().await.unwrap();
            c.simple_query("SELECT 1").await.unwrap();
            c.process_id()
        };
        // Both workers spin without yielding: neither polls for I/O events.
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let (stop, started) = (stop.clone(), started.clone());
                tokio::spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        // The backend has exited when this returns (psql waits up to 60 s for it).
        let ended = pg
            .psql(&format!("SELECT pg_terminate_backend({pid}, 60000)"))
            .unwrap();
        assert_eq!(ended.trim(), "t", "round {round}");
        // One poll of acquire() on this thread, which drives no I/O either.
        let mut acquire = pin!(pool.acquire());
        let first = acquire
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        stop.store(true, Ordering::SeqCst);
        for s in spinners {
            s.await.unwrap();
        }
        let mut c = match first {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => acquire.await.unwrap(),
        };
        assert_ne!(
            c.process_id(),
            pid,
            "round {round}: the ended backend was handed out"
        );
        let rows = c.simple_query("SELECT 1").await.unwrap();
        assert_eq!(rows[0].get(0), Some("1"));
    }
    assert!(pool.statistics().closed(CloseReason::ServerClosed) >= 5);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_timeout_never_reaches_a_caller() {
    let pg = cluster();
    let cfg: ConnectConfig = format!(
        "{}&options=-c%20idle_session_timeout%3D1000",
        pg.url(Role::Trust)
    )
    .parse()
    .unwrap();
    let pool = wirepool_testkit::pool_from(cfg, no_keepalive(2, 4)).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut c = pool.acquire().await.unwrap();
        let rows = c
            .simple_query("SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("a caller met a dead connection: {e:?}"));
        assert_eq!(rows[0].get(0), Some("1"));
    }
    assert!(pool.statistics().closed(CloseReason::ServerClosed) >= 5);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_quick_restart_ten_callers_see_no_dead_connection() {
    let mut pg = cluster();
    let pool = wirepool_testkit::pool_from(pg.config(Role::Trust), no_keepalive(6, 10)).await;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        tokio::task::block_in_place(|| pg.restart()).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let pool = Arc::new(pool.clone());
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut c = pool.acquire().await?;
                    c.simple_query("SELECT 1").await
                })
            })
            .collect();
        for c in callers {
            let rows = c
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("a caller met a dead connection: {e:?}"));
            assert_eq!(rows[0].get(0), Some("1"));
        }
    }
    let s = pool.statistics();
    assert!(s.closed(CloseReason::ServerClosed) >= 6, "{s:?}");
    assert_eq!(s.total_acquisitions, s.total_releases);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_encoding_other_than_utf8_closes_the_connection() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let e = c
        .simple_query("SET client_encoding = 'LATIN1'")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encoding, "{e:?}");
    assert!(e.to_string().contains("LATIN1"), "{e}");
    assert!(c.is_broken());

    // Through the pool: the connection is discarded and the next caller gets UTF8.
    let pool = wirepool_testkit::pool(&pg, Role::Trust, 1, 1).await;
    let mut g = pool.acquire().await.unwrap();
    let first = g.process_id();
    let e = g.simple_query("SET client_encoding TO 'SQL_ASCII'").await;
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Encoding);
    drop(g);
    let mut g = pool.acquire().await.unwrap();
    assert_ne!(g.process_id(), first);
    let rows = g.simple_query("SHOW client_encoding").await.unwrap();
    assert_eq!(rows[0].get(0), Some("UTF8"));
    // UTF-8 text survives the round trip.
    let rows = g.simple_query("SELECT 'żółw ✓'").await.unwrap();
    assert_eq!(rows[0].get(0), Some("żółw ✓"));
    drop(g);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_query_is_refused_before_anything_is_written() {
    let pg = cluster();
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let huge = "x".repeat(MAX_FRONTEND_MESSAGE);
    let e = c.simple_query(&huge).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    assert!(e.to_string().contains("limit"), "{e}");
    drop(huge);
    assert_eq!(wirepool::internals::unsent_bytes(&c), 0);
    assert!(!c.is_broken() && !c.is_busy());
    select_1(&mut c).await;
    let e = c.simple_query("SELECT '\0'").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    select_1(&mut c).await;
    assert_no_protocol_errors(&pg);
}

/// The TCP options of this process's socket whose local port is `port` and whose peer's
/// port is `server_port`, read back with getsockopt: (SO_KEEPALIVE, TCP_KEEPIDLE,
/// TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT). The socket is found among this process's
/// own descriptors by its addresses (getsockname, getpeername), never in the machine's
/// socket table, which lists every process's sockets.
fn socket_options(port: u16, server_port: u16) -> (bool, u32, u32, u32, u32) {
    use std::os::fd::BorrowedFd;
    let ports = |fd: i32| {
        // SAFETY: `fd` was listed in /proc/self/fd as a socket an instant ago; it is only
        // borrowed to read its addresses, and a descriptor closed meanwhile fails the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = socket2::SockRef::from(&fd);
        let local = s.local_addr().ok()?.as_socket()?.port();
        let peer = s.peer_addr().ok()?.as_socket()?.port();
        Some((local, peer))
    };
    let mut found: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| ports(fd) == Some((port, server_port)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one of this process's sockets is connected from port {port} to port {server_port}"
    );
    let fd = found.pop().expect("one");
    // SAFETY: `fd` is an open socket of this process (the connection under test holds it
    // for the whole call), borrowed only to read options.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let s = socket2::SockRef::from(&fd);
    (
        s.keepalive().unwrap(),
        s.tcp_keepalive_time().unwrap().as_secs() as u32,
        s.tcp_keepalive_interval().unwrap().as_secs() as u32,
        s.tcp_keepalive_retries().unwrap(),
        s.tcp_user_timeout()
            .unwrap()
            .map_or(0, |d| d.as_millis() as u32),
    )
}

async fn client_port(c: &mut Connection) -> u16 {
    let rows = c
        .simple_query("SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    rows[0].get(0).unwrap().parse().unwrap()
}

#[tokio::test]
async fn tcp_keepalives_are_set_as_configured() {
    let pg = cluster();
    let url = pg.url(Role::Trust);
    let cfg: ConnectConfig = format!(
        "{url}&keepalives_idle=7&keepalives_interval=3&keepalives_count=4&tcp_user_timeout=9000"
    )
    .parse()
    .unwrap();
    let mut c = Connection::connect(&cfg).await.unwrap();
    let port = client_port(&mut c).await;
    assert_eq!(socket_options(port, pg.port()), (true, 7, 3, 4, 9000));

    // Default: on, with the system's timings.
    let mut c = Connection::connect(&pg.config(Role::Trust)).await.unwrap();
    let port = client_port(&mut c).await;
    let (on, ..) = socket_options(port, pg.port());
    assert!(on, "keepalives are on by default, as in libpq");

    let cfg: ConnectConfig = format!("{url}&keepalives=0").parse().unwrap();
    let mut c = Connection::connect(&cfg).await.unwrap();
    let port = client_port(&mut c).await;
    assert!(!socket_options(port, pg.port()).0);
}

#[tokio::test]
async fn ipv6_loopback_in_brackets() {
    let pg = cluster();
    let url = format!(
        "postgres://trust_user@[::1]:{}/postgres?connect_timeout=5",
        pg.port()
    );
    let cfg: ConnectConfig = url.parse().unwrap();
    match Connection::connect(&cfg).await {
        Ok(mut c) => select_1(&mut c).await,
        // A machine without IPv6 loopback: the address itself is what fails.
        Err(e) => {
            assert!(
                std::net::TcpListener::bind("[::1]:0").is_err(),
                "::1 is available but the connection failed: {e:?}"
            );
            assert!(e.is_io(), "{e:?}");
        }
    }
}

#[tokio::test]
async fn a_server_that_is_not_postgres_is_named_as_such() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // With TLS negotiation (the default, prefer) and without it.
    for sslmode in ["prefer", "disable"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        });
        let cfg: ConnectConfig =
            format!("postgres://u:pw@127.0.0.1:{port}/d?connect_timeout=3&sslmode={sslmode}")
                .parse()
                .unwrap();
        let e = Connection::connect(&cfg).await.unwrap_err();
        let text = e.to_string();
        assert!(e.is_protocol(), "{sslmode}: {e:?}");
        assert!(
            text.contains(&format!(
                "the server at 127.0.0.1:{port} does not speak the PostgreSQL protocol"
            )),
            "{sslmode}: {text}"
        );
        assert!(text.contains("HTTP/1.1 400"), "{sslmode}: {text}");
    }
}
