//! Exponential back-off with jitter, an injectable sleeper, and a deadline-bounded retry loop.
//!
//! [`Backoff`] is a small `Copy` policy. [`Backoff::build`] turns it into a [`BackoffIter`], an
//! `Iterator<Item = Duration>` that yields the delay before each retry and `None` when the policy
//! says "give up" (attempts or elapsed time exhausted).
//!
//! [`Retry`] (`op.retry(&policy)`, every other knob named) runs an async operation under a
//! policy with a total deadline: every attempt gets a
//! timeout clamped to the time that remains, and no sleep is started that would end past the
//! deadline, so the deadline is never overshot by more than one attempt's timeout (in practice
//! by scheduling noise only).

mod run;

use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

pub use run::{
    Attempt, DEFAULT_ATTEMPT_TIMEOUT, Decision, DefaultRetry, Retry, RetryError, Retryable,
    SleepFuture, Sleeper, TokioSleeper,
};

/// How random noise is added to each exponential delay.
///
/// With `ceiling = min(cap, base * factor^n)` for the `n`-th retry (0-based):
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// `random(0, ceiling)`: the AWS "full jitter". Spreads a herd of clients best.
    #[default]
    Full,
    /// `ceiling / 2 + random(0, ceiling / 2)`: never shorter than half the ceiling.
    Equal,
    /// Exactly `ceiling`: deterministic, for tests and tools that want a fixed cadence.
    None,
    /// `ceiling * (1 - p/100) + random(0, ceiling * p/100)`: a narrow spread around a steady
    /// cadence (`Percent(100)` is [`Jitter::Full`], `Percent(50)` is [`Jitter::Equal`]).
    /// Values above 100 count as 100.
    Percent(u8),
}

/// An exponential back-off policy.
///
/// The delay before the `n`-th retry (0-based) is drawn from `ceiling = min(cap, base *
/// factor^n)` according to [`Jitter`]. The policy gives up after `max_attempts` attempts in
/// total (the first one included) or when `max_elapsed` has passed since the iterator was built.
///
/// # Default
///
/// - `base`: 50 ms
/// - `cap`: 5 s
/// - `factor`: 2.0
/// - `max_attempts`: unlimited (`None`)
/// - `max_elapsed`: unlimited (`None`)
/// - `jitter`: [`Jitter::Full`]
/// - `seed`: `None` (seeded from the operating system)
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pgsteady::{Backoff, Jitter};
///
/// let policy = Backoff::new()
///     .with_base(Duration::from_millis(100))
///     .with_cap(Duration::from_secs(1))
///     .with_jitter(Jitter::None)
///     .with_max_attempts(4);
/// let delays: Vec<_> = policy.iter().collect();
/// // 4 attempts means 3 delays between them.
/// assert_eq!(delays, [100, 200, 400].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    factor: f64,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
    jitter: Jitter,
    seed: Option<u64>,
    from_start: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// The default policy (see [`Backoff`]'s `# Default` list).
    pub const fn new() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
            factor: 2.0,
            max_attempts: None,
            max_elapsed: None,
            jitter: Jitter::Full,
            seed: None,
            from_start: false,
        }
    }

    /// The policy `pgsteady wait` uses against a starting server: a steady cadence of one
    /// attempt every 33.4-34.4 ms, counted from one attempt's start to the next (so the time
    /// an attempt takes does not stretch the cadence), hence never more than 30 attempts in
    /// any second, and the next attempt after the server becomes ready starts within 34.4 ms.
    /// The small jitter keeps waiters started together from staying in lockstep for long.
    ///
    /// A growing delay would be wrong here: the longer a server takes to start, the later a
    /// growing back-off notices it is ready.
    ///
    /// `base` = `cap` = 34.4 ms, [`Jitter::Percent(3)`](Jitter::Percent), delays
    /// [from the attempt's start](Backoff::from_attempt_start), no limits.
    pub const fn polling() -> Self {
        Self::new()
            .with_base(Duration::from_micros(34_400))
            .with_cap(Duration::from_micros(34_400))
            .with_jitter(Jitter::Percent(3))
            .from_attempt_start()
    }

    /// Makes a [`Retry`] count each delay from the start of the attempt that failed, not from
    /// its failure: attempts then start on a steady cadence whatever they take (an attempt
    /// that outlasts the delay is followed at once). Iterating the policy is unaffected.
    #[must_use]
    pub const fn from_attempt_start(mut self) -> Self {
        self.from_start = true;
        self
    }

    /// Whether delays count from the attempt's start (see [`Backoff::from_attempt_start`]).
    pub const fn counts_from_attempt_start(&self) -> bool {
        self.from_start
    }

    /// Sets the first delay's ceiling.
    #[must_use]
    pub const fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the largest delay.
    #[must_use]
    pub const fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets the growth factor (values below 1.0 are treated as 1.0).
    #[must_use]
    pub const fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Gives up after `attempts` attempts in total (the first attempt included).
    #[must_use]
    pub const fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Removes the attempt limit.
    #[must_use]
    pub const fn without_max_attempts(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// Gives up once `elapsed` has passed: no delay is returned that would end past it.
    #[must_use]
    pub const fn with_max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = Some(elapsed);
        self
    }

    /// Removes the elapsed-time limit.
    #[must_use]
    pub const fn without_max_elapsed(mut self) -> Self {
        self.max_elapsed = None;
        self
    }

    /// Sets the jitter mode.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter so the delay sequence is repeatable.
    #[must_use]
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The elapsed-time limit, if any.
    pub const fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The attempt limit, if any.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The largest delay.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// Starts a delay sequence; its elapsed-time clock starts now.
    pub fn build(&self) -> BackoffIter {
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        BackoffIter {
            policy: *self,
            retries: 0,
            rng,
            start: std::time::Instant::now(),
        }
    }

    /// Same as [`build`](Self::build).
    pub fn iter(&self) -> BackoffIter {
        self.build()
    }

    /// The ceiling for the `n`-th retry (0-based): `min(cap, base * factor^n)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = if self.factor.is_finite() && self.factor > 1.0 {
            self.factor
        } else {
            1.0
        };
        let exp = factor.powi(n.min(i32::MAX as u32) as i32);
        let secs = self.base.as_secs_f64() * exp;
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            self.cap
        } else {
            Duration::from_secs_f64(secs).min(self.cap)
        }
    }
}

impl IntoIterator for Backoff {
    type Item = Duration;
    type IntoIter = BackoffIter;

    fn into_iter(self) -> BackoffIter {
        self.build()
    }
}

/// The delay sequence of a [`Backoff`]; `None` means give up.
#[derive(Clone)]
pub struct BackoffIter {
    policy: Backoff,
    retries: u32,
    rng: SmallRng,
    start: std::time::Instant,
}

impl fmt::Debug for BackoffIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffIter")
            .field("policy", &self.policy)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl BackoffIter {
    /// The next delay given the time elapsed so far (measured by the caller's clock), or `None`
    /// when the policy gives up. [`Iterator::next`] calls this with the wall clock since
    /// [`Backoff::build`]; tests and [`Retry`] pass their own clock.
    pub fn next_at(&mut self, elapsed: Duration) -> Option<Duration> {
        if let Some(max) = self.policy.max_attempts {
            // `retries` delays have been handed out, so `retries + 1` attempts were made.
            if self.retries.saturating_add(1) >= max {
                return None;
            }
        }
        let ceiling = self.policy.ceiling(self.retries);
        let delay = match self.policy.jitter {
            Jitter::None => ceiling,
            Jitter::Full => random_up_to(&mut self.rng, ceiling),
            Jitter::Equal => ceiling / 2 + random_up_to(&mut self.rng, ceiling - ceiling / 2),
            Jitter::Percent(p) => {
                let spread = ceiling.mul_f64(f64::from(p.min(100)) / 100.0);
                ceiling - spread + random_up_to(&mut self.rng, spread)
            }
        };
        if let Some(max) = self.policy.max_elapsed
            && elapsed.saturating_add(delay) >= max
        {
            return None;
        }
        self.retries += 1;
        Some(delay)
    }

    /// How many delays this sequence has handed out.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

fn random_up_to(rng: &mut SmallRng, max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..=nanos))
}

impl Iterator for BackoffIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let elapsed = self.start.elapsed();
        self.next_at(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn no_jitter_doubles_up_to_cap() {
        let policy = Backoff::new()
            .with_base(MS(10))
            .with_cap(MS(50))
            .with_jitter(Jitter::None)
            .with_max_attempts(7);
        let got: Vec<_> = policy.iter().collect();
        assert_eq!(got, [10, 20, 40, 50, 50, 50].map(MS));
    }

    #[test]
    fn max_attempts_one_means_no_retry() {
        assert_eq!(Backoff::new().with_max_attempts(1).iter().next(), None);
        assert_eq!(Backoff::new().with_max_attempts(0).iter().next(), None);
    }

    #[test]
    fn seeded_full_jitter_is_repeatable_and_bounded() {
        let policy = Backoff::new()
            .with_base(MS(10))
            .with_cap(MS(80))
            .with_seed(42)
            .with_max_attempts(20);
        let a: Vec<_> = policy.iter().collect();
        let b: Vec<_> = policy.iter().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 19);
        for (n, d) in a.iter().enumerate() {
            assert!(*d <= policy.ceiling(n as u32), "retry {n}: {d:?}");
        }
        // Not all equal to the ceiling: jitter really happens.
        assert!(
            a.iter()
                .enumerate()
                .any(|(n, d)| *d < policy.ceiling(n as u32))
        );
        let other: Vec<_> = policy.with_seed(43).iter().collect();
        assert_ne!(a, other);
    }

    #[test]
    fn equal_jitter_stays_in_upper_half() {
        let policy = Backoff::new()
            .with_jitter(Jitter::Equal)
            .with_seed(7)
            .with_max_attempts(1000);
        for (n, d) in policy.iter().enumerate() {
            let c = policy.ceiling(n as u32);
            assert!(
                d >= c / 2 && d <= c,
                "retry {n}: {d:?} not in [{:?}, {c:?}]",
                c / 2
            );
        }
    }

    #[test]
    fn polling_policy_stays_under_thirty_per_second() {
        // Delays count from each attempt's start, so no two attempts are closer than 33.4 ms:
        // never more than 30 in any second. And a short worst case, so the first attempt after
        // the server is ready comes soon.
        let policy = Backoff::polling();
        assert!(policy.counts_from_attempt_start());
        let delays: Vec<_> = policy.with_seed(1).iter().take(1000).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_micros(33_368) && *d <= Duration::from_micros(34_400)),
            "{:?}",
            delays.iter().min()
        );
    }

    #[test]
    fn percent_jitter_bounds() {
        let policy = Backoff::new()
            .with_base(MS(100))
            .with_cap(MS(100))
            .with_jitter(Jitter::Percent(20))
            .with_seed(3)
            .with_max_attempts(500);
        let delays: Vec<_> = policy.iter().collect();
        assert!(delays.iter().all(|d| *d >= MS(80) && *d <= MS(100)));
        assert!(delays.iter().any(|d| *d < MS(90)) && delays.iter().any(|d| *d > MS(90)));
        let none = Backoff::new()
            .with_jitter(Jitter::Percent(0))
            .with_max_attempts(3);
        assert_eq!(none.iter().collect::<Vec<_>>(), [50, 100].map(MS));
        let over = Backoff::new()
            .with_jitter(Jitter::Percent(255))
            .with_seed(1)
            .with_max_attempts(50);
        assert!(
            over.iter()
                .enumerate()
                .all(|(n, d)| d <= over.ceiling(n as u32))
        );
    }

    #[test]
    fn elapsed_limit_refuses_delays_past_deadline() {
        let mut it = Backoff::new()
            .with_base(MS(100))
            .with_jitter(Jitter::None)
            .with_max_elapsed(MS(1000))
            .build();
        assert_eq!(it.next_at(MS(0)), Some(MS(100)));
        // 850 + 200 ms would end past the deadline.
        assert_eq!(it.next_at(MS(850)), None);
        assert_eq!(it.next_at(MS(700)), Some(MS(200)));
    }

    #[test]
    fn ceiling_survives_huge_exponents() {
        let p = Backoff::new().with_cap(MS(5)).with_factor(10.0);
        assert_eq!(p.ceiling(10_000), MS(5));
        let p = Backoff::new()
            .with_factor(f64::NAN)
            .with_jitter(Jitter::None);
        assert_eq!(p.ceiling(5), p.ceiling(0));
    }
}
