//! [`Pool::run`]: idempotent work retried on a fresh connection after a lost connection or a
//! server's request to retry, within the [`RetryPolicy`]'s deadline, attempts and budget.

use std::time::{Duration, Instant};

use super::{Pool, PooledConnection, deadline};
use crate::classify::{self, Reason};
use crate::retry::RetryPolicy;
use crate::{Error, ErrorKind};

/// One call's attempts at the caller's work ([`Pool::run`], [`Pool::transaction`]): the
/// retry loop over *work*, as opposed to `backoff::Retry` (one connection attempt)
/// and the gate's `reconnect_until_open` (the pool's reconnection).
/// It borrows the pool: a clone would add two read-modify-writes of the pool's shared
/// reference count to every call, from every core, a cost the throughput benchmark shows.
pub(super) struct CallAttempts<'a> {
    pool: &'a Pool,
    started: Instant,
    deadline: Instant,
    count: u32,
    /// Built on the first back-off: almost every call succeeds at once.
    delays: Option<crate::BackoffIter>,
    /// Whether the call was replayed once already after `statement_cache=auto` switched.
    replayed_after_switch: bool,
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
            replayed_after_switch: false,
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
        let wait = self.next_wait()?;
        self.pool.get_timeout(wait).await
    }

    /// Counts the next attempt and returns how long it may wait for a connection.
    pub(super) fn next_wait(&mut self) -> Result<Duration, Error> {
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
        Ok(wait)
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

    /// Whether to replay at once after `err`: the sign of a transaction pooler that made the
    /// pool switch to unnamed statements (`statement_cache=auto`), whose statement certainly
    /// did not run. Once per call, within the deadline, outside the retry budget (the switch
    /// happens once per pool).
    pub(super) fn replay_after_switch(&mut self, err: &Error) -> bool {
        if self.replayed_after_switch
            || self.remaining().is_zero()
            || !self.pool.inner.mode.replayable(err)
        {
            return false;
        }
        self.replayed_after_switch = true;
        self.pool.inner.metrics.retried();
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

/// [`Pool::run`].
pub(super) async fn run<T, F>(pool: &Pool, mut work: F) -> Result<T, Error>
where
    F: AsyncFnMut(&PooledConnection) -> Result<T, Error>,
{
    let mut attempts = CallAttempts::new(pool);
    loop {
        let conn = attempts.checkout().await.map_err(|e| attempts.finish(e))?;
        // The pool's own timer (see `pool::deadline`): this runs on every call.
        let now = Instant::now();
        let at = attempts.attempt_deadline(now);
        let limit = pool.inner.deadlines.sleep_until(now, at);
        let err = match deadline::timeout(limit, work(&conn)).await {
            Some(Ok(value)) => {
                pool.record_ok();
                return Ok(value);
            }
            Some(Err(err)) => err,
            None => {
                conn.discard();
                attempt_timed_out(at.saturating_duration_since(now))
            }
        };
        if attempts.replay_after_switch(&err) {
            continue;
        }
        let class = classify::query(&err);
        if !class.is_retry() || !attempts.retry_after(class.reason).await {
            return Err(attempts.finish(err));
        }
    }
}
