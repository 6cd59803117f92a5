//! A logical replication stream's CopyData payloads into the replication message parser,
//! and the data of each XLogData into one pgoutput decoder, in order (its stream-block
//! state carries over). The input is a sequence of messages, each preceded by its length
//! in two bytes. Nothing may panic; an LSN that displays must parse back to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wirepool_protocol::pgoutput::PgOutputDecoder;
use wirepool_protocol::replication::{Lsn, ReplicationMessage};

fuzz_target!(|data: &[u8]| {
    let mut decoder = PgOutputDecoder::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let payload = Bytes::copy_from_slice(&rest[2..2 + n]);
        rest = &rest[2 + n..];
        // The payload as CopyData, and as the data of an XLogData.
        if let Ok(ReplicationMessage::XLogData { start, data, .. }) =
            ReplicationMessage::parse(payload.clone())
        {
            assert_eq!(start.to_string().parse::<Lsn>().ok(), Some(start));
            let _ = decoder.decode(data);
        }
        let _ = decoder.decode(payload);
    }
});
