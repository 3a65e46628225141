//! Learning whether a transaction whose COMMIT was lost in flight committed.
//!
//! `txid_status(xid)` answers for the server that assigned `xid`, as long as that server did
//! not crash in between. A crash breaks it: a transaction id whose records never reached the
//! WAL is handed out again after crash recovery, so a few milliseconds after a restart
//! `txid_status` may describe another session's transaction. Its "committed" would then
//! acknowledge a write that is not in the database. (Measured: 4 of 2,481 acknowledged
//! writes lost in `acknowledged_writes_survive_restarts_and_crashes_exactly_once` before
//! this check.)
//!
//! So the server's incarnation (`pg_postmaster_start_time()`) is recorded with the
//! transaction id before COMMIT. On the same incarnation the status is final or will become
//! so. After a restart the transaction's backend is gone, and:
//! - "aborted", "in progress" (another session holds the id now) and "in the future" (the
//!   id was never written) all mean it did not commit here;
//! - "committed" is ours if the id was assigned before the restart, that is below the
//!   `next_xid` of the checkpoint every restart writes before accepting connections (the
//!   shutdown checkpoint, or the end-of-recovery one after a crash); that checkpoint is
//!   recognised by its time, at most [`RESTART_CHECKPOINT_WITHIN`] after the postmaster
//!   started. At or above it, the id was handed out after the restart, so ours never
//!   committed, provided the checkpoint was written by this server after it started (crash
//!   recovery's): a promoted standby's latest checkpoint is an older restartpoint, which
//!   proves nothing of the kind.
//! - Anything else (a later checkpoint hides the boundary: a timed one, or a `CHECKPOINT`
//!   soon after a long recovery) leaves the outcome unknown rather than guessed.
//!
//! The boundary that counts is the first restart's: after two crashes the server reached
//! shows only the second restart's checkpoint, above the ids the incarnation in between
//! handed out again. So the pool remembers the restart checkpoints it saw
//! ([`Restarts`]), and when it saw an incarnation between the transaction's and the one
//! reached, the earliest one's `next_xid` decides instead: below it, committed is ours; at
//! or above it, ours was lost in the crash (its records never reached the WAL) and another
//! session's commit holds the id. An incarnation in between that the pool never reached
//! (only other clients wrote there) cannot be seen from here.
//!
//! # Across a failover
//!
//! The server reached next may be a promoted standby: another postmaster, the same system
//! identifier, the next timeline. Its transaction ids continue from what it replayed, so an id
//! the old primary handed out but whose records never reached the standby can be handed out
//! again there: `txid_status` may then describe another session's transaction. So before
//! COMMIT the system identifier, the timeline and the WAL insert position `L0` (our commit
//! record is written after it) are recorded too, and on a server of the same system on the
//! next timeline, `pg_last_wal_replay_lsn()` (where its recovery ended, kept after promotion)
//! decides:
//! - recovery ended before `L0`: our commit record never reached it. Not committed there,
//!   whatever `txid_status` says of the id (the forced collision test shows it saying
//!   "committed").
//! - recovery ended at or after `L0`: it replayed our transaction's writes, which carry its id,
//!   so the id was not handed out again and `txid_status` speaks of ours: committed means
//!   committed; anything else means it did not commit (a promoted standby aborts what was in
//!   flight).
//! - a server restarted since its promotion (no replay position), a timeline more than one
//!   ahead, another system identifier, or a transaction recorded on a standby: unknown.
//!
//! # Durable, not only committed
//!
//! "committed" on the server reached is not yet what a COMMIT acknowledges under
//! synchronous replication: the server marks a transaction committed, then waits for its
//! synchronous standbys, and only then answers. A COMMIT in doubt may be committed here and
//! not on the standby (its backend still waiting; or the server crashed while waiting and
//! replayed its own commit in crash recovery, then was promoted again, as Patroni does).
//! A failover to that standby loses it: seen in a soak on Patroni, 5 acknowledged writes
//! lost in 79 leader postmaster kills, each settled "committed" by the replayed rule. So
//! before a committed verdict is acknowledged, `Pool::transaction` commits a transaction of
//! its own on the same server, whose COMMIT waits for the same standbys; WAL is confirmed in
//! order, so ours confirmed means theirs is.
//!
//! This settles every in-doubt COMMIT on a promoted standby. It cannot bring back an
//! acknowledged commit that an asynchronous standby never received: that loss is the
//! database's promise under asynchronous replication, not something a client can undo.

use tokio_postgres::error::SqlState;

use super::restarts::{Restart, Restarts};
use crate::metrics::{CommitResolution, ResolveRule, ResolveVerdict, ServerFacts};
use crate::pool::PooledConnection;
use crate::{Error, ErrorKind};

/// How long after the postmaster's start the restart checkpoint may be dated. Crash recovery
/// that takes longer leaves the outcome unknown; a checkpoint requested this soon after a
/// restart would be mistaken for it.
pub(super) const RESTART_CHECKPOINT_WITHIN: &str = "5 seconds";

/// Where a transaction ran, recorded before its COMMIT.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    /// Its backend's pid.
    pub(super) pid: i32,
    /// When the server's incarnation began, as text (see [`INCARNATION`]).
    pub(super) started: String,
    /// The same, in microseconds since the Unix epoch (to order incarnations).
    pub(super) started_us: i64,
    /// The cluster's system identifier (shared by a primary and its physical standbys).
    pub(super) system: String,
    /// The timeline the server was writing; `None` on a server in recovery.
    pub(super) timeline: Option<i32>,
    /// The WAL insert position just before COMMIT, as text (`16/B374D848`); `None` on a
    /// server in recovery.
    pub(super) insert_lsn: Option<String>,
}

/// When the server's current incarnation began: the postmaster's start, or its last crash
/// and restart cycle. A backend that dies by a signal makes the postmaster end every
/// session and run crash recovery without restarting itself (`restart_after_crash`, on by
/// default), so `pg_postmaster_start_time()` alone does not change, yet WAL that was not
/// flushed is gone and transaction ids are handed out again: seen in a soak, an in-doubt
/// COMMIT settled "committed" by another session's reuse of its id. Crash recovery resets
/// the shared statistics, which dates `pg_stat_bgwriter.stats_reset` to it (an
/// administrator's `pg_stat_reset_shared('bgwriter')` does too: then the restart rules
/// apply, which answer unknown rather than guess when no restart checkpoint is found).
macro_rules! incarnation {
    () => {
        "greatest(pg_postmaster_start_time(), (SELECT stats_reset FROM pg_stat_bgwriter))"
    };
}
pub(super) const INCARNATION: &str = incarnation!();

/// The query that records an [`Origin`] and the transaction id, run just before COMMIT:
/// pid, xid, start time, system identifier, timeline, WAL insert position, start time in
/// microseconds.
pub(super) const ORIGIN_SQL: &str = concat!(
    "SELECT pg_backend_pid(), txid_current_if_assigned(), ",
    incarnation!(),
    "::text, s.system_identifier::text, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE \
       ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int END, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END, \
     (extract(epoch FROM ",
    incarnation!(),
    ") * 1000000)::int8 \
     FROM pg_control_system() s"
);

/// Column `i` of a row of one of pgsteady's own queries. A server that answers with fewer
/// columns or other types (a proxy, or not PostgreSQL) is a protocol violation, not a panic.
pub(super) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, Error> {
    row.try_get(i).map_err(|e| {
        Error::new(
            ErrorKind::Connect,
            format!(
                "protocol violation: the server's answer to pgsteady's own query has no usable \
                 column {i}"
            ),
        )
        .with_reason(crate::Reason::Other)
        .with_source(e)
    })
}

impl Origin {
    /// Reads an origin from a row of [`ORIGIN_SQL`].
    pub(super) fn from_row(row: &tokio_postgres::Row) -> Result<Origin, Error> {
        Ok(Origin {
            pid: column(row, 0)?,
            started: column(row, 2)?,
            started_us: column(row, 6)?,
            system: column(row, 3)?,
            timeline: column(row, 4)?,
            insert_lsn: column(row, 5)?,
        })
    }
}

/// What the server says now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Committed,
    Aborted,
    /// Same server, transaction still open: its backend never finished the COMMIT. Ending
    /// that backend makes the answer final.
    InProgress,
    /// Cannot be told (the reason says why).
    Unknown(String),
}

/// A verdict with the rule that gave it and the facts it rests on (for the pool's events).
#[derive(Debug)]
pub(super) struct Found {
    pub(super) verdict: Verdict,
    pub(super) rule: ResolveRule,
    pub(super) reached: ServerFacts,
    pub(super) txid_status: Option<String>,
    pub(super) next_xid: Option<i64>,
    pub(super) replayed_past_commit: Option<bool>,
}

impl Found {
    /// The resolution for the pool's events and counters; `None` while still in progress.
    pub(super) fn resolution(&self, xid: i64, origin: &Origin) -> Option<CommitResolution> {
        let (verdict, why) = match &self.verdict {
            Verdict::Committed => (ResolveVerdict::Committed, None),
            Verdict::Aborted => (ResolveVerdict::Aborted, None),
            Verdict::InProgress => return None,
            Verdict::Unknown(why) => (ResolveVerdict::Unknown, Some(why.clone())),
        };
        let mut r = origin.unanswered(xid, why);
        r.verdict = verdict;
        r.rule = self.rule;
        r.reached = Some(self.reached.clone());
        r.txid_status = self.txid_status.clone();
        r.next_xid = self.next_xid;
        r.replayed_past_commit = self.replayed_past_commit;
        Some(r)
    }
}

impl Origin {
    /// What the origin says on its own: the resolution when no server answered in time.
    pub(super) fn unanswered(&self, xid: i64, why: Option<String>) -> CommitResolution {
        let mut r = CommitResolution::unknown(xid, ResolveRule::NoAnswer);
        r.origin.incarnation = self.started.clone();
        r.origin.system = self.system.clone();
        r.origin.timeline = self.timeline;
        r.origin.insert_lsn = self.insert_lsn.clone();
        r.why = why;
        r
    }
}

/// What the server knows now of transaction `xid` that ran at `origin`; `restarts` is the
/// pool's memory of restart checkpoints, which this adds to.
pub(super) async fn verdict(
    conn: &PooledConnection,
    xid: i64,
    origin: &Origin,
    restarts: &Restarts,
) -> Result<Found, Error> {
    let row = conn
        .query_one(
            &format!(
                "SELECT {INCARNATION}::text, c.next_xid, \
                 c.checkpoint_time <= {INCARNATION} + interval '{RESTART_CHECKPOINT_WITHIN}', \
                 c.checkpoint_time >= date_trunc('second', {INCARNATION}), \
                 s.system_identifier::text, \
                 CASE WHEN pg_is_in_recovery() THEN NULL ELSE \
                   ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int END, \
                 pg_last_wal_replay_lsn() >= $1::text::pg_lsn, \
                 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END, \
                 (extract(epoch FROM {INCARNATION}) * 1000000)::int8 \
                 FROM pg_control_checkpoint() c, pg_control_system() s"
            ),
            &[&origin.insert_lsn],
        )
        .await?;
    let started: String = column(&row, 0)?;
    let same_server = started == origin.started;
    let here = Lineage {
        system: column(&row, 4)?,
        timeline: column(&row, 5)?,
        replayed_past_commit: column(&row, 6)?,
    };
    let next_xid = parse_full_xid(&column::<String>(&row, 1)?);
    let mut found = Found {
        verdict: Verdict::InProgress,
        rule: ResolveRule::SameServer,
        reached: ServerFacts::default(),
        txid_status: None,
        next_xid,
        replayed_past_commit: here.replayed_past_commit,
    };
    found.reached.incarnation = started;
    found.reached.system = here.system.clone();
    found.reached.timeline = here.timeline;
    found.reached.insert_lsn = column(&row, 7)?;
    let mut asked = None;
    if let Some((verdict, rule)) = across_failover(xid, origin, &here, || async {
        let status = match conn.query_one("SELECT txid_status($1)", &[&xid]).await {
            Ok(row) => column::<Option<String>>(&row, 0)?,
            // "in the future": never handed out here, so not committed here.
            Err(e) if e.code() == Some(&SqlState::INVALID_PARAMETER_VALUE) => {
                Some("aborted".to_owned())
            }
            Err(e) => return Err(Error::from(e)),
        };
        asked = Some(status.clone());
        Ok(status)
    })
    .await?
    {
        found.verdict = verdict;
        found.rule = rule;
        found.txid_status = asked.flatten();
        return Ok(found);
    }
    let checkpoint = Checkpoint {
        next_xid,
        restart: column(&row, 2)?,
        after_start: column(&row, 3)?,
    };
    let started_us: i64 = column(&row, 8)?;
    if let (true, Some(timeline), Some(next_xid)) = (checkpoint.restart, here.timeline, next_xid) {
        restarts.record(Restart {
            system: here.system.clone(),
            timeline,
            started_us,
            next_xid,
        });
    }
    // The first restart after the transaction's incarnation, when the pool saw it.
    let first_restart = match (same_server, origin.timeline) {
        (false, Some(timeline)) => {
            restarts.first_between(&here.system, timeline, origin.started_us, started_us)
        }
        _ => None,
    };
    let status = match conn.query_one("SELECT txid_status($1)", &[&xid]).await {
        Ok(row) => column::<Option<String>>(&row, 0)?,
        // "transaction ID ... is in the future": never written before the restart.
        Err(e) if !same_server && e.code() == Some(&SqlState::INVALID_PARAMETER_VALUE) => {
            found.verdict = Verdict::Aborted;
            found.rule = ResolveRule::NotAssignedAfterRestart;
            found.txid_status = Some("in the future".to_owned());
            return Ok(found);
        }
        Err(e) => return Err(e.into()),
    };
    (found.verdict, found.rule) = match (first_restart, status.as_deref()) {
        (Some(first), Some("committed")) => {
            found.next_xid = Some(first);
            decide_first_restart(xid, first)
        }
        _ => decide(xid, same_server, status.as_deref(), &checkpoint),
    };
    found.txid_status = status;
    Ok(found)
}

/// What the server reached after the failure says of its lineage.
#[derive(Debug, Clone)]
struct Lineage {
    system: String,
    /// `None` in recovery.
    timeline: Option<i32>,
    /// `pg_last_wal_replay_lsn() >= L0`: `None` when it has no replay position (never in
    /// recovery since it started) or `L0` was not recorded.
    replayed_past_commit: Option<bool>,
}

/// The verdict when the transaction ran on another timeline or system than the server
/// reached now (see the module docs); `None` when it ran on this timeline, where the
/// same-timeline rules apply. `status` asks `txid_status` (only when the answer may rest on
/// it).
async fn across_failover<F, Fut>(
    xid: i64,
    origin: &Origin,
    here: &Lineage,
    status: F,
) -> Result<Option<(Verdict, ResolveRule)>, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<String>, Error>>,
{
    Ok(match decide_lineage(origin, here) {
        Relation::SameTimeline => None,
        Relation::Unknown(why) => Some((Verdict::Unknown(why), ResolveRule::LineageUnknown)),
        Relation::NotReplayed => Some((Verdict::Aborted, ResolveRule::NotReplayed)),
        Relation::Replayed => Some(match status().await?.as_deref() {
            Some("committed") => (Verdict::Committed, ResolveRule::Replayed),
            Some(_) => (Verdict::Aborted, ResolveRule::Replayed),
            None => (
                Verdict::Unknown(format!("transaction {xid} is too old for txid_status()")),
                ResolveRule::TooOld,
            ),
        }),
    })
}

/// How the server reached now relates to the one the transaction ran on.
#[derive(Debug, PartialEq, Eq)]
enum Relation {
    /// The same timeline of the same system: the same-timeline rules apply.
    SameTimeline,
    /// The next timeline, whose recovery ended before our commit record could be.
    NotReplayed,
    /// The next timeline, whose recovery replayed our writes: `txid_status` is about ours.
    Replayed,
    /// Nothing provable.
    Unknown(String),
}

fn decide_lineage(origin: &Origin, here: &Lineage) -> Relation {
    if origin.system != here.system {
        return Relation::Unknown(format!(
            "the server reached now belongs to another cluster (system identifier {} , the \
             transaction ran on {})",
            here.system, origin.system
        ));
    }
    let (Some(then), Some(now)) = (origin.timeline, here.timeline) else {
        return if origin.timeline.is_none() {
            // Ran on a server in recovery: it could not have written anything.
            Relation::SameTimeline
        } else {
            Relation::Unknown("the server reached now is in recovery".to_owned())
        };
    };
    if then == now {
        return Relation::SameTimeline;
    }
    if now != then + 1 {
        return Relation::Unknown(format!(
            "the transaction ran on timeline {then} and the server reached now is on timeline \
             {now}: more than one promotion in between"
        ));
    }
    match here.replayed_past_commit {
        Some(false) => Relation::NotReplayed,
        Some(true) => Relation::Replayed,
        None => Relation::Unknown(format!(
            "the server reached now was promoted to timeline {now} and restarted since: where \
             its recovery ended is no longer known"
        )),
    }
}

/// The latest checkpoint, as far as the decision needs it.
#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    next_xid: Option<i64>,
    /// Dated at most [`RESTART_CHECKPOINT_WITHIN`] after the postmaster started.
    restart: bool,
    /// Dated after the postmaster started (written by this server, not before it).
    after_start: bool,
}

/// The decision table (see the module docs), with the rule that applied.
fn decide(
    xid: i64,
    same_server: bool,
    status: Option<&str>,
    checkpoint: &Checkpoint,
) -> (Verdict, ResolveRule) {
    match (same_server, status) {
        (_, None) => (
            Verdict::Unknown(format!("transaction {xid} is too old for txid_status()")),
            ResolveRule::TooOld,
        ),
        (true, Some("aborted")) => (Verdict::Aborted, ResolveRule::SameServer),
        (false, Some("aborted")) => (Verdict::Aborted, ResolveRule::AbortedAfterRestart),
        (true, Some("committed")) => (Verdict::Committed, ResolveRule::SameServer),
        (true, Some(_)) => (Verdict::InProgress, ResolveRule::SameServer),
        (false, Some("committed")) => match checkpoint.next_xid {
            Some(next) if checkpoint.restart && xid < next => {
                (Verdict::Committed, ResolveRule::BelowRestartCheckpoint)
            }
            Some(next) if checkpoint.restart && checkpoint.after_start && xid >= next => {
                (Verdict::Aborted, ResolveRule::ReassignedAfterRestart)
            }
            _ => (
                Verdict::Unknown(format!(
                    "the server restarted and a later checkpoint hides whether transaction id \
                     {xid} was handed out again"
                )),
                ResolveRule::CheckpointHidesBoundary,
            ),
        },
        // Another session's transaction holds the id now: ours never reached the WAL.
        (false, Some(_)) => (Verdict::Aborted, ResolveRule::NotAssignedAfterRestart),
    }
}

/// "committed" after restarts, decided by the `next_xid` of the first restart after the
/// transaction's incarnation (see the module docs).
fn decide_first_restart(xid: i64, first_next_xid: i64) -> (Verdict, ResolveRule) {
    if xid < first_next_xid {
        (Verdict::Committed, ResolveRule::BelowRestartCheckpoint)
    } else {
        (Verdict::Aborted, ResolveRule::ReassignedAfterRestart)
    }
}

/// `next_xid` of `pg_control_checkpoint()` ("epoch:xid") as a 64-bit id like
/// `txid_current()`.
fn parse_full_xid(text: &str) -> Option<i64> {
    let (epoch, xid) = text.split_once(':')?;
    Some((epoch.parse::<i64>().ok()? << 32) | xid.parse::<i64>().ok()?)
}

/// The error for an outcome that stays unknown.
pub(super) fn unknown(why: String) -> Error {
    Error::new(ErrorKind::CommitOutcomeUnknown, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_xid_carries_the_epoch() {
        assert_eq!(parse_full_xid("0:724"), Some(724));
        assert_eq!(parse_full_xid("2:5"), Some((2 << 32) | 5));
        assert_eq!(parse_full_xid("724"), None);
    }

    const RECOVERY: Checkpoint = Checkpoint {
        next_xid: Some(10),
        restart: true,
        after_start: true,
    };
    const SHUTDOWN: Checkpoint = Checkpoint {
        after_start: false,
        ..RECOVERY
    };
    const LATER: Checkpoint = Checkpoint {
        restart: false,
        ..RECOVERY
    };

    #[test]
    fn on_the_same_server_the_status_is_believed() {
        assert_eq!(
            decide(7, true, Some("committed"), &LATER).0,
            Verdict::Committed
        );
        assert_eq!(decide(7, true, Some("aborted"), &LATER).0, Verdict::Aborted);
        assert_eq!(
            decide(7, true, Some("in progress"), &LATER).0,
            Verdict::InProgress
        );
    }

    #[test]
    fn after_a_restart_committed_counts_only_below_the_restart_checkpoint() {
        // Assigned before the restart: the commit is ours.
        assert_eq!(
            decide(7, false, Some("committed"), &RECOVERY).0,
            Verdict::Committed
        );
        // Handed out again after the restart: another session's commit, ours never was.
        assert_eq!(
            decide(12, false, Some("committed"), &RECOVERY).0,
            Verdict::Aborted
        );
        // A checkpoint from before this server started (a promoted standby's restartpoint)
        // does not prove the id was handed out again.
        assert!(matches!(
            decide(12, false, Some("committed"), &SHUTDOWN).0,
            Verdict::Unknown(_)
        ));
        assert_eq!(
            decide(7, false, Some("committed"), &SHUTDOWN).0,
            Verdict::Committed
        );
        // A later checkpoint hides the boundary.
        assert!(matches!(
            decide(7, false, Some("committed"), &LATER).0,
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn after_two_crashes_the_first_restart_decides() {
        // Seen in a soak: id 10050 lost in a crash, the next incarnation (next_xid 10049)
        // handed it to another session, which committed; after another crash the server's
        // restart checkpoint says 10132. Ours did not commit.
        assert_eq!(
            decide_first_restart(10050, 10049),
            (Verdict::Aborted, ResolveRule::ReassignedAfterRestart)
        );
        assert_eq!(
            decide_first_restart(10048, 10049),
            (Verdict::Committed, ResolveRule::BelowRestartCheckpoint)
        );
    }

    #[test]
    fn after_a_restart_in_progress_means_someone_else_holds_the_id() {
        assert_eq!(
            decide(12, false, Some("in progress"), &LATER).0,
            Verdict::Aborted
        );
        assert_eq!(
            decide(7, false, Some("aborted"), &LATER).0,
            Verdict::Aborted
        );
        assert!(matches!(
            decide(7, false, None, &RECOVERY).0,
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn each_verdict_names_its_rule() {
        use ResolveRule::*;
        assert_eq!(decide(7, true, Some("committed"), &LATER).1, SameServer);
        assert_eq!(
            decide(7, false, Some("aborted"), &LATER).1,
            AbortedAfterRestart
        );
        assert_eq!(
            decide(7, false, Some("in progress"), &LATER).1,
            NotAssignedAfterRestart
        );
        assert_eq!(
            decide(7, false, Some("committed"), &RECOVERY).1,
            BelowRestartCheckpoint
        );
        assert_eq!(
            decide(12, false, Some("committed"), &RECOVERY).1,
            ReassignedAfterRestart
        );
        assert_eq!(
            decide(7, false, Some("committed"), &LATER).1,
            CheckpointHidesBoundary
        );
        assert_eq!(decide(7, false, None, &RECOVERY).1, TooOld);
    }

    fn origin(timeline: Option<i32>) -> Origin {
        Origin {
            pid: 1,
            started: "then".to_owned(),
            started_us: 0,
            system: "7".to_owned(),
            timeline,
            insert_lsn: Some("0/3000000".to_owned()),
        }
    }

    fn here(system: &str, timeline: Option<i32>, replayed: Option<bool>) -> Lineage {
        Lineage {
            system: system.to_owned(),
            timeline,
            replayed_past_commit: replayed,
        }
    }

    #[test]
    fn across_a_promotion_the_replay_position_decides() {
        let o = origin(Some(1));
        assert_eq!(
            decide_lineage(&o, &here("7", Some(1), None)),
            Relation::SameTimeline
        );
        assert_eq!(
            decide_lineage(&o, &here("7", Some(2), Some(false))),
            Relation::NotReplayed
        );
        assert_eq!(
            decide_lineage(&o, &here("7", Some(2), Some(true))),
            Relation::Replayed
        );
        for unknown in [
            here("8", Some(2), Some(true)), // another cluster
            here("7", Some(3), Some(true)), // two promotions
            here("7", Some(2), None),       // restarted since its promotion
            here("7", None, Some(true)),    // in recovery
        ] {
            assert!(
                matches!(decide_lineage(&o, &unknown), Relation::Unknown(_)),
                "{unknown:?}"
            );
        }
        // Recorded on a standby: nothing was written there; the same-timeline rules apply.
        assert_eq!(
            decide_lineage(&origin(None), &here("7", Some(2), None)),
            Relation::SameTimeline
        );
    }
}
