//! Safe retries on a [`Pool`]: [`Pool::run`] for idempotent work and [`Pool::transaction`]
//! for writes, which are replayed only when they certainly did not commit.
//!
//! A lost connection while COMMIT was in flight leaves the outcome unknown. The transaction
//! id is recorded before COMMIT; after reconnecting, `txid_status()` says whether it
//! committed. If its backend still holds it open (the COMMIT never arrived), that backend is
//! terminated first, which makes the answer final. Only when no answer can be had before the
//! deadline does the caller get [`TransactionError::OutcomeUnknown`].

mod resolve;
mod transaction;

pub use transaction::{CommitOutcomeUnknown, Transaction, TransactionError};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::backoff::Jitter;
use crate::classify::{self, Reason};
use crate::pool::{Pool, PooledConnection, deadline};
use crate::{Backoff, Error, ErrorKind};

/// How [`Pool::run`] and [`Pool::transaction`] retry.
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

/// Milli-tokens, so deposits of a fraction of a retry stay exact.
const MILLI: i64 = 1000;

/// The live state of a [`RetryBudget`].
#[derive(Debug)]
pub(crate) struct Budget {
    config: RetryBudget,
    tokens: AtomicI64,
    refilled_at_ms: AtomicU64,
    epoch: Instant,
}

impl Budget {
    pub(crate) fn new(config: RetryBudget) -> Self {
        Budget {
            config,
            tokens: AtomicI64::new(i64::from(config.burst) * MILLI),
            refilled_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn cap(&self) -> i64 {
        i64::from(self.config.burst) * MILLI
    }

    /// A call started: earn `ratio` of a retry.
    pub(crate) fn deposit(&self) {
        let earned = (self.config.ratio * MILLI as f64) as i64;
        // Every call lands here, from every core. While nothing fails the bucket is full:
        // reading first leaves the shared word unwritten, instead of two read-modify-writes
        // (add, then clamp) per call.
        if earned <= 0 || self.tokens.load(Ordering::Relaxed) >= self.cap() {
            return;
        }
        if self.tokens.fetch_add(earned, Ordering::Relaxed) + earned > self.cap() {
            self.tokens.fetch_min(self.cap(), Ordering::Relaxed);
        }
    }

    /// Takes one retry from the bucket if there is one.
    pub(crate) fn withdraw(&self) -> bool {
        self.refill();
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= MILLI).then_some(t - MILLI)
            })
            .is_ok()
    }

    fn refill(&self) {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.refilled_at_ms.swap(now_ms, Ordering::Relaxed);
        let earned = now_ms.saturating_sub(last) as i64 * i64::from(self.config.min_per_second);
        if earned > 0 {
            self.tokens.fetch_add(earned, Ordering::Relaxed);
            self.tokens.fetch_min(self.cap(), Ordering::Relaxed);
        }
    }
}

/// One call's retry bookkeeping. It borrows the pool: a clone adds two read-modify-writes of
/// the pool's shared reference count to every call, from every core (in issue 7's throughput
/// benchmark at 64 workers, `run()` cost 0.6-0.9 µs of CPU per call more than `get()` with
/// the clone, 0.3 µs without).
struct Attempts<'a> {
    pool: &'a Pool,
    started: Instant,
    deadline: Instant,
    count: u32,
    /// Built on the first back-off: almost every call succeeds at once.
    delays: Option<crate::BackoffIter>,
}

impl<'a> Attempts<'a> {
    fn new(pool: &'a Pool) -> Self {
        let policy = &pool.inner.config.retry;
        pool.inner.budget.deposit();
        let started = Instant::now();
        Attempts {
            pool,
            started,
            deadline: started + policy.deadline,
            count: 0,
            delays: None,
        }
    }

    fn policy(&self) -> &RetryPolicy {
        &self.pool.inner.config.retry
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A connection for the next attempt, waiting through outages until the deadline.
    async fn checkout(&mut self) -> Result<PooledConnection, Error> {
        self.count += 1;
        // The first attempt starts as the call does: its whole deadline is left, no need
        // to read the clock again (this runs on every call).
        let remaining = match self.count {
            1 => self.deadline.saturating_duration_since(self.started),
            _ => self.remaining(),
        };
        let wait = remaining.min(self.pool.inner.config.acquire_timeout);
        if wait.is_zero() {
            return Err(self.out_of_time(None));
        }
        self.pool.get_timeout(wait).await
    }

    /// When an attempt starting `now` must end: at the call's deadline, or earlier after
    /// `attempt_timeout`.
    fn attempt_deadline(&self, now: Instant) -> Instant {
        match self.policy().attempt_timeout {
            Some(limit) => self.deadline.min(deadline::after(now, limit)),
            None => self.deadline,
        }
    }

    /// The attempt's time limit.
    fn attempt_limit(&self) -> Duration {
        let remaining = self.remaining();
        self.policy()
            .attempt_timeout
            .map_or(remaining, |t| t.min(remaining))
    }

    /// Whether to retry after `err`, sleeping first when the server asked to back off.
    async fn retry_after(&mut self, reason: Reason) -> bool {
        if self.count >= self.policy().max_attempts
            || self.remaining().is_zero()
            || !self.pool.inner.budget.withdraw()
        {
            return false;
        }
        self.pool.inner.metrics.retried();
        if !connection_lost(reason) {
            let backoff = self.policy().backoff;
            let delays = self
                .delays
                .get_or_insert_with(|| backoff.without_max_elapsed().build());
            let delay = delays.next().unwrap_or(backoff.cap());
            tokio::time::sleep(delay.min(self.remaining())).await;
        }
        true
    }

    fn finish(&self, err: Error) -> Error {
        err.with_attempts(self.count, self.started.elapsed())
    }

    fn out_of_time(&self, last: Option<Error>) -> Error {
        let err = Error::new(
            ErrorKind::Timeout,
            format!("retry deadline of {:?} reached", self.policy().deadline),
        )
        .with_reason(Reason::TimedOut);
        let err = match last {
            Some(last) => err.with_source(last),
            None => err,
        };
        self.finish(err)
    }
}

/// Errors that mean the connection is gone, after which a retry needs a new one.
pub(crate) fn connection_lost(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Closed
            | Reason::Reset
            | Reason::Refused
            | Reason::TimedOut
            | Reason::AdminShutdown
            | Reason::CrashShutdown
            | Reason::CannotConnectNow
            | Reason::IdleSessionTimeout
            | Reason::IdleInTransactionTimeout
            | Reason::ConnectionException
            | Reason::Io
    )
}

fn attempt_timed_out(limit: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("attempt timed out after {limit:?}; its connection was discarded"),
    )
    .with_reason(Reason::TimedOut)
}

impl Pool {
    /// Runs idempotent work, retrying it on a fresh connection when the connection was lost
    /// (restart, crash, terminated session, network failure) or the server asked for a retry
    /// (40001, 40P01, 53300), within [`RetryPolicy::deadline`], [`RetryPolicy::max_attempts`]
    /// and the pool's retry budget. Other errors are returned at once.
    ///
    /// The closure may run more than once: use it for reads and idempotent writes only. For
    /// other writes, use [`Pool::transaction`].
    ///
    /// Write the closure as `async move |conn| { ... }`: it then owns what it captures, and
    /// its future is `Send`. A plain `async |conn|` closure that borrows variables from its
    /// surroundings across an `.await` makes the call's future fail to prove `Send` (a
    /// limitation of the compiler as of Rust 1.95), which `tokio::spawn` requires.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady::Error> {
    /// let name: String = pool
    ///     .run(async move |conn| {
    ///         let stmt = conn.prepare_cached("SELECT name FROM users WHERE id = $1").await?;
    ///         Ok(conn.query_one(&stmt, &[&42i64]).await?.get(0))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run<T, F>(&self, mut work: F) -> Result<T, Error>
    where
        F: AsyncFnMut(&PooledConnection) -> Result<T, Error>,
    {
        let mut attempts = Attempts::new(self);
        loop {
            let conn = attempts.checkout().await.map_err(|e| attempts.finish(e))?;
            // The pool's own timer (see `pool::deadline`): this runs on every call.
            let now = Instant::now();
            let at = attempts.attempt_deadline(now);
            let limit = self.inner.deadlines.sleep_until(now, at);
            let err = match deadline::timeout(limit, work(&conn)).await {
                Some(Ok(value)) => {
                    self.record_ok();
                    return Ok(value);
                }
                Some(Err(err)) => err,
                None => {
                    conn.discard();
                    attempt_timed_out(at.saturating_duration_since(now))
                }
            };
            let class = classify::query(&err);
            if !class.is_retry() || !attempts.retry_after(class.reason).await {
                return Err(attempts.finish(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_full_at_start_and_deposits_never_exceed_the_burst() {
        let budget = Budget::new(RetryBudget {
            ratio: 0.5,
            min_per_second: 0,
            burst: 2,
        });
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw());
        assert!(!budget.withdraw(), "the burst is 2");
        budget.deposit();
        assert!(!budget.withdraw(), "half a retry earned");
        budget.deposit();
        assert!(budget.withdraw(), "two calls earn one retry");
    }
}
