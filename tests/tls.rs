//! TLS against a real server started with `ssl = on` (a CA and a server certificate made at
//! test time): every sslmode, certificate checks, SCRAM channel binding, client
//! certificates, a pool over verify-full with cancellation, and misbehaving servers.

use std::time::{Duration, Instant};

use wirepool::error::sqlstate;
use wirepool::{ConnectConfig, Connection, ErrorKind, Pool};
use wirepool_testkit::{tls_cluster, Cluster, Role};

fn cfg(url: &str) -> ConnectConfig {
    url.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `role`'s URL with extra query parameters.
fn url(pg: &Cluster, role: Role, extra: &str) -> String {
    format!("{}&{extra}", pg.url(role))
}

/// Whether the server sees this connection as encrypted.
async fn server_says_ssl(c: &mut Connection) -> bool {
    let rows = c
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    rows[0].get(0) == Some("t")
}

#[tokio::test]
async fn every_sslmode_against_a_tls_server() {
    let pg = tls_cluster();
    let ca = pg.ca_cert().display().to_string();
    let other = pg.other_ca_cert().display().to_string();
    for (extra, what) in [
        ("sslmode=require".to_string(), "require"),
        (format!("sslmode=verify-ca&sslrootcert={ca}"), "verify-ca"),
        (
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "verify-full by IP",
        ),
        (String::new(), "the default, prefer"),
    ] {
        let mut c = Connection::connect(&cfg(&url(&pg, Role::Tls, &extra)))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(c.is_encrypted(), "{what}");
        assert!(server_says_ssl(&mut c).await, "{what}");
        let info = c.tls_info().unwrap();
        assert!(info.protocol.starts_with("TLSv1."), "{info}");
        assert!(!info.cipher.is_empty());
    }
    // verify-full by name: localhost is in the certificate.
    let by_name = format!(
        "postgres://tls_user:tls_secret@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        pg.port()
    );
    let mut c = Connection::connect(&cfg(&by_name)).await.unwrap();
    assert!(server_says_ssl(&mut c).await);

    // A name the certificate does not carry (hostaddr: nothing is looked up).
    let wrong_name = format!(
        "host=db.invalid hostaddr=127.0.0.1 port={} user=tls_user password=tls_secret dbname=postgres sslrootcert={ca}",
        pg.port()
    );
    let e = Connection::connect(&cfg(&format!("{wrong_name} sslmode=verify-full")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    // verify-ca does not check the name.
    let mut c = Connection::connect(&cfg(&format!("{wrong_name} sslmode=verify-ca")))
        .await
        .unwrap();
    assert!(server_says_ssl(&mut c).await);

    // A CA that did not sign the server's certificate.
    for extra in [
        format!("sslmode=verify-ca&sslrootcert={other}"),
        format!("sslmode=verify-full&sslrootcert={other}"),
        // require with a root certificate behaves as verify-ca, as in libpq.
        format!("sslmode=require&sslrootcert={other}"),
    ] {
        let e = Connection::connect(&cfg(&url(&pg, Role::Tls, &extra)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{extra}: {e:?}");
    }
    // The platform's roots do not know the test CA.
    let e = Connection::connect(&cfg(&url(
        &pg,
        Role::Tls,
        "sslmode=verify-full&sslrootcert=system",
    )))
    .await
    .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Tls | ErrorKind::Config),
        "{e:?}"
    );

    // sslnegotiation=direct needs PostgreSQL 17: this server reads the ClientHello as a
    // startup packet and hangs up, which is a TLS error, not a hang.
    let t = Instant::now();
    let e = Connection::connect(&cfg(&url(
        &pg,
        Role::Tls,
        "sslmode=require&sslnegotiation=direct",
    )))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(4));

    // The TLS-only role refused in plain text, by the server itself.
    let e = Connection::connect(&cfg(&url(&pg, Role::Tls, "sslmode=disable")))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e:?}"
    );
    assert!(e.to_string().contains("no encryption"), "{e}");
    // allow: plain first, refused, then TLS.
    let mut c = Connection::connect(&cfg(&url(&pg, Role::Tls, "sslmode=allow")))
        .await
        .unwrap();
    assert!(server_says_ssl(&mut c).await);
    // Other roles still connect in plain text when asked.
    let mut c = Connection::connect(&cfg(&url(&pg, Role::Scram, "sslmode=disable")))
        .await
        .unwrap();
    assert!(!c.is_encrypted() && !server_says_ssl(&mut c).await);
}

#[tokio::test]
async fn against_a_server_without_tls() {
    let pg = wirepool_testkit::cluster();
    let e = Connection::connect(&cfg(&url(&pg, Role::Scram, "sslmode=require")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e:?}");
    assert!(e.to_string().contains("does not support TLS"), "{e}");
    // prefer (the default) goes on in plain text.
    let mut c = Connection::connect(&pg.config(Role::Scram)).await.unwrap();
    assert!(!c.is_encrypted());
    assert!(!server_says_ssl(&mut c).await);

    // channel_binding=require cannot be met without TLS: refused before any password.
    let e = Connection::connect(&cfg(&url(&pg, Role::Scram, "channel_binding=require")))
        .await
        .unwrap_err();
    assert!(e.is_authentication(), "{e:?}");
    assert!(e.to_string().contains("nothing was sent"), "{e}");
    let log = pg.server_log();
    assert!(!log.contains("password authentication failed"), "{log}");
    // And with sslmode=disable it is a configuration error at once.
    let e = ConnectConfig::parse_str(&url(
        &pg,
        Role::Scram,
        "sslmode=disable&channel_binding=require",
    ))
    .unwrap_err();
    assert!(e.is_config(), "{e:?}");
}

#[tokio::test]
async fn scram_channel_binding_over_tls() {
    let pg = tls_cluster();
    let mut c = Connection::connect(&cfg(&url(
        &pg,
        Role::Tls,
        "sslmode=require&channel_binding=require",
    )))
    .await
    .unwrap();
    assert_eq!(
        c.auth_method(),
        wirepool::protocol::AuthMethod::ScramSha256Plus
    );
    assert!(server_says_ssl(&mut c).await);
    // Preferred by default when the server offers it.
    let c = Connection::connect(&cfg(&url(&pg, Role::Tls, "sslmode=require")))
        .await
        .unwrap();
    assert_eq!(
        c.auth_method(),
        wirepool::protocol::AuthMethod::ScramSha256Plus
    );
    let c = Connection::connect(&cfg(&url(
        &pg,
        Role::Tls,
        "sslmode=require&channel_binding=disable",
    )))
    .await
    .unwrap();
    assert_eq!(c.auth_method(), wirepool::protocol::AuthMethod::ScramSha256);
    // A role the server lets in by trust cannot satisfy channel_binding=require.
    let e = Connection::connect(&cfg(&url(
        &pg,
        Role::Trust,
        "sslmode=require&channel_binding=require",
    )))
    .await
    .unwrap_err();
    assert!(e.is_authentication(), "{e:?}");
}

#[tokio::test]
async fn client_certificates() {
    let pg = tls_cluster();
    let ca = pg.ca_cert().display().to_string();
    let (cert, key) = pg.client_cert();
    let with_cert = url(
        &pg,
        Role::Cert,
        &format!(
            "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
            cert.display(),
            key.display()
        ),
    );
    let mut c = Connection::connect(&cfg(&with_cert)).await.unwrap();
    let who = c.simple_query("SELECT current_user").await.unwrap();
    assert_eq!(who[0].get(0), Some("cert_user"));
    let e = Connection::connect(&cfg(&url(&pg, Role::Cert, "sslmode=require")))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e:?}"
    );
}

#[tokio::test]
async fn certificate_paths_never_appear_in_errors_or_debug() {
    let pg = tls_cluster();
    let secret_dir = "/nonexistent/hidden-tls-dir-7f3a";
    for extra in [
        format!("sslmode=verify-full&sslrootcert={secret_dir}/root.crt"),
        format!("sslmode=require&sslcert={secret_dir}/c.crt&sslkey={secret_dir}/c.key"),
    ] {
        let c = cfg(&url(&pg, Role::Tls, &extra));
        assert!(!format!("{c:?} {c}").contains("hidden-tls-dir"));
        let e = Connection::connect(&c).await.unwrap_err();
        assert!(e.is_config(), "{e:?}");
        let text = format!("{e} {e:?} {}", wirepool::error::chain(&e));
        assert!(!text.contains("hidden-tls-dir"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_over_verify_full() {
    let pg = tls_cluster();
    let ca = pg.ca_cert().display().to_string();
    let pool = Pool::builder(cfg(&url(
        &pg,
        Role::Tls,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )))
    .min_size(2)
    .max_size(10)
    .build()
    .await
    .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for q in 0..20i32 {
                    let mut c = pool.acquire().await.unwrap();
                    assert!(c.is_encrypted());
                    let v: i32 = c
                        .query_one("SELECT $1::int4 + $2::int4", &[&t, &q])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(v, t + q);
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("no hang")
            .unwrap();
    }
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, 2000);
    assert_eq!(s.total_acquisitions, s.total_releases);
    assert_eq!(s.encrypted_connections, s.total_connections, "{s:?}");
    assert!(pool.render_prometheus().contains(&format!(
        "codebase_mcp_pool_connections_encrypted {}",
        s.total_connections
    )));

    // The command timeout cancels a query on an encrypted connection: the CancelRequest
    // goes over TLS too, the query ends at once, and the connection stays usable.
    let mut c = pool.acquire().await.unwrap();
    c.set_command_timeout(Some(Duration::from_millis(300)));
    let t = Instant::now();
    let e = c.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandTimeout, "{e:?}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "cancelled, not waited out: {:?}",
        t.elapsed()
    );
    assert!(!c.is_broken());
    let v: i32 = c.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
    drop(c);
    pool.close().await;
}

/// A fake server: reads the SSLRequest, answers with `answer`, then closes.
async fn fake(answer: &'static [u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut req = [0u8; 8];
            if s.read_exact(&mut req).await.is_err() {
                continue;
            }
            let _ = s.write_all(answer).await;
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
        }
    });
    port
}

#[tokio::test]
async fn servers_that_break_the_tls_negotiation_are_refused() {
    for (answer, what) in [
        (&b"Shello in plain text"[..], "S, then plain bytes"),
        (&b"SS"[..], "extra bytes after S"),
        (&b"X"[..], "not an answer to SSLRequest"),
        (&b"N\0\0\0\x08"[..], "N with TLS required"),
    ] {
        let port = fake(answer).await;
        let c = cfg(&format!(
            "postgres://u:pw@127.0.0.1:{port}/d?sslmode=require&connect_timeout=3"
        ));
        let t = Instant::now();
        let e = Connection::connect(&c).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Tls | ErrorKind::Protocol),
            "{what}: {e:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{what}: not a timeout"
        );
    }
}

/// A fake server that speaks TLS with the test cluster's certificate: it lets the client in
/// at once, then watches the next connection (the CancelRequest's) and reports whether it
/// began with an SSLRequest.
#[tokio::test]
async fn the_cancel_request_of_an_encrypted_connection_is_encrypted_too() {
    use std::sync::Arc;

    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use wirepool::protocol::{BackendMessage, TransactionStatus};

    let pg = tls_cluster();
    let dir = pg.ca_cert().parent().unwrap().to_path_buf();
    let certs: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    // The provider the crate features name (ring, the only one built here).
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // The connection: SSLRequest, S, handshake, startup, let in.
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).await.unwrap();
        s.write_all(b"S").await.unwrap();
        let mut tls = acceptor.accept(s).await.unwrap();
        let mut len = [0u8; 4];
        tls.read_exact(&mut len).await.unwrap();
        let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        tls.read_exact(&mut startup).await.unwrap();
        let mut out = BytesMut::new();
        for m in [
            BackendMessage::AuthenticationOk,
            BackendMessage::BackendKeyData {
                process_id: 4242,
                secret_key: bytes::Bytes::from_static(b"abcd"),
            },
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        ] {
            m.encode(&mut out);
        }
        tls.write_all(&out).await.unwrap();
        tls.flush().await.unwrap();
        // The CancelRequest's connection: what does it start with?
        let (mut c, _) = l.accept().await.unwrap();
        let mut first = [0u8; 8];
        c.read_exact(&mut first).await.unwrap();
        let _ = tx.send(first);
        drop(tls);
    });
    let c = Connection::connect(&cfg(&format!(
        "postgres://u@127.0.0.1:{port}/d?sslmode=require&connect_timeout=5"
    )))
    .await
    .unwrap();
    assert!(c.is_encrypted());
    // The fake answers nothing to it, so the cancel itself fails; what matters is how it
    // began.
    let _ = tokio::time::timeout(Duration::from_secs(3), c.cancel()).await;
    let first = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
        "an SSLRequest (80877103), not a plain CancelRequest (80877102)"
    );
}

/// Replaces the server's certificate by a self-signed one whose signature has no hash for
/// `tls-server-end-point` (`ed25519`, or `rsa-pss`: an RSA key, the certificate signed
/// with RSASSA-PSS), and reloads the server.
fn unbindable_certificate(pg: &Cluster, kind: &str) {
    let dir = pg.ca_cert().parent().unwrap().to_path_buf();
    let key_args: &[&str] = match kind {
        "ed25519" => &["-newkey", "ed25519"],
        _ => &[
            "-newkey",
            "rsa:2048",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:-1",
        ],
    };
    let mut args = vec!["req", "-x509", "-nodes"];
    args.extend_from_slice(key_args);
    args.extend_from_slice(&[
        "-keyout",
        "server.key",
        "-out",
        "server.crt",
        "-days",
        "3",
        "-subj",
        "/CN=localhost",
    ]);
    let out = std::process::Command::new("openssl")
        .args(&args)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Owned by the server's user, as the original ones were.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(pg.data_dir()).unwrap();
    for f in ["server.key", "server.crt"] {
        std::os::unix::fs::chown(dir.join(f), Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    assert_eq!(pg.psql("SELECT pg_reload_conf()").unwrap(), "t");
}

#[tokio::test]
async fn a_certificate_that_cannot_be_bound_to_fails_closed() {
    for kind in ["ed25519", "rsa-pss"] {
        let pg = tls_cluster();
        unbindable_certificate(&pg, kind);
        // The reload is asynchronous: until the server presents the new certificate, a
        // connection still binds to the old one and succeeds.
        let prefer = cfg(&url(&pg, Role::Tls, "sslmode=require"));
        let t = Instant::now();
        while Connection::connect(&prefer).await.is_ok() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{kind}: the server never presented the new certificate"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The default (prefer) and require: refused, before any password, naming why.
        for binding in ["", "&channel_binding=require"] {
            let e = Connection::connect(&cfg(&url(
                &pg,
                Role::Tls,
                &format!("sslmode=require{binding}"),
            )))
            .await
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Authentication, "{kind}{binding}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("channel binding cannot be computed for its certificate"),
                "{kind}{binding}: {text}"
            );
            assert!(!text.contains("not encrypted"), "{text}");
        }
        // Turning binding off is the operator's explicit choice.
        let mut c = Connection::connect(&cfg(&url(
            &pg,
            Role::Tls,
            "sslmode=require&channel_binding=disable",
        )))
        .await
        .unwrap_or_else(|e| panic!("{kind}, channel_binding=disable: {e}"));
        assert!(c.is_encrypted());
        assert!(server_says_ssl(&mut c).await);
    }
}
