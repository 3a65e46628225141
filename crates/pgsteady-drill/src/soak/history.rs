//! The soak's history: one JSON object per line, in the order things happened. Every call's
//! invocation and completion, every fault's start and end, every pool event, and at the end
//! the final state of the database. The checker reads nothing else, so a history file can
//! be checked again later (`--check FILE`) and a planted history tests the checker.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use pgsteady::PoolEvent;
use serde::{Deserialize, Serialize};

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Line {
    /// What was run: seed, topology, duration, the schedule.
    Start {
        seed: u64,
        topology: String,
        duration_ms: u64,
        accounts: i64,
        initial_balance: i64,
        schedule: Vec<String>,
    },
    /// A call began.
    Invoke {
        /// Milliseconds since the soak's start (monotonic clock).
        t: f64,
        /// The wall clock, RFC 3339.
        wall: String,
        /// The call's id (unique in the history).
        call: u64,
        worker: u32,
        op: Op,
    },
    /// A call ended.
    Complete {
        t: f64,
        wall: String,
        call: u64,
        result: Outcome,
        /// The error's kind (`ErrorKind` as debug text) for anything but ok.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// The error's SQLSTATE, when the server sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// With an unknown outcome: the transaction id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        xid: Option<i64>,
        /// What a read saw: the sum of the balances and the number of accounts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read: Option<(i64, i64)>,
    },
    /// A fault began or ended.
    Nemesis {
        t: f64,
        wall: String,
        fault: String,
        phase: Phase,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// Something the pool did (see [`PoolEvent`]).
    Pool {
        t: f64,
        wall: String,
        event: PoolLine,
    },
    /// The database after the run, read from the primary.
    Final {
        /// Rows per insert key.
        writes: BTreeMap<String, i64>,
        /// Rows per transfer key in the transfer ledger.
        transfers: BTreeMap<String, i64>,
        /// (account, balance) pairs: a list, since a map's keys would be JSON strings, which
        /// an internally tagged enum cannot read back as integers.
        balances: Vec<(i64, i64)>,
    },
}

/// An operation of the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// `INSERT` of a unique key through `Pool::transaction`.
    Insert { key: String },
    /// A transfer through `Pool::transaction`: two balance updates and a ledger row.
    Transfer {
        key: String,
        from: i64,
        to: i64,
        amount: i64,
    },
    /// The sum of the balances through `Pool::run`.
    Read,
}

/// What the caller of one call saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Ok,
    /// `TransactionError::NotCommitted`: nothing of it is in the database.
    NotCommitted,
    /// `TransactionError::OutcomeUnknown`.
    Unknown,
    /// `Pool::run` failed.
    Error,
    /// Still running when the soak stopped waiting.
    Unfinished,
}

/// A fault's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    Start,
    End,
}

/// A [`PoolEvent`] as a history line.
// Resolutions are rare next to connects and evictions, but every line is in a `Line` whose
// invocation variant is about as large already: boxing would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum PoolLine {
    Connected {
        host: String,
        role: String,
    },
    Evicted {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closed_by: Option<String>,
    },
    Resolved {
        xid: i64,
        verdict: String,
        rule: String,
        origin_incarnation: String,
        origin_system: String,
        origin_timeline: Option<i32>,
        origin_lsn: Option<String>,
        #[serde(default)]
        reached_incarnation: Option<String>,
        #[serde(default)]
        reached_system: Option<String>,
        #[serde(default)]
        reached_timeline: Option<i32>,
        #[serde(default)]
        reached_lsn: Option<String>,
        #[serde(default)]
        txid_status: Option<String>,
        #[serde(default)]
        next_xid: Option<i64>,
        #[serde(default)]
        replayed_past_commit: Option<bool>,
        #[serde(default)]
        why: Option<String>,
    },
    /// An event kind this soak does not know (the enum is non-exhaustive).
    Other {
        debug: String,
    },
}

impl PoolLine {
    pub(crate) fn of(event: &PoolEvent) -> PoolLine {
        match event {
            PoolEvent::Connected {
                host,
                in_hot_standby,
                read_only,
                ..
            } => PoolLine::Connected {
                host: host.clone(),
                role: match (in_hot_standby, read_only) {
                    (Some(true), _) => "standby",
                    (_, Some(true)) => "read-only primary",
                    (Some(false), _) => "primary",
                    _ => "unreported",
                }
                .to_owned(),
            },
            PoolEvent::Evicted {
                reason, closed_by, ..
            } => PoolLine::Evicted {
                reason: reason.as_str().to_owned(),
                closed_by: closed_by.map(|r| r.as_str().to_owned()),
            },
            PoolEvent::CommitResolved(r) => PoolLine::Resolved {
                xid: r.xid,
                verdict: r.verdict.as_str().to_owned(),
                rule: r.rule.as_str().to_owned(),
                origin_incarnation: r.origin.incarnation.clone(),
                origin_system: r.origin.system.clone(),
                origin_timeline: r.origin.timeline,
                origin_lsn: r.origin.insert_lsn.clone(),
                reached_incarnation: r.reached.as_ref().map(|s| s.incarnation.clone()),
                reached_system: r.reached.as_ref().map(|s| s.system.clone()),
                reached_timeline: r.reached.as_ref().and_then(|s| s.timeline),
                reached_lsn: r.reached.as_ref().and_then(|s| s.insert_lsn.clone()),
                txid_status: r.txid_status.clone(),
                next_xid: r.next_xid,
                replayed_past_commit: r.replayed_past_commit,
                why: r.why.clone(),
            },
            other => PoolLine::Other {
                debug: format!("{other:?}"),
            },
        }
    }
}

/// Where lines go: the file (when given) and memory (for the checker). Shared by the
/// workers, the nemesis and the pool's observer; a mutex held only to push a line.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    inner: Arc<Mutex<Inner>>,
    t0: Instant,
}

#[derive(Debug)]
struct Inner {
    lines: Vec<Line>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// The first write error: the history is then incomplete, which the summary says.
    failed: Option<String>,
}

impl Recorder {
    pub(crate) fn new(file: Option<std::fs::File>) -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                lines: Vec::new(),
                file: file.map(std::io::BufWriter::new),
                failed: None,
            })),
            t0: Instant::now(),
        }
    }

    /// The soak's clock: milliseconds since it started, and the wall clock.
    pub(crate) fn now(&self) -> (f64, String) {
        (
            self.t0.elapsed().as_secs_f64() * 1000.0,
            humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        )
    }

    pub(crate) fn record(&self, line: Line) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = inner.file.as_mut() {
            let written = serde_json::to_writer(&mut *file, &line)
                .map_err(|e| e.to_string())
                .and_then(|()| file.write_all(b"\n").map_err(|e| e.to_string()));
            if let Err(e) = written {
                inner.failed.get_or_insert(e);
                inner.file = None;
            }
        }
        inner.lines.push(line);
    }

    pub(crate) fn pool_event(&self, event: &PoolEvent) {
        let (t, wall) = self.now();
        self.record(Line::Pool {
            t,
            wall,
            event: PoolLine::of(event),
        });
    }

    pub(crate) fn nemesis(&self, fault: &str, phase: Phase, note: String) {
        let (t, wall) = self.now();
        self.record(Line::Nemesis {
            t,
            wall,
            fault: fault.to_owned(),
            phase,
            note,
        });
    }

    /// Flushes the file and hands back every line (and the first write error, if any).
    pub(crate) fn finish(&self) -> (Vec<Line>, Option<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut file) = inner.file.take()
            && let Err(e) = file.flush()
        {
            inner.failed.get_or_insert(e.to_string());
        }
        (std::mem::take(&mut inner.lines), inner.failed.take())
    }
}

/// Reads a history file written by a soak, line by line (a line longer than 1 MiB, or one
/// that is not a history line, is an error naming its number).
pub(crate) fn read(path: &std::path::Path) -> Result<Vec<Line>, String> {
    use std::io::{BufRead, Read};
    const MAX_LINE: usize = 1 << 20;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        n += 1;
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            return Ok(lines);
        }
        if buf.len() > MAX_LINE {
            return Err(format!(
                "{} line {n}: longer than {MAX_LINE} bytes",
                path.display()
            ));
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = serde_json::from_slice(&buf)
            .map_err(|e| format!("{} line {n}: {e}", path.display()))?;
        lines.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of line reads back as written: `--check FILE` sees what the run saw.
    #[test]
    fn lines_read_back_as_written() {
        let lines = vec![
            Line::Start {
                seed: 1,
                topology: "single".to_owned(),
                duration_ms: 10,
                accounts: 2,
                initial_balance: 5,
                schedule: vec!["server: +1ms crash".to_owned()],
            },
            Line::Invoke {
                t: 1.5,
                wall: "w".to_owned(),
                call: 3,
                worker: 1,
                op: Op::Transfer {
                    key: "t1-1".to_owned(),
                    from: 1,
                    to: 2,
                    amount: 3,
                },
            },
            Line::Complete {
                t: 2.0,
                wall: "w".to_owned(),
                call: 3,
                result: Outcome::Unknown,
                kind: Some("CommitOutcomeUnknown".to_owned()),
                code: Some("57P01".to_owned()),
                xid: Some(77),
                read: Some((10, 2)),
            },
            Line::Nemesis {
                t: 3.0,
                wall: "w".to_owned(),
                fault: "crash".to_owned(),
                phase: Phase::End,
                note: "n".to_owned(),
            },
            Line::Pool {
                t: 4.0,
                wall: "w".to_owned(),
                event: PoolLine::Evicted {
                    reason: "closed".to_owned(),
                    closed_by: Some("reset".to_owned()),
                },
            },
            Line::Final {
                writes: [("w0-1".to_owned(), 1)].into_iter().collect(),
                transfers: BTreeMap::new(),
                balances: vec![(1, 2), (2, 8)],
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let recorder = Recorder::new(Some(std::fs::File::create(&path).unwrap()));
        for line in &lines {
            recorder.record(line.clone());
        }
        let (kept, failed) = recorder.finish();
        assert_eq!(failed, None);
        assert_eq!(kept, lines);
        assert_eq!(read(&path).unwrap(), lines);
        std::fs::write(&path, "{\"type\":\"start\"}\n").unwrap();
        assert!(read(&path).unwrap_err().contains("line 1"));
    }
}
