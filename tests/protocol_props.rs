//! Property tests of the protocol layer: every backend message round-trips, and a valid
//! byte stream split at arbitrary points decodes to the same messages.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wirepool::protocol::{
    BackendMessage, DataRowBody, FieldDescription, FrameDecoder, TransactionStatus,
};
use wirepool::DbError;

fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,24}"
}

fn bytes_(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = BackendMessage> {
    let status = prop_oneof![
        Just(TransactionStatus::Idle),
        Just(TransactionStatus::InTransaction),
        Just(TransactionStatus::Failed)
    ];
    let field = (
        text(),
        any::<u32>(),
        any::<i16>(),
        any::<u32>(),
        any::<i16>(),
        any::<i32>(),
        0i16..2,
    )
        .prop_map(
            |(name, table_oid, column_id, type_oid, type_size, type_modifier, format)| {
                FieldDescription {
                    name,
                    table_oid,
                    column_id,
                    type_oid,
                    type_size,
                    type_modifier,
                    format,
                }
            },
        );
    let db = || {
        ("(ERROR|FATAL|NOTICE|WARNING)", "[0-9A-Z]{5}", text())
            .prop_map(|(s, c, m)| DbError::new(&s, &c, &m))
    };
    prop_oneof![
        Just(BackendMessage::AuthenticationOk),
        Just(BackendMessage::AuthenticationCleartextPassword),
        any::<[u8; 4]>().prop_map(|salt| BackendMessage::AuthenticationMd5Password { salt }),
        prop::collection::vec("[A-Z0-9-]{1,20}", 1..4)
            .prop_map(|mechanisms| BackendMessage::AuthenticationSasl { mechanisms }),
        bytes_(200).prop_map(BackendMessage::AuthenticationSaslContinue),
        bytes_(200).prop_map(BackendMessage::AuthenticationSaslFinal),
        (text(), text()).prop_map(|(name, value)| BackendMessage::ParameterStatus { name, value }),
        (any::<i32>(), prop::collection::vec(any::<u8>(), 4..=256)).prop_map(|(process_id, k)| {
            BackendMessage::BackendKeyData {
                process_id,
                secret_key: Bytes::from(k),
            }
        }),
        status.prop_map(BackendMessage::ReadyForQuery),
        prop::collection::vec(field, 0..5).prop_map(BackendMessage::RowDescription),
        prop::collection::vec(prop::option::of(bytes_(64)), 0..6)
            .prop_map(|v| BackendMessage::DataRow(DataRowBody::from_values(v))),
        text().prop_map(BackendMessage::CommandComplete),
        Just(BackendMessage::EmptyQueryResponse),
        db().prop_map(BackendMessage::ErrorResponse),
        db().prop_map(BackendMessage::NoticeResponse),
        (any::<i32>(), text(), text()).prop_map(|(process_id, channel, payload)| {
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            }
        }),
        Just(BackendMessage::CopyInResponse),
        Just(BackendMessage::CopyOutResponse),
        bytes_(100).prop_map(BackendMessage::CopyData),
        Just(BackendMessage::CopyDone),
        (any::<u32>(), prop::collection::vec("[a-z_.]{1,12}", 0..3)).prop_map(|(v, u)| {
            BackendMessage::NegotiateProtocolVersion {
                newest_version: v,
                unrecognized: u,
            }
        }),
        Just(BackendMessage::ParseComplete),
        Just(BackendMessage::BindComplete),
        Just(BackendMessage::CloseComplete),
        Just(BackendMessage::NoData),
        Just(BackendMessage::PortalSuspended),
        prop::collection::vec(any::<u32>(), 0..5).prop_map(BackendMessage::ParameterDescription),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(m in message()) {
        let mut buf = BytesMut::new();
        m.encode(&mut buf);
        let d = FrameDecoder::default();
        prop_assert_eq!(d.decode(&mut buf).unwrap(), Some(m));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn split_points_do_not_change_the_messages(
        ms in prop::collection::vec(message(), 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = BytesMut::new();
        for m in &ms {
            m.encode(&mut stream);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let d = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&stream[at..p]);
            at = p;
            while let Some(m) = d.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        prop_assert_eq!(out, ms);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_ask_for_more_than_the_cap(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let d = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&input[..]);
        loop {
            if let Ok(w) = d.wanted(&buf) {
                prop_assert!(w <= (1 << 20) + 1);
            }
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}
