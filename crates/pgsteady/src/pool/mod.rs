//! A connection pool that heals: callers wait through short outages instead of failing, one
//! background task reconnects for everyone, dead connections are evicted the moment the
//! server closes them, and checkouts cost no round trip.
//!
//! Built on deadpool's managed pool ([`deadpool::managed::Manager`]): deadpool does the slot
//! accounting and queueing; pgsteady adds the reconnection gate, connection monitoring,
//! validation after idle, lifetimes with jitter, a warm minimum, and draining close.

mod budget;
mod build;
mod client;
mod config;
mod conn;
pub(crate) mod deadline;
mod gate;
mod lanes;
mod manager;
mod mode;
mod ping;
mod pooled;
mod resolve;
mod restarts;
mod run;
mod shared;
mod spread;
#[cfg(test)]
mod tests;
mod transaction;
#[cfg(test)]
mod two_crashes;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{self, PoolError};
use tokio::sync::Notify;

use crate::classify::Reason;
use crate::config::{Config, TargetSessionAttrs};
use crate::metrics::{EvictReason, Metrics, PoolMetrics, StatementMode};
#[cfg(doc)]
use crate::retry::RetryPolicy;
use crate::{Error, ErrorKind};
use budget::Budget;

pub use build::PoolBuilder;
pub use client::{CachedStatement, GenericClient, Query, QueryRef, RowStream};
pub use config::PoolConfig;
pub(crate) use gate::GateState;
pub use pooled::PooledConnection;
pub use transaction::{CommitOutcomeUnknown, Transaction, TransactionError};

use gate::Gate;
use manager::Manager;

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
    /// What the connection configuration asks of a server.
    target_session_attrs: TargetSessionAttrs,
    /// Named or unnamed statements (`statement_cache`).
    pub(crate) mode: Arc<mode::Mode>,
    /// The restart checkpoints seen while settling in-doubt commits.
    pub(crate) restarts: restarts::Restarts,
    /// The connections shared by pipelined statements ([`Pool::query`]).
    pub(crate) lanes: lanes::Lanes,
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
    pub state: Reachability,
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
    /// Whether statements run named or unnamed, and whether `statement_cache=auto` detected
    /// a transaction pooler.
    pub statement_mode: StatementMode,
}

/// The reconnection state in [`PoolHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reachability {
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
            observer: None,
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
        let health = self.inner.gate.state();
        let mut err = Error::new(
            ErrorKind::Timeout,
            format!("no connection within {timeout:?}"),
        )
        .with_reason(Reason::TimedOut);
        if let Some(last) = health.last_error() {
            // No host was of the wanted type for the whole wait: say so by type, with the
            // state of each host in the source.
            if last.reason() == Some(Reason::WrongSessionType) {
                err = Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no host matched target_session_attrs={} within {timeout:?}",
                        self.inner.target_session_attrs
                    ),
                )
                .with_reason(Reason::WrongSessionType);
            }
            err = err.with_source(last.clone());
        }
        err
    }

    /// Runs idempotent work, retrying it on a fresh connection when the connection was lost
    /// (restart, crash, terminated session, network failure) or the server asked for a retry
    /// (40001, 40P01, 53300), within [`RetryPolicy::deadline`],
    /// [`RetryPolicy::max_attempts`] and the pool's retry budget. Other errors are returned at
    /// once.
    ///
    /// The closure may run more than once: use it for reads and idempotent writes only. For
    /// other writes, use [`Pool::transaction`].
    ///
    /// Write the closure as `async move |conn| { ... }`: it then owns what it captures, and
    /// its future is `Send`. A plain `async |conn|` closure that borrows variables from its
    /// surroundings across an `.await` makes the call's future fail to prove `Send` (a
    /// compiler limitation with async closures), which `tokio::spawn` requires.
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
    pub async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: AsyncFnMut(&PooledConnection) -> Result<T, Error>,
    {
        run::run(self, work).await
    }

    /// Runs a transaction: `BEGIN`, the closure, `COMMIT`, replaying the whole transaction
    /// when it certainly did not commit and may succeed if replayed: serialization failure
    /// (40001), deadlock (40P01), or a connection lost before COMMIT was sent.
    ///
    /// When the connection is lost while COMMIT is in flight, the outcome is resolved on a
    /// new connection with `txid_status()` (terminating the old backend first if it still
    /// holds the transaction open): committed means success, aborted means replay. After a
    /// crash the server may have handed the transaction id out again; the server's start
    /// time and its restart checkpoint tell whether the status is still about this
    /// transaction. A commit found is acknowledged once the server's synchronous standbys (if
    /// it has any) confirm it, as they would have before COMMIT returned: a commit settled on a
    /// server whose standby lacks it could be lost by the next failover. Only if that cannot
    /// be learned before the deadline is the result
    /// [`TransactionError::OutcomeUnknown`]. A transaction is never replayed when it may
    /// have committed.
    ///
    /// Write the closure as `async move |tx| { ... }`: it then owns what it captures, and
    /// its future is `Send`. A plain `async |tx|` closure that borrows variables from its
    /// surroundings across an `.await` makes the call's future fail to prove `Send` (a
    /// compiler limitation with async closures), which `tokio::spawn` requires.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady::Error> {
    /// use pgsteady::TransactionError;
    ///
    /// let order_id = 7i64;
    /// match pool
    ///     .transaction(async move |tx| {
    ///         tx.execute("INSERT INTO payments (order_id) VALUES ($1)", &[&order_id]).await?;
    ///         tx.execute("UPDATE orders SET paid = true WHERE id = $1", &[&order_id]).await?;
    ///         Ok(())
    ///     })
    ///     .await
    /// {
    ///     Ok(()) => println!("paid"),
    ///     Err(TransactionError::NotCommitted(e)) => eprintln!("not paid: {e}"),
    ///     Err(TransactionError::OutcomeUnknown(u)) => eprintln!("check transaction {}", u.xid),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, TransactionError>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, Error>,
    {
        transaction::run(self, work).await
    }

    /// How the pool's statements run now (`statement_cache`); one atomic load.
    pub fn statement_mode(&self) -> StatementMode {
        self.inner.mode.state()
    }

    /// The pool's counters and sizes now.
    pub fn metrics(&self) -> PoolMetrics {
        let mut metrics = self.inner.metrics.snapshot(self.inner.deadpool.status());
        metrics.statement_mode = self.inner.mode.state();
        (metrics.shared_connections, metrics.pipelined_in_flight) = self.inner.lanes.load();
        metrics
    }

    /// What the pool knows of the server's reachability; costs no round trip.
    pub fn health(&self) -> PoolHealth {
        let health = self.inner.gate.state();
        let (state, failing_since) = match &health {
            GateState::Open => (Reachability::Reachable, None),
            GateState::Down { since, .. } => (Reachability::Unreachable, Some(*since)),
            GateState::Failed { since, .. } => (Reachability::Failing, Some(*since)),
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
            statement_mode: self.inner.mode.state(),
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
        if conn.serves_wrong_server(inner.target_session_attrs) {
            metrics.evicted(EvictReason::WrongServer, None);
            return false;
        }
        if conn.is_retired() || conn.expires.is_some_and(|at| at <= now) {
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
