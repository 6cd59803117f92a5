//! Startup and authentication as a state machine: messages in, bytes to send out.
//!
//! Supported: trust, cleartext password, MD5, SCRAM-SHA-256, SCRAM-SHA-256-PLUS with
//! `tls-server-end-point` channel binding over TLS, and GSSAPI, whose tokens the driver
//! computes with the system's GSSAPI library ([`StartupStatus::Gss`]). SSPI, Kerberos V5,
//! SCM credentials and other SASL mechanisms end in an authentication error naming the
//! method.
//! With `channel_binding=require`, anything but SCRAM-SHA-256-PLUS fails before a password
//! (or its hash) is sent. wirepool never sends GSSENCRequest; the one-byte answer to an
//! SSLRequest is read by [`ssl_answer`].

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::frontend;

use super::backend::{BackendMessage, TransactionStatus};
use super::require_auth::RequireAuth;
use super::version::ProtocolVersion;

/// Whether SCRAM binds to the TLS channel (the connection layer's `channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// Never.
    Disable,
    /// When the connection is encrypted and the server offers it.
    Prefer,
    /// Always, or fail before any password is sent.
    Require,
}
use super::error::{ProtocolError, Result};
use super::DbError;

/// What the server's one-byte answer to an SSLRequest means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslAnswer {
    /// `S`: the TLS handshake comes next.
    Tls,
    /// `N`: the server does not do TLS; the startup goes on in plain text.
    Plain,
}

/// Reads the answer to an SSLRequest: exactly one byte, and nothing before the handshake
/// (bytes the server sent with it would be read as if they came over TLS: CVE-2021-23222).
///
/// # Errors
///
/// A TLS error for `E` (a server too old for SSLRequest, or one that refused it); a
/// protocol error naming the byte for anything else.
pub fn ssl_answer(byte: u8) -> Result<SslAnswer> {
    match byte {
        b'S' => Ok(SslAnswer::Tls),
        b'N' => Ok(SslAnswer::Plain),
        b'E' => Err(ProtocolError::tls(
            "the server answered SSLRequest with an error (it does not support TLS negotiation)",
        )),
        other => Err(ProtocolError::protocol(format!(
            "the server answered SSLRequest with byte {other:#04x}: it does not speak the PostgreSQL protocol"
        ))),
    }
}

/// How the server authenticated us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// No password was asked for.
    Trust,
    /// The password was sent in clear text.
    Cleartext,
    /// MD5 challenge-response.
    Md5,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: SCRAM bound to the TLS channel.
    ScramSha256Plus,
    /// GSSAPI (Kerberos).
    Gss,
}

impl AuthMethod {
    /// The name as `pg_hba.conf` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Trust => "trust",
            AuthMethod::Cleartext => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::ScramSha256Plus => "scram-sha-256 with channel binding",
            AuthMethod::Gss => "gss",
        }
    }
}

/// What the startup message carries.
#[derive(Debug, Clone)]
pub struct StartupParams<'a> {
    /// The role to log in as.
    pub user: &'a str,
    /// The database.
    pub database: &'a str,
    /// The password, if one is configured.
    pub password: Option<&'a [u8]>,
    /// `application_name`.
    pub application_name: Option<&'a str>,
    /// `options`.
    pub options: Option<&'a str>,
    /// `channel_binding`.
    pub channel_binding: BindingMode,
    /// The `tls-server-end-point` channel-binding data (the hash of the server's
    /// certificate) when the connection is encrypted and it could be computed.
    pub tls_end_point: Option<&'a [u8]>,
    /// The connection is encrypted (TLS), whether or not `tls_end_point` could be computed
    /// (it cannot for a certificate signed with Ed25519 or RSASSA-PSS).
    pub encrypted: bool,
    /// The version asked for (`max_protocol_version`).
    pub max_protocol: ProtocolVersion,
    /// The oldest version accepted when the server offers an older one
    /// (`min_protocol_version`).
    pub min_protocol: ProtocolVersion,
    /// The authentication methods the server may use (`require_auth`).
    pub require_auth: RequireAuth,
    /// `replication`: `database` for a logical replication connection; `None` for a
    /// normal one.
    pub replication: Option<&'a str>,
}

/// What the server told us during startup.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// How we were authenticated.
    pub auth_method: AuthMethod,
    /// The backend's process id (for CancelRequest).
    pub process_id: i32,
    /// The secret key (for CancelRequest).
    pub secret_key: Bytes,
    /// ParameterStatus values (server_version, TimeZone, ...).
    pub parameters: HashMap<String, String>,
    /// The transaction status of the first ReadyForQuery.
    pub transaction_status: TransactionStatus,
    /// The protocol version in use: the one asked for, or the older one the server
    /// answered with in NegotiateProtocolVersion.
    pub protocol_version: ProtocolVersion,
    /// Notices sent during startup.
    pub notices: Vec<DbError>,
}

/// What [`Startup::handle`] asks of its driver next.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum StartupStatus {
    /// Send what was written to the output buffer (if anything) and feed the next message.
    Continue,
    /// The session is ready.
    Ready(SessionInfo),
    /// GSSAPI: run the client's next step on the server's token (`None`: the first step,
    /// from nothing), then hand what it gives to [`Startup::gss_stepped`].
    Gss(Option<Bytes>),
}

/// How far a GSSAPI exchange has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GssPhase {
    NotAsked,
    /// The client has stepped, and its context needs more from the server.
    Started,
    /// The client's context is established (the server authenticated itself too).
    Complete,
}

enum State {
    Auth,
    SaslContinue(ScramSha256),
    SaslFinal(ScramSha256),
    AwaitReady,
    Done,
}

/// The startup exchange, from StartupMessage to the first ReadyForQuery.
pub struct Startup {
    state: State,
    user: Vec<u8>,
    password: Option<Vec<u8>>,
    binding: BindingMode,
    end_point: Option<Vec<u8>>,
    encrypted: bool,
    require_auth: RequireAuth,
    /// The version asked for, then the one the server answered with.
    protocol: ProtocolVersion,
    min_protocol: ProtocolVersion,
    negotiated: bool,
    method: AuthMethod,
    gss: GssPhase,
    process_id: Option<i32>,
    secret_key: Bytes,
    parameters: HashMap<String, String>,
    notices: Vec<DbError>,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Startup {
    /// Begins a startup: writes the StartupMessage into `out`.
    ///
    /// # Errors
    ///
    /// A configuration error if a parameter or the password contains a NUL byte (the
    /// password is refused here for every method, not only when sent in clear text).
    pub fn start(params: &StartupParams<'_>, out: &mut BytesMut) -> Result<Startup> {
        if params.password.is_some_and(|p| p.contains(&0)) {
            return Err(ProtocolError::config("the password contains a NUL byte"));
        }
        let mut kv: Vec<(&str, &str)> = vec![
            ("user", params.user),
            ("database", params.database),
            ("client_encoding", "UTF8"),
        ];
        if let Some(a) = params.application_name {
            kv.push(("application_name", a));
        }
        if let Some(o) = params.options {
            kv.push(("options", o));
        }
        if let Some(r) = params.replication {
            kv.push(("replication", r));
        }
        if params.min_protocol > params.max_protocol {
            return Err(ProtocolError::config(format!(
                "min_protocol_version {} is greater than max_protocol_version {}",
                params.min_protocol, params.max_protocol
            )));
        }
        startup_message(params.max_protocol, &kv, out)?;
        Ok(Startup {
            state: State::Auth,
            user: params.user.as_bytes().to_vec(),
            password: params.password.map(<[u8]>::to_vec),
            binding: params.channel_binding,
            end_point: params.tls_end_point.map(<[u8]>::to_vec),
            encrypted: params.encrypted || params.tls_end_point.is_some(),
            require_auth: params.require_auth,
            protocol: params.max_protocol,
            min_protocol: params.min_protocol,
            negotiated: false,
            method: AuthMethod::Trust,
            gss: GssPhase::NotAsked,
            process_id: None,
            secret_key: Bytes::new(),
            parameters: HashMap::new(),
            notices: Vec::new(),
        })
    }

    /// With `channel_binding=require`, only SCRAM-SHA-256-PLUS over TLS will do: any other
    /// method fails here, before a password or its hash is sent.
    fn refuse_unbound(&self, method: &str) -> Result<()> {
        if self.binding != BindingMode::Require {
            return Ok(());
        }
        Err(ProtocolError::auth(if !self.encrypted {
            format!("channel_binding=require, but the connection is not encrypted (the server asked for {method}); nothing was sent")
        } else {
            format!("channel_binding=require, but the server asked for {method}, not SCRAM-SHA-256-PLUS; nothing was sent")
        }))
    }

    fn password(&self, method: &str) -> Result<&[u8]> {
        self.password.as_deref().ok_or_else(|| {
            ProtocolError::missing_password(format!(
                "the server asks for a password ({method} authentication) but none is configured"
            ))
        })
    }

    /// If the exchange waits for the server's SCRAM challenge (AuthenticationSASLContinue),
    /// takes the SCRAM state out, for the caller to run its expensive step
    /// ([`ScramSha256::update`]: PBKDF2 with as many iterations as the server asks)
    /// where it blocks no async worker, and to hand back through
    /// [`Startup::scram_updated`]. `None` otherwise (then feed [`Startup::handle`]).
    pub fn take_scram(&mut self) -> Option<ScramSha256> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::SaslContinue(scram) => Some(scram),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Goes on after [`ScramSha256::update`] ran on the state [`Startup::take_scram`]
    /// gave, with its result: writes the SASLResponse into `out`.
    ///
    /// # Errors
    ///
    /// An authentication error for an invalid server-first-message (a bad nonce, an
    /// iteration count over postgres-protocol's limit, ...); the connection must be closed.
    pub fn scram_updated(
        &mut self,
        scram: ScramSha256,
        updated: std::io::Result<()>,
        out: &mut BytesMut,
    ) -> Result<StartupStatus> {
        updated
            .map_err(|e| ProtocolError::auth(format!("invalid SCRAM server-first-message: {e}")))?;
        frontend::sasl_response(scram.message(), out)
            .map_err(|e| ProtocolError::protocol(format!("encoding SASLResponse: {e}")))?;
        self.state = State::SaslFinal(scram);
        Ok(StartupStatus::Continue)
    }

    /// Goes on after the GSSAPI client's step that [`StartupStatus::Gss`] asked for:
    /// `token` is what it gives for the server (sent as a GSSResponse unless empty),
    /// `complete` whether its context is now established.
    ///
    /// # Errors
    ///
    /// A protocol error when no GSSAPI step was asked for.
    pub fn gss_stepped(
        &mut self,
        token: &[u8],
        complete: bool,
        out: &mut BytesMut,
    ) -> Result<StartupStatus> {
        if self.gss != GssPhase::Started {
            return Err(ProtocolError::protocol(
                "a GSSAPI token when none was asked for",
            ));
        }
        if !token.is_empty() {
            // GSSResponse is a `p` message whose body is the token, as SASLResponse's.
            frontend::sasl_response(token, out)
                .map_err(|e| ProtocolError::protocol(format!("encoding GSSResponse: {e}")))?;
        }
        if complete {
            self.gss = GssPhase::Complete;
        }
        Ok(StartupStatus::Continue)
    }

    /// Feeds one server message; anything to send back is appended to `out`.
    ///
    /// # Errors
    ///
    /// A [`DbError`] from the server (wrong password: 28P01, unknown database: 3D000, ...),
    /// an authentication error for an unsupported method or a failed server signature, or a
    /// protocol error for a message that does not belong here. After an error the
    /// connection must be closed.
    pub fn handle(&mut self, msg: BackendMessage, out: &mut BytesMut) -> Result<StartupStatus> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let unexpected = |m: &BackendMessage| {
            ProtocolError::protocol(format!("unexpected {} during startup", m.name()))
        };
        match (state, msg) {
            (_, BackendMessage::ErrorResponse(e)) => Err(ProtocolError::db(*e)),
            (State::Done, m) => Err(unexpected(&m)),
            (state, BackendMessage::NoticeResponse(n)) => {
                self.notices.push(*n);
                self.state = state;
                Ok(StartupStatus::Continue)
            }
            (
                State::Auth,
                BackendMessage::NegotiateProtocolVersion {
                    newest_version,
                    unrecognized,
                },
            ) => {
                self.negotiate(ProtocolVersion::from_code(newest_version), &unrecognized)?;
                self.state = State::Auth;
                Ok(StartupStatus::Continue)
            }
            (State::Auth, BackendMessage::AuthenticationOk) => {
                if self.method == AuthMethod::Trust && !self.require_auth.allows_none() {
                    return Err(self
                        .require_auth
                        .refusal("no authentication (it let the client in without one)"));
                }
                // As libpq: a server that lets the client in before the GSSAPI context is
                // established has not proven who it is; with require_auth set, that is
                // not enough.
                if self.gss == GssPhase::Started && !self.require_auth.allows_none() {
                    return Err(self.require_auth.refusal(
                        "GSSAPI, and let the client in before the exchange was complete",
                    ));
                }
                if self.method != AuthMethod::ScramSha256Plus {
                    // The server let us in without authenticating itself through the
                    // channel binding.
                    self.refuse_unbound("no authentication")?;
                }
                self.state = State::AwaitReady;
                Ok(StartupStatus::Continue)
            }
            (State::Auth, BackendMessage::AuthenticationCleartextPassword) => {
                if !self.require_auth.allows_password() {
                    return Err(self.require_auth.refusal("a cleartext password (password)"));
                }
                self.refuse_unbound("a cleartext password")?;
                let pw = self.password("password")?.to_vec();
                frontend::password_message(&pw, out)
                    .map_err(|_| ProtocolError::config("the password contains a NUL byte"))?;
                self.method = AuthMethod::Cleartext;
                self.state = State::Auth;
                Ok(StartupStatus::Continue)
            }
            (State::Auth, BackendMessage::AuthenticationMd5Password { salt }) => {
                if !self.require_auth.allows_md5() {
                    return Err(self.require_auth.refusal("an MD5-hashed password (md5)"));
                }
                self.refuse_unbound("md5")?;
                let hash = md5_hash(&self.user, self.password("md5")?, salt);
                frontend::password_message(hash.as_bytes(), out)
                    .map_err(|_| ProtocolError::protocol("md5 hash contains a NUL byte"))?;
                self.method = AuthMethod::Md5;
                self.state = State::Auth;
                Ok(StartupStatus::Continue)
            }
            (State::Auth, BackendMessage::AuthenticationSasl { mechanisms }) => {
                if !self.require_auth.allows_scram() {
                    return Err(self.require_auth.refusal(&format!(
                        "SASL authentication ({})",
                        super::Escaped(&mechanisms.join(", "))
                    )));
                }
                let offers = |m: &str| mechanisms.iter().any(|x| x == m);
                let bound = match (&self.end_point, self.binding) {
                    (Some(hash), BindingMode::Prefer | BindingMode::Require)
                        if offers(SCRAM_SHA_256_PLUS) =>
                    {
                        Some(hash.clone())
                    }
                    _ => None,
                };
                // Over TLS, a server that offers binding gets it or nothing: a certificate
                // whose signature has no hash for tls-server-end-point (Ed25519,
                // RSASSA-PSS) cannot be bound to, and going on unbound would let a man in
                // the middle with such a certificate authenticate as the user. libpq fails
                // the same way.
                if self.encrypted
                    && self.end_point.is_none()
                    && self.binding != BindingMode::Disable
                    && offers(SCRAM_SHA_256_PLUS)
                {
                    return Err(ProtocolError::auth(
                        "the server offers SCRAM-SHA-256-PLUS, but channel binding cannot be computed for its certificate: tls-server-end-point has no hash for its signature algorithm (Ed25519 or RSASSA-PSS); nothing was sent. Use a certificate signed with RSA or ECDSA and SHA-2, or channel_binding=disable",
                    ));
                }
                if bound.is_none() {
                    if self.binding == BindingMode::Require {
                        return Err(ProtocolError::auth(if !self.encrypted {
                            "channel_binding=require, but the connection is not encrypted; nothing was sent".to_string()
                        } else {
                            format!(
                                "channel_binding=require, but the server offers [{}], not SCRAM-SHA-256-PLUS; nothing was sent",
                                super::Escaped(&mechanisms.join(", "))
                            )
                        }));
                    }
                    if !offers(SCRAM_SHA_256) {
                        return Err(ProtocolError::auth(format!(
                            "the server offers SASL mechanisms [{}]; wirepool supports {SCRAM_SHA_256} and {SCRAM_SHA_256_PLUS}",
                            super::Escaped(&mechanisms.join(", "))
                        )));
                    }
                }
                let (mechanism, binding, method) = match bound {
                    Some(hash) => (
                        SCRAM_SHA_256_PLUS,
                        ChannelBinding::tls_server_end_point(hash),
                        AuthMethod::ScramSha256Plus,
                    ),
                    // Over TLS without PLUS on offer: "y", so that a server that did offer
                    // it (a man in the middle stripped it) can tell.
                    None if self.encrypted && self.binding != BindingMode::Disable => (
                        SCRAM_SHA_256,
                        ChannelBinding::unrequested(),
                        AuthMethod::ScramSha256,
                    ),
                    None => (
                        SCRAM_SHA_256,
                        ChannelBinding::unsupported(),
                        AuthMethod::ScramSha256,
                    ),
                };
                let scram = ScramSha256::new(self.password(mechanism)?, binding);
                frontend::sasl_initial_response(mechanism, scram.message(), out).map_err(|e| {
                    ProtocolError::protocol(format!("encoding SASLInitialResponse: {e}"))
                })?;
                self.method = method;
                self.state = State::SaslContinue(scram);
                Ok(StartupStatus::Continue)
            }
            (State::SaslContinue(mut scram), BackendMessage::AuthenticationSaslContinue(data)) => {
                let r = scram.update(&data);
                self.scram_updated(scram, r, out)
            }
            (State::SaslFinal(mut scram), BackendMessage::AuthenticationSaslFinal(data)) => {
                scram.finish(&data).map_err(|e| {
                    ProtocolError::auth(format!("the server's SCRAM signature did not verify: {e}"))
                })?;
                self.state = State::Auth;
                Ok(StartupStatus::Continue)
            }
            (State::Auth, BackendMessage::AuthenticationGss) => {
                if !self.require_auth.allows_gss() {
                    return Err(self.require_auth.refusal("GSSAPI (gss)"));
                }
                self.refuse_unbound("GSSAPI")?;
                if self.gss != GssPhase::NotAsked || self.method != AuthMethod::Trust {
                    return Err(ProtocolError::protocol(
                        "AuthenticationGSS after authentication had begun",
                    ));
                }
                self.method = AuthMethod::Gss;
                self.gss = GssPhase::Started;
                self.state = State::Auth;
                Ok(StartupStatus::Gss(None))
            }
            (State::Auth, BackendMessage::AuthenticationGssContinue(token))
                if self.gss == GssPhase::Started =>
            {
                self.state = State::Auth;
                Ok(StartupStatus::Gss(Some(token)))
            }
            (State::Auth, BackendMessage::AuthenticationUnsupported { method, code }) => {
                // SSPI (9) is a method require_auth names.
                let refused = code == 9 && !self.require_auth.allows_sspi();
                if refused {
                    return Err(self.require_auth.refusal(method));
                }
                Err(ProtocolError::auth(format!(
                    "the server asks for {method} authentication, which wirepool does not support"
                )))
            }
            (State::AwaitReady, BackendMessage::ParameterStatus { name, value }) => {
                self.parameters.insert(name, value);
                self.state = State::AwaitReady;
                Ok(StartupStatus::Continue)
            }
            (
                State::AwaitReady,
                BackendMessage::BackendKeyData {
                    process_id,
                    secret_key,
                },
            ) => {
                if self.protocol == ProtocolVersion::V3_0 && secret_key.len() != 4 {
                    return Err(ProtocolError::protocol(format!(
                        "BackendKeyData: a cancel key of {} bytes under protocol 3.0 (it has 4)",
                        secret_key.len()
                    )));
                }
                self.process_id = Some(process_id);
                self.secret_key = secret_key;
                self.state = State::AwaitReady;
                Ok(StartupStatus::Continue)
            }
            (State::AwaitReady, BackendMessage::ReadyForQuery(status)) => {
                Ok(StartupStatus::Ready(SessionInfo {
                    auth_method: self.method,
                    process_id: self.process_id.unwrap_or(0),
                    secret_key: std::mem::take(&mut self.secret_key),
                    parameters: std::mem::take(&mut self.parameters),
                    transaction_status: status,
                    protocol_version: self.protocol,
                    notices: std::mem::take(&mut self.notices),
                }))
            }
            (_, m) => Err(unexpected(&m)),
        }
    }
}

impl Startup {
    /// The server answered NegotiateProtocolVersion: it speaks an older minor version than
    /// the one asked for (or did not recognise an option). As libpq 18: a newer version,
    /// one older than 3.0, the never-released 3.1, one older than `min_protocol_version`,
    /// an option that was never sent, or a second answer, end the startup.
    fn negotiate(&mut self, offered: ProtocolVersion, unrecognized: &[String]) -> Result<()> {
        let violation = |what: String| {
            Err(ProtocolError::protocol(format!(
                "invalid NegotiateProtocolVersion: {what}"
            )))
        };
        if self.negotiated {
            return violation("sent twice".into());
        }
        self.negotiated = true;
        if let Some(name) = unrecognized.first() {
            // No `_pq_.` option is ever sent.
            return violation(format!(
                "the server names option `{}`, which was not sent",
                super::Escaped(name)
            ));
        }
        if offered >= self.protocol {
            return violation(format!(
                "the server offers {offered}, and {} was asked for",
                self.protocol
            ));
        }
        if offered < ProtocolVersion::V3_0 {
            return violation(format!("the server offers {offered}, older than 3.0"));
        }
        if offered.minor() == 1 && offered.major() == 3 {
            return violation("the server offers 3.1, which never existed".into());
        }
        if offered < self.min_protocol {
            return Err(ProtocolError::protocol(format!(
                "the server speaks protocol {offered} at most, and min_protocol_version is {}",
                self.min_protocol
            )));
        }
        self.protocol = offered;
        Ok(())
    }
}

/// The StartupMessage: length, version, then `name\0value\0` pairs and a closing NUL.
fn startup_message(
    version: ProtocolVersion,
    params: &[(&str, &str)],
    out: &mut BytesMut,
) -> Result<()> {
    use bytes::BufMut;
    let start = out.len();
    out.put_u32(0);
    out.put_u32(version.code());
    for (k, v) in params {
        for s in [k, v] {
            if s.as_bytes().contains(&0) {
                out.truncate(start);
                return Err(ProtocolError::config(
                    "a connection parameter contains a NUL byte",
                ));
            }
            out.put_slice(s.as_bytes());
            out.put_u8(0);
        }
    }
    out.put_u8(0);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
#[path = "startup_tests.rs"]
mod tests;
