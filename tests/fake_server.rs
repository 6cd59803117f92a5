//! A misbehaving server on loopback: every kind of bad input ends in a typed error, quickly,
//! with no panic and no large allocation.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wirepool::protocol::{BackendMessage, TransactionStatus};
use wirepool::{ConnectConfig, Connection, ErrorKind};

/// A one-shot peer on loopback: it reads the startup message, hands the protocol version it
/// asked for to the receiver, writes `script`, then closes (or, with `hold`, keeps the
/// socket open for 30 s). Its port is returned.
async fn peer(script: Vec<u8>, hold: bool) -> (u16, tokio::sync::oneshot::Receiver<u32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).await.unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        sock.read_exact(&mut rest).await.unwrap();
        let _ = tx.send(u32::from_be_bytes(rest[..4].try_into().unwrap()));
        sock.write_all(&script).await.unwrap();
        if hold {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    (port, rx)
}

/// Starts a one-shot server that reads the startup message, then writes `script` and
/// closes (or, with `hold`, keeps the socket open).
async fn fake(script: Vec<u8>, hold: bool) -> ConnectConfig {
    let (port, _) = peer(script, hold).await;
    // Plain text: these servers script the protocol after the startup message.
    format!("postgres://u:pw@127.0.0.1:{port}/d?connect_timeout=3&sslmode=disable")
        .parse()
        .unwrap()
}

fn msgs(ms: &[BackendMessage]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for m in ms {
        m.encode(&mut b);
    }
    b.to_vec()
}

async fn connect_err(script: Vec<u8>, hold: bool) -> wirepool::Error {
    let cfg = fake(script, hold).await;
    let t = Instant::now();
    let e = Connection::connect(&cfg)
        .await
        .expect_err("the fake server must not be accepted");
    assert!(t.elapsed() < Duration::from_secs(3) || e.kind() == ErrorKind::ConnectTimeout);
    e
}

#[tokio::test]
async fn four_gib_length_header() {
    let e = connect_err(b"D\xff\xff\xff\xff".to_vec(), true).await;
    assert!(e.is_protocol(), "{e:?}");
    assert!(e.to_string().contains("over the limit"), "{e}");
}

#[tokio::test]
async fn truncated_message_then_eof() {
    let mut script = msgs(&[BackendMessage::AuthenticationOk]);
    script.extend_from_slice(b"S\x00\x00\x00\x20server_ver"); // declares 32 bytes, sends 10
    let e = connect_err(script, false).await;
    assert!(e.is_closed(), "{e:?}");
    assert!(e.to_string().contains("middle of a message"), "{e}");
}

#[tokio::test]
async fn unknown_tag() {
    let e = connect_err(b"Q\x00\x00\x00\x04".to_vec(), true).await;
    assert!(e.is_protocol(), "{e:?}");
}

#[tokio::test]
async fn sasl_without_a_usable_mechanism() {
    let e = connect_err(
        msgs(&[BackendMessage::AuthenticationSasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "OAUTHBEARER".into()],
        }]),
        true,
    )
    .await;
    assert!(e.is_authentication(), "{e:?}");
    assert!(e.to_string().contains("OAUTHBEARER"), "{e}");
}

#[tokio::test]
async fn gss_is_named_as_unsupported() {
    let e = connect_err(b"R\x00\x00\x00\x08\x00\x00\x00\x07".to_vec(), true).await;
    assert!(e.is_authentication(), "{e:?}");
    assert!(e.to_string().contains("GSSAPI"), "{e}");
}

#[tokio::test]
async fn garbage_bytes() {
    let e = connect_err(
        b"\x00\x01\x02garbage that is not a protocol at all".to_vec(),
        true,
    )
    .await;
    assert!(e.is_protocol(), "{e:?}");
}

#[tokio::test]
async fn bad_body_inside_a_valid_frame() {
    // An AuthenticationMD5Password whose salt is cut short.
    let e = connect_err(b"R\x00\x00\x00\x0a\x00\x00\x00\x05\x01\x02".to_vec(), true).await;
    assert!(e.is_protocol(), "{e:?}");
}

#[tokio::test]
async fn silent_server_hits_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let cfg: ConnectConfig = format!("postgres://u@127.0.0.1:{port}/d?connect_timeout=1")
        .parse()
        .unwrap();
    let t = Instant::now();
    let e = Connection::connect(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectTimeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn server_closes_in_the_middle_of_a_query_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        // The whole startup message, then the script.
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        sock.read_exact(&mut buf).await.unwrap();
        let mut buf = vec![0u8; 1024];
        sock.write_all(&msgs(&[
            BackendMessage::AuthenticationOk,
            BackendMessage::BackendKeyData {
                process_id: 1,
                secret_key: bytes::Bytes::from_static(b"abcd"),
            },
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        ]))
        .await
        .unwrap();
        let _ = sock.read(&mut buf).await.unwrap(); // the Query
        sock.write_all(b"T\x00\x00\x00\x30\x00\x01half a row description")
            .await
            .unwrap();
        // and close
    });
    let cfg: ConnectConfig = format!("postgres://u@127.0.0.1:{port}/d?sslmode=disable")
        .parse()
        .unwrap();
    let mut c = Connection::connect(&cfg).await.unwrap();
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed(), "{e:?}");
    assert!(c.is_broken());
}

#[tokio::test]
async fn the_question_of_what_kind_of_server_it_is_is_bounded_by_the_connect_timeout() {
    // A server too old to report in_hot_standby, which then never answers the query that
    // asks instead: the connect timeout still ends the attempt.
    let script = msgs(&[
        BackendMessage::AuthenticationOk,
        BackendMessage::BackendKeyData {
            process_id: 1,
            secret_key: bytes::Bytes::from_static(b"abcd"),
        },
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
    ]);
    let cfg = fake(script, true).await;
    let cfg: ConnectConfig =
        format!("{cfg}?connect_timeout=1&sslmode=disable&target_session_attrs=read-write")
            .parse()
            .unwrap();
    let t = Instant::now();
    let e = Connection::connect(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectTimeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn the_connect_timeout_applies_to_each_host() {
    // The first host accepts and then says nothing; the second is a real server. With a
    // timeout for all hosts together, the first would use it all up.
    let silent = fake(Vec::new(), true).await;
    let pg = wirepool_testkit::cluster();
    let cfg: ConnectConfig = format!(
        "postgres://trust_user@127.0.0.1:{},127.0.0.1:{}/postgres?connect_timeout=1&sslmode=disable",
        silent.port(),
        pg.port()
    )
    .parse()
    .unwrap();
    let t = Instant::now();
    let mut c = Connection::connect(&cfg).await.unwrap();
    assert_eq!(c.server_addr(), format!("127.0.0.1:{}", pg.port()));
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "the silent host was tried first"
    );
    assert_eq!(
        c.simple_query("SELECT 1").await.unwrap()[0].get(0),
        Some("1")
    );
}

/// A session's start after authentication: AuthenticationOk, a 4-byte cancel key (process
/// 9), ReadyForQuery.
fn logged_in() -> Vec<u8> {
    msgs(&[
        BackendMessage::AuthenticationOk,
        BackendMessage::BackendKeyData {
            process_id: 9,
            secret_key: bytes::Bytes::from_static(b"abcd"),
        },
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
    ])
}

/// A peer that speaks protocol 3.0 only (an older server or pooler): it plays `script`
/// after the startup message, whose version the receiver gets.
async fn three_oh_peer(script: Vec<u8>) -> (ConnectConfig, tokio::sync::oneshot::Receiver<u32>) {
    let (port, asked) = peer(script, true).await;
    let cfg = format!(
        "postgres://u@127.0.0.1:{port}/d?connect_timeout=3&sslmode=disable&max_protocol_version=3.2"
    )
    .parse()
    .unwrap();
    (cfg, asked)
}

#[tokio::test]
async fn a_3_0_peer_answers_negotiate_protocol_version_and_the_session_goes_on_in_3_0() {
    let mut script = msgs(&[BackendMessage::NegotiateProtocolVersion {
        newest_version: 0x0003_0000,
        unrecognized: vec![],
    }]);
    script.extend(logged_in());
    let (cfg, asked) = three_oh_peer(script).await;
    let conn = Connection::connect(&cfg).await.unwrap();
    assert_eq!(asked.await.unwrap(), 0x0003_0002, "3.2 was asked for");
    assert_eq!(conn.protocol_version(), wirepool::ProtocolVersion::V3_0);
    assert_eq!(conn.process_id(), 9);
}

#[tokio::test]
async fn a_3_0_peer_that_refuses_3_2_outright_gives_its_error() {
    // What a peer that knows no NegotiateProtocolVersion says, as PostgreSQL 9.x did.
    let refusal = wirepool::protocol::DbError::new(
        "FATAL",
        "0A000",
        "unsupported frontend protocol 3.2: server supports 3.0 to 3.0",
    );
    let (cfg, _) = three_oh_peer(msgs(&[BackendMessage::ErrorResponse(Box::new(refusal))])).await;
    let e = Connection::connect(&cfg).await.unwrap_err();
    assert!(
        e.to_string().contains("unsupported frontend protocol"),
        "{e}"
    );
    // With 3.0 asked for, as by default, nothing is negotiated.
    let (cfg, asked) = three_oh_peer(logged_in()).await;
    let cfg = cfg.with_protocol_versions(
        wirepool::ProtocolVersion::V3_0,
        wirepool::ProtocolVersion::V3_0,
    );
    let conn = Connection::connect(&cfg).await.unwrap();
    assert_eq!(asked.await.unwrap(), 0x0003_0000);
    assert_eq!(conn.protocol_version(), wirepool::ProtocolVersion::V3_0);
}

/// A replication connection to a scripted server: it starts, answers START_REPLICATION
/// with CopyBothResponse, then sends `payloads` as CopyData and keeps the socket open. The
/// stream must end with the returned error (never a panic, a hang, or a reconnection).
async fn replication_err(copy_both: &[u8], payloads: &[&[u8]]) -> wirepool::Error {
    use futures_util::StreamExt;
    use wirepool::replication::ReplicationClient;
    let mut script = msgs(&[
        BackendMessage::AuthenticationOk,
        BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: "15.0".into(),
        },
        BackendMessage::BackendKeyData {
            process_id: 1,
            secret_key: bytes::Bytes::from_static(b"abcd"),
        },
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
    ]);
    script.extend_from_slice(copy_both);
    for p in payloads {
        script.extend(msgs(&[BackendMessage::CopyData(
            bytes::Bytes::copy_from_slice(p),
        )]));
    }
    let cfg = fake(script, true).await;
    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let mut stream = match client.start("s", &["p"], None).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("no hang")
        {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                assert!(
                    stream.next().await.is_none(),
                    "the stream ends after its error"
                );
                return e;
            }
            None => panic!("the stream ended without an error"),
        }
    }
}

/// XLogData around pgoutput `data`.
fn xlog(data: &[u8]) -> Vec<u8> {
    let mut v = b"w".to_vec();
    v.extend_from_slice(&[0; 24]);
    v.extend_from_slice(data);
    v
}

#[tokio::test]
async fn malformed_replication_messages_are_errors() {
    let copy_both = msgs(&[BackendMessage::CopyBothResponse]);
    let begin = {
        let mut b = b"B".to_vec();
        b.extend_from_slice(&[0; 20]);
        b
    };
    let insert_unknown = {
        let mut b = b"I".to_vec();
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(b"N\x00\x00");
        b
    };
    for (payloads, words) in [
        (vec![&b"x"[..]], "unknown replication message kind"),
        (vec![&b"w\x00\x00"[..]], "too short"),
        (vec![&b"k\x00"[..]], "too short"),
        (vec![&xlog(b"Z")[..]], "unknown pgoutput message"),
        (
            vec![&xlog(b"R\x00\x00\x00\x01pub")[..]],
            "no terminating NUL",
        ),
        (
            vec![&xlog(&begin)[..], &xlog(&insert_unknown)[..]],
            "no Relation message described",
        ),
        (vec![&xlog(b"I\x00\x00\x00\x01N\x7f\xff")[..]], "too short"),
        (vec![&xlog(b"E")[..]], "outside a stream block"),
    ] {
        let e = replication_err(&copy_both, &payloads).await;
        assert!(e.is_protocol(), "{words}: {e:?}");
        assert!(e.to_string().contains(words), "{words}: {e}");
    }
    // A CopyBothResponse of the wrong length.
    let e = replication_err(b"W\x00\x00\x00\x09\x00\x00\x05xx", &[]).await;
    assert!(e.is_protocol(), "{e:?}");
    assert!(e.to_string().contains("CopyBothResponse"), "{e}");
}
