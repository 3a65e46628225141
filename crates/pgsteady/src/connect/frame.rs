//! A thin framing check between the socket and tokio-postgres: every backend message header
//! is read as it passes, and a message type PostgreSQL never sends, or a length no server
//! sends, ends the connection before tokio-postgres reserves a buffer for it.
//!
//! Hand-written because tokio-postgres has no cap: its codec reserves the announced length up
//! front, so a server announcing a 2 GB message (or a non-PostgreSQL service whose bytes read
//! as one) made `check` and `serve` allocate gigabytes (issue 19 item 8). libpq refuses a
//! length under 4, and over 30,000 bytes for any message type but the few that carry data
//! (`VALID_LONG_MESSAGE_TYPE` in fe-protocol3.c); this does the same, and caps the long types
//! at [`Connector::with_max_message_len`](super::Connector::with_max_message_len).
//!
//! It also notes, from the protocol state, whether the server asked for a password, so a
//! failed startup without one can say "password required, none found" without reading
//! tokio-postgres' message text.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{Error, ErrorKind, Reason};

/// libpq's limit for message types that carry no data.
pub(crate) const MAX_SHORT_MESSAGE: u32 = 30_000;
/// The default cap on a data-carrying message (`DataRow`, `ErrorResponse`...): PostgreSQL's
/// `MaxAllocSize`, beyond which no server can build one.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = (1 << 30) - 1;

/// What the guard saw that the connect path asks about afterwards.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// An AuthenticationCleartextPassword, MD5Password or SASL request arrived.
    pub(crate) password_requested: AtomicBool,
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
    /// For an `R` message: the first 4 body bytes (the request code).
    auth: Option<([u8; 4], usize)>,
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
            auth: None,
            seen,
        }
    }

    /// Checks the bytes just read.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining as usize).min(bytes.len());
                if let Some((code, got)) = &mut self.auth {
                    let take = (4 - *got).min(n);
                    code[*got..*got + take].copy_from_slice(&bytes[..take]);
                    *got += take;
                    if *got == 4 {
                        // 3 cleartext, 5 MD5, 10 SASL: the server wants a password.
                        if matches!(u32::from_be_bytes(*code), 3 | 5 | 10) {
                            self.seen.password_requested.store(true, Ordering::Relaxed);
                        }
                        self.auth = None;
                    }
                }
                self.remaining -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            let take = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < 5 {
                break;
            }
            self.have = 0;
            let kind = self.header[0];
            let len = u32::from_be_bytes([
                self.header[1],
                self.header[2],
                self.header[3],
                self.header[4],
            ]);
            let long = matches!(kind, b'T' | b'D' | b'd' | b'V' | b'E' | b'N' | b'A');
            let limit = if long {
                self.max_long
            } else {
                MAX_SHORT_MESSAGE
            };
            if !BACKEND_TYPES.contains(&kind) || len < 4 || len - 4 > limit {
                return Err(violation(kind, len, limit));
            }
            self.remaining = len - 4;
            if kind == b'R' && self.remaining >= 4 {
                self.auth = Some(([0; 4], 0));
            }
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

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        match this.scan(&buf.filled()[before..]) {
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
            // Over this guard's long cap.
            (&[b'E', 0, 0x20, 0, 5], "over the 1048576-byte limit"),
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
}
