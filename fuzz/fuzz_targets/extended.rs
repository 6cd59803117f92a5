//! Server bytes into the frame decoder and the extended-protocol assemblers (the answer to
//! Parse/Describe, then to Bind/Execute), with typed reads of every row's values. Nothing
//! may panic; malformed input ends in an error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wirepool::protocol::extended::{Execute, Prepare, Step};
use wirepool::protocol::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(1 << 16);
    let mut buf = BytesMut::from(data);
    let mut prepare = Some(Prepare::new());
    let mut execute: Option<Execute> = None;
    loop {
        let msg = match decoder.decode(&mut buf) {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return,
        };
        if let Some(p) = prepare.as_mut() {
            match p.handle(msg) {
                Ok(Step::Done(Ok(described))) => {
                    prepare = None;
                    execute = Some(Execute::new(described.columns));
                }
                Ok(Step::Done(Err(_))) | Err(_) => return,
                Ok(_) => {}
            }
            continue;
        }
        let Some(e) = execute.as_mut() else { return };
        match e.handle(msg) {
            Ok(Step::Done(done)) => {
                for row in &done.rows {
                    for i in 0..row.len() {
                        // Every reader must turn bad bytes into an error, never a panic.
                        let _ = row.try_get::<_, Option<i32>>(i);
                        let _ = row.try_get::<_, Option<i64>>(i);
                        let _ = row.try_get::<_, Option<String>>(i);
                        let _ = row.try_get::<_, Option<&str>>(i);
                        let _ = row.try_get::<_, Option<Vec<u8>>>(i);
                        let _ = row.try_get::<_, Option<bool>>(i);
                        let _ = row.try_get::<_, Option<f64>>(i);
                        let _ = row.try_get::<_, Option<Vec<i32>>>(i);
                        let _ = row.try_get::<_, Option<Vec<String>>>(i);
                    }
                }
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
});
