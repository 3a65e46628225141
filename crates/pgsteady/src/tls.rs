//! rustls client configuration for each `sslmode`.
//!
//! | sslmode | TLS | chain verified | host name verified |
//! |---|---|---|---|
//! | disable | never | - | - |
//! | allow | only if plain text is refused | no | no |
//! | prefer (default) | if the server offers it | no | no |
//! | require | yes | only if `sslrootcert` is given (libpq) | no |
//! | verify-ca | yes | yes | no |
//! | verify-full | yes | yes | yes |
//!
//! tokio-postgres-rustls offers full verification only; `verify-ca` and the unverified modes
//! need the two small verifiers below, so the TLS handshake is done here with tokio-rustls.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::{RootCert, SslMode, TlsSettings};
use crate::{Error, Reason};

/// A ready-to-use TLS client configuration, built once per [`crate::Connector`].
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) mode: SslMode,
    pub(crate) connector: Option<tokio_rustls::TlsConnector>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("enabled", &self.connector.is_some())
            .finish()
    }
}

/// The *ring* provider, chosen over aws-lc-rs on purpose: it builds with nothing but a C
/// compiler (no cmake, no Go), which keeps `cargo install`, the wheel and the container image
/// simple and the binary small.
///
/// rustls 0.23.48 deprecated `ring::default_provider` ("no support for post-quantum
/// algorithms") and offers no other way to build a *ring* provider in 0.23 (its signature
/// algorithms and random source are private); 0.24 moves it into the `rustls-ring` crate.
/// A PostgreSQL server negotiates the classical key exchanges ring offers (X25519, P-256,
/// P-384), so the warning is silenced here, once; `.ci/fresh-deps` builds against the newest
/// rustls with `-D warnings` and shows when this needs revisiting.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

fn tls_error(message: String) -> Error {
    Error::config(message).with_reason(Reason::Tls)
}

impl Tls {
    /// Builds the rustls configuration for `settings`; a missing or unreadable certificate is
    /// a configuration error naming the file.
    pub(crate) fn new(settings: &TlsSettings) -> Result<Self, Error> {
        if settings.mode == SslMode::Disable {
            return Ok(Tls {
                mode: settings.mode,
                connector: None,
            });
        }
        let provider = provider();
        let verify_chain = match settings.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            // libpq: with a root certificate, `require` verifies the chain like verify-ca.
            SslMode::Require => settings.root_cert.is_some(),
            _ => false,
        };
        let verifier: Arc<dyn ServerCertVerifier> = if verify_chain {
            let roots = Arc::new(load_roots(settings)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| tls_error(format!("cannot build the certificate verifier: {e}")))?;
            if settings.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        } else {
            Arc::new(NoVerify(provider.signature_verification_algorithms))
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(format!("cannot configure TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let cert_pem = read_file(cert, "sslcert")?;
                let certs = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        tls_error(format!("cannot read sslcert \"{}\": {e}", cert.display()))
                    })?;
                let key_pem = read_file(key, "sslkey")?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    tls_error(format!("cannot read sslkey \"{}\": {e}", key.display()))
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| tls_error(format!("invalid client certificate or key: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Tls {
            mode: settings.mode,
            connector: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
        })
    }

    /// The name sent in SNI and checked by verify-full.
    pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
        ServerName::try_from(host.to_owned())
            .map_err(|_| tls_error(format!("`{host}` is not a valid TLS server name")))
    }
}

/// Reads a certificate or key file: a FIFO, a device (or a link to one) or a file over 4 MiB
/// is a configuration error naming the file (exit 2), never waited on or read whole (issue
/// 19 item 5). A missing or unreadable file stays a TLS error, as before.
fn read_file(path: &std::path::Path, key: &str) -> Result<Vec<u8>, Error> {
    use crate::fsread::{MAX_CERT_FILE, ReadError, read_regular};
    read_regular(path, MAX_CERT_FILE).map_err(|e| match e {
        ReadError::Io(io) => tls_error(format!("cannot read {key} \"{}\": {io}", path.display())),
        other => Error::config(format!("{key} \"{}\" {other}", path.display())),
    })
}

fn load_roots(settings: &TlsSettings) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match &settings.root_cert {
        Some(RootCert::System) => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(RootCert::File(path)) => {
            let pem = read_file(path, "sslrootcert")?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    tls_error(format!(
                        "cannot read root certificate file \"{}\" (sslrootcert): {e}",
                        path.display()
                    ))
                })?;
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_error(format!(
                    "root certificate file \"{}\" (sslrootcert) holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => {
            return Err(tls_error(format!(
                "sslmode={} needs root certificates: set sslrootcert=<file> (or \
                 sslrootcert=system for the public roots); ~/.postgresql/root.crt does not exist",
                settings.mode
            )));
        }
    }
    Ok(store)
}

/// `prefer`, `require` without a root certificate, `allow`: encrypt, verify nothing (the
/// handshake signature is still checked so the session keys belong to the presented key).
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
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
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the chain before the name, so a name error means the chain passed.
            Err(rustls::Error::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    fn verify_modes_need_roots_and_name_the_file() {
        let mut s = TlsSettings {
            mode: SslMode::VerifyFull,
            ..TlsSettings::default()
        };
        let err = Tls::new(&s).unwrap_err();
        assert!(
            err.to_string()
                .contains("sslmode=verify-full needs root certificates"),
            "{err}"
        );
        s.root_cert = Some(RootCert::File("/nonexistent/ca.pem".into()));
        let err = Tls::new(&s).unwrap_err();
        assert!(err.to_string().contains("\"/nonexistent/ca.pem\""), "{err}");
        assert_eq!(err.reason(), Some(Reason::Tls));
        s.root_cert = Some(RootCert::System);
        assert!(Tls::new(&s).unwrap().connector.is_some());
        s.mode = SslMode::VerifyCa;
        assert!(Tls::new(&s).is_ok());
    }

    #[test]
    fn unverified_modes_build_without_roots() {
        for mode in [SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            let s = TlsSettings {
                mode,
                ..TlsSettings::default()
            };
            assert!(Tls::new(&s).unwrap().connector.is_some(), "{mode}");
        }
        let s = TlsSettings {
            mode: SslMode::Disable,
            ..TlsSettings::default()
        };
        assert!(Tls::new(&s).unwrap().connector.is_none());
    }
}
