//! What a pool did, one event at a time, for an observer set with
//! [`PoolBuilder::observer`](crate::PoolBuilder::observer): each connection opened (which
//! server, in which role), each eviction (why), and each in-doubt COMMIT settled (the
//! evidence, the rule applied, the verdict). The counters of [`PoolMetrics`](super::PoolMetrics)
//! say how often; the events say which and why, so a wrong answer can be traced afterwards.

use std::fmt;
use std::sync::Arc;

use super::EvictReason;
use crate::classify::Reason;

/// Something a pool did. Handed to the observer by reference, on the pool's own task, as it
/// happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A connection was opened.
    Connected {
        /// The host that accepted, as `host:port` (or the socket path).
        host: String,
        /// `in_hot_standby` as the server reported it at login (`None`: not reported).
        in_hot_standby: Option<bool>,
        /// `default_transaction_read_only` as reported at login (a fenced server says on).
        read_only: Option<bool>,
    },
    /// A connection left the pool.
    Evicted {
        /// Why.
        reason: EvictReason,
        /// With [`EvictReason::Closed`] and validation failures: the reason the server or
        /// the network gave.
        closed_by: Option<Reason>,
    },
    /// The outcome of a COMMIT lost in flight was settled (or given up on).
    CommitResolved(Box<CommitResolution>),
}

/// An in-doubt COMMIT settled by [`Pool::transaction`](crate::Pool::transaction), with what
/// the verdict rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitResolution {
    /// The verdict.
    pub verdict: ResolveVerdict,
    /// The rule that gave it.
    pub rule: ResolveRule,
    /// The transaction id (as `txid_current()` returns it).
    pub xid: i64,
    /// Where the transaction ran, recorded before COMMIT.
    pub origin: ServerFacts,
    /// What the server asked afterwards said; `None` when no server answered in time.
    pub reached: Option<ServerFacts>,
    /// `txid_status(xid)` on that server, when it was asked (`"in the future"` when it
    /// refused the id as never handed out).
    pub txid_status: Option<String>,
    /// `next_xid` of the latest checkpoint of that server (epoch included).
    pub next_xid: Option<i64>,
    /// Whether that server's recovery replayed past `origin.insert_lsn` (`None`: no replay
    /// position, or not asked).
    pub replayed_past_commit: Option<bool>,
    /// With [`ResolveVerdict::Unknown`]: why, in words.
    pub why: Option<String>,
}

impl CommitResolution {
    /// An unknown outcome given by `rule`, with no evidence yet.
    pub(crate) fn unknown(xid: i64, rule: ResolveRule) -> Self {
        CommitResolution {
            verdict: ResolveVerdict::Unknown,
            rule,
            xid,
            origin: ServerFacts::default(),
            reached: None,
            txid_status: None,
            next_xid: None,
            replayed_past_commit: None,
            why: None,
        }
    }
}

/// What identifies a server incarnation and its place in the WAL history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerFacts {
    /// `pg_postmaster_start_time()` as text: changes with every restart.
    pub incarnation: String,
    /// The system identifier (shared by a primary and its physical standbys).
    pub system: String,
    /// The timeline it writes; `None` in recovery.
    pub timeline: Option<i32>,
    /// The WAL insert position (at origin: just before COMMIT); `None` in recovery or not
    /// asked.
    pub insert_lsn: Option<String>,
}

/// What a commit resolution concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolveVerdict {
    /// It committed: the call succeeds.
    Committed,
    /// It did not commit: the transaction may be replayed.
    Aborted,
    /// It could not be told: the call fails with `OutcomeUnknown`.
    Unknown,
}

impl ResolveVerdict {
    /// Every verdict, in index order.
    pub const ALL: [ResolveVerdict; 3] = [
        ResolveVerdict::Committed,
        ResolveVerdict::Aborted,
        ResolveVerdict::Unknown,
    ];

    /// A stable snake_case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResolveVerdict::Committed => "committed",
            ResolveVerdict::Aborted => "aborted",
            ResolveVerdict::Unknown => "unknown",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// The rule of the resolution table (see `Pool::transaction`'s docs) that gave a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolveRule {
    /// The same server incarnation: `txid_status` is final.
    SameServer,
    /// After a restart, `txid_status` said aborted.
    AbortedAfterRestart,
    /// After a restart, the id is in progress for another session or was never handed out:
    /// ours never reached the WAL.
    NotAssignedAfterRestart,
    /// After a restart, committed, and the id is below the restart checkpoint's `next_xid`:
    /// ours.
    BelowRestartCheckpoint,
    /// After a restart, committed, but the id was handed out again after the restart.
    ReassignedAfterRestart,
    /// After a restart, a later checkpoint hides whether the id was handed out again.
    CheckpointHidesBoundary,
    /// The id is too old for `txid_status`.
    TooOld,
    /// A promoted standby whose recovery ended before our commit record.
    NotReplayed,
    /// A promoted standby that replayed our writes: `txid_status` is about ours.
    Replayed,
    /// The server reached belongs to another cluster, is in recovery, is more than one
    /// timeline ahead, or restarted since its promotion.
    LineageUnknown,
    /// No server answered before the deadline.
    NoAnswer,
}

impl ResolveRule {
    /// Every rule, in index order.
    pub const ALL: [ResolveRule; 11] = [
        ResolveRule::SameServer,
        ResolveRule::AbortedAfterRestart,
        ResolveRule::NotAssignedAfterRestart,
        ResolveRule::BelowRestartCheckpoint,
        ResolveRule::ReassignedAfterRestart,
        ResolveRule::CheckpointHidesBoundary,
        ResolveRule::TooOld,
        ResolveRule::NotReplayed,
        ResolveRule::Replayed,
        ResolveRule::LineageUnknown,
        ResolveRule::NoAnswer,
    ];

    /// A stable snake_case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResolveRule::SameServer => "same_server",
            ResolveRule::AbortedAfterRestart => "aborted_after_restart",
            ResolveRule::NotAssignedAfterRestart => "not_assigned_after_restart",
            ResolveRule::BelowRestartCheckpoint => "below_restart_checkpoint",
            ResolveRule::ReassignedAfterRestart => "reassigned_after_restart",
            ResolveRule::CheckpointHidesBoundary => "checkpoint_hides_boundary",
            ResolveRule::TooOld => "too_old",
            ResolveRule::NotReplayed => "not_replayed",
            ResolveRule::Replayed => "replayed",
            ResolveRule::LineageUnknown => "lineage_unknown",
            ResolveRule::NoAnswer => "no_answer",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// The observer of [`PoolBuilder::observer`](crate::PoolBuilder::observer), cheap to clone.
#[derive(Clone)]
pub(crate) struct Observer(Arc<dyn Fn(&PoolEvent) + Send + Sync>);

impl Observer {
    pub(crate) fn new(f: impl Fn(&PoolEvent) + Send + Sync + 'static) -> Self {
        Observer(Arc::new(f))
    }

    pub(crate) fn tell(&self, event: &PoolEvent) {
        (self.0)(event)
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer(..)")
    }
}
