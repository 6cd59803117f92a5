//! TLS for connections (feature `tls`): rustls with the ring provider, configured the way
//! libpq's settings say, and the `tls-server-end-point` data for SCRAM channel binding.
//!
//! | sslmode | the server's certificate |
//! |---|---|
//! | `allow`, `prefer`, `require` | not checked (the handshake's signatures still are) |
//! | `verify-ca` | its chain must lead to a root certificate |
//! | `verify-full` | as `verify-ca`, and it must name the host connected to |
//!
//! `require` with a root certificate (given, or the default file present) is `verify-ca`,
//! as in libpq. Errors never name certificate or key files: they say which setting's file
//! could not be used and why.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use sha2::Digest;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

use super::tls_info::TlsInfo;
use crate::config::{Host, RootCert, SslMode, SslNegotiation, TlsSettings};
use crate::error::{Error, Result};

/// A connector for one configuration, shared by the connection and its CancelToken.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The mode in force: `require` with a root certificate acts as `verify-ca`.
pub(crate) fn effective_mode(tls: &TlsSettings) -> SslMode {
    if tls.mode == SslMode::Require && (tls.root_cert.is_some() || default_root_file().is_some()) {
        SslMode::VerifyCa
    } else {
        tls.mode
    }
}

/// libpq's default root certificate file, if it exists.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".postgresql").join("root.crt");
    p.is_file().then_some(p)
}

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(super::tls_provider::ring_provider()))
        .clone()
}

/// The platform's roots, loaded once.
fn system_roots() -> Result<Arc<RootCertStore>> {
    static ROOTS: OnceLock<std::result::Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                Err("sslrootcert=system: the platform has no trusted root certificates".into())
            } else {
                Ok(Arc::new(store))
            }
        })
        .clone()
        .map_err(Error::config)
}

fn roots(tls: &TlsSettings) -> Result<Arc<RootCertStore>> {
    let file = match &tls.root_cert {
        Some(RootCert::System) => return system_roots(),
        Some(RootCert::File(p)) => p.clone(),
        None => default_root_file().ok_or_else(|| {
            Error::config(format!(
                "sslmode={} needs root certificates: set sslrootcert (a PEM file, or `system`); \
                 the default file (.postgresql/root.crt in the home directory) does not exist",
                tls.mode.as_str()
            ))
        })?,
    };
    let mut store = RootCertStore::empty();
    let certs = pem_certs(&file, "sslrootcert")?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::config(
            "sslrootcert: the file holds no usable certificate",
        ));
    }
    Ok(Arc::new(store))
}

/// The certificates of a PEM file; errors name the `setting` it came from.
fn pem_certs(path: &std::path::Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            Error::config(format!(
                "{setting}: the file cannot be read: {}",
                pem_error(&e)
            ))
        })?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(format!(
                "{setting}: the file is not valid PEM: {}",
                pem_error(&e)
            ))
        })
}

/// A PEM error's reason, without the file name some variants carry.
fn pem_error(e: &tokio_rustls::rustls::pki_types::pem::Error) -> String {
    use tokio_rustls::rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.kind().to_string(),
        E::NoItemsFound => "no PEM item found".into(),
        _ => "malformed PEM".into(),
    }
}

impl Connector {
    /// The connector for `tls` towards `host` (whose name the certificate must carry
    /// with `verify-full`).
    pub(crate) fn new(tls: &TlsSettings, host: &Host) -> Result<Connector> {
        let mode = effective_mode(tls);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?;
        let builder = match mode {
            SslMode::VerifyFull => builder.with_root_certificates(roots(tls)?),
            SslMode::VerifyCa => {
                let inner = WebPkiServerVerifier::builder_with_provider(roots(tls)?, provider())
                    .build()
                    .map_err(|e| Error::config(format!("TLS: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
            }
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider()))),
        };
        let mut config = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                let certs = pem_certs(cert, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    Error::config(format!("sslkey: the key cannot be read: {}", pem_error(&e)))
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| Error::config(format!("sslcert/sslkey: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(Error::config(
                    "a client certificate needs both sslcert and sslkey",
                ))
            }
        };
        if tls.negotiation == SslNegotiation::Direct {
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        let name = match host {
            Host::Tcp(h) => match h.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(h.clone())
                    .map_err(|_| Error::config(format!("`{h}` is not a valid TLS server name")))?,
            },
            Host::Unix(_) => {
                return Err(Error::config(
                    "TLS is not used over Unix-domain sockets; use sslmode=disable or prefer, or a TCP host",
                ))
            }
        };
        Ok(Connector {
            config: Arc::new(config),
            name,
        })
    }

    /// The TLS handshake over `tcp`.
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
        TlsConnector::from(self.config.clone())
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| {
                // rustls reports a bad certificate as an io::Error wrapping its own error.
                Error::tls(format!("TLS handshake failed: {}", crate::error::chain(&e)))
            })
    }
}

/// What the connection needs after the handshake: the session's description and the
/// channel-binding data.
pub(crate) fn session(tls: &TlsStream<TcpStream>) -> (TlsInfo, Option<Vec<u8>>) {
    let (_, c) = tls.get_ref();
    let protocol = c
        .protocol_version()
        .and_then(|v| v.as_str())
        .map_or_else(|| "TLS".to_string(), |v| v.replace('_', "."));
    let cipher = c
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_string();
    let end_point = c
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| end_point_hash(cert));
    (TlsInfo { protocol, cipher }, end_point)
}

/// The `tls-server-end-point` channel-binding data (RFC 5929): the server certificate
/// hashed with its signature's hash, SHA-256 for MD5 and SHA-1, as PostgreSQL computes
/// it. `None` for a signature algorithm without one (Ed25519, RSASSA-PSS).
pub(crate) fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    const SHA256: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04], // md5WithRSA
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05], // sha1WithRSA
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], // sha256WithRSA
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],             // ecdsa-with-SHA1
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],       // ecdsa-with-SHA256
    ];
    const SHA224: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0e],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01],
    ];
    const SHA384: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let oid = signature_algorithm(cert)?;
    if SHA256.contains(&oid) {
        Some(sha2::Sha256::digest(cert).to_vec())
    } else if SHA224.contains(&oid) {
        Some(sha2::Sha224::digest(cert).to_vec())
    } else if SHA384.contains(&oid) {
        Some(sha2::Sha384::digest(cert).to_vec())
    } else if SHA512.contains(&oid) {
        Some(sha2::Sha512::digest(cert).to_vec())
    } else {
        None
    }
}

/// The OID of a DER certificate's `signatureAlgorithm` (the second element of the
/// outer SEQUENCE), or `None` if the bytes are not shaped like a certificate.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (outer, _) = der(cert, 0x30)?;
    let (_, rest) = der(outer, 0x30)?; // tbsCertificate
    let (alg, _) = der(rest, 0x30)?; // signatureAlgorithm
    let (oid, _) = der(alg, 0x06)?;
    Some(oid)
}

/// One DER element with `tag` at the front of `b`: its contents and what follows.
fn der(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, b) = b.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| b.split_at(len))
}

/// `allow`, `prefer`, `require`: any certificate, but the handshake's signatures are
/// checked, so the session is with the holder of the certificate presented.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(tokio_rustls::rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walks_a_certificate_shape_and_refuses_garbage() {
        // SEQUENCE { SEQUENCE {}, SEQUENCE { OID 1.2.840.113549.1.1.11 } }
        let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend_from_slice(&oid);
        let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
        body.extend_from_slice(&alg);
        let mut cert = vec![0x30, body.len() as u8];
        cert.extend_from_slice(&body);
        assert_eq!(signature_algorithm(&cert), Some(&oid[..]));
        assert_eq!(end_point_hash(&cert).map(|h| h.len()), Some(32));
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x31, 0x00],
            &cert[..5],
        ] {
            assert!(signature_algorithm(bad).is_none(), "{bad:?}");
        }
    }
}
