//! Property tests of the protocol layer: every backend message round-trips, a valid byte
//! stream split at arbitrary points decodes to the same messages, and Bind encodes any list
//! of parameters decodably.

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
        prop::collection::vec(prop::option::of(bytes_(64)), 0..10)
            .prop_map(|v| BackendMessage::DataRow(DataRowBody::from_values(v))),
        text().prop_map(BackendMessage::CommandComplete),
        Just(BackendMessage::EmptyQueryResponse),
        db().prop_map(|e| BackendMessage::ErrorResponse(Box::new(e))),
        db().prop_map(|e| BackendMessage::NoticeResponse(Box::new(e))),
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

/// A parameter value with the type it is bound as.
#[derive(Debug, Clone)]
enum Param {
    Bool(bool),
    I32(i32),
    I64(i64),
    F64(f64),
    Text(String),
    Bytes(Vec<u8>),
    NullInt,
    Ints(Vec<i32>),
}

impl Param {
    fn ty(&self) -> wirepool::Type {
        use wirepool::Type;
        match self {
            Param::Bool(_) => Type::BOOL,
            Param::I32(_) | Param::NullInt => Type::INT4,
            Param::I64(_) => Type::INT8,
            Param::F64(_) => Type::FLOAT8,
            Param::Text(_) => Type::TEXT,
            Param::Bytes(_) => Type::BYTEA,
            Param::Ints(_) => Type::INT4_ARRAY,
        }
    }
    fn as_sql(&self) -> &(dyn wirepool::ToSql + Sync) {
        const NULL: Option<i32> = None;
        match self {
            Param::Bool(v) => v,
            Param::I32(v) => v,
            Param::I64(v) => v,
            Param::F64(v) => v,
            Param::Text(v) => v,
            Param::Bytes(v) => v,
            Param::NullInt => &NULL,
            Param::Ints(v) => v,
        }
    }
    /// Checks that `raw` (None for NULL) decodes back to this value.
    fn decodes_from(&self, raw: Option<&[u8]>) -> bool {
        use wirepool::FromSql;
        let ty = self.ty();
        match (self, raw) {
            (Param::NullInt, None) => true,
            (_, None) | (Param::NullInt, Some(_)) => false,
            (Param::Bool(v), Some(r)) => bool::from_sql(&ty, r).ok() == Some(*v),
            (Param::I32(v), Some(r)) => i32::from_sql(&ty, r).ok() == Some(*v),
            (Param::I64(v), Some(r)) => i64::from_sql(&ty, r).ok() == Some(*v),
            (Param::F64(v), Some(r)) => {
                f64::from_sql(&ty, r).is_ok_and(|x| x.to_bits() == v.to_bits())
            }
            (Param::Text(v), Some(r)) => String::from_sql(&ty, r).ok().as_ref() == Some(v),
            (Param::Bytes(v), Some(r)) => Vec::<u8>::from_sql(&ty, r).ok().as_ref() == Some(v),
            (Param::Ints(v), Some(r)) => Vec::<i32>::from_sql(&ty, r).ok().as_ref() == Some(v),
        }
    }
}

fn param() -> impl Strategy<Value = Param> {
    prop_oneof![
        any::<bool>().prop_map(Param::Bool),
        any::<i32>().prop_map(Param::I32),
        any::<i64>().prop_map(Param::I64),
        any::<f64>().prop_map(Param::F64),
        text().prop_map(Param::Text),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Param::Bytes),
        Just(Param::NullInt),
        prop::collection::vec(any::<i32>(), 0..8).prop_map(Param::Ints),
    ]
}

/// Reads a big-endian field off the front of `b`.
fn take<const N: usize>(b: &mut &[u8]) -> [u8; N] {
    let (head, rest) = b.split_at(N);
    *b = rest;
    head.try_into().unwrap()
}

fn take_cstr(b: &mut &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap();
    let s = String::from_utf8(b[..end].to_vec()).unwrap();
    *b = &b[end + 1..];
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Bind, Execute and Sync for any list of parameters: the Bind carries each value in
    /// the format its type prefers, decodable back to the value, and asks for binary
    /// results; lengths are consistent throughout.
    #[test]
    fn bind_encodes_any_parameter_list(params in prop::collection::vec(param(), 0..12), name in "[a-z0-9_]{0,20}") {
        use wirepool::protocol::extended::write_execute;
        let types: Vec<wirepool::Type> = params.iter().map(Param::ty).collect();
        let values: Vec<&(dyn wirepool::ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
        let mut out = BytesMut::new();
        write_execute(&name, &types, &values, &mut out).unwrap();
        let mut b: &[u8] = &out;
        prop_assert_eq!(take::<1>(&mut b), [b'B']);
        let len = u32::from_be_bytes(take::<4>(&mut b)) as usize;
        let (mut body, rest) = b.split_at(len - 4);
        prop_assert_eq!(take_cstr(&mut body), "");
        prop_assert_eq!(take_cstr(&mut body), name);
        let nformats = u16::from_be_bytes(take::<2>(&mut body)) as usize;
        prop_assert_eq!(nformats, params.len());
        for _ in 0..nformats {
            prop_assert_eq!(i16::from_be_bytes(take::<2>(&mut body)), 1, "binary");
        }
        let nvalues = u16::from_be_bytes(take::<2>(&mut body)) as usize;
        prop_assert_eq!(nvalues, params.len());
        for p in &params {
            let n = i32::from_be_bytes(take::<4>(&mut body));
            let raw = if n < 0 {
                None
            } else {
                let (v, r) = body.split_at(n as usize);
                body = r;
                Some(v)
            };
            prop_assert!(p.decodes_from(raw), "{:?} from {:?}", p, raw);
        }
        prop_assert_eq!(u16::from_be_bytes(take::<2>(&mut body)), 1);
        prop_assert_eq!(i16::from_be_bytes(take::<2>(&mut body)), 1, "binary results");
        prop_assert!(body.is_empty());
        // Execute (unnamed portal, all rows), then Sync.
        prop_assert_eq!(rest, &[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0, b'S', 0, 0, 0, 4][..]);
    }
}
