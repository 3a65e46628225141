//! A bare PostgreSQL startup, for the facts a failed session hides: which authentication
//! request the server sends (or that it refuses before asking), over plain text or TLS, and
//! the server's certificate chain.
//!
//! Hand-written rather than through tokio-postgres, which turns these facts into one error:
//! the probe stops at the first authentication request and never sends a password (it sends
//! the startup packet and, at most, a Terminate). Every read is bounded in time and size.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgsteady::connect::SslAnswer;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message read; a startup answer is far smaller.
const MAX_MESSAGE: usize = 64 * 1024;
/// Messages read after AuthenticationOk before giving up on ReadyForQuery.
const MAX_MESSAGES: usize = 200;

/// Where to dial.
#[derive(Debug, Clone)]
pub(crate) enum Dial {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dial::Tcp(a) => write!(f, "{a}"),
            Dial::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// An ErrorResponse's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerError {
    /// SQLSTATE (`C`).
    pub(crate) code: String,
    /// Primary message (`M`).
    pub(crate) message: String,
}

/// The authentication request the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthRequest {
    Cleartext,
    Md5,
    /// SASL with the mechanisms offered (SCRAM-SHA-256, SCRAM-SHA-256-PLUS).
    Sasl(Vec<String>),
    Other(u32),
}

impl AuthRequest {
    /// The pg_hba method this request comes from, as the user writes it.
    pub(crate) fn method(&self) -> String {
        match self {
            AuthRequest::Cleartext => "password (cleartext)".to_owned(),
            AuthRequest::Md5 => "md5".to_owned(),
            AuthRequest::Sasl(m) => format!("scram-sha-256, SASL {}", m.join(" or ")),
            AuthRequest::Other(n) => format!("authentication request type {n}"),
        }
    }
}

/// How far a startup got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The server asked for a password (or other credentials); the probe stopped there.
    Auth(AuthRequest),
    /// Authenticated without a password (trust, peer) and the session is ready.
    Ready,
    /// Authenticated, then refused (a missing role, a missing database, no slot...).
    ErrorAfterAuth(ServerError),
    /// Refused before any authentication request (pg_hba.conf, peer/ident, no slot...).
    Error(ServerError),
    /// TLS was asked for and the server answered `N`.
    NoTls,
}

/// The outcome of [`startup`].
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) answer: Answer,
    /// The server's certificate chain, leaf first (TLS only).
    pub(crate) certs: Vec<CertificateDer<'static>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Dials `dial`, optionally negotiates TLS (without verifying anything: only to learn what
/// the server does over TLS and which certificate it shows), sends a startup packet for
/// `user` / `dbname` and reads until the first authentication request, an error or
/// ReadyForQuery. The whole exchange is bounded by `timeout`.
pub(crate) async fn startup(
    dial: &Dial,
    tls: Option<&str>,
    user: &str,
    dbname: &str,
    timeout: Duration,
) -> Result<Probe, String> {
    let run = async {
        let mut certs = Vec::new();
        let mut stream: Box<dyn Io> = match dial {
            Dial::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a).await?),
            Dial::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        };
        if let Some(server_name) = tls {
            if pgsteady::connect::request_ssl(&mut stream).await? != SslAnswer::Offered {
                return Ok(Probe {
                    answer: Answer::NoTls,
                    certs,
                });
            }
            let seen = Arc::new(Mutex::new(Vec::new()));
            let connector = recording_connector(seen.clone());
            let name = ServerName::try_from(server_name.to_owned())
                .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"));
            let tls_stream = connector.connect(name, stream).await?;
            certs = seen.lock().map(|c| c.clone()).unwrap_or_default();
            stream = Box::new(tls_stream);
        }
        let answer = exchange(&mut stream, user, dbname).await?;
        // Leave politely when a session was started; otherwise just close.
        let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
        Ok::<Probe, std::io::Error>(Probe { answer, certs })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {:.1}s", timeout.as_secs_f64())),
    }
}

async fn exchange(stream: &mut Box<dyn Io>, user: &str, dbname: &str) -> std::io::Result<Answer> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [
        ("user", user),
        ("database", dbname),
        ("application_name", "pgsteady doctor"),
    ] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await?;
    let mut authenticated = false;
    for _ in 0..MAX_MESSAGES {
        let (kind, msg) = read_message(stream).await?;
        match kind {
            b'R' => {
                let code = u32::from_be_bytes(
                    msg.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0xff; 4]),
                );
                match code {
                    0 => authenticated = true,
                    3 => return Ok(Answer::Auth(AuthRequest::Cleartext)),
                    5 => return Ok(Answer::Auth(AuthRequest::Md5)),
                    10 => {
                        let mechs = msg
                            .get(4..)
                            .unwrap_or_default()
                            .split(|b| *b == 0)
                            .filter(|m| !m.is_empty())
                            .map(|m| {
                                pgsteady::text::sanitize_to(&String::from_utf8_lossy(m), 64)
                                    .into_owned()
                            })
                            .collect();
                        return Ok(Answer::Auth(AuthRequest::Sasl(mechs)));
                    }
                    n => return Ok(Answer::Auth(AuthRequest::Other(n))),
                }
            }
            b'E' => {
                let e = parse_error(&msg);
                return Ok(if authenticated {
                    Answer::ErrorAfterAuth(e)
                } else {
                    Answer::Error(e)
                });
            }
            b'Z' => return Ok(Answer::Ready),
            _ => {} // ParameterStatus, BackendKeyData, NoticeResponse
        }
    }
    Err(std::io::Error::other("no ReadyForQuery after 200 messages"))
}

async fn read_message(stream: &mut Box<dyn Io>) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(std::io::Error::other(format!(
            "not a PostgreSQL message (type {:#04x}, length {len})",
            head[0]
        )));
    }
    let mut msg = vec![0u8; len - 4];
    stream.read_exact(&mut msg).await?;
    Ok((head[0], msg))
}

fn parse_error(msg: &[u8]) -> ServerError {
    let mut e = ServerError::default();
    for field in msg.split(|b| *b == 0) {
        let Some((&tag, value)) = field.split_first() else {
            continue;
        };
        // Whatever answers on the port chose these bytes: escaped before any report shows
        // them (a legitimate server's English message is unchanged).
        let value = pgsteady::text::sanitize(&String::from_utf8_lossy(value)).into_owned();
        match tag {
            b'C' => e.code = value,
            b'M' => e.message = value,
            _ => {}
        }
    }
    e
}

/// A TLS client that accepts any certificate (the probe sends nothing secret) and keeps the
/// chain the server presented.
fn recording_connector(
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
) -> tokio_rustls::TlsConnector {
    let provider = pgsteady::connect::crypto_provider();
    let verifier = Recorder {
        seen,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
