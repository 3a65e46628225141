//! [`PoolBuilder::build`]: validates a [`PoolConfig`] and wires the pool together (the
//! reconnection gate, the connection opener, deadpool's manager, the shared state) and
//! starts its maintenance task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deadpool::managed;
use tokio::sync::Notify;

use super::budget::Budget;
use super::conn::TypeCache;
use super::gate::Gate;
use super::manager::{Manager, Opener};
use super::{Pool, PoolBuilder, PoolInner, deadline, maintain};
use crate::Error;
use crate::config::{StatementCache, TargetSessionAttrs};
use crate::connect::Connector;
use crate::metrics::Metrics;

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
        if pool.acquire_timeout.is_zero() {
            return Err(Error::config("acquire_timeout must be more than zero"));
        }
        if !(0.0..=1.0).contains(&pool.lifetime_jitter) {
            return Err(Error::config("lifetime_jitter must be between 0 and 1"));
        }
        let target_session_attrs = config.target_session_attrs;
        let unnamed =
            (config.statement_cache == StatementCache::Off).then(|| Arc::new(TypeCache::default()));
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
            unnamed,
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
            config: pool,
            target_session_attrs,
        });
        tokio::spawn(maintain(Arc::downgrade(&inner), inner.events.clone()));
        inner.events.notify_one();
        Ok(Pool { inner })
    }
}
