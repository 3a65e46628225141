//! The restarts a pool has seen: for each server incarnation it reached while its restart
//! checkpoint was still the latest one, that checkpoint's `next_xid`.
//!
//! After a crash, `txid_status(xid) = committed` is ours only if `xid` is below the
//! `next_xid` of the *first* incarnation after the one the transaction ran on: that
//! incarnation hands out ids from there, so an id at or above it whose records were lost in
//! the crash may have gone to another session, whose commit a later restart replays. The
//! server reached after two crashes shows only its own restart checkpoint, whose `next_xid`
//! is above the ids the incarnation in between handed out: seen in a soak, an acknowledged
//! write lost that way (settled committed on the third incarnation while the second had
//! given its id to another session). Nothing on the server tells of that incarnation, so
//! the pool remembers the ones it saw.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many incarnations are remembered: a resolution spans at most its call's deadline,
/// in which more restarts than this do not happen.
const KEEP: usize = 32;

/// One incarnation and its restart checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Restart {
    /// The system identifier.
    pub(super) system: String,
    /// The timeline it writes (crash recovery keeps it).
    pub(super) timeline: i32,
    /// When the incarnation began, in microseconds since the Unix epoch.
    pub(super) started_us: i64,
    /// `next_xid` of its restart checkpoint: the first id it hands out.
    pub(super) next_xid: i64,
}

/// The pool's memory of restarts (bounded).
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    seen: Mutex<VecDeque<Restart>>,
}

impl Restarts {
    /// Remembers `restart` (once per incarnation).
    pub(super) fn record(&self, restart: Restart) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.iter().any(|r| {
            r.system == restart.system
                && r.timeline == restart.timeline
                && r.started_us == restart.started_us
        }) {
            return;
        }
        if seen.len() == KEEP {
            seen.pop_front();
        }
        seen.push_back(restart);
    }

    /// The `next_xid` of the earliest incarnation seen of `system` on `timeline` that began
    /// after `after_us` and before `before_us`.
    pub(super) fn first_between(
        &self,
        system: &str,
        timeline: i32,
        after_us: i64,
        before_us: i64,
    ) -> Option<i64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|r| {
                r.system == system
                    && r.timeline == timeline
                    && r.started_us > after_us
                    && r.started_us < before_us
            })
            .min_by_key(|r| r.started_us)
            .map(|r| r.next_xid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart(started_us: i64, next_xid: i64) -> Restart {
        Restart {
            system: "7".to_owned(),
            timeline: 1,
            started_us,
            next_xid,
        }
    }

    #[test]
    fn the_earliest_incarnation_in_between_answers() {
        let r = Restarts::default();
        r.record(restart(30, 300));
        r.record(restart(20, 200));
        r.record(restart(20, 999)); // the same incarnation again: kept once
        assert_eq!(r.first_between("7", 1, 10, 40), Some(200));
        assert_eq!(r.first_between("7", 1, 20, 40), Some(300));
        assert_eq!(r.first_between("7", 1, 10, 20), None);
        assert_eq!(r.first_between("7", 2, 10, 40), None);
        assert_eq!(r.first_between("8", 1, 10, 40), None);
    }

    #[test]
    fn the_memory_is_bounded() {
        let r = Restarts::default();
        for i in 0..(KEEP as i64 + 5) {
            r.record(restart(i, i));
        }
        assert_eq!(r.seen.lock().unwrap().len(), KEEP);
        assert_eq!(r.first_between("7", 1, -1, 100), Some(5));
    }
}
