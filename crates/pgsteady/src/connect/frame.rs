//! A thin framing check between the socket and tokio-postgres: every backend message header
//! is read as it passes, and a message type PostgreSQL never sends, or a length no server
//! sends, ends the connection before tokio-postgres reserves a buffer for it.
//!
//! Hand-written because tokio-postgres has no cap: its codec reserves the announced length up
//! front, so a server announcing a 2 GB message (or a non-PostgreSQL service whose bytes read
//! as one) made `check` and `serve` allocate gigabytes. libpq refuses a
//! length under 4, and over 30,000 bytes for any message type but the few that carry data
//! (`VALID_LONG_MESSAGE_TYPE` in fe-protocol3.c); this does the same, and caps the long types
//! at [`Connector::with_max_message_len`](super::Connector::with_max_message_len).
//!
//! It also caps what tokio-postgres keeps without bound: during start-up it queues every
//! NoticeResponse and stores every ParameterStatus until ReadyForQuery, and afterwards it keeps
//! one value per distinct parameter name for the connection's life. A server flooding either
//! drove `check` to gigabytes. The guard caps the start-up messages' total bytes
//! ([`MAX_STARTUP_BYTES`]) and the distinct parameter names ([`MAX_PARAMETERS`]); a real
//! server sends about twenty short ones.
//!
//! It also notes, from the protocol state, whether the server asked for a password, so a
//! failed startup without one can say "password required, none found" without reading
//! tokio-postgres' message text, and hands every Authentication message to `auth.rs`, which
//! refuses what `require_auth` and `channel_binding=require` do not allow before
//! tokio-postgres can answer it.

// Code a server reaches: a message or row it shapes must never index out of bounds or
// unwrap into a panic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::auth::{AuthPolicy, AuthState};
use crate::{Error, ErrorKind, Reason};

/// libpq's limit for message types that carry no data.
pub(crate) const MAX_SHORT_MESSAGE: u32 = 30_000;
/// The default cap on a data-carrying message (`DataRow`, `ErrorResponse`...): PostgreSQL's
/// `MaxAllocSize`, beyond which no server can build one.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = (1 << 30) - 1;

/// The most bytes of NoticeResponse and ParameterStatus messages accepted before the first
/// ReadyForQuery (tokio-postgres holds them all until then). PostgreSQL sends about 500.
pub(crate) const MAX_STARTUP_BYTES: u64 = 1 << 20;
/// The most distinct ParameterStatus names accepted on one connection (tokio-postgres keeps a
/// value for each). PostgreSQL 17 reports 15 (`GUC_REPORT`); extensions may add a few.
pub(crate) const MAX_PARAMETERS: usize = 256;

/// What the guard saw that the connect path asks about afterwards.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// An AuthenticationCleartextPassword, MD5Password or SASL request arrived.
    pub(crate) password_requested: AtomicBool,
    /// The SASL (SCRAM) exchange in progress: the last SASL request code (10 SASL, 11
    /// SASLContinue, 12 SASLFinal), 0 when none is or AuthenticationOk ended it.
    pub(crate) sasl_step: AtomicU8,
    /// A read from the socket failed or hit end of file.
    pub(crate) read_failed: AtomicBool,
}

impl Seen {
    /// Whether a failed start-up is the SCRAM exchange's own verdict: the exchange was under
    /// way and the socket still worked, so the client gave up on what the server sent (a bad
    /// nonce or signature, `e=...`, a malformed or over-iterated message). Protocol state, not
    /// tokio-postgres' message text (which alone tells its "authentication error" apart).
    pub(crate) fn scram_failed(&self) -> bool {
        self.sasl_step.load(Ordering::Relaxed) != 0 && !self.read_failed.load(Ordering::Relaxed)
    }
}

/// A stream whose incoming bytes are checked message by message.
#[derive(Debug)]
pub(crate) struct Guarded<S> {
    inner: S,
    max_long: u32,
    /// The header of the message being read: type byte and 4 length bytes.
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to pass.
    remaining: u32,
    /// The body of the current `R` or `S` message (both short: at most 30,000 bytes), kept
    /// to be read once complete.
    body: Option<(u8, Vec<u8>)>,
    /// No message header read yet.
    first: bool,
    /// No ReadyForQuery yet.
    starting: bool,
    /// Bytes of NoticeResponse and ParameterStatus messages before the first ReadyForQuery.
    startup_bytes: u64,
    /// The distinct ParameterStatus names seen.
    parameters: HashSet<Vec<u8>>,
    /// `require_auth` and `channel_binding=require`, checked at each Authentication message.
    auth: AuthState,
    seen: Arc<Seen>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, max_long: usize, seen: Arc<Seen>) -> Self {
        Guarded {
            inner,
            max_long: u32::try_from(max_long)
                .unwrap_or(u32::MAX)
                .max(MAX_SHORT_MESSAGE),
            header: [0; 5],
            have: 0,
            remaining: 0,
            body: None,
            first: true,
            starting: true,
            startup_bytes: 0,
            parameters: HashSet::new(),
            auth: AuthState::default(),
            seen,
        }
    }

    /// Enforces `policy` at the server's Authentication messages. Default: nothing required.
    pub(crate) fn with_auth(mut self, policy: AuthPolicy) -> Self {
        self.auth = AuthState::new(policy);
        self
    }

    /// Checks the bytes just read.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining as usize).min(bytes.len());
                let (chunk, rest) = bytes.split_at(n);
                if let Some((_, body)) = &mut self.body {
                    body.extend_from_slice(chunk);
                }
                self.remaining -= n as u32;
                bytes = rest;
                if self.remaining == 0 {
                    self.complete()?;
                }
                continue;
            }
            let take = (5 - self.have).min(bytes.len());
            let (chunk, rest) = bytes.split_at(take);
            if let Some(dst) = self.header.get_mut(self.have..self.have + take) {
                dst.copy_from_slice(chunk);
            }
            self.have += take;
            bytes = rest;
            if self.have < 5 {
                break;
            }
            self.have = 0;
            let [kind, l0, l1, l2, l3] = self.header;
            let len = u32::from_be_bytes([l0, l1, l2, l3]);
            let long = matches!(kind, b'T' | b'D' | b'd' | b'V' | b'E' | b'N' | b'A');
            let limit = if long {
                self.max_long
            } else {
                MAX_SHORT_MESSAGE
            };
            let text_length = [l0, l1, l2, l3].iter().all(|&b| b >= 0x20 && b != 0x7f);
            if std::mem::take(&mut self.first)
                && kind == b'E'
                && !(8..=MAX_SHORT_MESSAGE).contains(&len)
                && text_length
            {
                // The postmaster answers with a bare `E`, text and a newline (the pre-3.0
                // form) when it cannot fork a backend: libpq reads a first `E` whose length is
                // implausible that way (PQconnectPoll in fe-connect.c). Narrower than libpq:
                // only when the "length" is text, so a binary 2 GB length stays a violation.
                let mut text = self.header.get(1..).unwrap_or_default().to_vec();
                text.extend_from_slice(bytes);
                return Err(pre_protocol_error(&text));
            }
            if !BACKEND_TYPES.contains(&kind) || len < 4 || len - 4 > limit {
                return Err(violation(kind, len, limit));
            }
            if self.starting && matches!(kind, b'N' | b'S') {
                self.startup_bytes += u64::from(len) + 1;
                if self.startup_bytes > MAX_STARTUP_BYTES {
                    return Err(over_limit(format!(
                        "more than {MAX_STARTUP_BYTES} bytes of notices and parameter statuses \
                         before it was ready for a query"
                    )));
                }
            }
            if kind == b'Z' {
                self.starting = false;
            }
            self.remaining = len - 4;
            self.body = matches!(kind, b'R' | b'S')
                .then(|| (kind, Vec::with_capacity(self.remaining as usize)));
            if self.remaining == 0 {
                self.complete()?;
            }
        }
        Ok(())
    }

    /// A kept message is complete: reads it.
    fn complete(&mut self) -> Result<(), Error> {
        match self.body.take() {
            Some((b'R', body)) => {
                // 3 cleartext, 5 MD5, 10 SASL: the server wants a password.
                let code = body
                    .get(..4)
                    .and_then(|c| <[u8; 4]>::try_from(c).ok())
                    .map(u32::from_be_bytes);
                // Before anything else: a request the client does not allow must not even be
                // noted as a password request (the refusal speaks, not "password required").
                if let Some(c) = code {
                    self.auth.on_message(c, body.get(4..).unwrap_or_default())?;
                }
                if matches!(code, Some(3 | 5 | 10)) {
                    self.seen.password_requested.store(true, Ordering::Relaxed);
                }
                match code {
                    Some(c @ 10..=12) => self.seen.sasl_step.store(c as u8, Ordering::Relaxed),
                    Some(0) => self.seen.sasl_step.store(0, Ordering::Relaxed),
                    _ => {}
                }
                // SASLContinue: the server-first message. postgres-protocol accepts an
                // iteration count of 0, libpq refuses it (`read_server_first_message`).
                if code == Some(11) && iterations(body.get(4..).unwrap_or_default()) == Some(0) {
                    return Err(Error::new(
                        ErrorKind::Auth,
                        "scram authentication failed: the server sent an iteration count of 0 \
                         (at least 1 is required, as libpq does); not retried",
                    )
                    .with_reason(Reason::Other));
                }
            }
            Some((b'S', body)) => {
                let name = body.split(|&b| b == 0).next().unwrap_or_default();
                if !self.parameters.contains(name) {
                    if self.parameters.len() == MAX_PARAMETERS {
                        return Err(over_limit(format!(
                            "more than {MAX_PARAMETERS} distinct parameter statuses"
                        )));
                    }
                    self.parameters.insert(name.to_vec());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Every message type a PostgreSQL 9.x-17 backend sends.
const BACKEND_TYPES: &[u8] = b"RKSZTDCEN123nItsGHWdcAVv";

fn violation(kind: u8, len: u32, limit: u32) -> Error {
    let shown = if kind.is_ascii_graphic() {
        format!("`{}`", kind as char)
    } else {
        format!("{kind:#04x}")
    };
    let why = if !BACKEND_TYPES.contains(&kind) {
        format!("a message of unknown type {shown}")
    } else if len < 4 {
        format!("a message of type {shown} with an invalid length of {len}")
    } else {
        format!("a message of type {shown} announcing {len} bytes, over the {limit}-byte limit")
    };
    Error::new(
        ErrorKind::Connect,
        format!(
            "protocol violation: the server sent {why}: it is not a PostgreSQL server, or a \
             broken one (connection closed)"
        ),
    )
    .with_reason(Reason::Other)
}

/// The `i=` attribute of a SCRAM server-first message, when it is a number.
fn iterations(server_first: &[u8]) -> Option<u64> {
    server_first
        .split(|&b| b == b',')
        .find_map(|a| a.strip_prefix(b"i="))
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
}

/// The error for a server that answered with a bare `E` and text (here or to the TLS
/// request): the postmaster's "could not fork new process for connection", a shortage of
/// processes or memory that passes. Transient, whatever the text says (it is shown, escaped
/// and capped, never matched).
pub(crate) fn pre_protocol_error(text: &[u8]) -> Error {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line.get(..256).unwrap_or(line));
    Error::new(
        ErrorKind::Connect,
        format!(
            "the server refused the connection before start-up: {}",
            crate::text::sanitize_to(line.trim_end(), 256)
        ),
    )
    .with_reason(Reason::CannotConnectNow)
}

/// A cap on what the server sent was exceeded: the same permanent class as a framing
/// violation (a real server never sends this much).
fn over_limit(what: String) -> Error {
    Error::new(
        ErrorKind::Connect,
        format!("protocol violation: the server sent {what} (connection closed)"),
    )
    .with_reason(Reason::Other)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if read.is_err() || buf.filled().len() == before {
            self.seen.read_failed.store(true, Ordering::Relaxed);
        }
        read?;
        let this = &mut *self;
        match this.scan(buf.filled().get(before..).unwrap_or_default()) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                buf.set_filled(before);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
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

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn guard() -> Guarded<()> {
        Guarded::new((), 1 << 20, Arc::default())
    }

    #[test]
    fn passes_valid_streams_split_anywhere() {
        let mut stream = msg(b'R', &10u32.to_be_bytes());
        stream.extend(msg(b'D', &[7; 5000]));
        stream.extend(msg(b'Z', b"I"));
        for split in 1..stream.len() {
            let mut g = guard();
            for chunk in stream.chunks(split) {
                g.scan(chunk).unwrap();
            }
            assert!(g.seen.password_requested.load(Ordering::Relaxed));
        }
        let mut g = guard();
        g.scan(&msg(b'R', &0u32.to_be_bytes())).unwrap();
        assert!(!g.seen.password_requested.load(Ordering::Relaxed));
    }

    #[test]
    fn refuses_what_libpq_refuses() {
        let rows: &[(&[u8], &str)] = &[
            // A 2 GB DataRow.
            (&[b'D', 0x80, 0, 0, 0], "announcing 2147483648 bytes"),
            // A 40 KB ReadyForQuery: short types are capped at 30,000 like libpq.
            (&[b'Z', 0, 0, 0x9c, 0x40], "over the 30000-byte limit"),
            // Over this guard's long cap (after a first message: a first `E` with an
            // implausible length is the postmaster's pre-3.0 error, as libpq reads it).
            (
                &[b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'E', 0, 0x20, 0, 5],
                "over the 1048576-byte limit",
            ),
            (&[b'Z', 0, 0, 0, 3], "invalid length of 3"),
            (b"HTTP/1.1 400", "type `H` announcing 1414811695 bytes"),
            (b"<html>", "unknown type `<`"),
            (&[0x1b, 0, 0, 0, 4], "unknown type 0x1b"),
        ];
        for (bytes, want) in rows {
            let err = guard().scan(bytes).unwrap_err();
            assert!(err.to_string().contains(want), "{want}: {err}");
            assert_eq!(err.reason(), Some(Reason::Other));
        }
    }

    #[test]
    fn caps_startup_notices_and_parameter_names() {
        // A notice flood before ReadyForQuery.
        let notice = msg(b'N', &[b'x'; 1000]);
        let mut g = guard();
        let err = (0..2000)
            .find_map(|_| g.scan(&notice).err())
            .expect("capped");
        assert!(
            err.to_string().contains("1048576 bytes of notices"),
            "{err}"
        );
        // The same notices after ReadyForQuery pass (tokio-postgres hands them on).
        let mut g = guard();
        g.scan(&msg(b'Z', b"I")).unwrap();
        for _ in 0..2000 {
            g.scan(&notice).unwrap();
        }
        // Distinct parameter names after start-up: capped; the same name again is not.
        let mut g = guard();
        g.scan(&msg(b'Z', b"I")).unwrap();
        for _ in 0..10_000 {
            g.scan(&msg(b'S', b"application_name\0x\0")).unwrap();
        }
        let err = (0..)
            .find_map(|i| g.scan(&msg(b'S', format!("p{i}\0v\0").as_bytes())).err())
            .unwrap();
        assert!(err.to_string().contains("256 distinct parameter"), "{err}");
        // The postmaster's fork failure, in its pre-3.0 form: transient, its text shown.
        let err = guard()
            .scan(b"Ecould not fork new process for connection: Resource temporarily unavailable\n")
            .unwrap_err();
        assert_eq!(err.reason(), Some(Reason::CannotConnectNow));
        assert!(
            err.to_string().contains("could not fork new process"),
            "{err}"
        );
        // Only as the first message: later, a bad length is a violation.
        let mut g = guard();
        g.scan(&msg(b'R', &0u32.to_be_bytes())).unwrap();
        let err = g.scan(b"Ecould not fork").unwrap_err();
        assert_eq!(err.reason(), Some(Reason::Other));
        // A SCRAM iteration count of 0 is refused; 4096 passes.
        let first = |i: &str| {
            let mut body = 11u32.to_be_bytes().to_vec();
            body.extend_from_slice(format!("r=abc,s=c2FsdA==,i={i}").as_bytes());
            msg(b'R', &body)
        };
        let err = guard().scan(&first("0")).unwrap_err();
        assert!(err.to_string().contains("iteration count of 0"), "{err}");
        guard().scan(&first("4096")).unwrap();
        // An empty R or S body is no panic.
        let mut g = guard();
        g.scan(&msg(b'R', b"")).unwrap();
        g.scan(&msg(b'S', b"")).unwrap();
    }

    /// One backend message as a hostile server could send it: a known type (or any byte), a
    /// short body, its true length or any; authentication requests with SCRAM-like text.
    fn hostile_message() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let kind = prop_oneof![
            3 => proptest::sample::select(BACKEND_TYPES.to_vec()),
            1 => any::<u8>(),
        ];
        let body = prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => (
                proptest::sample::select(vec![0u32, 3, 5, 10, 11, 12]),
                "(r=[a-z]{0,4},)?(s=[A-Za-z0-9=]{0,8},)?(i=[0-9]{0,22})?",
            )
                .prop_map(|(code, text)| {
                    let mut b = code.to_be_bytes().to_vec();
                    b.extend_from_slice(text.as_bytes());
                    b
                }),
        ];
        let length = prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)];
        (kind, body, length).prop_map(|(kind, body, length)| {
            let length = length.unwrap_or(body.len() as u32 + 4);
            let mut m = vec![kind];
            m.extend_from_slice(&length.to_be_bytes());
            m.extend_from_slice(&body);
            m
        })
    }

    #[test]
    fn fuzz_the_backend_message_guard_never_panics() {
        use proptest::prelude::*;
        let stream = prop_oneof![
            3 => proptest::collection::vec(hostile_message(), 0..16).prop_map(|m| m.concat()),
            1 => proptest::collection::vec(any::<u8>(), 0..256),
        ];
        let splits = proptest::collection::vec(1usize..64, 1..8);
        let max_long = prop_oneof![Just(0usize), Just(64), Just(1 << 20), any::<usize>()];
        crate::fuzzing::fuzz(
            "backend message guard",
            (stream, splits, max_long),
            |(bytes, splits, max_long)| {
                let mut g = Guarded::new((), max_long, Arc::default());
                let mut rest = bytes.as_slice();
                for n in splits.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, tail) = rest.split_at((*n).min(rest.len()));
                    rest = tail;
                    if g.scan(chunk).is_err() {
                        break;
                    }
                }
                Ok(())
            },
        );
    }
}
