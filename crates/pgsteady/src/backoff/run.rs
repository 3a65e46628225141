//! Running an operation under a [`Backoff`] policy: the injectable [`Sleeper`] and the
//! deadline-bounded [`retry_operation`] loop.

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

/// What one attempt of [`retry_operation`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The timeout this attempt runs under (the per-attempt timeout clamped to the time left).
    pub timeout: Duration,
    /// Time since the retry loop started.
    pub elapsed: Duration,
}

/// What the caller of [`retry_operation`] decides about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after the next back-off delay.
    Retry,
    /// Stop now and return the error.
    Stop,
}

/// Why [`retry_operation`] gave up.
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

/// Runs one operation (for pgsteady: one connection attempt, in `Connector::connect` and
/// `pgsteady wait`) under `policy`, retrying failures that `decide` allows. Not to be confused
/// with the pool's two loops: `Pool::run` / `Pool::transaction` retrying a caller's work
/// (`pool/run.rs`) and the pool's reconnection (`reconnect_until_open` in `pool/gate.rs`).
///
/// Every attempt runs under `attempt_timeout` clamped to the time left before `max_elapsed`
/// (when the policy has one), and no delay is slept that would end past the deadline. A timed
/// out attempt is retried like a retryable error. `on_retry` is called with the failed attempt,
/// its error (`None` for a timeout) and the delay about to be slept: use it for logging.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use pgsteady::backoff::{retry_operation, Backoff, Decision, Jitter, TokioSleeper};
///
/// let policy = Backoff::new().with_base(Duration::from_millis(1)).with_jitter(Jitter::None);
/// let mut calls = 0;
/// let out = retry_operation(
///     &policy,
///     &TokioSleeper,
///     Duration::from_secs(1),
///     |_attempt| { calls += 1; let n = calls; async move { if n < 3 { Err("not yet") } else { Ok(n) } } },
///     |_err: &&str| Decision::Retry,
///     |_attempt, _err, _delay| {},
/// ).await;
/// assert_eq!(out.unwrap(), 3);
/// # }
/// ```
pub async fn retry_operation<T, E, Fut>(
    policy: &Backoff,
    sleeper: &dyn Sleeper,
    attempt_timeout: Duration,
    mut op: impl FnMut(Attempt) -> Fut,
    mut decide: impl FnMut(&E) -> Decision,
    mut on_retry: impl FnMut(&Attempt, Option<&E>, Duration),
) -> Result<T, RetryError<E>>
where
    Fut: Future<Output = Result<T, E>>,
{
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
                if decide(&err) == Decision::Stop {
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
                on_retry(&attempt, err.as_ref(), delay);
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
        let out: Result<(), _> = retry_operation(
            &policy,
            &rec,
            MS(100),
            |_| async { Err::<(), _>("refused") },
            |_| Decision::Retry,
            |a, e, d| logged.push((a.number, e.copied(), d)),
        )
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
        let out: Result<(), _> = retry_operation(
            &Backoff::new(),
            &rec,
            MS(100),
            |_| async { Err::<(), _>("bad password") },
            |_| Decision::Stop,
            |_, _, _| {},
        )
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
        let out: Result<(), RetryError<()>> = retry_operation(
            &policy,
            &TokioSleeper,
            MS(300),
            |a| {
                timeouts.push(a.timeout);
                std::future::pending()
            },
            |_| Decision::Retry,
            |_, _, _| {},
        )
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
        let out: Result<(), _> = retry_operation(
            &policy,
            &TokioSleeper,
            Duration::from_secs(1),
            |_| {
                starts.push(started.elapsed());
                async {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    Err::<(), _>("not yet")
                }
            },
            |_: &&str| Decision::Retry,
            |_, _, delay| slept.push(delay),
        )
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
