//! Server bytes into the start of a session: the one-byte answer to SSLRequest, then the
//! startup and authentication state machine, with and without TLS channel-binding data and
//! under each channel_binding setting, protocol version and require_auth set (chosen by
//! the input). Nothing may panic (SCRAM
//! included), the SSL answer is read from its one byte alone, and the machine must end in
//! an error or in a ready session. GSSAPI steps are answered with a fixed token.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wirepool_protocol::BindingMode as ChannelBinding;
use wirepool_protocol::{
    ssl_answer, FrameDecoder, ProtocolVersion, RequireAuth, SslAnswer, Startup, StartupParams,
    StartupStatus,
};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, data)) = data.split_first() else {
        return;
    };
    let Some((&answer, data)) = data.split_first() else {
        return;
    };
    // Exactly one byte decides; only S and N are answers.
    match ssl_answer(answer) {
        Ok(SslAnswer::Tls) => assert_eq!(answer, b'S'),
        Ok(SslAnswer::Plain) => assert_eq!(answer, b'N'),
        Err(_) => assert!(answer != b'S' && answer != b'N'),
    }
    let end_point = [0x5au8; 32];
    let mut out = BytesMut::new();
    let params = StartupParams {
        user: "fuzz",
        database: "fuzz",
        password: Some(b"secret"),
        application_name: None,
        options: None,
        channel_binding: match settings % 3 {
            0 => ChannelBinding::Disable,
            1 => ChannelBinding::Prefer,
            _ => ChannelBinding::Require,
        },
        tls_end_point: (settings & 4 != 0).then_some(&end_point[..]),
        encrypted: settings & 8 != 0,
        max_protocol: if settings & 16 != 0 {
            ProtocolVersion::V3_2
        } else {
            ProtocolVersion::V3_0
        },
        min_protocol: if settings & 32 != 0 {
            ProtocolVersion::V3_2
        } else {
            ProtocolVersion::V3_0
        },
        require_auth: match (settings >> 6) & 3 {
            0 => RequireAuth::ANY,
            1 => RequireAuth::parse("scram-sha-256").expect("a valid list"),
            2 => RequireAuth::parse("!md5,!password").expect("a valid list"),
            _ => RequireAuth::parse("none").expect("a valid list"),
        },
        replication: None,
    };
    let mut startup = match Startup::start(&params, &mut out) {
        Ok(s) => s,
        Err(e) => {
            assert!(params.min_protocol > params.max_protocol, "{e}");
            return;
        }
    };
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(data);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(msg)) => {
                out.clear();
                match startup.handle(msg, &mut out) {
                    Ok(StartupStatus::Continue) => {}
                    // A GSSAPI step, as the driver takes it: a token out, and the context
                    // established or not (the server's token decides, to reach both).
                    Ok(StartupStatus::Gss(token)) => {
                        let complete = token.is_some_and(|t| t.len() % 2 == 0);
                        startup
                            .gss_stepped(b"client-token", complete, &mut out)
                            .expect("a step that was asked for");
                    }
                    Ok(StartupStatus::Ready(_)) | Err(_) => return,
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
});
