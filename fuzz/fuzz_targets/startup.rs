//! Server bytes into the startup and authentication state machine. Nothing may panic
//! (SCRAM included), and the machine must end in an error or in a ready session.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wirepool::protocol::{FrameDecoder, Startup, StartupParams, StartupStatus};

fuzz_target!(|data: &[u8]| {
    let mut out = BytesMut::new();
    let params = StartupParams {
        user: "fuzz",
        database: "fuzz",
        password: Some(b"secret"),
        application_name: None,
        options: None,
    };
    let mut startup = Startup::start(&params, &mut out).expect("valid parameters");
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(data);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(msg)) => {
                out.clear();
                match startup.handle(msg, &mut out) {
                    Ok(StartupStatus::Continue) => {}
                    Ok(StartupStatus::Ready(_)) | Err(_) => return,
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
});
