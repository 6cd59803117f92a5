//! Server bytes of a COPY TO STDOUT into the frame decoder, each CopyData into the binary
//! COPY reader with typed reads of every value, and the `COPY n` tag's parser; the
//! NotificationResponse messages that may come among them (LISTEN/NOTIFY) are decoded on
//! the way. Nothing may panic; malformed input ends in an error.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wirepool::internals::decode_binary_copy;
use wirepool::Type;
use wirepool_protocol::copy::copy_rows;
use wirepool_protocol::{BackendMessage, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the columns' types, so the reader meets every kind.
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let all = [
        Type::INT4,
        Type::INT8,
        Type::TEXT,
        Type::BYTEA,
        Type::FLOAT8,
        Type::BOOL,
    ];
    let types: Arc<[Type]> = (0..(pick % 4) as usize + 1)
        .map(|i| all[(pick as usize >> 2).wrapping_add(i) % all.len()].clone())
        .collect::<Vec<_>>()
        .into();
    let decoder = FrameDecoder::new(1 << 16);
    let mut buf = BytesMut::from(data);
    let mut has_oids = None;
    loop {
        let msg = match decoder.decode(&mut buf) {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return,
        };
        match msg {
            BackendMessage::CopyData(chunk) => {
                match decode_binary_copy(chunk, &mut has_oids, &types) {
                    Ok(Some(row)) => {
                        for i in 0..row.len() + 1 {
                            let _ = row.try_get::<Option<i32>>(i);
                            let _ = row.try_get::<Option<i64>>(i);
                            let _ = row.try_get::<Option<&str>>(i);
                            let _ = row.try_get::<Option<Vec<u8>>>(i);
                            let _ = row.try_get::<Option<f64>>(i);
                            let _ = row.try_get::<Option<bool>>(i);
                        }
                    }
                    Ok(None) | Err(_) => {}
                }
            }
            BackendMessage::CommandComplete(tag) => {
                let _ = copy_rows(&tag);
            }
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            } => {
                std::hint::black_box((process_id, channel.len(), payload.len()));
            }
            _ => {}
        }
    }
});
