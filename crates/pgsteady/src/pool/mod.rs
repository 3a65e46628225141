//! A connection pool that heals: callers wait through short outages instead of failing, one
//! background task reconnects for everyone, dead connections are evicted the moment the
//! server closes them, and checkouts cost no round trip.
//!
//! Built on deadpool's managed pool ([`deadpool::managed::Manager`]): deadpool does the slot
//! accounting and queueing; pgsteady adds the reconnection gate, connection monitoring,
//! validation after idle, lifetimes with jitter, a warm minimum, and draining close.

mod conn;
pub(crate) mod deadline;
mod gate;
mod manager;
mod ping;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{self, PoolError};
use tokio::sync::Notify;

use crate::backoff::Jitter;
use crate::classify::Reason;
use crate::config::Config;
use crate::connect::Connector;
use crate::metrics::{EvictReason, Metrics, PoolMetrics};
use crate::retry::{Budget, RetryPolicy};
use crate::{Backoff, Error, ErrorKind};

pub use conn::PooledConnection;
pub(crate) use gate::Health;

use gate::Gate;
use manager::{Manager, Opener};

/// How a [`Pool`] behaves. Plain data: build one with [`PoolConfig::default`] and change the
/// fields, or use [`PoolBuilder`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The most connections open at once. Default: 10.
    pub max_size: usize,
    /// Connections kept open even when idle, opened in the background at start and after
    /// losses. Default: 0.
    pub min_idle: usize,
    /// How long [`Pool::get`] waits for a connection, including while the server is briefly
    /// unreachable. Default: 30 s.
    pub acquire_timeout: Duration,
    /// The most connection attempts in flight at once while the server is reachable (herd
    /// control); while it is not, there is one. Default: 2.
    pub max_connecting: usize,
    /// A connection idle at least this long is pinged (an empty query) on checkout; younger
    /// ones are handed out without a round trip: the pool learns of server-side closes from
    /// the connection itself, and TCP keepalives catch silent drops. Default: 30 s.
    pub validate_after_idle: Duration,
    /// How long that ping may take before the connection is evicted. Default: 3 s.
    pub validation_timeout: Duration,
    /// Connections are retired after this long, minus a random part of up to
    /// `lifetime_jitter` of it so they do not all expire together. Default: 30 min.
    pub max_lifetime: Option<Duration>,
    /// See `max_lifetime`. Default: 0.1.
    pub lifetime_jitter: f64,
    /// Idle connections beyond `min_idle` are closed after this long. Default: 10 min.
    pub idle_timeout: Option<Duration>,
    /// The reconnection back-off while the server is unreachable and callers wait: one
    /// attempt every 12-60 ms (a fresh random delay each time: 80 % jitter under a 60 ms cap,
    /// 36 ms on average), so attempts never exceed 28 per second even if they took no time,
    /// and a recovered server is noticed 21 ms after it is ready on average (60 ms at most),
    /// however long the outage. The wide jitter matters for a fleet: pools whose attempts all
    /// failed at the same instant (a postmaster exiting resets them together) would otherwise
    /// retry in step, round after round; a random delay over most of the period spreads them
    /// again at the next try. No quicker first retries for the same reason.
    /// Default: `Backoff::new().with_base(60ms).with_cap(60ms).with_jitter(Percent(80))`.
    pub reconnect: Backoff,
    /// The reconnection cadence when nobody waits or the last error was permanent. Default: 1 s.
    pub idle_recheck: Duration,
    /// After the server or the network closed one of the pool's connections (a restart, a
    /// crash, a terminated session, a reset; not a per-session timeout), the next connection
    /// attempt waits a random delay up to this long, shared by the pool's callers: a restart
    /// ends the sessions of every client at once, and a fleet of pools reconnecting the
    /// moment they notice would reach the server as one burst. Costs half of it on average
    /// once per incident (a terminated session is replaced 20 ms later). `ZERO` disables it.
    /// Default: 40 ms.
    pub reconnect_spread: Duration,
    /// When no round trip has succeeded for this long, the maintenance task pings one idle
    /// connection (an empty query bounded by `validation_timeout`) and evicts it if the ping
    /// fails. Keeps [`PoolHealth::last_ok`] fresh while the application is quiet, so readiness
    /// notices a hung server or a dead connection without waiting for traffic. Skipped while
    /// the pool is quiet and holds more than `min_idle` connections, so the extra ones still
    /// reach `idle_timeout`. `None` disables it. Default: 5 s.
    pub idle_ping: Option<Duration>,
    /// Retries of [`Pool::run`] and [`Pool::transaction`]. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(30),
            max_connecting: 2,
            validate_after_idle: Duration::from_secs(30),
            validation_timeout: Duration::from_secs(3),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            lifetime_jitter: 0.1,
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            reconnect: Backoff::new()
                .with_base(Duration::from_millis(60))
                .with_cap(Duration::from_millis(60))
                .with_jitter(Jitter::Percent(80)),
            idle_recheck: Duration::from_secs(1),
            reconnect_spread: Duration::from_millis(40),
            idle_ping: Some(Duration::from_secs(5)),
            retry: RetryPolicy::default(),
        }
    }
}

/// Builds a [`Pool`]; every setter changes one [`PoolConfig`] field.
#[derive(Debug, Clone)]
#[must_use]
pub struct PoolBuilder {
    config: Config,
    pool: PoolConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.pool.$name = value;
                self
            }
        )*
    };
}

impl PoolBuilder {
    setters! {
        /// See [`PoolConfig::max_size`].
        max_size: usize;
        /// See [`PoolConfig::min_idle`].
        min_idle: usize;
        /// See [`PoolConfig::acquire_timeout`].
        acquire_timeout: Duration;
        /// See [`PoolConfig::max_connecting`].
        max_connecting: usize;
        /// See [`PoolConfig::validate_after_idle`].
        validate_after_idle: Duration;
        /// See [`PoolConfig::validation_timeout`].
        validation_timeout: Duration;
        /// See [`PoolConfig::max_lifetime`].
        max_lifetime: Option<Duration>;
        /// See [`PoolConfig::idle_timeout`].
        idle_timeout: Option<Duration>;
        /// See [`PoolConfig::reconnect`].
        reconnect: Backoff;
        /// See [`PoolConfig::reconnect_spread`].
        reconnect_spread: Duration;
        /// See [`PoolConfig::retry`].
        retry: RetryPolicy;
        /// See [`PoolConfig::idle_ping`].
        idle_ping: Option<Duration>;
    }

    /// Replaces the whole pool configuration.
    pub fn pool_config(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Validates the configuration and starts the pool (and its background task). Connections
    /// are opened on demand, and `min_idle` of them in the background right away.
    ///
    /// Must be called within a tokio runtime.
    pub fn build(self) -> Result<Pool, Error> {
        let PoolBuilder { config, pool } = self;
        if pool.max_size == 0 {
            return Err(Error::config("max_size must be at least 1"));
        }
        if pool.min_idle > pool.max_size {
            return Err(Error::config(format!(
                "min_idle ({}) exceeds max_size ({})",
                pool.min_idle, pool.max_size
            )));
        }
        if pool.acquire_timeout.is_zero() {
            return Err(Error::config("acquire_timeout must be more than zero"));
        }
        if !(0.0..=1.0).contains(&pool.lifetime_jitter) {
            return Err(Error::config("lifetime_jitter must be between 0 and 1"));
        }
        let connector = Connector::new(config)?;
        let metrics = Arc::new(Metrics::default());
        let events = Arc::new(Notify::new());
        let live = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::new(
            pool.max_connecting,
            pool.reconnect,
            pool.idle_recheck,
            pool.reconnect_spread,
        ));
        let opener = Arc::new(Opener {
            connector,
            metrics: metrics.clone(),
            max_lifetime: pool.max_lifetime,
            lifetime_jitter: pool.lifetime_jitter,
            live: live.clone(),
            events: events.clone(),
            spread: gate.spread(),
        });
        let manager = Manager {
            gate: gate.clone(),
            opener,
            metrics: metrics.clone(),
            validate_after_idle: pool.validate_after_idle,
            validation_timeout: pool.validation_timeout,
        };
        let deadpool = managed::Pool::builder(manager)
            .max_size(pool.max_size)
            .build()
            .map_err(|e| Error::config(format!("cannot build the pool: {e}")))?;
        let inner = Arc::new(PoolInner {
            deadpool,
            gate,
            metrics,
            events,
            live,
            closing: AtomicBool::new(false),
            filling: AtomicBool::new(false),
            pinging: AtomicBool::new(false),
            last_ok: AtomicU64::new(0),
            epoch: Instant::now(),
            budget: Budget::new(pool.retry.budget),
            deadlines: deadline::Deadlines::start(),
            config: pool,
        });
        tokio::spawn(maintain(Arc::downgrade(&inner), inner.events.clone()));
        inner.events.notify_one();
        Ok(Pool { inner })
    }
}

/// A pool of PostgreSQL connections that heals after outages.
///
/// Cheap to clone; clones share the pool.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), pgsteady::Error> {
/// use pgsteady::{Config, Pool};
///
/// let pool = Pool::builder(Config::resolve(None)?).max_size(16).build()?;
/// // Idempotent work: retried on a fresh connection after a restart, a crash or a
/// // terminated session, within the retry deadline.
/// let n: i64 = pool
///     .run(async move |conn| Ok(conn.query_one("SELECT count(*) FROM users", &[]).await?.get(0)))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<PoolInner>,
}

pub(crate) struct PoolInner {
    deadpool: managed::Pool<Manager>,
    gate: Arc<Gate>,
    pub(crate) metrics: Arc<Metrics>,
    events: Arc<Notify>,
    live: Arc<AtomicUsize>,
    closing: AtomicBool,
    filling: AtomicBool,
    pinging: AtomicBool,
    /// Nanoseconds after `epoch` of the last successful round trip; 0 for never.
    last_ok: AtomicU64,
    epoch: Instant,
    pub(crate) budget: Budget,
    /// Acquire timeouts and `run()` attempt limits.
    pub(crate) deadlines: Arc<deadline::Deadlines>,
    pub(crate) config: PoolConfig,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.inner.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// What the pool knows of the server's reachability, for readiness checks. Reading it costs
/// no round trip: it is kept up to date by real traffic and the pool's own reconnection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolHealth {
    /// The reconnection state.
    pub state: HealthState,
    /// Since when the pool has been in a failing state (`None` when reachable).
    pub failing_since: Option<Instant>,
    /// The reason of the last failed connection attempt while failing.
    pub last_error: Option<Reason>,
    /// The last time a connection was opened, validated, or returned healthy after use.
    pub last_ok: Option<Instant>,
    /// Connections open now.
    pub open: usize,
    /// Whether [`Pool::close`] has been called.
    pub closing: bool,
}

/// The reconnection state in [`PoolHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthState {
    /// Connection attempts succeed.
    Reachable,
    /// Attempts fail with a transient error; the pool keeps trying.
    Unreachable,
    /// Attempts fail with a permanent error (authentication, missing database...).
    Failing,
}

impl Pool {
    /// A builder for a pool connecting with `config`.
    pub fn builder(config: Config) -> PoolBuilder {
        PoolBuilder {
            config,
            pool: PoolConfig::default(),
        }
    }

    /// Checks out a connection, waiting up to [`PoolConfig::acquire_timeout`] (see
    /// [`Pool::get_timeout`]).
    pub async fn get(&self) -> Result<PooledConnection, Error> {
        self.get_timeout(self.inner.config.acquire_timeout).await
    }

    /// Checks out a connection, waiting up to `timeout`: for a free slot, and while the server
    /// is unreachable for the pool to reconnect. Never returns a connection known to be
    /// closed. Fails at once with the server's reason on a permanent error (wrong password,
    /// missing database), and with [`ErrorKind::PoolClosed`] once [`Pool::close`] was called.
    pub async fn get_timeout(&self, timeout: Duration) -> Result<PooledConnection, Error> {
        if self.inner.closing.load(Ordering::Relaxed) {
            return Err(pool_closed());
        }
        // An idle connection ready at once costs no timer and no clock read (its wait is
        // recorded as zero); a waiting one arms the pool's own timer (see `deadline`).
        let get = std::pin::pin!(self.inner.deadpool.get());
        let (result, waited) = self
            .inner
            .deadlines
            .timeout_when_pending(timeout, get)
            .await;
        let result = match result {
            Some(Ok(obj)) => Ok(PooledConnection { obj }),
            Some(Err(PoolError::Backend(e))) => Err(e),
            Some(Err(PoolError::Closed)) => Err(pool_closed()),
            Some(Err(e)) => Err(Error::new(
                ErrorKind::Connect,
                format!("checkout failed: {e}"),
            )),
            None => Err(self.acquire_timed_out(timeout)),
        };
        match &result {
            Ok(_) => self.inner.metrics.checked_out(waited),
            Err(_) => self.inner.metrics.checkout_failed(),
        }
        result
    }

    fn acquire_timed_out(&self, timeout: Duration) -> Error {
        let health = self.inner.gate.health();
        let mut err = Error::new(
            ErrorKind::Timeout,
            format!("no connection within {timeout:?}"),
        )
        .with_reason(Reason::TimedOut);
        if let Some(last) = health.last_error() {
            err = err.with_source(last.clone());
        }
        err
    }

    /// The pool's counters and sizes now.
    pub fn metrics(&self) -> PoolMetrics {
        self.inner.metrics.snapshot(self.inner.deadpool.status())
    }

    /// What the pool knows of the server's reachability; costs no round trip.
    pub fn health(&self) -> PoolHealth {
        let health = self.inner.gate.health();
        let (state, failing_since) = match &health {
            Health::Open => (HealthState::Reachable, None),
            Health::Down { since, .. } => (HealthState::Unreachable, Some(*since)),
            Health::Failed { since, .. } => (HealthState::Failing, Some(*since)),
        };
        PoolHealth {
            state,
            failing_since,
            last_error: health.last_error().and_then(Error::reason),
            last_ok: match self.inner.last_ok.load(Ordering::Relaxed) {
                0 => None,
                nanos => Some(self.inner.epoch + Duration::from_nanos(nanos)),
            },
            open: self.inner.deadpool.status().size,
            closing: self.inner.closing.load(Ordering::Relaxed),
        }
    }

    /// Notes a successful round trip (readiness reads it).
    pub(crate) fn record_ok(&self) {
        let nanos = (self.inner.epoch.elapsed().as_nanos() as u64).max(1);
        // Every successful call lands here: writing the shared word only when it moved by a
        // millisecond keeps busy workers on different cores from fighting over its cache line.
        let last = self.inner.last_ok.load(Ordering::Relaxed);
        if nanos.saturating_sub(last) >= 1_000_000 {
            self.inner.last_ok.store(nanos, Ordering::Relaxed);
        }
    }

    /// How long since the last successful round trip (`None`: never).
    pub(crate) fn since_ok(&self) -> Option<Duration> {
        match self.inner.last_ok.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(
                self.inner
                    .epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(nanos)),
            ),
        }
    }

    /// Closes the pool and drains it: new checkouts fail with [`ErrorKind::PoolClosed`] at
    /// once, connections in use finish their work and are closed when returned, idle ones
    /// are closed now. Returns once every connection is closed, or after `timeout`, whichever
    /// comes first; returns whether everything closed.
    pub async fn close(&self, timeout: Duration) -> bool {
        self.inner.closing.store(true, Ordering::Relaxed);
        self.inner.gate.close();
        self.inner.deadpool.close();
        let deadline = Instant::now() + timeout;
        loop {
            let drained = self.inner.deadpool.status().size == 0
                && self.inner.live.load(Ordering::Relaxed) == 0;
            if drained {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                _ = self.inner.events.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// Whether [`Pool::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.load(Ordering::Relaxed)
    }
}

fn pool_closed() -> Error {
    Error::new(ErrorKind::PoolClosed, "the pool is closed").with_reason(Reason::Closed)
}

/// How often the maintenance task runs when nothing wakes it.
const MAINTENANCE_TICK: Duration = Duration::from_secs(1);

/// The pool's background task: evicts closed, expired and long-idle connections, and keeps
/// `min_idle` open. Woken at once when a connection closes.
async fn maintain(pool: Weak<PoolInner>, events: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = events.notified() => {}
            _ = tokio::time::sleep(MAINTENANCE_TICK) => {}
        }
        let Some(inner) = pool.upgrade() else { return };
        if inner.closing.load(Ordering::Relaxed) {
            return;
        }
        evict(&inner);
        if inner.deadpool.status().size < inner.config.min_idle
            && !inner.filling.swap(true, Ordering::Relaxed)
        {
            tokio::spawn(fill(Pool {
                inner: inner.clone(),
            }));
        }
        ping::maybe_spawn(&inner);
    }
}

fn evict(inner: &PoolInner) {
    let now = Instant::now();
    let status = inner.deadpool.status();
    let mut keep_idle = status.size.saturating_sub(inner.config.min_idle);
    let idle_timeout = inner.config.idle_timeout;
    let metrics = &inner.metrics;
    inner.deadpool.retain(|conn, m| {
        if conn.is_closed() {
            metrics.evicted(
                EvictReason::Closed,
                Some(conn.close_reason().unwrap_or(Reason::Closed)),
            );
            return false;
        }
        if conn.expires.is_some_and(|at| at <= now) {
            metrics.evicted(EvictReason::Lifetime, None);
            return false;
        }
        if idle_timeout.is_some_and(|t| m.last_used() >= t) && keep_idle > 0 {
            keep_idle -= 1;
            metrics.evicted(EvictReason::Idle, None);
            return false;
        }
        true
    });
}

/// Opens connections until `min_idle` are open. Checked-out connections are held until the
/// end, since a checkout prefers an idle connection to opening one. Waits through an outage,
/// which keeps the reconnection going at full speed so readiness recovers promptly.
async fn fill(pool: Pool) {
    let inner = &pool.inner;
    let mut held = Vec::new();
    let mut failed = false;
    while inner.deadpool.status().size < inner.config.min_idle
        && !inner.closing.load(Ordering::Relaxed)
    {
        match pool.get().await {
            Ok(conn) => {
                pool.record_ok();
                held.push(conn);
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    drop(held);
    inner.filling.store(false, Ordering::Relaxed);
    // After a failure the next tick tries again; waking the maintenance task now would spin
    // on a permanent error.
    if !failed {
        inner.events.notify_one();
    }
}
