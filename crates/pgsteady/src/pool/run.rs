//! [`Pool::run`]: idempotent work retried on a fresh connection after a lost connection or a
//! server's request to retry, within the [`RetryPolicy`]'s deadline, attempts and budget.

use std::time::{Duration, Instant};

use crate::classify::{self, Reason};
use crate::pool::{Pool, PooledConnection, deadline};
use crate::retry::RetryPolicy;
use crate::{Error, ErrorKind};

/// One call's attempts at the caller's work ([`Pool::run`], [`Pool::transaction`]): the
/// retry loop over *work*, as opposed to `backoff::Retry` (one connection attempt)
/// and the gate's `reconnect_until_open` (the pool's reconnection).
/// It borrows the pool: a clone adds two read-modify-writes of
/// the pool's shared reference count to every call, from every core (in issue 7's throughput
/// benchmark at 64 workers, `run()` cost 0.6-0.9 µs of CPU per call more than `get()` with
/// the clone, 0.3 µs without).
pub(super) struct CallAttempts<'a> {
    pool: &'a Pool,
    started: Instant,
    deadline: Instant,
    count: u32,
    /// Built on the first back-off: almost every call succeeds at once.
    delays: Option<crate::BackoffIter>,
}

impl<'a> CallAttempts<'a> {
    pub(super) fn new(pool: &'a Pool) -> Self {
        let policy = &pool.inner.config.retry;
        pool.inner.budget.deposit();
        let started = Instant::now();
        CallAttempts {
            pool,
            started,
            deadline: started + policy.deadline,
            count: 0,
            delays: None,
        }
    }

    pub(super) fn policy(&self) -> &RetryPolicy {
        &self.pool.inner.config.retry
    }

    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A connection for the next attempt, waiting through outages until the deadline.
    pub(super) async fn checkout(&mut self) -> Result<PooledConnection, Error> {
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
    pub(super) fn attempt_deadline(&self, now: Instant) -> Instant {
        match self.policy().attempt_timeout {
            Some(limit) => self.deadline.min(deadline::after(now, limit)),
            None => self.deadline,
        }
    }

    /// The attempt's time limit.
    pub(super) fn attempt_limit(&self) -> Duration {
        let remaining = self.remaining();
        self.policy()
            .attempt_timeout
            .map_or(remaining, |t| t.min(remaining))
    }

    /// Whether to retry after `err`, sleeping first when the server asked to back off.
    pub(super) async fn retry_after(&mut self, reason: Reason) -> bool {
        if self.count >= self.policy().max_attempts
            || self.remaining().is_zero()
            || !self.pool.inner.budget.withdraw()
        {
            return false;
        }
        self.pool.inner.metrics.retried();
        if !reason.needs_new_connection() {
            let backoff = self.policy().backoff;
            let delays = self
                .delays
                .get_or_insert_with(|| backoff.without_max_elapsed().build());
            let delay = delays.next().unwrap_or(backoff.cap());
            tokio::time::sleep(delay.min(self.remaining())).await;
        }
        true
    }

    pub(super) fn finish(&self, err: Error) -> Error {
        err.with_attempts(self.count, self.started.elapsed())
    }

    pub(super) fn out_of_time(&self, last: Option<Error>) -> Error {
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

pub(super) fn attempt_timed_out(limit: Duration) -> Error {
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
        let mut attempts = CallAttempts::new(self);
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
