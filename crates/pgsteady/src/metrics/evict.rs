//! Why a connection left the pool: its own file, since both the counters (`metrics.rs`) and
//! the events (`events.rs`) name it.

/// Why a connection left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictReason {
    /// The server ended the session (the reason it gave is in [`Reason`](crate::Reason)); counted
    /// by [`PoolMetrics::closed_by`](crate::PoolMetrics::closed_by).
    Closed,
    /// Validation after a long idle period failed.
    Validation,
    /// Older than `max_lifetime`.
    Lifetime,
    /// Idle longer than `idle_timeout`.
    Idle,
    /// An operation on it timed out, so its state is unknown.
    Timeout,
    /// The pool was closed.
    PoolClosed,
    /// Its server no longer is what the configuration asks for (`target_session_attrs`
    /// read-write or primary): a statement on it, or on another connection to the same
    /// server, failed with 25006, or the server reported `in_hot_standby` /
    /// `default_transaction_read_only` turning on (a promotion elsewhere, a demotion, a
    /// fence).
    WrongServer,
}

impl EvictReason {
    /// Every reason, in index order.
    pub const ALL: [EvictReason; 7] = [
        EvictReason::Closed,
        EvictReason::Validation,
        EvictReason::Lifetime,
        EvictReason::Idle,
        EvictReason::Timeout,
        EvictReason::PoolClosed,
        EvictReason::WrongServer,
    ];

    /// A stable snake_case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            EvictReason::Closed => "closed",
            EvictReason::Validation => "validation",
            EvictReason::Lifetime => "lifetime",
            EvictReason::Idle => "idle",
            EvictReason::Timeout => "timeout",
            EvictReason::PoolClosed => "pool_closed",
            EvictReason::WrongServer => "wrong_server",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}
