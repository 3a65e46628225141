//! Watching a connection's background task so its real closing error is not lost.
//!
//! tokio-postgres drives each connection with a `Connection` future. When the server ends an
//! idle session (57P01 on shutdown or `pg_terminate_backend`, 57P05 `idle_session_timeout`,
//! 25P03 `idle_in_transaction_session_timeout`) or the socket dies, that future resolves with
//! the reason while the `Client` only reports `is_closed()`. [`ConnectionMonitor`] keeps it.
//!
//! A session ended by a crash of another backend (57P02) or by an immediate shutdown is told
//! so by a WARNING notice, after which the socket just closes: the monitor keeps the last
//! notice's SQLSTATE and uses it when the closing error carries none.
//!
//! The monitor also follows the session attributes the server reports (PostgreSQL 14+):
//! tokio-postgres keeps every ParameterStatus value in the `Connection`, which only the task
//! driving it can read; the task publishes `in_hot_standby` and
//! `default_transaction_read_only` after each poll, and [`ConnectionMonitor::session_state`]
//! reads them with one atomic load.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;
use tokio_postgres::error::SqlState;

use super::session::SessionState;
use crate::classify::{self, Reason};

/// Why a connection closed.
#[derive(Clone)]
pub struct CloseReason {
    reason: Option<Reason>,
    error: Option<Arc<tokio_postgres::Error>>,
    notice: Option<SqlState>,
}

impl CloseReason {
    pub(crate) fn from_result(
        result: Result<(), tokio_postgres::Error>,
        notice: Option<SqlState>,
    ) -> Self {
        match result {
            Ok(()) => CloseReason {
                reason: None,
                error: None,
                notice: None,
            },
            Err(e) => {
                let reason = match (e.code(), &notice) {
                    (None, Some(code)) if code.code().starts_with("57") => {
                        classify::reason_for_code(code)
                    }
                    _ => classify::reason_of(&e),
                };
                CloseReason {
                    reason: Some(reason),
                    error: Some(Arc::new(e)),
                    notice,
                }
            }
        }
    }

    /// The classified reason; `None` when the connection ended cleanly (the client was
    /// dropped).
    pub fn reason(&self) -> Option<Reason> {
        self.reason
    }

    /// Whether the connection ended without an error (the client was dropped or closed).
    pub fn is_clean(&self) -> bool {
        self.reason.is_none()
    }

    /// The SQLSTATE the server sent when it ended the session, e.g. 57P01.
    pub fn code(&self) -> Option<&SqlState> {
        self.error
            .as_deref()
            .and_then(|e| e.code())
            .or_else(|| self.notice.as_ref().filter(|c| c.code().starts_with("57")))
    }

    /// The error the connection task ended with.
    pub fn error(&self) -> Option<&tokio_postgres::Error> {
        self.error.as_deref()
    }

    /// An [`ErrorKind::Closed`](crate::ErrorKind::Closed) error saying `context` (e.g.
    /// "query failed: the connection closed"), with this reason and the task's error as its
    /// cause: what to report when a statement only saw "connection closed" but the task saw
    /// why (a protocol violation, 57P01, a crash notice).
    pub fn to_error(&self, context: &str) -> crate::Error {
        let err = crate::Error::new(crate::ErrorKind::Closed, context)
            .with_reason(self.reason.unwrap_or(Reason::Closed));
        match &self.error {
            Some(e) => err.with_shared_source(Arc::clone(e) as _),
            None => err,
        }
    }
}

impl fmt::Debug for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseReason")
            .field("reason", &self.reason)
            .field("code", &self.code().map(|c| c.code()))
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error, self.reason) {
            (None, None) => f.write_str("closed by the client"),
            (None, Some(r)) => write!(f, "{r}: the connection task ended without a result"),
            (Some(e), Some(r)) => match self.code() {
                Some(code) => write!(f, "{r} ({}): {e}", code.code()),
                None => write!(f, "{r}: {e}"),
            },
            (Some(e), None) => write!(f, "{e}"),
        }
    }
}

/// Observes one connection's background task. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionMonitor {
    rx: watch::Receiver<Option<CloseReason>>,
    /// Set once the reason is in the channel. [`ConnectionMonitor::is_closed`] runs on every
    /// pool checkout: a load here is cheaper than the channel's read lock, an atomic
    /// read-modify-write on a line the previous holder's core last wrote.
    closed: Arc<AtomicBool>,
    /// The latest reported [`SessionState`], packed; written only by the connection's task.
    session: Arc<AtomicU8>,
    /// The same, for waiters.
    session_rx: watch::Receiver<SessionState>,
    /// Ends the task ([`ConnectionMonitor::close`]).
    stop: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for ConnectionMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionMonitor")
            .field("closed", &*self.rx.borrow())
            .field("session", &self.session_state())
            .finish()
    }
}

impl ConnectionMonitor {
    /// Spawns `connection` on the current tokio runtime and watches its outcome.
    pub(crate) fn spawn<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let initial = SessionState::from_parameters(|name| connection.parameter(name));
        let session = Arc::new(AtomicU8::new(initial.pack()));
        let (session_tx, session_rx) = watch::channel(initial);
        let published = session.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut notice = None;
            let mut last = initial.pack();
            let polled = std::future::poll_fn(|cx| {
                loop {
                    let polled = connection.poll_message(cx);
                    // ParameterStatus messages are absorbed by the poll above (into the
                    // connection's parameter map): publish a change before anything else
                    // happens. Two map lookups per poll.
                    let now = SessionState::from_parameters(|name| connection.parameter(name));
                    if now.pack() != last {
                        last = now.pack();
                        tracing::debug!(?now, "server reported new session attributes");
                        published.store(last, Ordering::Release);
                        session_tx.send_replace(now);
                    }
                    match polled {
                        Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                            tracing::debug!(
                                code = n.code().code(),
                                "server notice: {}",
                                n.message()
                            );
                            notice = Some(n.code().clone());
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                        Poll::Ready(None) => return Poll::Ready(Ok(())),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            });
            let result = tokio::select! {
                r = polled => r,
                // Dropping the connection closes the socket: what the server still sends
                // is never read.
                () = stopped.notified() => Ok(()),
            };
            let reason = CloseReason::from_result(result, notice);
            if let Some(r) = reason.reason() {
                tracing::debug!(reason = %r, "connection closed: {reason}");
            }
            tx.send_replace(Some(reason));
            // After the reason: whoever sees the flag finds the reason too.
            flag.store(true, Ordering::Release);
        });
        ConnectionMonitor {
            rx,
            closed,
            session,
            session_rx,
            stop,
        }
    }

    /// Ends the connection now: its socket is closed and whatever the server still sends is
    /// never read. tokio-postgres reads a result nobody reads any more until its end, so a
    /// caller that gave up on an endless or oversized answer calls this; and it keeps a
    /// connection whose client was dropped open until every request sent was answered, so a
    /// request lost on the way (a network that swallowed it) would hold the server session,
    /// its open transaction and its locks. The closing reason is clean, as when the client is
    /// dropped.
    pub fn close(&self) {
        self.stop.notify_one();
    }

    /// The `in_hot_standby` / `default_transaction_read_only` values the server last reported
    /// (one atomic load, cheap enough for every pool checkout): at startup, then after each
    /// change it reported. Fields are `None` when the server does not report them (before
    /// PostgreSQL 14, or through a proxy that does not forward them).
    ///
    /// A server reports a change just before its next ReadyForQuery: an idle session learns
    /// of a promotion or a reload only once it runs a statement. The value is published by
    /// the connection's task right after it processed the message, so a caller that has just
    /// received a query's result may, for a moment, still see the previous value; use
    /// [`ConnectionMonitor::session_state_changed`] to wait for it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(connected: pgsteady::Connected) {
    /// use pgsteady::TargetSessionAttrs;
    ///
    /// if connected.monitor.session_state().satisfies(TargetSessionAttrs::ReadWrite) == Some(false) {
    ///     // promoted away from, fenced read-only: do not hand this connection out for writes
    /// }
    /// # }
    /// ```
    pub fn session_state(&self) -> SessionState {
        SessionState::unpack(self.session.load(Ordering::Acquire))
    }

    /// Waits until the server reports a state other than `seen` and returns it, or returns
    /// the current state at once if it already differs. When the connection closes first,
    /// returns the last state reported (equal to `seen` if nothing changed): check
    /// [`ConnectionMonitor::is_closed`]. Not bounded: wrap it in a timeout.
    pub async fn session_state_changed(&self, seen: SessionState) -> SessionState {
        let mut rx = self.session_rx.clone();
        let changed = rx.wait_for(|now| *now != seen).await.map(|now| *now);
        changed.unwrap_or_else(|_| *rx.borrow())
    }

    /// Whether the background task has ended (the connection is unusable).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Why it closed, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.rx.borrow().clone()
    }

    /// Waits until the connection closes and returns why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(guard) => guard.clone().unwrap_or_else(lost),
            // The task was dropped without reporting (runtime shut down).
            Err(_) => lost(),
        }
    }
}

fn lost() -> CloseReason {
    CloseReason {
        reason: Some(Reason::Closed),
        error: None,
        notice: None,
    }
}
