//! SCRAM channel binding (`tls-server-end-point`, RFC 5929) over pgsteady's own TLS.
//!
//! pgsteady does the SSLRequest and the rustls handshake itself (`stream.rs`) and hands
//! tokio-postgres a stream that is already encrypted. tokio-postgres binds SCRAM only to a
//! stream its own `TlsConnect` returned, whose `channel_binding()` gives the certificate hash;
//! with `sslmode=disable` (what it was told before) it never asks. So for an encrypted stream
//! [`Bound`] plays both parts: tokio-postgres is told `sslmode=prefer`, its SSLRequest is
//! answered `S` here without reaching the server (which already had one), and the "handshake"
//! returns the stream as it is, now reporting the hash of the server's certificate.
//!
//! `prefer` and not `require`: tokio-postgres copies the mode into its cancel token, and a
//! cancel request with `NoTls` under `prefer` goes out in plain text as before; `require`
//! would fail it.

// Code a server reaches: a certificate it sends must never index out of bounds or unwrap
// into a panic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// The SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The `tls-server-end-point` value for a server certificate (DER): its hash with the hash
/// function of its signature algorithm, SHA-256 where that is MD5 or SHA-1 (RFC 5929 section
/// 4.1). `None` for an algorithm with no such hash (RSASSA-PSS, Ed25519) or a certificate that
/// does not parse: PostgreSQL cannot compute one for those either, so nothing is bound.
pub(crate) fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let oid = parsed.signature_algorithm.algorithm.to_id_string();
    let hash = match oid.as_str() {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption,
        // ecdsa-with-SHA1, ecdsa-with-SHA256, dsa-with-sha1, dsa-with-sha256.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3"
        | "2.16.840.1.101.3.4.3.2" => sha2::Sha256::digest(cert).to_vec(),
        // sha224WithRSAEncryption, ecdsa-with-SHA224.
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" => sha2::Sha224::digest(cert).to_vec(),
        // sha384WithRSAEncryption, ecdsa-with-SHA384.
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha2::Sha384::digest(cert).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512.
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => sha2::Sha512::digest(cert).to_vec(),
        _ => return None,
    };
    Some(hash)
}

/// Where the SSLRequest tokio-postgres sends stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// Plain text, or no hash to bind with: tokio-postgres sends none, everything passes.
    Off,
    /// The next write is tokio-postgres' SSLRequest: kept from the server.
    Expected,
    /// The SSLRequest was taken: the next read is its `S`.
    Answer,
}

/// The stream tokio-postgres reads and writes: the (already encrypted) connection, with the
/// certificate hash to bind SCRAM with.
#[derive(Debug)]
pub(crate) struct Bound<S> {
    inner: S,
    hash: Option<Vec<u8>>,
    request: Request,
}

impl<S> Bound<S> {
    /// `hash`: the server certificate's `tls-server-end-point` value, `None` for a plain
    /// connection or one that cannot be bound.
    pub(crate) fn new(inner: S, hash: Option<Vec<u8>>) -> Self {
        let request = if hash.is_some() {
            Request::Expected
        } else {
            Request::Off
        };
        Bound {
            inner,
            hash,
            request,
        }
    }

    /// The `sslmode` to tell tokio-postgres: `prefer` when there is a binding to hand it
    /// (its SSLRequest is then answered here), else `disable`.
    pub(crate) fn ssl_mode(&self) -> tokio_postgres::config::SslMode {
        if self.hash.is_some() {
            tokio_postgres::config::SslMode::Prefer
        } else {
            tokio_postgres::config::SslMode::Disable
        }
    }
}

/// The "TLS handshake" tokio-postgres runs after its SSLRequest: the stream is encrypted
/// already, so it is returned as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AlreadyEncrypted;

impl<S: AsyncRead + AsyncWrite + Unpin> TlsConnect<Bound<S>> for AlreadyEncrypted {
    type Stream = Bound<S>;
    type Error = io::Error;
    type Future = std::future::Ready<io::Result<Bound<S>>>;

    fn connect(self, stream: Bound<S>) -> Self::Future {
        std::future::ready(Ok(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Bound<S> {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.hash {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.clone()),
            None => ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.request == Request::Answer && buf.remaining() > 0 {
            self.request = Request::Off;
            buf.put_slice(b"S");
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.request == Request::Expected {
            if b.starts_with(&SSL_REQUEST) {
                self.request = Request::Answer;
                return Poll::Ready(Ok(SSL_REQUEST.len()));
            }
            // Not the request (tokio-postgres writes it whole, first): pass everything on.
            self.request = Request::Off;
        }
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_ssl_request_is_answered_here_and_never_reaches_the_server() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut bound = Bound::new(client, Some(vec![1, 2, 3]));
        assert_eq!(bound.ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        bound.write_all(&SSL_REQUEST).await.unwrap();
        let mut answer = [0u8];
        bound.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"S");
        bound.write_all(b"startup").await.unwrap();
        let mut seen = [0u8; 7];
        server.read_exact(&mut seen).await.unwrap();
        // The server saw the startup only: no SSLRequest inside the TLS session.
        assert_eq!(&seen, b"startup");
        server.write_all(b"R").await.unwrap();
        bound.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"R");

        // Plain: nothing is taken, nothing is bound.
        let (client, mut server) = tokio::io::duplex(64);
        let mut plain = Bound::new(client, None);
        assert_eq!(plain.ssl_mode(), tokio_postgres::config::SslMode::Disable);
        plain.write_all(&SSL_REQUEST).await.unwrap();
        let mut seen = [0u8; 8];
        server.read_exact(&mut seen).await.unwrap();
        assert_eq!(seen, SSL_REQUEST);
    }

    #[test]
    fn the_hash_follows_the_certificate_signature() {
        // rcgen signs with ECDSA P-256 / SHA-256 by default, with P-384 / SHA-384 when asked.
        for (alg, len) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, 32),
            (&rcgen::PKCS_ECDSA_P384_SHA384, 48),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let der = cert.der().to_vec();
            let hash = end_point_hash(&der).unwrap();
            assert_eq!(hash.len(), len);
            let want = if len == 32 {
                sha2::Sha256::digest(&der).to_vec()
            } else {
                sha2::Sha384::digest(&der).to_vec()
            };
            assert_eq!(hash, want);
        }
        // Ed25519 has no hash of its own: nothing to bind with (PostgreSQL has none either).
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(end_point_hash(cert.der()), None);
        // Not a certificate: no panic, no binding.
        assert_eq!(end_point_hash(b"\x30\x03garbage"), None);
    }
}
