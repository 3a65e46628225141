//! The engine's figures of `drill --ha`: per fault, what Patroni did and when, beside each
//! client's write gap.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::choices::HaFault;
use crate::clients::Told;
use crate::faults::Window;
use crate::figures::Record;

/// What Patroni did during one fault, on the drill's clock.
#[derive(Debug, Clone)]
pub(super) struct Engine {
    pub(super) fault: HaFault,
    pub(super) old_leader: String,
    pub(super) new_leader: String,
    /// Patroni's own time of the leader change (`/history`), when there was one.
    pub(super) change_at: Option<Instant>,
    pub(super) change_timeline: Option<u64>,
    /// When the (new) leader's server logged it was ready for writes.
    pub(super) writable_at: Instant,
    /// `leader-lost`: when the killed node was back as a streaming replica.
    pub(super) rejoined: Option<Instant>,
}

/// One client's writes around one fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct WriteGap {
    /// From the last write acknowledged before the fault to the first acknowledged after
    /// it (the longest gap between acknowledged writes in the fault's window), in ms.
    pub(crate) write_gap_ms: Option<f64>,
    /// From Patroni's leader change to the first write acknowledged after it, in ms.
    pub(crate) after_change_ms: Option<f64>,
    /// From the leader being writable (its ready line) to the first write acknowledged
    /// after it, in ms.
    pub(crate) after_writable_ms: Option<f64>,
    /// The longest call in the window, in ms (bounded by pgsteady's deadline).
    pub(crate) longest_call_ms: f64,
    /// Acknowledged writes of the window missing from the table: when the first and the
    /// last of them returned, from the clients' start, in ms (`None` when none is missing).
    pub(crate) lost_between_ms: Option<(f64, f64)>,
}

/// One fault as `--ha` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EngineFigures {
    pub(crate) fault: &'static str,
    pub(crate) old_leader: String,
    pub(crate) new_leader: String,
    /// Patroni's leader change (`/history`), from the clients' start, in ms; `None` when
    /// there was none (a postmaster restarted in place).
    pub(crate) leader_change_ms: Option<f64>,
    /// The new timeline Patroni recorded.
    pub(crate) timeline: Option<u64>,
    /// From the fault's start to the leader change.
    pub(crate) fault_to_change_ms: Option<f64>,
    /// When the leader's server logged it was ready for writes, from the clients' start.
    pub(crate) writable_ms: f64,
    /// From the fault's start to that.
    pub(crate) fault_to_writable_ms: f64,
    /// `leader-lost`: from the fault's start to the killed node streaming again.
    pub(crate) rejoined_ms: Option<f64>,
    pub(crate) naive: WriteGap,
    pub(crate) pgsteady: WriteGap,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Engine {
    /// One line for the progress output.
    pub(super) fn describe(&self) -> String {
        if self.new_leader == self.old_leader {
            format!("{} is the leader again", self.new_leader)
        } else {
            format!("{} -> {}", self.old_leader, self.new_leader)
        }
    }

    /// The figures of this fault, whose window runs from `window.start` until `until` (the
    /// next fault's start, or the end of the calls).
    pub(super) fn figures(
        &self,
        t0: Instant,
        window: &Window,
        until: Option<Instant>,
        records: &[Record; 2],
    ) -> EngineFigures {
        let at = |i: Instant| ms(i.saturating_duration_since(t0));
        let gap = |record: &Record| write_gap(record, t0, window.start, until, self);
        EngineFigures {
            fault: self.fault.name(),
            old_leader: self.old_leader.clone(),
            new_leader: self.new_leader.clone(),
            leader_change_ms: self.change_at.map(at),
            timeline: self.change_timeline,
            fault_to_change_ms: self
                .change_at
                .map(|c| ms(c.saturating_duration_since(window.start))),
            writable_ms: at(self.writable_at),
            fault_to_writable_ms: ms(self.writable_at.saturating_duration_since(window.start)),
            rejoined_ms: self
                .rejoined
                .map(|r| ms(r.saturating_duration_since(window.start))),
            naive: gap(&records[0]),
            pgsteady: gap(&records[1]),
        }
    }
}

/// A client's write gap around a fault: acknowledged writes sorted by when they returned.
fn write_gap(
    record: &Record,
    t0: Instant,
    start: Instant,
    until: Option<Instant>,
    engine: &Engine,
) -> WriteGap {
    let mut acks: Vec<Instant> = record
        .writes
        .iter()
        .filter(|(w, _)| w.told == Told::Acknowledged)
        .map(|(w, _)| w.end)
        .collect();
    acks.sort();
    let in_window = |t: &Instant| *t >= start && until.is_none_or(|u| *t < u);
    let before = acks.iter().rev().find(|t| **t < start).copied();
    let mut previous = before;
    let mut longest: Option<Duration> = None;
    for &t in acks.iter().filter(|t| in_window(t)) {
        if let Some(p) = previous {
            let d = t - p;
            longest = Some(longest.map_or(d, |l| l.max(d)));
        }
        previous = Some(t);
    }
    let first_after = |from: Instant| {
        acks.iter()
            .find(|t| **t >= from && in_window(t))
            .map(|t| ms(*t - from))
    };
    let span_start = start.saturating_duration_since(t0);
    let span_end = until.map(|u| u.saturating_duration_since(t0));
    let longest_call = record
        .timeline
        .calls
        .iter()
        .filter(|c| c.end >= span_start && span_end.is_none_or(|e| c.end < e))
        .map(|c| c.end - c.start)
        .max()
        .unwrap_or_default();
    let lost: Vec<Instant> = record
        .writes
        .iter()
        .filter(|(w, rows)| w.told == Told::Acknowledged && *rows == 0 && in_window(&w.end))
        .map(|(w, _)| w.end)
        .collect();
    let lost_between_ms = match (lost.iter().min(), lost.iter().max()) {
        (Some(a), Some(b)) => Some((
            ms(a.saturating_duration_since(t0)),
            ms(b.saturating_duration_since(t0)),
        )),
        _ => None,
    };
    WriteGap {
        lost_between_ms,
        write_gap_ms: longest.map(ms),
        after_change_ms: engine.change_at.and_then(first_after),
        after_writable_ms: first_after(engine.writable_at),
        longest_call_ms: ms(longest_call),
    }
}
