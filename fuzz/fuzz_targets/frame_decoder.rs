//! Server bytes into the frame decoder and the simple-query assembler, fed in chunks whose
//! sizes come from the input. Nothing may panic, and the decoder may never grow the buffer:
//! the caller's reads are the only thing that adds capacity.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wirepool_protocol::{FrameDecoder, QueryEvent, SimpleQuery};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let decoder = FrameDecoder::new(1 << 16);
    let mut out = BytesMut::new();
    let mut query = SimpleQuery::start("SELECT 1", &mut out).expect("static query");
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        let before = buf.capacity();
        loop {
            if let Ok(wanted) = decoder.wanted(&buf) {
                assert!(wanted <= (1 << 16) + 1, "wanted {wanted} beyond the cap");
            }
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => match query.handle(msg, &mut out) {
                    Ok(QueryEvent::Done(_)) => {
                        let _ = std::mem::take(&mut query).finish();
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= before, "the decoder reserved memory");
    }
});
