//! [`PoolConfig`], how a pool behaves (collected by [`super::PoolBuilder`]).

use std::time::Duration;

// Only named in doc links.
#[cfg(doc)]
use super::{Pool, PoolHealth};
use crate::Backoff;
#[cfg(doc)]
use crate::Connector;
use crate::backoff::Jitter;

use crate::retry::RetryPolicy;

/// How a [`Pool`] behaves. Plain data: build one with [`PoolConfig::default`] and change the
/// fields, or use [`PoolBuilder`](super::PoolBuilder).
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
    /// The longest data-carrying message (row, error, notice) a connection accepts from the
    /// server; see [`Connector::with_max_message_len`](crate::Connector::with_max_message_len). Default:
    /// [`DEFAULT_MAX_MESSAGE_LEN`](crate::connect::DEFAULT_MAX_MESSAGE_LEN) (1 GiB - 1).
    pub max_message_len: usize,
    /// A new connection must answer an empty query before it is handed out or counts as a
    /// success for readiness; see [`Connector::with_ready_check`](crate::Connector::with_ready_check). Turn it on where a server
    /// that authenticates but cannot run a query must not look healthy. Default: false.
    pub ready_check: bool,
    /// The most pipelined statements ([`Pool::query`] and the like) in flight at once on one
    /// shared connection. A deeper pipeline needs fewer connections, but a slow statement
    /// delays every statement behind it on its connection. Default: 32.
    pub pipeline_depth: usize,
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
            max_message_len: crate::connect::DEFAULT_MAX_MESSAGE_LEN,
            ready_check: false,
            pipeline_depth: 32,
        }
    }
}
