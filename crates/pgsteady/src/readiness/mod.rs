//! Readiness that tells the truth: a model of whether this process can serve requests that
//! need the database, read in nanoseconds and without a database round trip.
//!
//! [`Readiness`] is fed by a [`Pool`] (its reconnection state, its last successful round
//! trip, its failed connection attempts) and, for code that does not use the pool, by
//! [`Readiness::record_ok`] / [`Readiness::record_error`]. It is kept fresh by real traffic
//! and, when the application is quiet, by the pool itself: connections the server closes are
//! evicted at once, the `min_idle` refill and the single-flight healer reconnect with their
//! back-off while the server is down, and the idle ping ([`crate::PoolConfig::idle_ping`])
//! checks a warm connection when nothing else did. A readiness probe only reads that state,
//! so a thousand probes cost the database nothing.
//!
//! # States
//!
//! | state | HTTP | meaning |
//! |---|---|---|
//! | `starting` | 503 | no successful round trip yet, or a startup step ([`Readiness::starting`]) has not finished |
//! | `ready` | 200 | the database answers and nothing failed in the last [`ReadinessConfig::degraded_for`] |
//! | `degraded` | 200 | serving, but the database is failing since less than [`ReadinessConfig::grace`], or failed recently |
//! | `not_ready` | 503 | unreachable for longer than the grace period, or a permanent error (wrong password, missing database) |
//! | `draining` | 503 | shutting down ([`Readiness::drain`]): the load balancer should stop sending |
//!
//! # The grace period
//!
//! A fast restart of PostgreSQL takes a fraction of a second and the pool's callers wait
//! through it (they see no error), so turning `not_ready` at the first refused connection
//! would take every replica out of rotation for nothing. The grace period
//! ([`ReadinessConfig::grace`], default 1 s) is how long the database may be unreachable
//! before readiness turns `not_ready`; measured from the first failed connection attempt,
//! which with `min_idle >= 1` comes within milliseconds of the server closing its sessions.
//! Readiness reports `ready`/`degraded` again as soon as one connection succeeds (the healer
//! tries every 34-40 ms while the server is down).
//!
//! Liveness must not depend on any of this: restarting processes because the database is
//! down cascades. The HTTP integration's `/livez` never looks at the database.

#[cfg(feature = "axum")]
pub mod http;
#[cfg(feature = "axum")]
mod limits;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod shutdown;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Error;
use crate::classify::Reason;
use crate::metrics::StatementMode;
use crate::pool::{Pool, Reachability};

pub use shutdown::{ShutdownConfig, ShutdownSignal, shutdown_signal};

/// How [`Readiness`] judges. Plain data; see [`ReadinessBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadinessConfig {
    /// How long the database may be unreachable before readiness turns `not_ready`
    /// (`degraded` until then). Permanent errors (wrong password, missing database) turn it
    /// `not_ready` at once. Default: 1 s.
    pub grace: Duration,
    /// How long readiness stays `degraded` (still 200) after the last failure seen, so a
    /// flapping database shows in the probe body. Default: 30 s.
    pub degraded_for: Duration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            grace: Duration::from_secs(1),
            degraded_for: Duration::from_secs(30),
        }
    }
}

/// The state in a [`ReadinessReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadyState {
    /// No successful round trip yet, or a startup step is still running.
    Starting,
    /// The database answers and nothing failed recently.
    Ready,
    /// Serving, but the database is failing (within the grace period) or failed recently.
    Degraded,
    /// Unreachable beyond the grace period, or a permanent error.
    NotReady,
    /// Shutting down.
    Draining,
}

impl ReadyState {
    /// Every state, in declaration order.
    pub const ALL: [ReadyState; 5] = [
        ReadyState::Starting,
        ReadyState::Ready,
        ReadyState::Degraded,
        ReadyState::NotReady,
        ReadyState::Draining,
    ];

    /// A stable snake_case name, for probe bodies, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReadyState::Starting => "starting",
            ReadyState::Ready => "ready",
            ReadyState::Degraded => "degraded",
            ReadyState::NotReady => "not_ready",
            ReadyState::Draining => "draining",
        }
    }

    /// Whether a readiness probe should pass (`ready` or `degraded`).
    pub const fn is_ready(self) -> bool {
        matches!(self, ReadyState::Ready | ReadyState::Degraded)
    }
}

impl fmt::Display for ReadyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Readiness::check`] found. Holds no host name, user or password: safe to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadinessReport {
    /// The state.
    pub state: ReadyState,
    /// Why, as a stable snake_case token: a [`Reason`] (`refused`, `invalid_password`...),
    /// a startup step's name, `draining`, `pool_closed` or `no_connection_yet`. `None` when
    /// `ready`.
    pub reason: Option<&'static str>,
    /// The database error behind `reason`, if any.
    pub error: Option<Reason>,
    /// How long ago a round trip last succeeded (`None`: never).
    pub last_success_age: Option<Duration>,
    /// How long the database has been failing (`None`: it is not).
    pub failing_for: Option<Duration>,
    /// How long ago a failure was last seen (`None`: never).
    pub last_failure_age: Option<Duration>,
    /// How the pool's statements run (`None`: no pool attached); shows when
    /// `statement_cache=auto` detected a transaction pooler.
    pub statement_mode: Option<StatementMode>,
}

impl ReadinessReport {
    /// Whether a readiness probe should pass.
    pub fn is_ready(&self) -> bool {
        self.state.is_ready()
    }

    /// The HTTP status a readiness endpoint answers: 200 or 503.
    pub fn http_status(&self) -> u16 {
        if self.is_ready() { 200 } else { 503 }
    }

    /// A small JSON object: `state`, `ready`, `reason`, `error`, `last_success_age_ms`,
    /// `failing_for_ms`, `last_failure_age_ms`, `statement_mode`. With the `json` feature (on
    /// with `axum`).
    #[cfg(feature = "json")]
    pub fn to_json(&self) -> String {
        let ms = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        serde_json::json!({
            "state": self.state.as_str(),
            "ready": self.is_ready(),
            "reason": self.reason,
            "error": self.error.map(Reason::as_str),
            "last_success_age_ms": ms(self.last_success_age),
            "failing_for_ms": ms(self.failing_for),
            "last_failure_age_ms": ms(self.last_failure_age),
            "statement_mode": self.statement_mode.map(StatementMode::as_str),
        })
        .to_string()
    }
}

/// Builds a [`Readiness`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ReadinessBuilder {
    config: ReadinessConfig,
    pool: Option<Pool>,
}

impl ReadinessBuilder {
    /// See [`ReadinessConfig::grace`].
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// See [`ReadinessConfig::degraded_for`].
    pub fn degraded_for(mut self, window: Duration) -> Self {
        self.config.degraded_for = window;
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ReadinessConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads the pool's state. Give the pool `min_idle >= 1`: a pool without a warm
    /// connection learns of an outage only from traffic.
    pub fn pool(mut self, pool: &Pool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// The readiness model.
    pub fn build(self) -> Readiness {
        let inner = Inner {
            config: self.config,
            pool: OnceLock::new(),
            epoch: Instant::now(),
            draining: watch::channel(false).0,
            draining_flag: AtomicBool::new(false),
            startup: Mutex::new(None),
            manual: Mutex::new(Manual::default()),
            last_failure: AtomicU64::new(0),
            failure_reason: Mutex::new(None),
            seen_create_failures: AtomicU64::new(0),
        };
        let readiness = Readiness {
            inner: Arc::new(inner),
        };
        if let Some(pool) = self.pool {
            readiness.attach(&pool);
        }
        readiness
    }
}

/// The readiness model of one process; cheap to clone, clones share it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), pgsteady::Error> {
/// use pgsteady::{Config, Pool, Readiness};
///
/// let pool = Pool::builder(Config::resolve(None)?).min_idle(1).build()?;
/// let readiness = Readiness::for_pool(&pool);
/// readiness.starting("migrations"); // held in `starting` until `started()`
/// // ... run migrations ...
/// readiness.started();
/// let report = readiness.check(); // no round trip
/// println!("{} {}", report.http_status(), report.to_json());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    config: ReadinessConfig,
    pool: OnceLock<Pool>,
    epoch: Instant,
    draining: watch::Sender<bool>,
    draining_flag: AtomicBool,
    /// A startup step that holds the state in `starting`.
    startup: Mutex<Option<&'static str>>,
    manual: Mutex<Manual>,
    /// Nanoseconds after `epoch` of the last failure seen; 0 for never.
    last_failure: AtomicU64,
    failure_reason: Mutex<Option<Reason>>,
    /// The pool's create-failure count at the last check, to notice outages between checks.
    seen_create_failures: AtomicU64,
}

/// What code that does not use the pool reported.
#[derive(Debug, Default)]
struct Manual {
    last_ok: Option<Instant>,
    failing: Option<Failing>,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    since: Instant,
    reason: Option<Reason>,
    permanent: bool,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("config", &self.inner.config)
            .field("pool", &self.inner.pool.get().is_some())
            .field("report", &self.check())
            .finish()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::builder().build()
    }
}

impl Readiness {
    /// A builder with the default [`ReadinessConfig`].
    pub fn builder() -> ReadinessBuilder {
        ReadinessBuilder::default()
    }

    /// Readiness fed by `pool`, with the default configuration.
    pub fn for_pool(pool: &Pool) -> Readiness {
        Readiness::builder().pool(pool).build()
    }

    /// Readiness fed only by [`record_ok`](Self::record_ok) and
    /// [`record_error`](Self::record_error), with the default configuration.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// The configuration.
    pub fn config(&self) -> ReadinessConfig {
        self.inner.config
    }

    /// The pool it reads, if any.
    pub fn pool(&self) -> Option<&Pool> {
        self.inner.pool.get()
    }

    /// Starts reading `pool` (for a pool created after the readiness model, e.g. once the
    /// database was waited for). Returns `false` if a pool was already attached.
    pub fn attach(&self, pool: &Pool) -> bool {
        // Failures from before are not news.
        let failed = pool.metrics().create_failures.total();
        let attached = self.inner.pool.set(pool.clone()).is_ok();
        if attached {
            self.inner
                .seen_create_failures
                .store(failed, Ordering::Relaxed);
        }
        attached
    }

    /// Holds readiness in `starting`, with `step` as the reason, until
    /// [`started`](Self::started) (e.g. `"migrations"`). Calling it again replaces the step.
    pub fn starting(&self, step: &'static str) {
        *lock(&self.inner.startup) = Some(step);
    }

    /// Ends the startup step set by [`starting`](Self::starting).
    pub fn started(&self) {
        *lock(&self.inner.startup) = None;
    }

    /// Notes a successful round trip made outside the pool.
    pub fn record_ok(&self) {
        let mut manual = lock(&self.inner.manual);
        manual.last_ok = Some(Instant::now());
        manual.failing = None;
    }

    /// Notes a failure made outside the pool: transient errors count against the grace
    /// period, permanent ones (see [`Error::is_transient`]) turn readiness `not_ready` at once.
    /// A later [`record_ok`](Self::record_ok) clears it.
    pub fn record_error(&self, err: &Error) {
        self.record_failure(err.reason(), err.is_transient());
    }

    /// [`record_error`](Self::record_error) for an error of another crate (a migration's,
    /// say): its reason, and whether retrying may help.
    pub fn record_failure(&self, reason: Option<Reason>, transient: bool) {
        let now = Instant::now();
        {
            let mut manual = lock(&self.inner.manual);
            let since = manual.failing.map_or(now, |f| f.since);
            manual.failing = Some(Failing {
                since,
                reason,
                permanent: !transient,
            });
        }
        self.note_failure(now, reason);
    }

    /// Flips readiness to `draining` for good: probes answer 503 from now on, so load
    /// balancers stop sending. Wakes [`draining`](Self::draining).
    pub fn drain(&self) {
        self.inner.draining_flag.store(true, Ordering::Relaxed);
        self.inner.draining.send_replace(true);
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining_flag.load(Ordering::Relaxed)
    }

    /// Resolves once [`drain`](Self::drain) was called.
    pub async fn draining(&self) {
        let mut rx = self.inner.draining.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// The state now. Reads atomics and a few locks held for nanoseconds; never a round trip.
    pub fn check(&self) -> ReadinessReport {
        let now = Instant::now();
        let inner = &*self.inner;
        let mut report = ReadinessReport {
            state: ReadyState::Ready,
            reason: None,
            error: None,
            last_success_age: None,
            failing_for: None,
            last_failure_age: None,
            statement_mode: self.pool().map(Pool::statement_mode),
        };
        let (last_ok, failing) = self.facts(now);
        report.last_success_age = last_ok.map(|t| now.saturating_duration_since(t));
        report.failing_for = failing.map(|f| now.saturating_duration_since(f.since));
        report.last_failure_age = match inner.last_failure.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(now.saturating_duration_since(inner.epoch + Duration::from_nanos(nanos))),
        };
        let last_reason = *lock(&inner.failure_reason);
        let (state, reason, error) = if self.is_draining() {
            (ReadyState::Draining, Some("draining"), None)
        } else if self.pool().is_some_and(Pool::is_closed) {
            (ReadyState::Draining, Some("pool_closed"), None)
        } else if let Some(step) = *lock(&inner.startup) {
            (
                ReadyState::Starting,
                Some(step),
                failing.and_then(|f| f.reason),
            )
        } else if let Some(f) = failing {
            let error = f.reason;
            let token = Some(error.map_or("unreachable", Reason::as_str));
            if f.permanent || now.saturating_duration_since(f.since) >= inner.config.grace {
                (ReadyState::NotReady, token, error)
            } else if last_ok.is_none() {
                (ReadyState::Starting, token, error)
            } else {
                (ReadyState::Degraded, token, error)
            }
        } else if last_ok.is_none() {
            (ReadyState::Starting, Some("no_connection_yet"), None)
        } else if report
            .last_failure_age
            .is_some_and(|age| age < inner.config.degraded_for)
        {
            let token = Some(last_reason.map_or("recent_failure", Reason::as_str));
            (ReadyState::Degraded, token, last_reason)
        } else {
            (ReadyState::Ready, None, None)
        };
        report.state = state;
        report.reason = reason;
        report.error = error;
        report
    }

    /// The latest success and the current failure, merged from the pool and manual records;
    /// notes failures seen.
    fn facts(&self, now: Instant) -> (Option<Instant>, Option<Failing>) {
        let manual = {
            let m = lock(&self.inner.manual);
            (m.last_ok, m.failing)
        };
        let (mut last_ok, mut failing) = manual;
        if let Some(pool) = self.pool() {
            let health = pool.health();
            last_ok = last_ok.max(health.last_ok);
            let pool_failing = health.failing_since.map(|since| Failing {
                since,
                reason: health.last_error,
                permanent: health.state == Reachability::Failing,
            });
            failing = match (failing, pool_failing) {
                (Some(a), Some(b)) => Some(if b.permanent || a.since > b.since {
                    b
                } else {
                    a
                }),
                (a, b) => a.or(b),
            };
            // Failed attempts between two checks (a restart shorter than the probe period)
            // still count as a recent failure.
            let creates_failed = pool.metrics().create_failures.total();
            let seen = self
                .inner
                .seen_create_failures
                .swap(creates_failed, Ordering::Relaxed);
            if creates_failed > seen {
                self.note_failure(now, health.last_error);
            }
        }
        if let Some(f) = failing {
            self.note_failure(now, f.reason);
        }
        (last_ok, failing)
    }

    fn note_failure(&self, now: Instant, reason: Option<Reason>) {
        let nanos = now.saturating_duration_since(self.inner.epoch).as_nanos() as u64;
        self.inner
            .last_failure
            .store(nanos.max(1), Ordering::Relaxed);
        if reason.is_some() {
            *lock(&self.inner.failure_reason) = reason;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
