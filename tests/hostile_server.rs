//! Scripted servers for what a real one does not do: an ErrorResponse in answer to
//! SSLRequest, error text with terminal escapes, SCRAM with the highest iteration count
//! postgres-protocol accepts, notices during the startup.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wirepool::error::sqlstate;
use wirepool::protocol::{BackendMessage, DataRowBody, FieldDescription, TransactionStatus};
use wirepool::{ConnectConfig, Connection, DbError, ErrorKind, Pool};

fn msgs(ms: &[BackendMessage]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for m in ms {
        m.encode(&mut b);
    }
    b.to_vec()
}

/// Reads the untagged first message (StartupMessage or SSLRequest): its code and body.
async fn read_first(sock: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    sock.read_exact(&mut rest).await.unwrap();
    let code = u32::from_be_bytes(rest[..4].try_into().unwrap());
    (code, rest[4..].to_vec())
}

/// Reads one tagged message from the client.
async fn read_tagged(sock: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    sock.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4];
    sock.read_exact(&mut body).await.unwrap();
    (head[0], body)
}

const SSL_REQUEST: u32 = 80_877_103;

#[tokio::test]
async fn an_error_answer_to_ssl_request_is_not_followed_by_plain_text() {
    for mode in ["prefer", "allow"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let startups = Arc::new(AtomicUsize::new(0));
        let (c, s) = (connections.clone(), startups.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let (code, _) = read_first(&mut sock).await;
                    let error = DbError::new(
                        "FATAL",
                        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                        "injected pre-authentication text",
                    );
                    let reply = msgs(&[BackendMessage::ErrorResponse(Box::new(error))]);
                    if code != SSL_REQUEST {
                        // A plain-text startup (allow's first try, or a fallback).
                        s.fetch_add(1, Ordering::SeqCst);
                    }
                    // To SSLRequest: `E` and an ErrorResponse's body, as an old server or one
                    // that could not start a backend answers; to a startup, an ErrorResponse.
                    let _ = sock.write_all(&reply).await;
                });
            }
        });
        let cfg: ConnectConfig =
            format!("postgres://u:pw@127.0.0.1:{port}/d?sslmode={mode}&connect_timeout=30")
                .parse()
                .unwrap();
        let e = Connection::connect(&cfg)
            .await
            .expect_err("an error answer to SSLRequest must end the attempt");
        assert_eq!(e.kind(), ErrorKind::Closed, "{mode}: {e:?}");
        let text = wirepool::error::chain(&e);
        assert!(
            text.contains("error response during SSL exchange"),
            "{mode}: {text}"
        );
        assert!(
            !text.contains("injected"),
            "{mode}: the server's text is shown: {text}"
        );
        // prefer: SSLRequest only, no plain-text retry. allow: plain first (refused), then
        // SSLRequest, and nothing after it.
        let (want_conns, want_startups) = if mode == "prefer" { (1, 0) } else { (2, 1) };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(connections.load(Ordering::SeqCst), want_conns, "{mode}");
        assert_eq!(startups.load(Ordering::SeqCst), want_startups, "{mode}");
    }
}

/// A server that reads the startup message, then writes `script` and holds the socket.
async fn scripted(script: Vec<u8>) -> ConnectConfig {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        read_first(&mut sock).await;
        sock.write_all(&script).await.unwrap();
        let mut sink = [0u8; 1024];
        while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    format!("postgres://u@127.0.0.1:{port}/d?sslmode=disable&connect_timeout=30")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn control_characters_of_server_text_are_escaped_in_errors() {
    let mut error = DbError::new(
        "FATAL",
        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
        "role \x1b[31mred\x1b[0m refused\nforged line",
    );
    error = DbError::from_fields(
        error
            .to_fields()
            .into_iter()
            .chain([
                (b'D', "detail \x1b]0;title\x07".to_string()),
                (b'H', "hint \x1b[2J".to_string()),
            ])
            .collect::<Vec<_>>()
            .iter()
            .map(|(t, v)| (*t, v.as_bytes())),
    );
    let cfg = scripted(msgs(&[BackendMessage::ErrorResponse(Box::new(error))])).await;
    let e = Connection::connect(&cfg).await.unwrap_err();
    for shown in [
        e.to_string(),
        wirepool::error::chain(&e),
        e.as_db_error().unwrap().to_string(),
    ] {
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.contains("role \\x1b[31mred\\x1b[0m refused\\nforged line"),
            "{shown}"
        );
        assert!(shown.contains("detail \\x1b]0;title\\x07"), "{shown}");
        assert!(shown.contains("hint \\x1b[2J"), "{shown}");
    }
    // The fields themselves are as the server sent them.
    assert!(e.as_db_error().unwrap().message().contains('\x1b'));
}

/// A SCRAM server that asks for `iterations` and, once the client proved it hashed the
/// password (its SASLResponse), refuses it with 28P01.
async fn scram_server(iterations: u32) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_first(&mut sock).await;
                let offer = BackendMessage::AuthenticationSasl {
                    mechanisms: vec!["SCRAM-SHA-256".into()],
                };
                sock.write_all(&msgs(&[offer])).await.unwrap();
                let (tag, body) = read_tagged(&mut sock).await;
                assert_eq!(tag, b'p');
                let text = String::from_utf8_lossy(&body).into_owned();
                let nonce = &text[text.find("r=").expect("client nonce") + 2..];
                let first = format!("r={nonce}fakeservernonce,s=c2FsdHNhbHQ=,i={iterations}");
                let cont = BackendMessage::AuthenticationSaslContinue(first.into_bytes().into());
                sock.write_all(&msgs(&[cont])).await.unwrap();
                let (tag, _) = read_tagged(&mut sock).await;
                assert_eq!(tag, b'p', "the SASLResponse");
                let refusal = DbError::new(
                    "FATAL",
                    sqlstate::INVALID_PASSWORD,
                    "password authentication failed",
                );
                let _ = sock
                    .write_all(&msgs(&[BackendMessage::ErrorResponse(Box::new(refusal))]))
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_hashing_does_not_stall_the_runtime() {
    // 100,000 is the most postgres-protocol accepts; each hash takes a second or more in
    // this unoptimized build. Hashed on the runtime's workers, 8 of them starved the ticker
    // below for 24 s (measured on a 2-core machine shared with other builds, load average
    // about 9). On the blocking pool the workers stay free, and what the ticker still sees
    // is the operating system sharing 2 cores among the hashing threads, the workers and
    // the other load: 57 to 123 ms measured there. The bound, 250 ms, leaves a margin of 2
    // over that and is still a hundredth of the stall without the fix.
    let port = scram_server(100_000).await;
    let cfg: ConnectConfig =
        format!("postgres://u:pw@127.0.0.1:{port}/d?sslmode=disable&connect_timeout=120")
            .parse()
            .unwrap();
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (worst, done) = (worst.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                let late = t.elapsed().saturating_sub(Duration::from_millis(5));
                let mut w = worst.lock();
                *w = (*w).max(late);
            }
        })
    };
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move { Connection::connect(&cfg).await })
        })
        .collect();
    for c in connects {
        let e = c
            .await
            .unwrap()
            .expect_err("the server refuses every password");
        assert_eq!(
            e.code(),
            Some(sqlstate::INVALID_PASSWORD),
            "the proof was computed and sent: {e:?}"
        );
    }
    done.store(true, Ordering::SeqCst);
    ticker.await.unwrap();
    let worst = *worst.lock();
    assert!(
        worst < Duration::from_millis(250),
        "a task waited {worst:?} for a worker"
    );
}

/// What a server sends for a session with a notice during its startup, and the answer to
/// the pool's validation query `SELECT 1`.
fn startup_with_notice() -> Vec<u8> {
    let notice = DbError::new("WARNING", sqlstate::WARNING, "sent during the startup");
    msgs(&[
        BackendMessage::AuthenticationOk,
        BackendMessage::NoticeResponse(Box::new(notice)),
        BackendMessage::BackendKeyData {
            process_id: 1,
            secret_key: bytes::Bytes::from_static(b"abcd"),
        },
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        BackendMessage::RowDescription(vec![FieldDescription {
            name: "?column?".into(),
            table_oid: 0,
            column_id: 0,
            type_oid: 23,
            type_size: 4,
            type_modifier: -1,
            format: 0,
        }]),
        BackendMessage::DataRow(DataRowBody::from_values([Some("1")])),
        BackendMessage::CommandComplete("SELECT 1".into()),
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
    ])
}

#[tokio::test]
async fn notices_of_the_startup_reach_the_handler() {
    // The pool's handler, set on the builder, is the connection's from its first message.
    let cfg = scripted(startup_with_notice()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = Pool::builder(cfg)
        .min_size(1)
        .max_size(1)
        .notice_handler(move |n| s.lock().push(n.message().to_string()))
        .build()
        .await
        .unwrap();
    assert_eq!(*seen.lock(), vec!["sent during the startup".to_string()]);
    drop(pool);

    // A bare connection keeps them for the handler set after the connect.
    let cfg = scripted(startup_with_notice()).await;
    let mut conn = Connection::connect(&cfg).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    conn.set_notice_handler(move |n| s.lock().push(n.message().to_string()));
    assert_eq!(*seen.lock(), vec!["sent during the startup".to_string()]);
}
