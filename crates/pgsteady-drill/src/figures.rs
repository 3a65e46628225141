//! The figures a drill reports: per fault and per client, what callers saw and what became of
//! their writes; and whether pgsteady kept its guarantees.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use pgsteady_testkit::workload::{Call, Clock, FaultWindow, Timeline};
use serde::Serialize;

use super::clients::{Told, Write};
use super::faults::Window;

/// Everything one client did, on the drill's clock: the test kit's [`Timeline`] of its calls
/// (shifted so that offsets count from the drill's start, the drill's fault windows added),
/// which computes the per-fault call figures, and its writes.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) timeline: Timeline,
    /// Every write, with how many rows its key has in the table.
    pub(crate) writes: Vec<(Write, i64)>,
}

impl Record {
    /// Puts a workload's timeline and a client's writes on the drill's clock (`t0`), with the
    /// drill's fault windows.
    pub(crate) fn new(
        t0: Instant,
        timeline: &Timeline,
        windows: &[Window],
        writes: Vec<Write>,
        rows: &HashMap<i64, i64>,
    ) -> Self {
        let shift = timeline.clock.instant.saturating_duration_since(t0);
        let mut calls: Vec<Call> = timeline
            .calls
            .iter()
            .map(|c| Call {
                start: c.start + shift,
                end: c.end + shift,
                ..c.clone()
            })
            .collect();
        calls.sort_by_key(|c| c.end);
        let at = |i: Instant| i.saturating_duration_since(t0);
        let timeline = Timeline {
            clock: Clock {
                instant: t0,
                system: timeline.clock.system - shift,
            },
            workers: timeline.workers,
            elapsed: timeline.elapsed + shift,
            calls,
            faults: windows
                .iter()
                .map(|w| FaultWindow {
                    name: w.fault.name().to_owned(),
                    start: at(w.start),
                    end: at(w.end),
                    ready: Some(at(w.ready)),
                })
                .collect(),
        };
        let writes = writes
            .into_iter()
            .map(|w| {
                let n = rows.get(&w.key).copied().unwrap_or(0);
                (w, n)
            })
            .collect();
        Record { timeline, writes }
    }
}

/// What became of a client's writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct WriteFigures {
    /// Writes the client was told committed.
    pub(crate) acknowledged: u64,
    /// Of those, found in the table.
    pub(crate) present: u64,
    /// Acknowledged but not in the table.
    pub(crate) lost: u64,
    /// Writes whose key is in the table more than once.
    pub(crate) duplicated: u64,
    /// Writes the client was told certainly did not commit.
    pub(crate) not_committed: u64,
    /// Of those, found in the table anyway.
    pub(crate) not_committed_present: u64,
    /// Writes whose outcome the client was told is unknown (a COMMIT without an answer).
    pub(crate) unknown: u64,
    /// Of those, found in the table: they did commit.
    pub(crate) unknown_present: u64,
}

impl WriteFigures {
    fn add(&mut self, write: &Write, rows: i64) {
        let present = rows > 0;
        match write.told {
            Told::Acknowledged => {
                self.acknowledged += 1;
                self.present += u64::from(present);
                self.lost += u64::from(!present);
            }
            Told::NotCommitted => {
                self.not_committed += 1;
                self.not_committed_present += u64::from(present);
            }
            Told::Unknown => {
                self.unknown += 1;
                self.unknown_present += u64::from(present);
            }
        }
        self.duplicated += u64::from(rows > 1);
    }
}

/// What one client saw during one fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ClientFigures {
    /// Errors returned to callers.
    pub(crate) errors: u64,
    /// The same by class (SQLSTATE, `refused`, `closed`, `timeout`...).
    pub(crate) errors_by_class: BTreeMap<String, u64>,
    /// Calls that succeeded.
    pub(crate) calls_ok: u64,
    /// From the server being ready (or the fault being lifted) to the first success, in ms;
    /// `None` when nothing succeeded before the next fault.
    pub(crate) ready_to_first_success_ms: Option<f64>,
    /// The longest stretch after the fault began during which no call succeeded, in ms.
    pub(crate) no_success_ms: f64,
    /// Writes made in this window.
    pub(crate) writes: WriteFigures,
}

/// One fault as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultFigures {
    pub(crate) name: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) start_ms: f64,
    pub(crate) end_ms: f64,
    pub(crate) ready_ms: f64,
    pub(crate) notes: Vec<String>,
    pub(crate) naive: ClientFigures,
    pub(crate) pgsteady: ClientFigures,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Per-fault figures. A window owns the calls and writes that returned from its start until
/// the next window's start (errors a fault causes often surface after it is lifted).
pub(crate) fn per_fault(
    t0: Instant,
    windows: &[Window],
    naive: &Record,
    pgsteady: &Record,
) -> Vec<FaultFigures> {
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let at = |i: Instant| i.saturating_duration_since(t0);
            let span = Span {
                index: i,
                start: at(w.start),
                until: windows
                    .get(i + 1)
                    .map_or(Duration::MAX, |next| at(next.start)),
                traffic_from: at(w.traffic_from),
            };
            FaultFigures {
                name: w.fault.name(),
                summary: w.fault.summary(),
                start_ms: ms(span.start),
                end_ms: ms(at(w.end)),
                ready_ms: ms(at(w.ready)),
                notes: w.notes.clone(),
                naive: client_figures(t0, naive, &span),
                pgsteady: client_figures(t0, pgsteady, &span),
            }
        })
        .collect()
}

/// A window's boundaries, from the drill's start.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// The window's index in the record's timeline.
    index: usize,
    start: Duration,
    until: Duration,
    traffic_from: Duration,
}

/// The test kit's figures for the window (errors by class, successes, ready -> first
/// success), and the drill's own "no success", measured from `traffic_from`: the drill
/// pauses traffic on purpose before `idle-timeout`, and that pause is not an outage.
fn client_figures(t0: Instant, record: &Record, span: &Span) -> ClientFigures {
    let metrics = record.timeline.fault_metrics(span.index);
    let ready = record.timeline.faults[span.index].recoverable_at();
    let mut figures = ClientFigures {
        errors: metrics.errors,
        errors_by_class: metrics
            .errors_by_class
            .iter()
            .map(|(class, n)| (class.as_str().to_owned(), *n))
            .collect(),
        calls_ok: metrics.calls_ok,
        ready_to_first_success_ms: metrics.ready_to_first_success.map(ms),
        ..ClientFigures::default()
    };
    let calls = &record.timeline.calls;
    let first = calls.partition_point(|c| c.end < span.start);
    let last = calls.partition_point(|c| c.end < span.until);
    let calls = &calls[first..last.max(first)];
    // The longest stretch without a success, from the start of traffic in this window until
    // the first success after ready (or the end of the window's calls).
    let recovered = metrics
        .ready_to_first_success
        .map(|d| ready + d)
        .unwrap_or_else(|| calls.last().map_or(ready, |c| c.end));
    let mut previous = span.traffic_from;
    let mut longest = Duration::ZERO;
    for call in calls.iter().filter(|c| c.is_ok()) {
        if call.end < previous {
            continue;
        }
        if call.end > recovered {
            break;
        }
        longest = longest.max(call.end - previous);
        previous = call.end;
    }
    longest = longest.max(recovered.saturating_sub(previous));
    figures.no_success_ms = ms(longest);
    for (write, rows) in &record.writes {
        let end = write.end.saturating_duration_since(t0);
        if end >= span.start && end < span.until {
            figures.writes.add(write, *rows);
        }
    }
    figures
}

/// A client's figures over the whole drill (warm-up and settling included).
pub(crate) fn totals(record: &Record) -> ClientFigures {
    let mut figures = ClientFigures::default();
    for call in &record.timeline.calls {
        match &call.error {
            None => figures.calls_ok += 1,
            Some(class) => {
                figures.errors += 1;
                *figures
                    .errors_by_class
                    .entry(class.as_str().to_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    for (write, rows) in &record.writes {
        figures.writes.add(write, *rows);
    }
    figures
}

/// pgsteady's documented guarantees, checked against its totals: each broken one, in words.
pub(crate) fn violations(pgsteady: &ClientFigures) -> Vec<String> {
    let w = &pgsteady.writes;
    let mut broken = Vec::new();
    if pgsteady.errors > 0 {
        broken.push(format!(
            "{} errors surfaced through run/transaction ({})",
            pgsteady.errors,
            classes(&pgsteady.errors_by_class)
        ));
    }
    if w.lost > 0 {
        broken.push(format!("{} acknowledged writes are missing", w.lost));
    }
    if w.duplicated > 0 {
        broken.push(format!(
            "{} writes are in the table more than once",
            w.duplicated
        ));
    }
    if w.not_committed_present > 0 {
        broken.push(format!(
            "{} writes reported not committed are in the table",
            w.not_committed_present
        ));
    }
    broken
}

/// `refused 12, 57P01 4`, largest first.
pub(crate) fn classes(by_class: &BTreeMap<String, u64>) -> String {
    let mut sorted: Vec<(&String, &u64)> = by_class.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(class, n)| format!("{class} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Successes and errors per bucket of `width` from the drill's start, for the chart: the
/// test kit's histogram, cut to `span` (calls after it count in the last bucket).
pub(crate) fn histogram(record: &Record, width: Duration, span: Duration) -> Vec<(u64, u64)> {
    let count = (span.as_nanos() / width.as_nanos()) as usize + 1;
    let mut buckets = vec![(0u64, 0u64); count];
    for bucket in record.timeline.histogram(width) {
        let i = ((bucket.start.as_nanos() / width.as_nanos()) as usize).min(count - 1);
        buckets[i].0 += bucket.ok;
        buckets[i].1 += bucket.err;
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(end_ms: u64, error: Option<&'static str>) -> Call {
        Call {
            worker: 0,
            start: Duration::from_millis(end_ms),
            end: Duration::from_millis(end_ms),
            error: error.map(pgsteady_testkit::workload::ErrorClass::new),
        }
    }

    /// A record of `calls` with one fault window `[start, until)` whose server was ready at
    /// `ready` (`until` is where the next window would start).
    fn record_with(calls: Vec<Call>, start: u64, until: u64, ready: u64) -> (Record, Span) {
        let ms = Duration::from_millis;
        let window = |name: &str, at: u64| FaultWindow {
            name: name.to_owned(),
            start: ms(at),
            end: ms(at),
            ready: Some(ms(ready)),
        };
        let record = Record {
            timeline: Timeline {
                clock: Clock::now(),
                workers: 1,
                elapsed: Duration::ZERO,
                calls,
                faults: vec![window("fault", start), window("next", until)],
            },
            writes: Vec::new(),
        };
        let span = Span {
            index: 0,
            start: ms(start),
            until: ms(until),
            traffic_from: ms(start),
        };
        (record, span)
    }

    fn record(calls: Vec<Call>) -> Record {
        record_with(calls, 0, 1, 0).0
    }

    #[test]
    fn errors_first_success_and_no_success_are_measured_within_the_window() {
        let r = record(vec![
            call(90, None),
            call(110, Some("57P01")),
            call(150, Some("refused")),
            call(260, Some("refused")),
            call(320, None),
            call(330, None),
            call(600, None), // after the window
        ]);
        let t0 = Instant::now();
        let (r, span) = record_with(r.timeline.calls, 100, 500, 300);
        let f = client_figures(t0, &r, &span);
        assert_eq!(f.errors, 3);
        assert_eq!(classes(&f.errors_by_class), "refused 2, 57P01 1");
        assert_eq!(f.calls_ok, 2);
        assert_eq!(f.ready_to_first_success_ms, Some(20.0));
        assert_eq!(f.no_success_ms, 220.0); // 100 -> 320
    }

    #[test]
    fn a_pause_on_purpose_is_not_counted_as_no_success() {
        let r = record(vec![call(10, None), call(1000, None), call(1005, None)]);
        let (r, mut s) = record_with(r.timeline.calls, 0, 2000, 990);
        s.traffic_from = Duration::from_millis(990);
        let f = client_figures(Instant::now(), &r, &s);
        assert_eq!(f.no_success_ms, 10.0);
        assert_eq!(f.ready_to_first_success_ms, Some(10.0));
    }

    #[test]
    fn without_recovery_no_success_runs_to_the_last_call() {
        let r = record(vec![
            call(50, None),
            call(200, Some("timeout")),
            call(400, Some("timeout")),
        ]);
        let (r, span) = record_with(r.timeline.calls, 100, 1000, 150);
        let f = client_figures(Instant::now(), &r, &span);
        assert_eq!(f.ready_to_first_success_ms, None);
        assert_eq!(f.no_success_ms, 300.0);
    }

    #[test]
    fn writes_are_classified_against_the_rows_found() {
        let now = Instant::now();
        let w = |key, told| Write {
            key,
            end: now,
            told,
        };
        let mut f = WriteFigures::default();
        f.add(&w(1, Told::Acknowledged), 1);
        f.add(&w(2, Told::Acknowledged), 0);
        f.add(&w(3, Told::Acknowledged), 2);
        f.add(&w(4, Told::NotCommitted), 0);
        f.add(&w(5, Told::NotCommitted), 1);
        f.add(&w(6, Told::Unknown), 1);
        f.add(&w(7, Told::Unknown), 0);
        assert_eq!(
            f,
            WriteFigures {
                acknowledged: 3,
                present: 2,
                lost: 1,
                duplicated: 1,
                not_committed: 2,
                not_committed_present: 1,
                unknown: 2,
                unknown_present: 1,
            }
        );
        let pgsteady = ClientFigures {
            writes: f,
            ..ClientFigures::default()
        };
        assert_eq!(violations(&pgsteady).len(), 3);
        assert!(violations(&ClientFigures::default()).is_empty());
    }

    #[test]
    fn histogram_buckets_by_return_time() {
        let r = record(vec![
            call(5, None),
            call(95, Some("closed")),
            call(150, None),
        ]);
        let h = histogram(&r, Duration::from_millis(100), Duration::from_millis(250));
        assert_eq!(h, vec![(1, 1), (1, 0), (0, 0)]);
    }
}
