//! Graceful shutdown: the signals that start it and the bounds it keeps.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownSignal {
    /// SIGTERM: what Kubernetes, Docker and systemd send.
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
}

impl ShutdownSignal {
    /// `SIGTERM` or `SIGINT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        }
    }

    /// The signal number (15 or 2).
    pub const fn number(self) -> i32 {
        match self {
            ShutdownSignal::Terminate => 15,
            ShutdownSignal::Interrupt => 2,
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resolves on the first SIGTERM or SIGINT after the call.
///
/// The handlers are installed when this function is called, not when the future is first
/// polled, so a signal arriving in between is not lost; from then on these signals no longer
/// kill the process by default. Fails only if the handlers cannot be installed.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let stop = pgsteady::shutdown_signal()?;
/// let signal = stop.await;
/// eprintln!("stopping on {signal}");
/// # Ok(()) }
/// ```
pub fn shutdown_signal() -> io::Result<impl Future<Output = ShutdownSignal> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => ShutdownSignal::Terminate,
            _ = int.recv() => ShutdownSignal::Interrupt,
        }
    })
}

/// The bounds of a graceful shutdown. Plain data: start from [`ShutdownConfig::default`].
///
/// On the signal, readiness flips to `draining` at once. The server keeps accepting for
/// `linger` (load balancers that poll readiness need a moment to notice; 0 refuses new
/// connections at once), then stops accepting, lets requests in flight finish within
/// `deadline`, and closes the pool within `pool_close`. Keep
/// `linger + deadline + pool_close` under the orchestrator's kill timeout (Kubernetes'
/// `terminationGracePeriodSeconds`, 30 s by default; Docker's `stop` timeout, 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// Keep accepting new requests this long after the signal, while readiness answers
    /// `draining`. Default: 0.
    pub linger: Duration,
    /// How long requests in flight have to finish once the server stops accepting; after it,
    /// they are cut. Default: 20 s.
    pub deadline: Duration,
    /// How long the pool has to close its connections afterwards. Default: 5 s.
    pub pool_close: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            linger: Duration::ZERO,
            deadline: Duration::from_secs(20),
            pool_close: Duration::from_secs(5),
        }
    }
}

impl ShutdownConfig {
    /// Sets [`ShutdownConfig::linger`].
    #[must_use]
    pub const fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets [`ShutdownConfig::deadline`].
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`ShutdownConfig::pool_close`].
    #[must_use]
    pub const fn with_pool_close(mut self, timeout: Duration) -> Self {
        self.pool_close = timeout;
        self
    }
}
