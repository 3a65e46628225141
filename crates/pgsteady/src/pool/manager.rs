//! The deadpool [`Manager`](deadpool::managed::Manager): creates connections through the
//! reconnection gate and checks them on checkout without a round trip unless they sat idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{self, RecycleError, RecycleResult};
use rand::RngExt;
use tokio::sync::Notify;

use crate::classify::Action;
use crate::config::TargetSessionAttrs;
use crate::connect::Connector;
use crate::metrics::{EvictReason, Metrics, PoolEvent};
use crate::{Error, Reason};

use super::conn::Conn;
use super::gate::{Gate, Open};
use super::mode::Mode;
use super::spread::Spread;

/// Opens connections with the connector and keeps count of them.
#[derive(Debug)]
pub(crate) struct Opener {
    pub(crate) connector: Connector,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_lifetime: Option<Duration>,
    /// Fraction of `max_lifetime` taken off at random per connection.
    pub(crate) lifetime_jitter: f64,
    /// Connections whose task has not ended yet (idle, in use, or closing).
    pub(crate) live: Arc<AtomicUsize>,
    /// Woken when a connection closes, so the pool evicts it and refills at once.
    pub(crate) events: Arc<Notify>,
    /// Told when the server or the network closes a connection.
    pub(crate) spread: Arc<Spread>,
    /// Per server (`host:port`), the wrong-server mark its connections share (see
    /// `Conn::mark_wrong_server`); `None` when `target_session_attrs` accepts any server.
    pub(crate) wrong_server: Option<Mutex<HashMap<String, Arc<AtomicBool>>>>,
    /// The pool's statement mode, shared by its connections.
    pub(crate) mode: Arc<Mode>,
    /// Bound on the round trip that proves a new connection reaches a server
    /// (`validation_timeout`).
    pub(crate) probe_timeout: Duration,
}

impl Open for Opener {
    async fn open(&self) -> Result<Conn, Error> {
        match self.connect().await {
            Ok(connected) => {
                self.metrics.created();
                self.metrics.tell(|| {
                    let session = connected.monitor.session_state();
                    PoolEvent::Connected {
                        host: connected.host.to_string(),
                        in_hot_standby: session.in_hot_standby,
                        read_only: session.default_transaction_read_only,
                    }
                });
                self.live.fetch_add(1, Ordering::Relaxed);
                let (live, events, spread, monitor) = (
                    self.live.clone(),
                    self.events.clone(),
                    self.spread.clone(),
                    connected.monitor.clone(),
                );
                tokio::spawn(async move {
                    let closed = monitor.closed().await;
                    if closed.reason().is_some_and(Reason::is_incident) {
                        spread.server_closed();
                    }
                    live.fetch_sub(1, Ordering::Relaxed);
                    events.notify_one();
                });
                let wrong_server = self.wrong_server_mark(&connected.host.to_string());
                Ok(Conn::new(
                    connected.client,
                    connected.monitor,
                    self.max_lifetime.map(|max| self.expiry(max)),
                    self.spread.clone(),
                    wrong_server,
                    self.mode.clone(),
                ))
            }
            Err(e) => {
                self.metrics
                    .create_failed(e.reason().unwrap_or(Reason::Other));
                Err(e)
            }
        }
    }

    fn classify(&self, err: &Error) -> Action {
        let class = self.connector.classify(err);
        // No host is of the wanted type right now (during a failover both servers may be in
        // recovery for a few seconds): an outage to wait out within the callers' bounds,
        // not a wrong configuration.
        if class.reason == Reason::WrongSessionType {
            return Action::Retry;
        }
        class.action
    }
}

impl Opener {
    /// One connection attempt. With unnamed statements (`statement_cache=off`, meant for
    /// PgBouncer, or `auto` once it detected a transaction pooler) the login answered by a pooler says nothing about the server behind it, so
    /// an empty query, which the pooler must hand to a server connection, proves it before
    /// the connection counts as open: a server that is down then fails the attempt with the
    /// pooler's error (`pooler_login_failing`...), which the gate waits out and readiness
    /// reports, instead of every checkout succeeding and every statement failing.
    async fn connect(&self) -> Result<crate::Connected, Error> {
        let connected = self.connector.connect_once().await?;
        if !self.mode.unnamed() {
            return Ok(connected);
        }
        match tokio::time::timeout(self.probe_timeout, connected.client.simple_query("")).await {
            Ok(Ok(_)) => Ok(connected),
            Ok(Err(e)) => Err(Error::from_pg(
                e,
                "the connection pooler accepted the login, but no server answered through it",
            )),
            Err(_) => Err(Error::new(
                crate::ErrorKind::Timeout,
                format!(
                    "the connection pooler accepted the login, but no server answered through it \
                     within {:?}",
                    self.probe_timeout
                ),
            )
            .with_reason(Reason::TimedOut)),
        }
    }

    /// The mark shared by connections to `server` opened from now on. A connection that
    /// just connected proved the server is what the configuration asks for (the connect
    /// checked `target_session_attrs`), so a mark already set belongs to older connections:
    /// they keep it, the new ones get a fresh one.
    fn wrong_server_mark(&self, server: &str) -> Option<Arc<AtomicBool>> {
        let marks = self.wrong_server.as_ref()?;
        let mut marks = marks.lock().unwrap_or_else(|e| e.into_inner());
        let mark = marks
            .entry(server.to_owned())
            .or_insert_with(|| Arc::new(AtomicBool::new(false)));
        if mark.load(Ordering::Relaxed) {
            *mark = Arc::new(AtomicBool::new(false));
        }
        Some(mark.clone())
    }

    fn expiry(&self, max: Duration) -> Instant {
        let cut = rand::rng().random_range(0.0..=self.lifetime_jitter.clamp(0.0, 1.0));
        Instant::now() + max.mul_f64(1.0 - cut)
    }
}

/// deadpool's view of the pool.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) gate: Arc<Gate>,
    pub(crate) opener: Arc<Opener>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) validate_after_idle: Duration,
    pub(crate) validation_timeout: Duration,
    /// What the configuration asks of a server (checked on every checkout from what the
    /// server reported, without a round trip).
    pub(crate) target_session_attrs: TargetSessionAttrs,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = Error;

    // The cold paths (connecting, the validation ping) are boxed: deadpool keeps `create`'s
    // and `recycle`'s futures inline in every checkout's future, and the connect future
    // (TCP, TLS, SCRAM, the gate) made `Pool::get()`'s future 9 KB against 2 KB boxed.
    // Every checkout moved and touched it: +1-2 µs of CPU per call at 64 waiting workers.
    async fn create(&self) -> Result<Conn, Error> {
        Box::pin(self.gate.connect(&self.opener)).await
    }

    async fn recycle(&self, conn: &mut Conn, metrics: &managed::Metrics) -> RecycleResult<Error> {
        if conn.is_closed() {
            let reason = conn.close_reason().unwrap_or(Reason::Closed);
            // The checkout may learn of the close before the connection's watcher does: the
            // replacement attempt must be spread all the same.
            if reason.is_incident() {
                self.opener.spread.server_closed();
            }
            self.metrics.evicted(EvictReason::Closed, Some(reason));
            return Err(RecycleError::message("closed"));
        }
        if conn.serves_wrong_server(self.target_session_attrs) {
            self.metrics.evicted(EvictReason::WrongServer, None);
            return Err(RecycleError::message("wrong server"));
        }
        if conn.is_retired() {
            self.metrics.evicted(EvictReason::Lifetime, None);
            return Err(RecycleError::message("retired"));
        }
        // One clock read for both checks (this runs on every checkout).
        let now = Instant::now();
        if conn.expires.is_some_and(|at| at <= now) {
            self.metrics.evicted(EvictReason::Lifetime, None);
            return Err(RecycleError::message("max_lifetime reached"));
        }
        // A connection used recently is known good: the connection task would have seen the
        // server end it. After a long idle period a silent drop is possible, so ping it.
        let idle = now.saturating_duration_since(metrics.recycled.unwrap_or(metrics.created));
        if idle >= self.validate_after_idle {
            let ping = Box::pin(tokio::time::timeout(
                self.validation_timeout,
                conn.client.simple_query(""),
            ));
            if !matches!(ping.await, Ok(Ok(_))) {
                self.metrics
                    .evicted(EvictReason::Validation, conn.close_reason());
                return Err(RecycleError::message("validation failed"));
            }
        }
        Ok(())
    }
}
