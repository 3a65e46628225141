//! Bounds on the HTTP side of [`serve`](super::http::serve): a cap on open connections, a
//! header-read timeout and an idle timeout (feature `axum`).
//!
//! `axum::serve` sets none of these (hyper's `header_read_timeout` needs a timer axum does
//! not install), so a client that connected and sent nothing, or sent headers a byte at a
//! time, held its connection forever: 500 such connections were still open after 13 s, and
//! once the process ran out of descriptors `/readyz` stopped answering.
//! hyper and tower offer no connection cap or per-connection read timeout for axum's accept
//! loop, so this is a small [`Listener`] of our own: it accepts, refuses connections over the
//! cap at once, and wraps each stream in a reader that times out while a request's headers
//! are awaited. Once the headers are in, nothing here times out: a slow handler is the
//! application's business.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connection bounds for [`serve_with_limits`](super::http::serve_with_limits).
///
/// # Default
///
/// - `max_connections`: 256
/// - `header_read_timeout`: 5 s
/// - `idle_timeout`: 30 s
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Connections open at once; one more is closed as soon as it is accepted. Keep it under
    /// the process's descriptor limit (`ulimit -n`). Default: 256.
    pub max_connections: usize,
    /// From a new connection, or from the first byte of a request on a kept-alive one, to the
    /// end of its headers. Default: 5 s.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request. Default: 30 s.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpLimits {
    /// Sets [`HttpLimits::max_connections`].
    #[must_use]
    pub const fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`HttpLimits::header_read_timeout`].
    #[must_use]
    pub const fn with_header_read_timeout(mut self, t: Duration) -> Self {
        self.header_read_timeout = t;
        self
    }

    /// Sets [`HttpLimits::idle_timeout`].
    #[must_use]
    pub const fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }
}

/// A TCP listener that enforces [`HttpLimits`].
#[derive(Debug)]
pub(crate) struct LimitedListener {
    inner: TcpListener,
    limits: HttpLimits,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    pub(crate) fn new(inner: TcpListener, limits: HttpLimits) -> Self {
        LimitedListener {
            inner,
            limits,
            // Semaphore::new panics above MAX_PERMITS (`--max-connections 18446744073709551615`);
            // the file descriptor limit binds far below either.
            permits: Arc::new(Semaphore::new(
                limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
        }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedIo, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: pause briefly, as axum does, but not
                    // a whole second.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedIo::new(stream, permit, self.limits), addr);
                }
                // Over the cap: closed at once rather than queued, so the caller learns it now.
                Err(_) => drop(stream),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's first byte, since this instant; `first`: a new connection.
    Waiting { since: Instant, first: bool },
    /// Reading a request's headers since this instant; `tail`: the last bytes seen.
    Headers { since: Instant, tail: [u8; 3] },
    /// Headers read; the request is the application's until a response is written.
    Busy,
}

/// A connection of [`LimitedListener`].
#[derive(Debug)]
pub(crate) struct LimitedIo {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    limits: HttpLimits,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
}

impl LimitedIo {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, limits: HttpLimits) -> Self {
        let now = Instant::now();
        LimitedIo {
            inner,
            _permit: permit,
            limits,
            phase: Phase::Waiting {
                since: now,
                first: true,
            },
            timer: Box::pin(tokio::time::sleep_until(now + limits.header_read_timeout)),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { since, first: true } => Some(since + self.limits.header_read_timeout),
            Phase::Waiting {
                since,
                first: false,
            } => Some(since + self.limits.idle_timeout),
            Phase::Headers { since, .. } => Some(since + self.limits.header_read_timeout),
            Phase::Busy => None,
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        let (since, mut tail) = match self.phase {
            Phase::Busy => return,
            Phase::Waiting { since, first } => (if first { since } else { Instant::now() }, [0; 3]),
            Phase::Headers { since, tail } => (since, tail),
        };
        // The end of the headers: an empty line. Scan the last 3 bytes seen and these.
        let mut window: Vec<u8> = tail.to_vec();
        window.extend_from_slice(bytes);
        if window.windows(4).any(|w| w == b"\r\n\r\n") || window.windows(2).any(|w| w == b"\n\n") {
            self.phase = Phase::Busy;
            return;
        }
        let n = window.len();
        let keep = &window[n.saturating_sub(3)..];
        tail = [0; 3];
        tail[3 - keep.len()..].copy_from_slice(keep);
        self.phase = Phase::Headers { since, tail };
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    let new = new.to_vec();
                    this.saw(&new);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = self.deadline() else {
                    return Poll::Pending;
                };
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request headers in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, b);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.phase = Phase::Waiting {
                since: Instant::now(),
                first: false,
            };
        }
        result
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
