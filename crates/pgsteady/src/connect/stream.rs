//! Dialling one host: our own TCP (or Unix socket) connect with keepalives and
//! `TCP_USER_TIMEOUT` set on the socket, then PostgreSQL's SSLRequest and the rustls handshake.
//!
//! tokio-postgres' own `connect` cannot be used: its `connect_timeout` covers only the TCP
//! connect, and it cannot do `verify-ca` or `allow`. The resulting [`Stream`] is handed to
//! `tokio_postgres::Config::connect_raw` through `bind.rs`, which lets tokio-postgres bind SCRAM
//! to the TLS session.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use crate::config::{Config, Host, HostSpec, SslMode};
use crate::tls::Tls;
use crate::{Error, ErrorKind, Reason};

/// A connected socket.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket, possibly wrapped in TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(Socket),
    Tls(Box<TlsStream<Socket>>),
}

impl Stream {
    /// The `tls-server-end-point` channel-binding value of the server's certificate, for an
    /// encrypted stream whose certificate has one.
    pub(crate) fn end_point_hash(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => {
                let leaf = tls.get_ref().1.peer_certificates()?.first()?;
                super::bind::end_point_hash(leaf.as_ref())
            }
        }
    }
}

macro_rules! delegate {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Socket::Tcp($inner) => $call,
            Socket::Unix($inner) => $call,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, b))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

macro_rules! delegate_stream {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Plain($inner) => $call,
            Stream::Tls($inner) => $call,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate_stream!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        delegate_stream!(self, s => Pin::new(s).poll_write(cx, b))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_stream!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_stream!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The addresses to dial for one host entry: `hostaddr` if given, else the resolved name.
pub(crate) async fn resolve(host: &HostSpec) -> Result<Vec<SocketAddr>, Error> {
    match (&host.host, host.hostaddr) {
        (_, Some(addr)) => Ok(vec![SocketAddr::new(addr, host.port)]),
        (Host::Tcp(name), None) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), host.port))
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Connect,
                        format!("could not resolve host `{name}`"),
                    )
                    .with_reason(Reason::Dns)
                    .with_source(e)
                })?
                .collect();
            if addrs.is_empty() {
                return Err(Error::new(
                    ErrorKind::Connect,
                    format!("host `{name}` resolved to no address"),
                )
                .with_reason(Reason::Dns));
            }
            Ok(addrs)
        }
        (Host::Unix(_), None) => Ok(Vec::new()),
    }
}

/// TCP connect to `addr`, then keepalives and `TCP_USER_TIMEOUT` on the socket.
pub(crate) async fn dial_tcp(addr: SocketAddr, config: &Config) -> Result<Socket, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::from_io(e, "tcp connect failed"))?;
    let apply = || -> io::Result<()> {
        stream.set_nodelay(true)?;
        let sock = SockRef::from(&stream);
        if config.keepalives {
            let ka = TcpKeepalive::new()
                .with_time(config.keepalives_idle)
                .with_interval(config.keepalives_interval)
                .with_retries(config.keepalives_count);
            sock.set_tcp_keepalive(&ka)?;
        }
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        if let Some(t) = config.tcp_user_timeout {
            sock.set_tcp_user_timeout(Some(t))?;
        }
        Ok(())
    };
    apply().map_err(|e| Error::from_io(e, "cannot set socket options"))?;
    Ok(Socket::Tcp(stream))
}

/// Connect to the Unix socket of `dir` and `port`.
pub(crate) async fn dial_unix(dir: &std::path::Path, port: u16) -> Result<Socket, Error> {
    let path = dir.join(format!(".s.PGSQL.{port}"));
    UnixStream::connect(&path)
        .await
        .map(Socket::Unix)
        .map_err(|e| Error::from_io(e, "unix socket connect failed"))
}

/// The 8-byte SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A server's one-byte answer to PostgreSQL's SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "probe"), allow(unreachable_pub))]
pub enum SslAnswer {
    /// `S`: the server will do a TLS handshake next.
    Offered,
    /// `N`: the server does not offer TLS on this connection; plain startup may follow.
    Declined,
    /// Any other byte: not a PostgreSQL server (or not one speaking this protocol).
    Other(u8),
}

/// Sends PostgreSQL's SSLRequest on a fresh connection and reads the one-byte answer. The one
/// place pgsteady writes that packet: the connect path, `doctor`'s TLS layer and its search
/// for PostgreSQL listeners all use it. Unbounded: wrap it in a timeout.
#[cfg_attr(not(feature = "probe"), allow(unreachable_pub))]
pub async fn request_ssl<S>(stream: &mut S) -> std::io::Result<SslAnswer>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    Ok(match answer[0] {
        b'S' => SslAnswer::Offered,
        b'N' => SslAnswer::Declined,
        other => SslAnswer::Other(other),
    })
}

/// The ErrorResponse a server sent instead of answering the SSLRequest (its `E` already
/// read) as an error classified by its SQLSTATE. The body is capped like any message that
/// carries no data (libpq's 30,000 bytes); a malformed one is an error of its own.
async fn refused_tls_request<S: AsyncRead + Unpin>(stream: &mut S) -> Error {
    let malformed = |why: &str| {
        Error::new(
            ErrorKind::Connect,
            format!("the server answered the TLS request with a malformed error: {why}"),
        )
        .with_reason(Reason::Other)
    };
    let mut len = [0u8; 4];
    if let Err(e) = stream.read_exact(&mut len).await {
        return Error::from_io(e, "reading the server's answer to the TLS request");
    }
    // A message length under 30,000 starts with a zero byte; four printable characters are
    // the postmaster's pre-protocol fork failure (`E`, text, newline). Read up to its
    // newline, 256 bytes or the end (the caller's timeout bounds the wait).
    if len.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        let mut text = len.to_vec();
        let mut chunk = [0u8; 256];
        while text.len() < 256 && !text.contains(&b'\n') {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
        return super::frame::pre_protocol_error(&text);
    }
    let len = u32::from_be_bytes(len);
    if !(4..=super::frame::MAX_SHORT_MESSAGE).contains(&len) {
        return malformed(&format!("length {len}"));
    }
    let mut body = vec![0u8; len as usize - 4];
    if let Err(e) = stream.read_exact(&mut body).await {
        return Error::from_io(e, "reading the server's answer to the TLS request");
    }
    let (mut code, mut message) = (None, None);
    let mut fields = body.as_slice();
    while let [kind, rest @ ..] = fields {
        if *kind == 0 {
            break;
        }
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            return malformed("a field without its terminator");
        };
        let value = String::from_utf8_lossy(&rest[..end]);
        match kind {
            b'C' => code = Some(value.into_owned()),
            b'M' => message = Some(crate::text::sanitize_to(&value, 500).into_owned()),
            _ => {}
        }
        fields = &rest[end + 1..];
    }
    let Some(code) = code else {
        return malformed("no SQLSTATE");
    };
    let state = tokio_postgres::error::SqlState::from_code(&code);
    let reason = crate::classify::reason_for_code(&state);
    Error::new(
        ErrorKind::from_reason(reason),
        format!(
            "the server refused the connection: {} ({})",
            message.as_deref().unwrap_or("no message"),
            crate::text::sanitize_to(&code, 5)
        ),
    )
    .with_reason(reason)
}

/// Negotiates TLS on `socket` per the mode. `try_tls` is false for the plain first try of
/// `allow` (and for Unix sockets, where libpq never uses TLS).
pub(crate) async fn negotiate(
    mut socket: Socket,
    tls: &Tls,
    server_name: &str,
    try_tls: bool,
) -> Result<Stream, Error> {
    let connector = match (&tls.connector, try_tls) {
        (Some(c), true) => c,
        _ => return Ok(Stream::Plain(socket)),
    };
    let io_err = |e| Error::from_io(e, "tls negotiation failed");
    match request_ssl(&mut socket).await.map_err(io_err)? {
        SslAnswer::Offered => {}
        SslAnswer::Declined if matches!(tls.mode, SslMode::Prefer | SslMode::Allow) => {
            return Ok(Stream::Plain(socket));
        }
        SslAnswer::Declined => {
            return Err(Error::new(
                ErrorKind::Tls,
                format!(
                    "the server does not support TLS, but sslmode={} requires it",
                    tls.mode
                ),
            )
            .with_reason(Reason::Tls));
        }
        // A server that cannot take the connection (starting up or in recovery after a
        // crash, shutting down, out of slots, failing to fork) may answer the SSLRequest
        // with an error instead of S or N: an ErrorResponse, or the postmaster's pre-protocol
        // fork failure (`E`, text, newline). libpq reads either as the connection's error
        // (fe-connect.c); so does this, the former classified by its SQLSTATE: a server
        // starting up is waited out instead of taken for something that is not PostgreSQL.
        SslAnswer::Other(b'E') => return Err(refused_tls_request(&mut socket).await),
        SslAnswer::Other(other) => {
            return Err(Error::new(
                ErrorKind::Connect,
                format!("unexpected answer to the TLS request (byte {other:#04x}): is this a PostgreSQL server?"),
            )
            .with_reason(Reason::Other));
        }
    }
    let name = Tls::server_name(server_name)?;
    let stream = connector.connect(name, socket).await.map_err(|e| {
        // A rustls error (certificate, protocol) is permanent; a reset mid-handshake is not.
        let reason = crate::classify::reason_of(&e);
        let reason = if reason == Reason::Io {
            Reason::Tls
        } else {
            reason
        };
        Error::new(ErrorKind::from_reason(reason), "tls handshake failed")
            .with_reason(reason)
            .with_source(e)
    })?;
    Ok(Stream::Tls(Box::new(stream)))
}

#[cfg(test)]
mod refused_tests {
    use super::*;

    fn error_response(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in fields {
            body.push(*kind);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend(body);
        msg
    }

    /// Seen in a fault soak: a server in crash recovery answered the SSLRequest with an
    /// ErrorResponse, which used to fail the connect as "is this a PostgreSQL server?", a
    /// permanent error, so calls failed instead of waiting.
    #[tokio::test]
    async fn an_error_instead_of_the_tls_answer_is_classified_by_its_sqlstate() {
        let msg = error_response(&[
            (b'S', "FATAL"),
            (b'C', "57P03"),
            (b'M', "the database system is starting up"),
        ]);
        let err = refused_tls_request(&mut msg.as_slice()).await;
        assert_eq!(err.reason(), Some(Reason::CannotConnectNow));
        assert!(err.is_transient(), "{err}");
        assert!(
            err.to_string()
                .contains("the database system is starting up (57P03)"),
            "{err}"
        );
        let msg = error_response(&[(b'C', "53300"), (b'M', "sorry, too many clients already")]);
        let err = refused_tls_request(&mut msg.as_slice()).await;
        assert_eq!(err.reason(), Some(Reason::TooManyConnections));
    }

    #[tokio::test]
    async fn a_malformed_error_instead_of_the_tls_answer_is_an_error_not_a_panic() {
        for bytes in [
            vec![0, 0, 0, 2],
            vec![0xff, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 8, b'C', b'5', b'7', b'P'],
            error_response(&[(b'M', "no code")]),
        ] {
            let err = refused_tls_request(&mut bytes.as_slice()).await;
            assert!(!err.is_transient(), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn fuzz_the_answer_to_the_tls_request_never_panics() {
        use proptest::prelude::*;
        // What follows an `E` in place of the one-byte answer: an ErrorResponse with fields
        // of any kind and terminators or none, a pre-protocol text, or any bytes.
        let field = (any::<u8>(), "[ -~]{0,12}", any::<bool>()).prop_map(|(k, v, nul)| {
            let mut f = vec![k];
            f.extend_from_slice(v.as_bytes());
            if nul {
                f.push(0);
            }
            f
        });
        let error = (
            proptest::collection::vec(field, 0..6),
            prop_oneof![3 => Just(None), 1 => any::<u32>().prop_map(Some)],
        )
            .prop_map(|(fields, length)| {
                let body = fields.concat();
                let length = length.unwrap_or(body.len() as u32 + 4);
                let mut m = length.to_be_bytes().to_vec();
                m.extend_from_slice(&body);
                m
            });
        let bytes = prop_oneof![
            3 => error,
            1 => "[ -~\\n]{0,300}".prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 0..64),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        crate::fuzzing::fuzz("answer to the TLS request", bytes, |bytes| {
            let _ = runtime.block_on(refused_tls_request(&mut bytes.as_slice()));
            Ok(())
        });
    }
}
