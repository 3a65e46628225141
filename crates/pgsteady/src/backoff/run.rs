//! Running an operation under a [`Backoff`] policy: the injectable [`Sleeper`] and the
//! deadline-bounded [`Retry`] loop, every knob named.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::Backoff;

/// A boxed future returned by a [`Sleeper`].
pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Something that waits: [`TokioSleeper`] in production, a recording fake in tests.
pub trait Sleeper: Send + Sync {
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> SleepFuture;
}

/// The default [`Sleeper`]: `tokio::time::sleep` (so tokio's paused clock applies in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// What one attempt of a [`Retry`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The timeout this attempt runs under (the per-attempt timeout clamped to the time left).
    pub timeout: Duration,
    /// Time since the retry loop started.
    pub elapsed: Duration,
}

/// What [`Retry::when`] decides about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after the next back-off delay.
    Retry,
    /// Stop now and return the error.
    Stop,
}

/// Why a [`Retry`] gave up.
#[derive(Debug)]
pub struct RetryError<E> {
    /// The last error seen; `None` if the last attempt timed out.
    pub last: Option<E>,
    /// Whether the caller's classifier said stop (a permanent error) rather than the policy
    /// running out.
    pub stopped: bool,
    /// Whether the last attempt hit its timeout.
    pub last_timed_out: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent in the retry loop.
    pub elapsed: Duration,
}

/// How long one attempt of a [`Retry`] may take unless [`Retry::attempt_timeout`] says
/// otherwise: the CLI's default attempt timeout too.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Retry`] that [`Retryable::retry`] starts: every error retried, nobody notified.
pub type DefaultRetry<'a, Op, E> =
    Retry<'a, Op, fn(&E) -> Decision, fn(&Attempt, Option<&E>, Duration)>;

/// Makes an operation retryable: `op.retry(&policy)` starts a [`Retry`], every other knob
/// set by name, as backon does (`f.retry(b).sleep(s).when(p).notify(n)`), so that no call
/// site passes three closures by position. Implemented for every `FnMut(Attempt) -> Future`
/// returning a `Result`; annotate the closure's argument (`|attempt: Attempt|`) so that the
/// compiler knows it is one.
pub trait Retryable<T, E, Fut>: FnMut(Attempt) -> Fut + Sized
where
    Fut: Future<Output = Result<T, E>>,
{
    /// The operation under `policy`: by default with [`TokioSleeper`], each attempt bounded by
    /// [`DEFAULT_ATTEMPT_TIMEOUT`], every error retried and nobody notified.
    fn retry(self, policy: &Backoff) -> DefaultRetry<'_, Self, E>;
}

impl<T, E, Fut, Op> Retryable<T, E, Fut> for Op
where
    Op: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    fn retry(self, policy: &Backoff) -> DefaultRetry<'_, Self, E> {
        Retry {
            op: self,
            policy,
            sleeper: &TokioSleeper,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            when: |_| Decision::Retry,
            notify: |_, _, _| {},
        }
    }
}

/// One operation (for pgsteady: one connection attempt, in `Connector::connect` and
/// `pgsteady wait`) retried under a [`Backoff`] policy; made by [`Retryable::retry`], run by
/// [`Retry::run`]. Not to be confused with the pool's two loops: `Pool::run` /
/// `Pool::transaction` retrying a caller's work (`pool/run.rs`) and the pool's reconnection
/// (`reconnect_until_open` in `pool/gate.rs`).
///
/// Every attempt runs under [`Retry::attempt_timeout`] clamped to the time left before the
/// policy's `max_elapsed` (when it has one), and no delay is slept that would end past the
/// deadline. A timed out attempt is retried like a retryable error.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use pgsteady::backoff::{Attempt, Backoff, Decision, Jitter, Retryable, TokioSleeper};
///
/// let policy = Backoff::new().with_base(Duration::from_millis(1)).with_jitter(Jitter::None);
/// let mut calls = 0;
/// let out = (|_attempt: Attempt| {
///     calls += 1;
///     let n = calls;
///     async move { if n < 3 { Err("not yet") } else { Ok(n) } }
/// })
/// .retry(&policy)
/// .sleep(&TokioSleeper)
/// .attempt_timeout(Duration::from_secs(1))
/// .when(|_err: &&str| Decision::Retry)
/// .notify(|attempt, err, delay| eprintln!("attempt {}: {err:?}, next in {delay:?}", attempt.number))
/// .run()
/// .await;
/// assert_eq!(out.unwrap(), 3);
/// # }
/// ```
#[must_use = "a retry does nothing until run"]
pub struct Retry<'a, Op, W, N> {
    op: Op,
    policy: &'a Backoff,
    sleeper: &'a dyn Sleeper,
    attempt_timeout: Duration,
    when: W,
    notify: N,
}

impl<Op, W, N> std::fmt::Debug for Retry<'_, Op, W, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("policy", self.policy)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl<'a, T, E, Fut, Op, W, N> Retry<'a, Op, W, N>
where
    Op: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    W: FnMut(&E) -> Decision,
    N: FnMut(&Attempt, Option<&E>, Duration),
{
    /// Waits out the delays with `sleeper` (a recording fake in tests). Default:
    /// [`TokioSleeper`].
    pub fn sleep(self, sleeper: &'a dyn Sleeper) -> Self {
        Retry { sleeper, ..self }
    }

    /// Bounds each attempt (clamped to the time left before the policy's deadline). Default:
    /// [`DEFAULT_ATTEMPT_TIMEOUT`].
    pub fn attempt_timeout(self, timeout: Duration) -> Self {
        Retry {
            attempt_timeout: timeout,
            ..self
        }
    }

    /// Decides about each failed attempt's error: [`Decision::Retry`] or [`Decision::Stop`]
    /// (a permanent error). Default: retry every error.
    pub fn when<W2: FnMut(&E) -> Decision>(self, when: W2) -> Retry<'a, Op, W2, N> {
        Retry {
            op: self.op,
            policy: self.policy,
            sleeper: self.sleeper,
            attempt_timeout: self.attempt_timeout,
            when,
            notify: self.notify,
        }
    }

    /// Called before each delay with the failed attempt, its error (`None` for a timeout)
    /// and the delay about to be slept: for logging. Default: nothing.
    pub fn notify<N2: FnMut(&Attempt, Option<&E>, Duration)>(
        self,
        notify: N2,
    ) -> Retry<'a, Op, W, N2> {
        Retry {
            op: self.op,
            policy: self.policy,
            sleeper: self.sleeper,
            attempt_timeout: self.attempt_timeout,
            when: self.when,
            notify,
        }
    }

    /// Runs the attempts until one succeeds, [`Retry::when`] says stop, or the policy runs
    /// out.
    ///
    /// # Errors
    ///
    /// [`RetryError`]: the last error (or a timeout), how many attempts, how long.
    pub async fn run(self) -> Result<T, RetryError<E>> {
        let Retry {
            mut op,
            policy,
            sleeper,
            attempt_timeout,
            mut when,
            mut notify,
        } = self;
        let start = tokio::time::Instant::now();
        let mut delays = policy.build();
        let mut number = 0u32;
        loop {
            number += 1;
            let elapsed = start.elapsed();
            let timeout = match policy.max_elapsed {
                Some(max) => attempt_timeout.min(max.saturating_sub(elapsed)),
                None => attempt_timeout,
            };
            let attempt = Attempt {
                number,
                timeout,
                elapsed,
            };
            let attempt_started = tokio::time::Instant::now();
            let (err, timed_out) = match tokio::time::timeout(timeout, op(attempt)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => {
                    if when(&err) == Decision::Stop {
                        return Err(RetryError {
                            last: Some(err),
                            stopped: true,
                            last_timed_out: false,
                            attempts: number,
                            elapsed: start.elapsed(),
                        });
                    }
                    (Some(err), false)
                }
                Err(_elapsed) => (None, true),
            };
            match delays.next_at(start.elapsed()) {
                Some(delay) => {
                    let delay = if policy.counts_from_attempt_start() {
                        delay.saturating_sub(attempt_started.elapsed())
                    } else {
                        delay
                    };
                    notify(&attempt, err.as_ref(), delay);
                    sleeper.sleep(delay).await;
                }
                None => {
                    return Err(RetryError {
                        last: err,
                        stopped: false,
                        last_timed_out: timed_out,
                        attempts: number,
                        elapsed: start.elapsed(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::backoff::Jitter;
    use std::sync::{Arc, Mutex};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<Duration>>>);

    impl Sleeper for Recorder {
        fn sleep(&self, d: Duration) -> SleepFuture {
            self.0.lock().unwrap().push(d);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn retry_sleeps_exact_sequence() {
        let rec = Recorder::default();
        let policy = Backoff::new()
            .with_base(MS(10))
            .with_jitter(Jitter::None)
            .with_max_attempts(4);
        let mut logged = Vec::new();
        let out: Result<(), _> = (|_: Attempt| async { Err::<(), _>("refused") })
            .retry(&policy)
            .sleep(&rec)
            .attempt_timeout(MS(100))
            .when(|_| Decision::Retry)
            .notify(|a, e, d| logged.push((a.number, e.copied(), d)))
            .run()
            .await;
        let err = out.unwrap_err();
        assert_eq!(err.attempts, 4);
        assert!(!err.stopped);
        assert_eq!(err.last, Some("refused"));
        assert_eq!(*rec.0.lock().unwrap(), [10, 20, 40].map(MS));
        assert_eq!(logged[2], (3, Some("refused"), MS(40)));
    }

    #[tokio::test]
    async fn retry_stops_on_permanent_error_without_sleeping() {
        let rec = Recorder::default();
        let out: Result<(), _> = (|_: Attempt| async { Err::<(), _>("bad password") })
            .retry(&Backoff::new())
            .sleep(&rec)
            .attempt_timeout(MS(100))
            .when(|_| Decision::Stop)
            .run()
            .await;
        let err = out.unwrap_err();
        assert!(err.stopped);
        assert_eq!(err.attempts, 1);
        assert!(rec.0.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_deadline_clamps_attempt_timeout() {
        // Every attempt hangs. Per-attempt timeout 300 ms, deadline 1 s: the attempts must be
        // cut so the loop ends at the deadline, not at 1 s + 300 ms.
        let policy = Backoff::new()
            .with_base(MS(50))
            .with_jitter(Jitter::None)
            .with_max_elapsed(Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        let mut timeouts = Vec::new();
        let out: Result<(), RetryError<()>> = (|a: Attempt| {
            timeouts.push(a.timeout);
            std::future::pending()
        })
        .retry(&policy)
        .attempt_timeout(MS(300))
        .run()
        .await;
        let err = out.unwrap_err();
        assert!(err.last_timed_out);
        assert!(err.last.is_none());
        let took = start.elapsed();
        assert!(took <= Duration::from_secs(1), "{took:?}");
        // 0-300 attempt, 50 delay, 350-650 attempt, 100 delay, 750-1000 (clamped to 250).
        assert_eq!(timeouts, [MS(300), MS(300), MS(250)]);
        assert_eq!(err.attempts, 3);
    }

    #[tokio::test]
    async fn delays_from_the_attempt_start_keep_a_steady_cadence() {
        // Attempts taking 15 ms under a 50 ms cadence: the sleep after each is what is left.
        let policy = Backoff::new()
            .with_base(Duration::from_millis(50))
            .with_cap(Duration::from_millis(50))
            .with_jitter(crate::Jitter::None)
            .with_max_attempts(4)
            .from_attempt_start();
        let mut slept = Vec::new();
        let started = std::time::Instant::now();
        let mut starts = Vec::new();
        let out: Result<(), _> = (|_: Attempt| {
            starts.push(started.elapsed());
            async {
                tokio::time::sleep(Duration::from_millis(15)).await;
                Err::<(), _>("not yet")
            }
        })
        .retry(&policy)
        .sleep(&TokioSleeper)
        .attempt_timeout(Duration::from_secs(1))
        .when(|_: &&str| Decision::Retry)
        .notify(|_, _, delay| slept.push(delay))
        .run()
        .await;
        assert!(out.is_err());
        assert_eq!(slept.len(), 3);
        assert!(
            slept.iter().all(|d| *d <= Duration::from_millis(36)),
            "{slept:?}"
        );
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(50), "{starts:?}");
        }
    }
}
