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

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;
use tokio_postgres::error::SqlState;

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
}

impl fmt::Debug for ConnectionMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionMonitor")
            .field("closed", &*self.rx.borrow())
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
        tokio::spawn(async move {
            let mut notice = None;
            let result = std::future::poll_fn(|cx| {
                loop {
                    match connection.poll_message(cx) {
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
            })
            .await;
            let reason = CloseReason::from_result(result, notice);
            if let Some(r) = reason.reason() {
                tracing::debug!(reason = %r, "connection closed: {reason}");
            }
            tx.send_replace(Some(reason));
            // After the reason: whoever sees the flag finds the reason too.
            flag.store(true, Ordering::Release);
        });
        ConnectionMonitor { rx, closed }
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
