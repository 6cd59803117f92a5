//! The startup state machine's unit tests.

use super::*;

fn start(pw: Option<&[u8]>) -> (Startup, BytesMut) {
    let mut out = BytesMut::new();
    let s = Startup::start(
        &StartupParams {
            user: "u",
            database: "d",
            password: pw,
            application_name: Some("t"),
            options: None,
            channel_binding: BindingMode::Prefer,
            tls_end_point: None,
            encrypted: false,
            max_protocol: ProtocolVersion::V3_0,
            min_protocol: ProtocolVersion::V3_0,
            require_auth: RequireAuth::ANY,
            replication: None,
        },
        &mut out,
    )
    .unwrap();
    (s, out)
}

#[test]
fn trust_flow() {
    let (mut s, out) = start(None);
    assert!(out.windows(5).any(|w| w == b"user\0"));
    let mut out = BytesMut::new();
    for m in [
        BackendMessage::AuthenticationOk,
        BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: "15".into(),
        },
        BackendMessage::BackendKeyData {
            process_id: 7,
            secret_key: Bytes::from_static(b"abcd"),
        },
    ] {
        assert!(matches!(
            s.handle(m, &mut out).unwrap(),
            StartupStatus::Continue
        ));
    }
    match s
        .handle(
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
            &mut out,
        )
        .unwrap()
    {
        StartupStatus::Ready(info) => {
            assert_eq!(info.auth_method, AuthMethod::Trust);
            assert_eq!(info.process_id, 7);
            assert_eq!(info.parameters["server_version"], "15");
        }
        other => panic!("{other:?}"),
    }
    assert!(out.is_empty());
}

#[test]
fn password_required_but_missing() {
    let (mut s, _) = start(None);
    let e = s
        .handle(
            BackendMessage::AuthenticationMd5Password { salt: [1, 2, 3, 4] },
            &mut BytesMut::new(),
        )
        .unwrap_err();
    assert!(matches!(e, ProtocolError::MissingPassword(_)), "{e:?}");
    assert!(e.to_string().contains("md5"), "{e}");
}

#[test]
fn unsupported_methods_are_named() {
    let (mut s, _) = start(Some(b"pw"));
    let e = s
        .handle(
            BackendMessage::AuthenticationUnsupported {
                method: "SSPI",
                code: 9,
            },
            &mut BytesMut::new(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("SSPI"), "{e}");
    let (mut s, _) = start(Some(b"pw"));
    let e = s
        .handle(
            BackendMessage::AuthenticationSasl {
                mechanisms: vec!["OAUTHBEARER".into()],
            },
            &mut BytesMut::new(),
        )
        .unwrap_err();
    assert!(matches!(e, ProtocolError::Authentication(_)), "{e:?}");
    assert!(e.to_string().contains("OAUTHBEARER"), "{e}");
}

#[test]
fn garbage_scram_is_an_error_not_a_panic() {
    let (mut s, _) = start(Some(b"pw"));
    let mut out = BytesMut::new();
    s.handle(
        BackendMessage::AuthenticationSasl {
            mechanisms: vec![SCRAM_SHA_256.into()],
        },
        &mut out,
    )
    .unwrap();
    let e = s
        .handle(
            BackendMessage::AuthenticationSaslContinue(Bytes::from_static(b"\xffgarbage")),
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(e, ProtocolError::Authentication(_)), "{e:?}");
    // Once failed, further input is rejected rather than panicking inside SCRAM.
    assert!(s
        .handle(
            BackendMessage::AuthenticationSaslFinal(Bytes::from_static(b"v=")),
            &mut out
        )
        .is_err());
}

#[test]
fn unexpected_message_is_protocol_error() {
    let (mut s, _) = start(None);
    let e = s
        .handle(
            BackendMessage::DataRow(Default::default()),
            &mut BytesMut::new(),
        )
        .unwrap_err();
    assert!(e.is_protocol());
}

fn start_with(max: ProtocolVersion, min: ProtocolVersion, require: &str) -> (Startup, BytesMut) {
    let mut out = BytesMut::new();
    let s = Startup::start(
        &StartupParams {
            user: "u",
            database: "d",
            password: Some(b"pw"),
            application_name: None,
            options: None,
            channel_binding: BindingMode::Prefer,
            tls_end_point: None,
            encrypted: false,
            max_protocol: max,
            min_protocol: min,
            require_auth: RequireAuth::parse(require).unwrap(),
            replication: None,
        },
        &mut out,
    )
    .unwrap();
    (s, out)
}

fn npv(version: u32, options: &[&str]) -> BackendMessage {
    BackendMessage::NegotiateProtocolVersion {
        newest_version: version,
        unrecognized: options.iter().map(|o| o.to_string()).collect(),
    }
}

fn ready(s: &mut Startup, key: &[u8]) -> Result<SessionInfo> {
    let mut out = BytesMut::new();
    s.handle(BackendMessage::AuthenticationOk, &mut out)?;
    s.handle(
        BackendMessage::BackendKeyData {
            process_id: 1,
            secret_key: Bytes::copy_from_slice(key),
        },
        &mut out,
    )?;
    match s.handle(
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        &mut out,
    )? {
        StartupStatus::Ready(info) => Ok(info),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_startup_message_carries_the_version_asked_for() {
    let (_, out) = start_with(ProtocolVersion::V3_2, ProtocolVersion::V3_0, "");
    assert_eq!(&out[4..8], &[0, 3, 0, 2]);
    assert_eq!(
        u32::from_be_bytes(out[..4].try_into().unwrap()) as usize,
        out.len()
    );
    let (_, out) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, "");
    assert_eq!(&out[4..8], &[0, 3, 0, 0]);
    assert!(Startup::start(
        &StartupParams {
            user: "u\0x",
            database: "d",
            password: None,
            application_name: None,
            options: None,
            channel_binding: BindingMode::Prefer,
            tls_end_point: None,
            encrypted: false,
            max_protocol: ProtocolVersion::V3_0,
            min_protocol: ProtocolVersion::V3_0,
            require_auth: RequireAuth::ANY,
            replication: None,
        },
        &mut BytesMut::new(),
    )
    .is_err());
}

#[test]
fn a_server_that_speaks_3_0_is_followed_down() {
    let (mut s, _) = start_with(ProtocolVersion::V3_2, ProtocolVersion::V3_0, "");
    s.handle(npv(0x0003_0000, &[]), &mut BytesMut::new())
        .unwrap();
    let info = ready(&mut s, b"abcd").unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V3_0);
    // 3.2 accepted as asked, with a long key.
    let (mut s, _) = start_with(ProtocolVersion::V3_2, ProtocolVersion::V3_0, "");
    let info = ready(&mut s, &[9u8; 32]).unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V3_2);
    assert_eq!(info.secret_key.len(), 32);
}

#[test]
fn negotiation_answers_libpq_refuses() {
    let cases: &[(ProtocolVersion, ProtocolVersion, BackendMessage, &str)] = &[
        (
            ProtocolVersion::V3_2,
            ProtocolVersion::V3_2,
            npv(0x0003_0000, &[]),
            "min_protocol_version is 3.2",
        ),
        (
            ProtocolVersion::V3_0,
            ProtocolVersion::V3_0,
            npv(0x0003_0000, &[]),
            "3.0 was asked for",
        ),
        (
            ProtocolVersion::V3_2,
            ProtocolVersion::V3_0,
            npv(0x0003_0001, &[]),
            "3.1",
        ),
        (
            ProtocolVersion::V3_2,
            ProtocolVersion::V3_0,
            npv(0x0002_0000, &[]),
            "older than 3.0",
        ),
        (
            ProtocolVersion::V3_2,
            ProtocolVersion::V3_0,
            npv(0x0003_0000, &["_pq_.x"]),
            "was not sent",
        ),
    ];
    for (max, min, msg, says) in cases {
        let (mut s, _) = start_with(*max, *min, "");
        let e = s.handle(msg.clone(), &mut BytesMut::new()).unwrap_err();
        assert!(
            e.is_protocol() && e.to_string().contains(says),
            "{says}: {e}"
        );
    }
    let (mut s, _) = start_with(ProtocolVersion::V3_2, ProtocolVersion::V3_0, "");
    s.handle(npv(0x0003_0000, &[]), &mut BytesMut::new())
        .unwrap();
    let e = s
        .handle(npv(0x0003_0000, &[]), &mut BytesMut::new())
        .unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    // A long key under 3.0 is not what 3.0 allows.
    let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, "");
    assert!(ready(&mut s, &[1u8; 32]).unwrap_err().is_protocol());
}

#[test]
fn require_auth_refuses_before_anything_is_sent() {
    let asks = [
        (BackendMessage::AuthenticationCleartextPassword, "password"),
        (
            BackendMessage::AuthenticationMd5Password { salt: [1; 4] },
            "md5",
        ),
        (
            BackendMessage::AuthenticationSasl {
                mechanisms: vec!["SCRAM-SHA-256".into()],
            },
            "scram-sha-256",
        ),
    ];
    for (msg, method) in &asks {
        // Refused when not listed, and when negated.
        for require in ["none".to_string(), format!("!{method}")] {
            let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, &require);
            let mut out = BytesMut::new();
            let e = s.handle(msg.clone(), &mut out).unwrap_err();
            assert!(out.is_empty(), "{require}: something was sent");
            assert!(
                matches!(e, ProtocolError::Authentication(_))
                    && e.to_string().contains("require_auth"),
                "{require}: {e}"
            );
        }
        // Allowed when listed.
        let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, method);
        let mut out = BytesMut::new();
        s.handle(msg.clone(), &mut out).unwrap();
        assert!(!out.is_empty(), "{method}: nothing sent");
    }
    // A server that lets the client in without asking, when `none` is not allowed.
    let (mut s, _) = start_with(
        ProtocolVersion::V3_0,
        ProtocolVersion::V3_0,
        "scram-sha-256",
    );
    let e = s
        .handle(BackendMessage::AuthenticationOk, &mut BytesMut::new())
        .unwrap_err();
    assert!(e.to_string().contains("no authentication"), "{e}");
    let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, "!none");
    assert!(ready(&mut s, b"abcd").is_err());
    // GSSAPI is refused by require_auth before any token is computed.
    let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, "md5");
    let e = s
        .handle(BackendMessage::AuthenticationGss, &mut BytesMut::new())
        .unwrap_err();
    assert!(e.to_string().contains("require_auth=md5"), "{e}");
    assert!(e.to_string().contains("GSSAPI"), "{e}");
}

/// GSSAPI: the driver is asked for a step on each server token, its tokens go out as
/// GSSResponse (`p`), and a server that lets the client in before the context is
/// established is refused when require_auth is set, as libpq refuses it.
#[test]
fn gssapi_steps_are_asked_of_the_driver() {
    let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, "gss");
    let mut out = BytesMut::new();
    match s
        .handle(BackendMessage::AuthenticationGss, &mut out)
        .unwrap()
    {
        StartupStatus::Gss(None) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.gss_stepped(b"token-1", false, &mut out).unwrap(),
        StartupStatus::Continue
    ));
    assert_eq!(&out[..], b"p\0\0\0\x0btoken-1");
    out.clear();
    match s
        .handle(
            BackendMessage::AuthenticationGssContinue(Bytes::from_static(b"srv")),
            &mut out,
        )
        .unwrap()
    {
        StartupStatus::Gss(Some(t)) => assert_eq!(&t[..], b"srv"),
        other => panic!("{other:?}"),
    }
    // The last step gives nothing to send: nothing is written.
    s.gss_stepped(b"", true, &mut out).unwrap();
    assert!(out.is_empty());
    let info = ready(&mut s, b"abcd").unwrap();
    assert_eq!(info.auth_method, AuthMethod::Gss);

    // AuthenticationOk before the context is established.
    let (mut s, _) = start_with(ProtocolVersion::V3_0, ProtocolVersion::V3_0, "gss");
    s.handle(BackendMessage::AuthenticationGss, &mut out)
        .unwrap();
    s.gss_stepped(b"token-1", false, &mut out).unwrap();
    let e = s
        .handle(BackendMessage::AuthenticationOk, &mut out)
        .unwrap_err();
    assert!(
        e.to_string().contains("before the exchange was complete"),
        "{e}"
    );

    // A token for the server with no step asked for, and a second AuthenticationGSS.
    let (mut s, _) = start(None);
    assert!(s.gss_stepped(b"x", true, &mut out).is_err());
    s.handle(BackendMessage::AuthenticationGss, &mut out)
        .unwrap();
    assert!(s
        .handle(BackendMessage::AuthenticationGss, &mut out)
        .is_err());
    // channel_binding=require: GSSAPI does not bind to TLS.
    let mut out = BytesMut::new();
    let mut s = Startup::start(
        &StartupParams {
            user: "u",
            database: "d",
            password: None,
            application_name: None,
            options: None,
            channel_binding: BindingMode::Require,
            tls_end_point: None,
            encrypted: false,
            max_protocol: ProtocolVersion::V3_0,
            min_protocol: ProtocolVersion::V3_0,
            require_auth: RequireAuth::ANY,
            replication: None,
        },
        &mut out,
    )
    .unwrap();
    let e = s
        .handle(BackendMessage::AuthenticationGss, &mut out)
        .unwrap_err();
    assert!(e.to_string().contains("channel_binding=require"), "{e}");
}
