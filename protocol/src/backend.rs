//! Server messages as owned values: decoded from complete frames (through
//! `postgres_protocol`'s parser) and encoded back (for fake servers and round-trip tests).

#[cfg(any(test, feature = "internals"))]
use bytes::BufMut;
use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;

use super::error::{ProtocolError, Result};
use super::DbError;

/// The transaction status a ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: inside a transaction block.
    InTransaction,
    /// `E`: inside a failed transaction block; only ROLLBACK will be accepted.
    Failed,
}

impl TransactionStatus {
    /// The status byte of a ReadyForQuery.
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    fn from_byte(b: u8) -> Result<TransactionStatus> {
        match b {
            b'I' => Ok(TransactionStatus::Idle),
            b'T' => Ok(TransactionStatus::InTransaction),
            b'E' => Ok(TransactionStatus::Failed),
            other => Err(ProtocolError::protocol(format!(
                "invalid transaction status byte {other:#04x}"
            ))),
        }
    }
}

/// The values of a DataRow: the message body, kept whole, and where each value lies in it.
/// Up to four places are held inline, so a narrow row takes no allocation of its own; a
/// wider one takes one, of 8 bytes per value.
#[derive(Debug, Clone, Default)]
pub struct DataRowBody {
    buf: Bytes,
    spans: Spans,
}

/// Where a value lies in a DataRow's body; [`Span::NULL`] for SQL NULL.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const NULL: Span = Span {
        start: u32::MAX,
        len: 0,
    };
}

/// How many value places a row holds without allocating.
const INLINE_SPANS: usize = 4;

#[derive(Debug, Clone)]
enum Spans {
    Inline(u8, [Span; INLINE_SPANS]),
    Heap(Box<[Span]>),
}

impl Default for Spans {
    fn default() -> Self {
        Spans::Inline(0, [Span::NULL; INLINE_SPANS])
    }
}

impl Spans {
    /// Collects `n` places from `next` (which is called exactly `n` times unless it fails).
    fn collect<E>(
        n: usize,
        mut next: impl FnMut() -> std::result::Result<Span, E>,
    ) -> std::result::Result<Spans, E> {
        if n <= INLINE_SPANS {
            let mut a = [Span::NULL; INLINE_SPANS];
            for slot in &mut a[..n] {
                *slot = next()?;
            }
            return Ok(Spans::Inline(n as u8, a));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(next()?);
        }
        Ok(Spans::Heap(v.into_boxed_slice()))
    }

    fn as_slice(&self) -> &[Span] {
        match self {
            Spans::Inline(n, a) => &a[..usize::from(*n)],
            Spans::Heap(v) => v,
        }
    }
}

impl DataRowBody {
    /// A row of these values (`None` is SQL NULL), as a server would send it.
    ///
    /// # Panics
    ///
    /// If the values add up to 4 GiB or more, past what a DataRow can hold.
    pub fn from_values<V: AsRef<[u8]>>(values: impl IntoIterator<Item = Option<V>>) -> Self {
        let values: Vec<Option<V>> = values.into_iter().collect();
        let mut buf = BytesMut::new();
        let mut values = values.iter();
        let spans = Spans::collect(values.len(), || {
            Ok::<_, std::convert::Infallible>(match values.next().expect("counted") {
                Some(v) => {
                    let start = buf.len();
                    buf.extend_from_slice(v.as_ref());
                    assert!(buf.len() < u32::MAX as usize, "a DataRow under 4 GiB");
                    Span {
                        start: start as u32,
                        len: v.as_ref().len() as u32,
                    }
                }
                None => Span::NULL,
            })
        });
        let Ok(spans) = spans;
        DataRowBody {
            buf: buf.freeze(),
            spans,
        }
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.spans.as_slice().len()
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`: `None` out of range, `Some(None)` for SQL NULL.
    pub fn get(&self, i: usize) -> Option<Option<&[u8]>> {
        self.spans.as_slice().get(i).map(|s| self.value(*s))
    }

    /// The values in order; `None` is SQL NULL.
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        self.spans.as_slice().iter().map(|s| self.value(*s))
    }

    fn value(&self, s: Span) -> Option<&[u8]> {
        if s.start == u32::MAX {
            return None;
        }
        let start = s.start as usize;
        Some(&self.buf[start..start + s.len as usize])
    }
}

impl PartialEq for DataRowBody {
    fn eq(&self, other: &Self) -> bool {
        self.values().eq(other.values())
    }
}

impl Eq for DataRowBody {}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// The column name.
    pub name: String,
    /// The OID of the table, or 0.
    pub table_oid: u32,
    /// The attribute number in that table, or 0.
    pub column_id: i16,
    /// The OID of the data type.
    pub type_oid: u32,
    /// The type size (negative for variable width).
    pub type_size: i16,
    /// The type modifier.
    pub type_modifier: i32,
    /// 0 = text, 1 = binary.
    pub format: i16,
}

/// A message from the server, decoded and owned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// Authentication succeeded.
    AuthenticationOk,
    /// The server asks for the password in clear text.
    AuthenticationCleartextPassword,
    /// The server asks for an MD5-hashed password with this salt.
    AuthenticationMd5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// The server offers these SASL mechanisms.
    AuthenticationSasl {
        /// Mechanism names, in the server's order.
        mechanisms: Vec<String>,
    },
    /// SASL challenge data (SCRAM server-first-message).
    AuthenticationSaslContinue(Bytes),
    /// SASL outcome data (SCRAM server-final-message).
    AuthenticationSaslFinal(Bytes),
    /// The server asks for GSSAPI authentication (Kerberos): the client's first token
    /// comes next.
    AuthenticationGss,
    /// GSSAPI token data from the server, for the client's next step.
    AuthenticationGssContinue(Bytes),
    /// An authentication method wirepool does not implement (SSPI, Kerberos V5, SCM).
    AuthenticationUnsupported {
        /// The method's name.
        method: &'static str,
        /// The protocol's code for it.
        code: i32,
    },
    /// A run-time parameter's current value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// The process id and secret key for CancelRequest (4 bytes in protocol 3.0, up to 256
    /// in 3.2).
    BackendKeyData {
        /// The backend's process id.
        process_id: i32,
        /// The secret key.
        secret_key: Bytes,
    },
    /// The server is ready for a new query.
    ReadyForQuery(TransactionStatus),
    /// The columns of the rows that follow.
    RowDescription(Vec<FieldDescription>),
    /// One row.
    DataRow(DataRowBody),
    /// A statement completed; the tag, e.g. `SELECT 1` or `INSERT 0 3`.
    CommandComplete(String),
    /// The query string was empty.
    EmptyQueryResponse,
    /// An error.
    ErrorResponse(Box<DbError>),
    /// A notice (warning, info, ...).
    NoticeResponse(Box<DbError>),
    /// A LISTEN/NOTIFY notification.
    NotificationResponse {
        /// The notifying backend's process id.
        process_id: i32,
        /// The channel.
        channel: String,
        /// The payload.
        payload: String,
    },
    /// The server waits for COPY data from us.
    CopyInResponse,
    /// The server is about to send COPY data.
    CopyOutResponse,
    /// Both ways: the server streams replication data and takes status updates.
    CopyBothResponse,
    /// COPY data.
    CopyData(Bytes),
    /// End of COPY data.
    CopyDone,
    /// The server does not support the requested minor version or protocol options.
    NegotiateProtocolVersion {
        /// The newest version the server supports, as `major << 16 | minor`.
        newest_version: u32,
        /// Protocol options (`_pq_.*`) the server did not recognise.
        unrecognized: Vec<String>,
    },
    /// Extended protocol: Parse completed.
    ParseComplete,
    /// Extended protocol: Bind completed.
    BindComplete,
    /// Extended protocol: Close completed.
    CloseComplete,
    /// Extended protocol: the statement returns no rows.
    NoData,
    /// Extended protocol: the row limit was reached.
    PortalSuspended,
    /// Extended protocol: the parameter types of a statement.
    ParameterDescription(Vec<u32>),
}

fn bad(e: std::io::Error) -> ProtocolError {
    ProtocolError::protocol(format!("malformed message body: {e}"))
}

impl BackendMessage {
    /// A short name for the message, for error texts and logs.
    pub fn name(&self) -> &'static str {
        match self {
            BackendMessage::AuthenticationOk => "AuthenticationOk",
            BackendMessage::AuthenticationCleartextPassword => "AuthenticationCleartextPassword",
            BackendMessage::AuthenticationMd5Password { .. } => "AuthenticationMD5Password",
            BackendMessage::AuthenticationSasl { .. } => "AuthenticationSASL",
            BackendMessage::AuthenticationSaslContinue(_) => "AuthenticationSASLContinue",
            BackendMessage::AuthenticationSaslFinal(_) => "AuthenticationSASLFinal",
            BackendMessage::AuthenticationGss => "AuthenticationGSS",
            BackendMessage::AuthenticationGssContinue(_) => "AuthenticationGSSContinue",
            BackendMessage::AuthenticationUnsupported { .. } => "Authentication (unsupported)",
            BackendMessage::ParameterStatus { .. } => "ParameterStatus",
            BackendMessage::BackendKeyData { .. } => "BackendKeyData",
            BackendMessage::ReadyForQuery(_) => "ReadyForQuery",
            BackendMessage::RowDescription(_) => "RowDescription",
            BackendMessage::DataRow(_) => "DataRow",
            BackendMessage::CommandComplete(_) => "CommandComplete",
            BackendMessage::EmptyQueryResponse => "EmptyQueryResponse",
            BackendMessage::ErrorResponse(_) => "ErrorResponse",
            BackendMessage::NoticeResponse(_) => "NoticeResponse",
            BackendMessage::NotificationResponse { .. } => "NotificationResponse",
            BackendMessage::CopyInResponse => "CopyInResponse",
            BackendMessage::CopyBothResponse => "CopyBothResponse",
            BackendMessage::CopyOutResponse => "CopyOutResponse",
            BackendMessage::CopyData(_) => "CopyData",
            BackendMessage::CopyDone => "CopyDone",
            BackendMessage::NegotiateProtocolVersion { .. } => "NegotiateProtocolVersion",
            BackendMessage::ParseComplete => "ParseComplete",
            BackendMessage::BindComplete => "BindComplete",
            BackendMessage::CloseComplete => "CloseComplete",
            BackendMessage::NoData => "NoData",
            BackendMessage::PortalSuspended => "PortalSuspended",
            BackendMessage::ParameterDescription(_) => "ParameterDescription",
        }
    }

    /// Decodes the messages that need nothing kept from the buffer straight from its bytes,
    /// without splitting the frame off: `Z` and `C`, which end every query, and `v` and
    /// `K`. `None` for any other tag. `frame` is one whole frame, header included.
    pub(crate) fn decode_in_place(frame: &[u8]) -> Option<Result<BackendMessage>> {
        let body = &frame[5..];
        Some(match frame[0] {
            b'Z' => match body {
                [status] => {
                    TransactionStatus::from_byte(*status).map(BackendMessage::ReadyForQuery)
                }
                _ => Err(ProtocolError::protocol(format!(
                    "malformed message body: ReadyForQuery of {} bytes instead of 1",
                    body.len()
                ))),
            },
            b'C' => match body.split_last() {
                Some((0, tag)) if !tag.contains(&0) => std::str::from_utf8(tag)
                    .map(|t| BackendMessage::CommandComplete(t.to_string()))
                    .map_err(|_| {
                        ProtocolError::protocol(
                            "malformed message body: CommandComplete tag is not UTF-8",
                        )
                    }),
                _ => Err(ProtocolError::protocol(
                    "malformed message body: CommandComplete is not one NUL-terminated tag",
                )),
            },
            b'v' => decode_negotiate(body),
            b'K' => decode_key_data(body),
            _ => return None,
        })
    }

    /// Decodes one complete frame (tag, length, body). The frame layer has already checked
    /// the tag and bounded the length; `Z`, `C`, `v`, `K` and `D` are decoded here, the rest
    /// through `postgres_protocol`.
    pub(crate) fn decode_frame(frame: BytesMut) -> Result<BackendMessage> {
        if let Some(m) = BackendMessage::decode_in_place(&frame) {
            return m;
        }
        if frame[0] == b'D' {
            return decode_data_row(frame);
        }
        if frame[0] == b'W' {
            return crate::copy::check_copy_both(&frame).map(|()| BackendMessage::CopyBothResponse);
        }
        let mut frame = frame;
        let msg = Message::parse(&mut frame).map_err(bad)?.ok_or_else(|| {
            ProtocolError::protocol("internal: incomplete frame handed to the message parser")
        })?;
        Ok(match msg {
            Message::AuthenticationOk => BackendMessage::AuthenticationOk,
            Message::AuthenticationCleartextPassword => {
                BackendMessage::AuthenticationCleartextPassword
            }
            Message::AuthenticationMd5Password(b) => {
                BackendMessage::AuthenticationMd5Password { salt: b.salt() }
            }
            Message::AuthenticationSasl(b) => BackendMessage::AuthenticationSasl {
                mechanisms: b
                    .mechanisms()
                    .map(|m| Ok(m.to_string()))
                    .collect()
                    .map_err(bad)?,
            },
            Message::AuthenticationSaslContinue(b) => {
                BackendMessage::AuthenticationSaslContinue(Bytes::copy_from_slice(b.data()))
            }
            Message::AuthenticationSaslFinal(b) => {
                BackendMessage::AuthenticationSaslFinal(Bytes::copy_from_slice(b.data()))
            }
            Message::AuthenticationKerberosV5 => BackendMessage::AuthenticationUnsupported {
                method: "Kerberos V5",
                code: 2,
            },
            Message::AuthenticationScmCredential => BackendMessage::AuthenticationUnsupported {
                method: "SCM credentials",
                code: 6,
            },
            Message::AuthenticationGss => BackendMessage::AuthenticationGss,
            Message::AuthenticationGssContinue(b) => {
                BackendMessage::AuthenticationGssContinue(Bytes::copy_from_slice(b.data()))
            }
            Message::AuthenticationSspi => BackendMessage::AuthenticationUnsupported {
                method: "SSPI",
                code: 9,
            },
            Message::ParameterStatus(b) => BackendMessage::ParameterStatus {
                name: b.name().map_err(bad)?.to_string(),
                value: b.value().map_err(bad)?.to_string(),
            },
            Message::ReadyForQuery(b) => {
                BackendMessage::ReadyForQuery(TransactionStatus::from_byte(b.status())?)
            }
            Message::RowDescription(b) => BackendMessage::RowDescription(
                b.fields()
                    .map(|f| {
                        Ok(FieldDescription {
                            name: f.name().to_string(),
                            table_oid: f.table_oid(),
                            column_id: f.column_id(),
                            type_oid: f.type_oid(),
                            type_size: f.type_size(),
                            type_modifier: f.type_modifier(),
                            format: f.format(),
                        })
                    })
                    .collect()
                    .map_err(bad)?,
            ),
            Message::CommandComplete(b) => {
                BackendMessage::CommandComplete(b.tag().map_err(bad)?.to_string())
            }
            Message::EmptyQueryResponse => BackendMessage::EmptyQueryResponse,
            Message::ErrorResponse(b) => {
                BackendMessage::ErrorResponse(Box::new(read_fields(b.fields())?))
            }
            Message::NoticeResponse(b) => {
                BackendMessage::NoticeResponse(Box::new(read_fields(b.fields())?))
            }
            Message::NotificationResponse(b) => BackendMessage::NotificationResponse {
                process_id: b.process_id(),
                channel: b.channel().map_err(bad)?.to_string(),
                payload: b.message().map_err(bad)?.to_string(),
            },
            Message::CopyInResponse(b) => {
                b.column_formats().count().map_err(bad)?;
                BackendMessage::CopyInResponse
            }
            Message::CopyOutResponse(b) => {
                b.column_formats().count().map_err(bad)?;
                BackendMessage::CopyOutResponse
            }
            Message::CopyData(b) => BackendMessage::CopyData(b.into_bytes()),
            Message::CopyDone => BackendMessage::CopyDone,
            Message::ParseComplete => BackendMessage::ParseComplete,
            Message::BindComplete => BackendMessage::BindComplete,
            Message::CloseComplete => BackendMessage::CloseComplete,
            Message::NoData => BackendMessage::NoData,
            Message::PortalSuspended => BackendMessage::PortalSuspended,
            Message::ParameterDescription(b) => {
                BackendMessage::ParameterDescription(b.parameters().collect().map_err(bad)?)
            }
            Message::BackendKeyData(_) => unreachable!("`K` is decoded by decode_key_data"),
            _ => return Err(ProtocolError::protocol("unsupported message")),
        })
    }

    /// Appends this message, framed, to `buf`: what a server would send (for the crate's
    /// tests and fake servers; feature `internals`).
    #[cfg(any(test, feature = "internals"))]
    #[doc(hidden)]
    pub fn encode(&self, buf: &mut BytesMut) {
        let (tag, body) = self.encode_body();
        buf.put_u8(tag);
        buf.put_u32(body.len() as u32 + 4);
        buf.extend_from_slice(&body);
    }

    #[cfg(any(test, feature = "internals"))]
    fn encode_body(&self) -> (u8, Vec<u8>) {
        let mut b: Vec<u8> = Vec::new();
        fn cstr(b: &mut Vec<u8>, s: &str) {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        let tag = match self {
            BackendMessage::AuthenticationOk => {
                b.put_i32(0);
                b'R'
            }
            BackendMessage::AuthenticationCleartextPassword => {
                b.put_i32(3);
                b'R'
            }
            BackendMessage::AuthenticationMd5Password { salt } => {
                b.put_i32(5);
                b.extend_from_slice(salt);
                b'R'
            }
            BackendMessage::AuthenticationSasl { mechanisms } => {
                b.put_i32(10);
                for m in mechanisms {
                    cstr(&mut b, m);
                }
                b.push(0);
                b'R'
            }
            BackendMessage::AuthenticationSaslContinue(d) => {
                b.put_i32(11);
                b.extend_from_slice(d);
                b'R'
            }
            BackendMessage::AuthenticationSaslFinal(d) => {
                b.put_i32(12);
                b.extend_from_slice(d);
                b'R'
            }
            BackendMessage::AuthenticationGss => {
                b.put_i32(7);
                b'R'
            }
            BackendMessage::AuthenticationGssContinue(d) => {
                b.put_i32(8);
                b.extend_from_slice(d);
                b'R'
            }
            BackendMessage::AuthenticationUnsupported { code, .. } => {
                b.put_i32(*code);
                b'R'
            }
            BackendMessage::ParameterStatus { name, value } => {
                cstr(&mut b, name);
                cstr(&mut b, value);
                b'S'
            }
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => {
                b.put_i32(*process_id);
                b.extend_from_slice(secret_key);
                b'K'
            }
            BackendMessage::ReadyForQuery(s) => {
                b.push(s.byte());
                b'Z'
            }
            BackendMessage::RowDescription(fields) => {
                b.put_u16(fields.len() as u16);
                for f in fields {
                    cstr(&mut b, &f.name);
                    b.put_u32(f.table_oid);
                    b.put_i16(f.column_id);
                    b.put_u32(f.type_oid);
                    b.put_i16(f.type_size);
                    b.put_i32(f.type_modifier);
                    b.put_i16(f.format);
                }
                b'T'
            }
            BackendMessage::DataRow(row) => {
                b.put_u16(row.len() as u16);
                for v in row.values() {
                    match v {
                        Some(v) => {
                            b.put_i32(v.len() as i32);
                            b.extend_from_slice(v);
                        }
                        None => b.put_i32(-1),
                    }
                }
                b'D'
            }
            BackendMessage::CommandComplete(tag) => {
                cstr(&mut b, tag);
                b'C'
            }
            BackendMessage::EmptyQueryResponse => b'I',
            BackendMessage::ErrorResponse(e) | BackendMessage::NoticeResponse(e) => {
                for (ty, v) in e.to_fields() {
                    b.push(ty);
                    cstr(&mut b, &v);
                }
                b.push(0);
                if matches!(self, BackendMessage::ErrorResponse(_)) {
                    b'E'
                } else {
                    b'N'
                }
            }
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            } => {
                b.put_i32(*process_id);
                cstr(&mut b, channel);
                cstr(&mut b, payload);
                b'A'
            }
            BackendMessage::CopyInResponse | BackendMessage::CopyOutResponse => {
                b.push(0);
                b.put_i16(1);
                b.put_i16(0);
                if matches!(self, BackendMessage::CopyInResponse) {
                    b'G'
                } else {
                    b'H'
                }
            }
            BackendMessage::CopyBothResponse => {
                b.push(0);
                b.put_i16(0);
                b'W'
            }
            BackendMessage::CopyData(d) => {
                b.extend_from_slice(d);
                b'd'
            }
            BackendMessage::CopyDone => b'c',
            BackendMessage::NegotiateProtocolVersion {
                newest_version,
                unrecognized,
            } => {
                b.put_u32(*newest_version);
                b.put_i32(unrecognized.len() as i32);
                for o in unrecognized {
                    cstr(&mut b, o);
                }
                b'v'
            }
            BackendMessage::ParseComplete => b'1',
            BackendMessage::BindComplete => b'2',
            BackendMessage::CloseComplete => b'3',
            BackendMessage::NoData => b'n',
            BackendMessage::PortalSuspended => b's',
            BackendMessage::ParameterDescription(oids) => {
                b.put_u16(oids.len() as u16);
                for o in oids {
                    b.put_u32(*o);
                }
                b't'
            }
        };
        (tag, b)
    }
}

fn read_fields(
    mut fields: postgres_protocol::message::backend::ErrorFields<'_>,
) -> Result<DbError> {
    let mut pairs: Vec<(u8, Vec<u8>)> = Vec::new();
    while let Some(f) = fields.next().map_err(bad)? {
        pairs.push((f.type_(), f.value_bytes().to_vec()));
    }
    Ok(DbError::from_fields(
        pairs.iter().map(|(t, v)| (*t, v.as_slice())),
    ))
}

fn read_cstr(body: &mut &[u8]) -> Result<String> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| ProtocolError::protocol("missing string terminator"))?;
    let s = std::str::from_utf8(&body[..end])
        .map_err(|_| ProtocolError::protocol("string is not valid UTF-8"))?
        .to_string();
    *body = &body[end + 1..];
    Ok(s)
}

fn read_u32(body: &mut &[u8]) -> Result<u32> {
    if body.len() < 4 {
        return Err(ProtocolError::protocol("message body too short"));
    }
    let v = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    *body = &body[4..];
    Ok(v)
}

fn decode_negotiate(mut body: &[u8]) -> Result<BackendMessage> {
    let newest_version = read_u32(&mut body)?;
    let count = read_u32(&mut body)?;
    // Each option name takes at least one byte, so a count beyond the body is malformed;
    // checking before reserving keeps a forged count from allocating.
    if count as usize > body.len() {
        return Err(ProtocolError::protocol(
            "NegotiateProtocolVersion: option count exceeds the message",
        ));
    }
    let mut unrecognized = Vec::with_capacity(count as usize);
    for _ in 0..count {
        unrecognized.push(read_cstr(&mut body)?);
    }
    if !body.is_empty() {
        return Err(ProtocolError::protocol(
            "NegotiateProtocolVersion: trailing bytes",
        ));
    }
    Ok(BackendMessage::NegotiateProtocolVersion {
        newest_version,
        unrecognized,
    })
}

/// DataRow, the message of every row: the body is kept whole (no copy) and the place of
/// each value is read in one pass. A negative length is SQL NULL, as for libpq.
fn decode_data_row(mut frame: BytesMut) -> Result<BackendMessage> {
    let malformed =
        |what: &str| ProtocolError::protocol(format!("malformed message body: DataRow {what}"));
    bytes::Buf::advance(&mut frame, 5);
    if frame.len() < 2 {
        return Err(malformed("without its value count"));
    }
    let count = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
    bytes::Buf::advance(&mut frame, 2);
    let buf = frame.freeze();
    // Each value takes at least its 4-byte length, so a count beyond that is malformed;
    // checking before reserving keeps a forged count from allocating.
    if count > buf.len() / 4 {
        return Err(malformed("counts more values than it holds"));
    }
    // Places are kept as 32-bit offsets (the largest marks NULL); PostgreSQL sends no
    // message over 1 GiB.
    if buf.len() >= u32::MAX as usize {
        return Err(malformed("of 4 GiB or more"));
    }
    let mut at = 0usize;
    let spans = Spans::collect(count, || {
        let head = buf
            .get(at..at + 4)
            .ok_or_else(|| malformed("ends inside a value's length"))?;
        let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        at += 4;
        if len < 0 {
            return Ok(Span::NULL);
        }
        let end = at
            .checked_add(len as usize)
            .filter(|&end| end <= buf.len())
            .ok_or_else(|| malformed("has a value that runs past the message"))?;
        // Both fit: the body is under 4 GiB.
        let span = Span {
            start: at as u32,
            len: len as u32,
        };
        at = end;
        Ok(span)
    })?;
    if at != buf.len() {
        return Err(malformed("has bytes after its last value"));
    }
    Ok(BackendMessage::DataRow(DataRowBody { buf, spans }))
}

fn decode_key_data(mut body: &[u8]) -> Result<BackendMessage> {
    let process_id = read_u32(&mut body)? as i32;
    if body.len() < 4 || body.len() > 256 {
        return Err(ProtocolError::protocol(format!(
            "BackendKeyData: secret key of {} bytes (expected 4 to 256)",
            body.len()
        )));
    }
    Ok(BackendMessage::BackendKeyData {
        process_id,
        secret_key: Bytes::copy_from_slice(body),
    })
}
