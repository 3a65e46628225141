//! How [`Pool::run`](crate::Pool::run) and [`Pool::transaction`](crate::Pool::transaction)
//! retry: plain data. The pool applies it (`pool/run.rs`, `pool/transaction.rs`).

use std::time::Duration;

use crate::Backoff;
use crate::backoff::Jitter;

/// How [`Pool::run`](crate::Pool::run) and [`Pool::transaction`](crate::Pool::transaction)
/// retry.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The most time one call may take, every attempt and wait included. Default: 30 s.
    pub deadline: Duration,
    /// The most attempts per call. Default: 10.
    pub max_attempts: u32,
    /// The delay before retrying an error from a live server (40001, 40P01, 53300...). After
    /// a lost connection the retry starts at once: its checkout waits for the pool to
    /// reconnect, at the pool's own bounded attempt rate. Default: full jitter from 5 ms up
    /// to 250 ms.
    pub backoff: Backoff,
    /// The most time one attempt may take (the closure and, for a transaction, its COMMIT):
    /// the only defence against a connection that silently stopped answering where TCP
    /// keepalives cannot see it (e.g. behind a proxy). A timed-out attempt's connection is
    /// discarded. Default: none.
    pub attempt_timeout: Option<Duration>,
    /// How long COMMIT's reply may take before the outcome counts as unknown and is resolved
    /// on another connection. Default: 10 s.
    pub commit_timeout: Duration,
    /// The pool-wide retry budget. Default: [`RetryBudget::default`].
    pub budget: RetryBudget,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(30),
            max_attempts: 10,
            backoff: Backoff::new()
                .with_base(Duration::from_millis(5))
                .with_cap(Duration::from_millis(250))
                .with_jitter(Jitter::Full),
            attempt_timeout: None,
            commit_timeout: Duration::from_secs(10),
            budget: RetryBudget::default(),
        }
    }
}

/// A pool-wide limit on retries, so that a failure affecting every call does not multiply
/// the load on the server: a token bucket that every call fills by `ratio` and every retry
/// drains by one, refilled by `min_per_second` each second. Retries that find the bucket
/// empty are not made; the call returns its last error.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryBudget {
    /// Retries earned per call. Default: 0.2 (retries add at most 20% to the load).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic. Default: 10.
    pub min_per_second: u32,
    /// The most retries the bucket holds. Default: 100.
    pub burst: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
            burst: 100,
        }
    }
}
