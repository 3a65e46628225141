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
//! need the small verifiers below, so the TLS handshake is done here with tokio-rustls.
//!
//! A self-signed server certificate given as its own root (`sslrootcert=server.crt`) is
//! accepted as OpenSSL accepts it for libpq: webpki refuses a CA certificate as the end entity
//! and has no option to allow it, so [`SelfSignedRoot`] accepts an end-entity certificate
//! byte-identical to a configured root, within its validity dates and (verify-full) for the
//! host name. Every problem with a certificate or key file is a configuration error naming
//! the file (exit 2: nothing was tried); a server certificate that does not verify is a TLS
//! error (permanent).

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

/// A certificate or key file that cannot be used: a configuration error (exit 2).
fn file_error(message: String) -> Error {
    Error::config(message)
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
            let (store, file_roots) = load_roots(settings)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| {
                        tls_error(format!("cannot build the certificate verifier: {e}"))
                    })?;
            let check_name = settings.mode == SslMode::VerifyFull;
            let chain: Arc<dyn ServerCertVerifier> = if check_name {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            };
            if file_roots.is_empty() {
                chain
            } else {
                Arc::new(SelfSignedRoot {
                    chain,
                    roots: file_roots,
                    check_name,
                })
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
                        file_error(format!(
                            "sslcert \"{}\" is not a PEM certificate: {e}",
                            cert.display()
                        ))
                    })?;
                key_permissions(key)?;
                let key_pem = read_file(key, "sslkey")?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    file_error(format!(
                        "sslkey \"{}\" is not a PEM private key: {e}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                    file_error(format!(
                        "sslcert \"{}\" and sslkey \"{}\" do not make a client certificate: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
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

/// Reads a certificate or key file: missing, unreadable, a FIFO, a device (or a link to one)
/// or a file over 4 MiB is a configuration error naming the file (exit 2), never waited on or
/// read whole.
fn read_file(path: &std::path::Path, key: &str) -> Result<Vec<u8>, Error> {
    use crate::fsread::{MAX_CERT_FILE, read_regular};
    read_regular(path, MAX_CERT_FILE)
        .map_err(|e| file_error(format!("{key} \"{}\" {e}", path.display())))
}

/// libpq's rule for the client key (fe-secure-openssl.c): a regular file, no group or other
/// access when owned by the current user, at most group read when owned by root (a key
/// managed by the system and shared through a group).
fn key_permissions(path: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        // read_file names the problem.
        return Ok(());
    };
    let mode = meta.mode();
    let too_open = if meta.uid() == nix::unistd::geteuid().as_raw() {
        mode & 0o077 != 0
    } else {
        mode & 0o037 != 0
    };
    if meta.is_file() && too_open {
        return Err(file_error(format!(
            "sslkey \"{}\" has group or world access (mode {:04o}): it must be u=rw (0600) or \
             less if owned by the current user, or u=rw,g=r (0640) or less if owned by root",
            path.display(),
            mode & 0o7777
        )));
    }
    Ok(())
}

/// The configured roots, and the ones read from a file (a self-signed server certificate may
/// be among them).
fn load_roots(
    settings: &TlsSettings,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Error> {
    let mut store = RootCertStore::empty();
    let mut file_roots = Vec::new();
    match &settings.root_cert {
        Some(RootCert::System) => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(RootCert::File(path)) => {
            let pem = read_file(path, "sslrootcert")?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    file_error(format!(
                        "sslrootcert \"{}\" is not a PEM certificate file: {e}",
                        path.display()
                    ))
                })?;
            file_roots.clone_from(&certs);
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(file_error(format!(
                    "sslrootcert \"{}\" holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => {
            return Err(file_error(format!(
                "sslmode={} needs root certificates: set sslrootcert=<file> (or \
                 sslrootcert=system for the public roots); ~/.postgresql/root.crt does not exist",
                settings.mode
            )));
        }
    }
    Ok((store, file_roots))
}

/// verify-ca / verify-full with roots from a file: the chain verifier, and libpq's acceptance
/// of a self-signed server certificate that is itself one of the roots.
#[derive(Debug)]
struct SelfSignedRoot {
    chain: Arc<dyn ServerCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl ServerCertVerifier for SelfSignedRoot {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let err = match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref()) {
            return Err(err);
        }
        // Trusted as given: what is left to check is what OpenSSL checks on a trust anchor
        // that is also the leaf, its dates, and the name for verify-full.
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let at = i64::try_from(now.as_secs())
            .ok()
            .and_then(|s| x509_parser::time::ASN1Time::from_timestamp(s).ok())
            .ok_or(rustls::Error::InvalidCertificate(CertificateError::Expired))?;
        let validity = cert.validity();
        if at < validity.not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if at > validity.not_after {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        if self.check_name {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
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
        // A local file problem: nothing was tried.
        assert_eq!(err.reason(), Some(Reason::Config));
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

#[cfg(test)]
mod key_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// libpq refuses a client key readable by group or others when the current user owns it;
    /// so does pgsteady, with a configuration error naming the file (0600 and 0400 are fine).
    #[test]
    fn a_client_key_readable_by_others_is_refused_as_libpq_does() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (crt, keyfile) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&keyfile, key.serialize_pem()).unwrap();
        let s = TlsSettings {
            mode: SslMode::Require,
            client_cert: Some(crt.clone()),
            client_key: Some(keyfile.clone()),
            ..TlsSettings::default()
        };
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o644, false),
            (0o604, false),
        ] {
            std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(mode)).unwrap();
            match Tls::new(&s) {
                Ok(_) => assert!(ok, "{mode:o} accepted"),
                Err(e) => {
                    assert!(!ok, "{mode:o}: {e}");
                    assert_eq!(e.reason(), Some(Reason::Config), "{e}");
                    let text = e.to_string();
                    assert!(
                        text.contains(&format!("sslkey \"{}\"", keyfile.display())),
                        "{text}"
                    );
                    assert!(text.contains("group or world access"), "{text}");
                }
            }
        }
        // A key that is not a key: named, a configuration error.
        std::fs::write(&keyfile, "not a key").unwrap();
        std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Tls::new(&s).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::Config), "{e}");
        assert!(e.to_string().contains("is not a PEM private key"), "{e}");
    }
}
