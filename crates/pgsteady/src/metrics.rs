//! Pool metrics: counters kept with relaxed atomics on the hot path, read as a [`Copy`]
//! snapshot; and the pool's events ([`PoolEvent`]) for an observer.

mod events;
mod evict;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::classify::Reason;
pub(crate) use events::Observer;
pub use events::{CommitResolution, PoolEvent, ResolveRule, ResolveVerdict, ServerFacts};
pub use evict::EvictReason;

/// Upper bounds of the checkout latency histogram buckets; the last bucket is unbounded.
pub const CHECKOUT_BUCKETS: [Duration; 8] = [
    Duration::from_micros(100),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(25),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(10),
];

const N_BUCKETS: usize = CHECKOUT_BUCKETS.len() + 1;

/// Reasons counted per class, for create failures and server-side closes.
const REASONS: [Reason; 18] = [
    Reason::Refused,
    Reason::Reset,
    Reason::TimedOut,
    Reason::Unreachable,
    Reason::Dns,
    Reason::CannotConnectNow,
    Reason::AdminShutdown,
    Reason::CrashShutdown,
    Reason::IdleSessionTimeout,
    Reason::IdleInTransactionTimeout,
    Reason::ConnectionException,
    Reason::TooManyConnections,
    Reason::Closed,
    Reason::InvalidPassword,
    Reason::MissingDatabase,
    Reason::Io,
    Reason::ReadOnlyTransaction,
    Reason::WrongSessionType,
];
const OTHER: usize = REASONS.len();

fn reason_index(reason: Reason) -> usize {
    REASONS.iter().position(|r| *r == reason).unwrap_or(OTHER)
}

/// Counts per [`Reason`]: the common ones have their own slot, the rest share "other".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonCounts {
    counts: [u64; REASONS.len() + 1],
}

impl ReasonCounts {
    /// The count for one reason (reasons without their own slot read as "other").
    pub fn get(&self, reason: Reason) -> u64 {
        self.counts[reason_index(reason)]
    }

    /// The count of reasons without a slot of their own.
    pub fn other(&self) -> u64 {
        self.counts[OTHER]
    }

    /// The sum over every reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-zero counts, named by [`Reason::as_str`] (or `"other"`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.iter_all().filter(|(_, n)| *n > 0)
    }

    /// Every count, zeros included, in a fixed order (for metric series that exist from the
    /// start).
    pub fn iter_all(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS
            .iter()
            .map(|r| r.as_str())
            .chain(std::iter::once("other"))
            .zip(self.counts.iter().copied())
    }
}

#[derive(Debug, Default)]
struct AtomicReasonCounts([AtomicU64; REASONS.len() + 1]);

impl AtomicReasonCounts {
    fn add(&self, reason: Reason) {
        self.0[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    fn load(&self) -> ReasonCounts {
        ReasonCounts {
            counts: std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)),
        }
    }
}

/// The live counters of one pool.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    creates: AtomicU64,
    create_failures: AtomicReasonCounts,
    closed_by: AtomicReasonCounts,
    evictions: [AtomicU64; EvictReason::ALL.len()],
    retries: AtomicU64,
    checkout_failures: AtomicU64,
    checkout_buckets: [AtomicU64; N_BUCKETS],
    checkout_nanos: AtomicU64,
    resolutions: [[AtomicU64; ResolveRule::ALL.len()]; ResolveVerdict::ALL.len()],
    /// Told of every event; set once when the pool is built.
    observer: Option<Observer>,
}

impl Metrics {
    /// Counters at zero, telling `observer` of every event.
    pub(crate) fn with_observer(observer: Option<Observer>) -> Self {
        Metrics {
            observer,
            ..Metrics::default()
        }
    }

    /// Hands an event to the observer, if any (the event is only built when there is one).
    pub(crate) fn tell(&self, event: impl FnOnce() -> PoolEvent) {
        if let Some(observer) = &self.observer {
            observer.tell(&event());
        }
    }

    /// Counts a commit resolution and tells the observer.
    pub(crate) fn resolved(&self, resolution: CommitResolution) {
        self.resolutions[resolution.verdict.index()][resolution.rule.index()]
            .fetch_add(1, Ordering::Relaxed);
        self.tell(|| PoolEvent::CommitResolved(Box::new(resolution)));
    }

    pub(crate) fn created(&self) {
        self.creates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn create_failed(&self, reason: Reason) {
        self.create_failures.add(reason);
    }

    pub(crate) fn evicted(&self, why: EvictReason, closed_by: Option<Reason>) {
        self.evictions[why.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(reason) = closed_by {
            self.closed_by.add(reason);
        }
        self.tell(|| PoolEvent::Evicted {
            reason: why,
            closed_by,
        });
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs on every checkout, from every core: one shared read-modify-write when the
    /// checkout did not wait, two when it did (the count of checkouts is the histogram's
    /// total, not a counter of its own).
    pub(crate) fn checked_out(&self, waited: Duration) {
        let bucket = CHECKOUT_BUCKETS
            .iter()
            .position(|bound| waited <= *bound)
            .unwrap_or(CHECKOUT_BUCKETS.len());
        self.checkout_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if !waited.is_zero() {
            self.checkout_nanos
                .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn checkout_failed(&self) {
        self.checkout_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, status: deadpool::Status) -> PoolMetrics {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let checkout_buckets: [u64; N_BUCKETS] =
            std::array::from_fn(|i| load(&self.checkout_buckets[i]));
        PoolMetrics {
            max_size: status.max_size,
            open: status.size,
            idle: status.available,
            in_use: status.size - status.available,
            waiters: status.waiting,
            creates: load(&self.creates),
            create_failures: self.create_failures.load(),
            closed_by: self.closed_by.load(),
            evictions: std::array::from_fn(|i| load(&self.evictions[i])),
            retries: load(&self.retries),
            checkouts: checkout_buckets.iter().sum(),
            checkout_failures: load(&self.checkout_failures),
            checkout_buckets,
            checkout_seconds_sum: Duration::from_nanos(load(&self.checkout_nanos)).as_secs_f64(),
            // The pool fills it in: the mode is the pool's, not a counter.
            statement_mode: StatementMode::Named,
            // The pool fills these in too: they are its shared connections' state.
            shared_connections: 0,
            pipelined_in_flight: 0,
            commit_resolutions: ResolutionCounts {
                counts: std::array::from_fn(|v| {
                    std::array::from_fn(|r| load(&self.resolutions[v][r]))
                }),
            },
        }
    }
}

/// How a pool's statements run now ([`PoolMetrics::statement_mode`],
/// [`crate::PoolHealth::statement_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementMode {
    /// Named prepared statements (`statement_cache=on`, or `auto` before any sign of a
    /// transaction pooler).
    Named,
    /// Unnamed statements, as configured (`statement_cache=off`).
    Unnamed,
    /// Unnamed statements since `statement_cache=auto` detected a transaction pooler.
    UnnamedAfterPoolerDetected,
}

impl StatementMode {
    /// Every mode, in the order of their values.
    pub const ALL: [StatementMode; 3] = [
        StatementMode::Named,
        StatementMode::Unnamed,
        StatementMode::UnnamedAfterPoolerDetected,
    ];

    /// `named`, `unnamed` or `unnamed_after_pooler_detected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StatementMode::Named => "named",
            StatementMode::Unnamed => "unnamed",
            StatementMode::UnnamedAfterPoolerDetected => "unnamed_after_pooler_detected",
        }
    }
}

/// A snapshot of a pool's state and counters.
///
/// Consistency: each field is read atomically, but the fields are read one after another
/// while the pool keeps working, so they may disagree by the operations that ran in between
/// (e.g. `checkout_seconds_sum` may lag the histogram by one checkout). `checkouts` is
/// always the histogram's total. Counters only grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolMetrics {
    /// The configured maximum number of connections.
    pub max_size: usize,
    /// Connections open now (idle + in use).
    pub open: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// Connections created since the pool started.
    pub creates: u64,
    /// Failed connection attempts, by reason.
    pub create_failures: ReasonCounts,
    /// Connections the server (or the network) closed, by the reason it gave.
    pub closed_by: ReasonCounts,
    /// Connections removed from the pool, indexed like [`EvictReason::ALL`]; see
    /// [`PoolMetrics::evictions`].
    pub evictions: [u64; EvictReason::ALL.len()],
    /// Retries made by [`crate::Pool::run`] and [`crate::Pool::transaction`].
    pub retries: u64,
    /// Successful checkouts (the total of `checkout_buckets`).
    pub checkouts: u64,
    /// Checkouts that failed (timeout, permanent error, closed pool).
    pub checkout_failures: u64,
    /// Checkout latency histogram: counts per bucket of [`CHECKOUT_BUCKETS`] (upper bounds,
    /// inclusive), the last bucket unbounded. Not cumulative.
    pub checkout_buckets: [u64; N_BUCKETS],
    /// Total checkout latency, in seconds.
    pub checkout_seconds_sum: f64,
    /// Named or unnamed statements now (`statement_cache`).
    pub statement_mode: StatementMode,
    /// In-doubt COMMITs settled by [`crate::Pool::transaction`], by verdict and rule.
    pub commit_resolutions: ResolutionCounts,
    /// Connections shared now by pipelined statements ([`crate::Pool::query`] and the
    /// like); each is also counted in `in_use`.
    pub shared_connections: usize,
    /// Pipelined statements in flight now, over all shared connections.
    pub pipelined_in_flight: usize,
}

/// Commit resolutions counted by [`ResolveVerdict`] and [`ResolveRule`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolutionCounts {
    counts: [[u64; ResolveRule::ALL.len()]; ResolveVerdict::ALL.len()],
}

impl ResolutionCounts {
    /// Resolutions with this verdict given by this rule.
    pub fn get(&self, verdict: ResolveVerdict, rule: ResolveRule) -> u64 {
        self.counts[verdict.index()][rule.index()]
    }

    /// Resolutions with this verdict, whatever the rule.
    pub fn by_verdict(&self, verdict: ResolveVerdict) -> u64 {
        self.counts[verdict.index()].iter().sum()
    }

    /// Resolutions given by this rule, whatever the verdict.
    pub fn by_rule(&self, rule: ResolveRule) -> u64 {
        self.counts.iter().map(|row| row[rule.index()]).sum()
    }

    /// Every resolution.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Every (verdict, rule) pair with its count, zeros included, in a fixed order.
    pub fn iter_all(&self) -> impl Iterator<Item = (ResolveVerdict, ResolveRule, u64)> + '_ {
        ResolveVerdict::ALL.into_iter().flat_map(move |v| {
            ResolveRule::ALL
                .into_iter()
                .map(move |r| (v, r, self.get(v, r)))
        })
    }
}

impl PoolMetrics {
    /// Evictions for one reason.
    pub fn evictions(&self, why: EvictReason) -> u64 {
        self.evictions[why.index()]
    }

    /// Evictions for every reason.
    pub fn evictions_total(&self) -> u64 {
        self.evictions.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: deadpool::Status = deadpool::Status {
        max_size: 0,
        size: 0,
        available: 0,
        waiting: 0,
    };

    #[test]
    fn checkout_latencies_land_in_their_bucket() {
        let m = Metrics::default();
        m.checked_out(Duration::from_micros(50));
        m.checked_out(Duration::from_micros(100));
        m.checked_out(Duration::from_millis(3));
        m.checked_out(Duration::from_secs(60));
        m.checked_out(Duration::ZERO);
        let s = m.snapshot(EMPTY);
        assert_eq!(s.checkout_buckets[0], 3, "the bound is inclusive");
        assert_eq!(s.checkout_buckets[2], 1);
        assert_eq!(s.checkout_buckets[N_BUCKETS - 1], 1);
        assert_eq!(s.checkouts, 5, "every checkout counts, waiting or not");
        let sum = Duration::from_micros(150) + Duration::from_millis(3) + Duration::from_secs(60);
        assert!(
            (s.checkout_seconds_sum - sum.as_secs_f64()).abs() < 1e-9,
            "{}",
            s.checkout_seconds_sum
        );
    }

    #[test]
    fn reasons_without_a_slot_count_as_other() {
        let m = Metrics::default();
        m.create_failed(Reason::Refused);
        m.create_failed(Reason::Refused);
        m.create_failed(Reason::Deadlock);
        let s = m.snapshot(EMPTY);
        assert_eq!(s.create_failures.get(Reason::Refused), 2);
        assert_eq!(s.create_failures.other(), 1);
        assert_eq!(s.create_failures.total(), 3);
        assert_eq!(
            s.create_failures.iter().collect::<Vec<_>>(),
            [("refused", 2), ("other", 1)]
        );
    }

    #[test]
    fn evictions_are_counted_with_the_servers_reason() {
        let m = Metrics::default();
        m.evicted(EvictReason::Closed, Some(Reason::AdminShutdown));
        m.evicted(EvictReason::Lifetime, None);
        let s = m.snapshot(EMPTY);
        assert_eq!(s.evictions(EvictReason::Closed), 1);
        assert_eq!(s.evictions(EvictReason::Lifetime), 1);
        assert_eq!(s.evictions_total(), 2);
        assert_eq!(s.closed_by.get(Reason::AdminShutdown), 1);
    }

    #[test]
    fn resolutions_are_counted_by_verdict_and_rule_and_told() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let m = Metrics::with_observer(Some(Observer::new(move |e| {
            sink.lock().unwrap().push(e.clone())
        })));
        let resolution = |verdict, rule| CommitResolution {
            verdict,
            ..CommitResolution::unknown(7, rule)
        };
        m.resolved(resolution(
            ResolveVerdict::Committed,
            ResolveRule::SameServer,
        ));
        m.resolved(resolution(ResolveVerdict::Aborted, ResolveRule::SameServer));
        m.resolved(resolution(
            ResolveVerdict::Aborted,
            ResolveRule::NotReplayed,
        ));
        m.evicted(EvictReason::Closed, Some(Reason::CrashShutdown));
        let c = m.snapshot(EMPTY).commit_resolutions;
        assert_eq!(c.get(ResolveVerdict::Aborted, ResolveRule::SameServer), 1);
        assert_eq!(c.by_verdict(ResolveVerdict::Aborted), 2);
        assert_eq!(c.by_rule(ResolveRule::SameServer), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(
            c.iter_all().count(),
            ResolveVerdict::ALL.len() * ResolveRule::ALL.len()
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[3],
            PoolEvent::Evicted {
                reason: EvictReason::Closed,
                closed_by: Some(Reason::CrashShutdown)
            }
        );
    }
}
