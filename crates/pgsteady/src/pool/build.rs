//! [`PoolBuilder`]: collects a [`PoolConfig`]; its `build()` validates it, wires the pool
//! together (the reconnection gate, the connection opener, deadpool's manager, the shared
//! state) and starts its maintenance task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed;
use tokio::sync::Notify;

use super::budget::Budget;
use super::gate::Gate;
use super::lanes;
use super::manager::{Manager, Opener};
use super::mode::Mode;
use super::{Pool, PoolConfig, PoolInner, deadline, maintain};
use crate::config::TargetSessionAttrs;
use crate::config::{Config, StatementCache};
use crate::connect::Connector;
use crate::metrics::{Metrics, Observer, PoolEvent};
use crate::retry::RetryPolicy;
use crate::{Backoff, Error};

/// Builds a [`Pool`]; every setter changes one [`PoolConfig`] field.
#[derive(Debug, Clone)]
#[must_use]
pub struct PoolBuilder {
    pub(super) config: Config,
    pub(super) pool: PoolConfig,
    pub(super) observer: Option<Observer>,
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
        /// See [`PoolConfig::max_message_len`].
        max_message_len: usize;
        /// See [`PoolConfig::ready_check`].
        ready_check: bool;
        /// See [`PoolConfig::pipeline_depth`].
        pipeline_depth: usize;
    }

    /// Sets the connection configuration's `statement_cache`: [`StatementCache::Off`] is the
    /// pooler-safe mode for PgBouncer in transaction pooling (`docs/pgbouncer.md`).
    pub fn statement_cache(mut self, mode: StatementCache) -> Self {
        self.config.statement_cache = mode;
        self
    }

    /// Calls `observer` with each [`PoolEvent`]: connections opened (host and role),
    /// evictions (reason), in-doubt COMMITs settled (evidence, rule, verdict). For audit
    /// trails and fault soaks; the same counts are in [`Pool::metrics`] without one.
    ///
    /// It runs on the pool's tasks as the event happens, so it must be quick and must not
    /// block (push to a channel or a buffer). Default: none.
    pub fn observer(mut self, observer: impl Fn(&PoolEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Observer::new(observer));
        self
    }

    /// Replaces the whole pool configuration.
    pub fn pool_config(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }
}

impl PoolBuilder {
    /// Validates the configuration and starts the pool (and its background task). Connections
    /// are opened on demand, and `min_idle` of them in the background right away.
    ///
    /// Must be called within a tokio runtime.
    pub fn build(self) -> Result<Pool, Error> {
        let PoolBuilder {
            config,
            pool,
            observer,
        } = self;
        if pool.max_size == 0 {
            return Err(Error::config("max_size must be at least 1"));
        }
        if pool.min_idle > pool.max_size {
            return Err(Error::config(format!(
                "min_idle ({}) exceeds max_size ({})",
                pool.min_idle, pool.max_size
            )));
        }
        if pool.pipeline_depth == 0 {
            return Err(Error::config("pipeline_depth must be at least 1"));
        }
        if pool.acquire_timeout.is_zero() {
            return Err(Error::config("acquire_timeout must be more than zero"));
        }
        if !(0.0..=1.0).contains(&pool.lifetime_jitter) {
            return Err(Error::config("lifetime_jitter must be between 0 and 1"));
        }
        let target_session_attrs = config.target_session_attrs;
        let mode = Mode::new(config.statement_cache);
        let connector = Connector::new(config)?
            .with_max_message_len(pool.max_message_len)
            .with_ready_check(pool.ready_check);
        let metrics = Arc::new(Metrics::with_observer(observer));
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
            wrong_server: matches!(
                target_session_attrs,
                TargetSessionAttrs::ReadWrite | TargetSessionAttrs::Primary
            )
            .then(|| Mutex::new(HashMap::new())),
            mode: mode.clone(),
            probe_timeout: pool.validation_timeout,
        });
        let manager = Manager {
            gate: gate.clone(),
            opener,
            metrics: metrics.clone(),
            validate_after_idle: pool.validate_after_idle,
            validation_timeout: pool.validation_timeout,
            target_session_attrs,
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
            target_session_attrs,
            mode,
            restarts: Default::default(),
            lanes: lanes::Lanes::new(pool.pipeline_depth, pool.max_size),
            config: pool,
        });
        tokio::spawn(maintain(Arc::downgrade(&inner), inner.events.clone()));
        inner.events.notify_one();
        Ok(Pool { inner })
    }
}
