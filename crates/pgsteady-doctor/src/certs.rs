//! What a certificate verification failure means: which of `sslrootcert`, the host name or the
//! dates is wrong, with the certificate's names and dates (parsed with x509-parser).

use std::path::Path;

use pgsteady::Config;
use pgsteady::config::RootCert;
use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

/// The parts of a certificate a fix names.
#[derive(Debug, Clone)]
pub(crate) struct CertFacts {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// DNS names and IP addresses it is valid for (its common name when it has no SAN).
    pub(crate) names: Vec<String>,
    pub(crate) not_before: String,
    pub(crate) not_after: String,
}

impl CertFacts {
    /// `CN=db1, valid for db1, 10.0.0.5, issued by CN=Example CA, valid <from> to <to>`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "subject {}, names {}, issued by {}, valid {} to {}",
            self.subject,
            self.names_text(),
            self.issuer,
            self.not_before,
            self.not_after
        )
    }

    fn names_text(&self) -> String {
        if self.names.is_empty() {
            "(none)".to_owned()
        } else {
            self.names.join(", ")
        }
    }
}

/// Parses a DER certificate.
pub(crate) fn facts(der: &CertificateDer<'_>) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push((*n).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names
                        .push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => names
                        .push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    // The server chose every byte of its certificate: escaped before a fix shows it.
    let clean = |s: &str| pgsteady::text::sanitize_to(s, 512).into_owned();
    Some(CertFacts {
        subject: clean(&cert.subject().to_string()),
        issuer: clean(&cert.issuer().to_string()),
        names: names.iter().map(|n| clean(n)).collect(),
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
    })
}

/// The subjects of the certificates in a PEM file (the CAs `sslrootcert` trusts).
pub(crate) fn subjects_in(path: &Path) -> Vec<String> {
    let Ok(iter) = CertificateDer::pem_file_iter(path) else {
        return Vec::new();
    };
    iter.filter_map(Result::ok)
        .filter_map(|c| facts(&c).map(|f| f.subject))
        .collect()
}

/// The rustls error in an error's source chain (tokio-rustls wraps it in an `io::Error`).
pub(crate) fn rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// The fix for a failed certificate verification, from the rustls error and the certificate
/// the server presented (`leaf`, from a separate probe; `None` if it could not be read).
pub(crate) fn verification_fix(
    err: &rustls::Error,
    leaf: Option<&CertFacts>,
    config: &Config,
    host_name: &str,
) -> String {
    let shown = leaf
        .map(|f| format!(" (the server's certificate: {})", f.describe()))
        .unwrap_or_default();
    let roots = match &config.tls.root_cert {
        Some(RootCert::File(p)) => {
            let subjects = subjects_in(p);
            format!(
                "sslrootcert={} (holding {})",
                p.display(),
                if subjects.is_empty() {
                    "no readable certificate".to_owned()
                } else {
                    subjects.join("; ")
                }
            )
        }
        Some(RootCert::System) => "sslrootcert=system (the public web roots)".to_owned(),
        None => "no sslrootcert".to_owned(),
    };
    let rustls::Error::InvalidCertificate(cert_err) = err else {
        return format!(
            "the TLS handshake failed ({err:#}){shown}: check the server's ssl settings and its log"
        );
    };
    match cert_err {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            let issuer = leaf.map(|f| f.issuer.as_str()).unwrap_or("its issuer");
            format!(
                "the server's certificate is not signed by a CA in {roots}: point sslrootcert at \
                 the certificate of the CA `{issuer}` that issued it, or use sslmode=require to \
                 encrypt without verifying{shown}"
            )
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = match (leaf, cert_err) {
                (Some(f), _) => f.names_text(),
                (None, CertificateError::NotValidForNameContext { presented, .. })
                    if !presented.is_empty() =>
                {
                    presented.join(", ")
                }
                _ => "other names".to_owned(),
            };
            format!(
                "the server's certificate is valid for {names}, not for `{host_name}`: connect with \
                 one of those names as host (keep the address with hostaddr=<ip>), or use \
                 sslmode=verify-ca to verify the chain only{shown}"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let until = leaf
                .map(|f| f.not_after.clone())
                .unwrap_or_else(|| "already".into());
            format!(
                "the server's certificate expired ({until}): renew it on the server (ssl_cert_file) \
                 and reload; check this machine's clock too{shown}"
            )
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let from = leaf.map(|f| f.not_before.clone()).unwrap_or_default();
            format!(
                "the server's certificate is not valid before {from}: check the clock of this \
                 machine and of the server{shown}"
            )
        }
        other => format!("the server's certificate was refused ({other:?}){shown}"),
    }
}
