#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod backoff;
pub mod classify;
pub mod config;
pub mod connect;
mod error;
pub mod fsread;
pub mod metrics;
pub mod pool;
pub mod readiness;
pub mod retry;
// Escaping of text from outside: the crate's own messages use it; a diagnostic tool or a
// crate on this one that prints server text gets it with the `probe` feature.
#[cfg(feature = "probe")]
pub mod text;
#[cfg(not(feature = "probe"))]
mod text;
mod tls;

#[cfg(test)]
mod fuzzing;
#[cfg(test)]
mod module_graph;

pub use backoff::{Backoff, BackoffIter, Jitter};
pub use classify::{Action, Classification, FailFastClass, Reason};
pub use config::{
    AuthMethod, ChannelBinding, Config, Host, HostSpec, Password, RequireAuth, SslMode,
    StatementCache, TargetSessionAttrs,
};
pub use connect::{CloseReason, Connected, ConnectionMonitor, Connector, SessionState};
pub use error::{Error, ErrorKind, HostFailure};
pub use metrics::{
    CommitResolution, EvictReason, PoolEvent, PoolMetrics, ResolveRule, ResolveVerdict,
    ServerFacts, StatementMode,
};
pub use pool::{
    CachedStatement, CommitOutcomeUnknown, GenericClient, Pool, PoolBuilder, PoolConfig,
    PoolHealth, PooledConnection, Query, QueryRef, Reachability, RowStream, Transaction,
    TransactionError,
};
pub use readiness::{
    Readiness, ReadinessBuilder, ReadinessConfig, ReadinessReport, ReadyState, ShutdownConfig,
    ShutdownSignal, shutdown_signal,
};
pub use retry::{RetryBudget, RetryPolicy};
pub use tokio_postgres::error::SqlState;

/// `Result<T, pgsteady::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
