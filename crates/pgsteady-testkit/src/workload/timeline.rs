//! What a workload recorded: every call, the fault windows, and the figures computed from them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::ErrorClass;

/// The workload's clock: the [`Instant`] and the [`SystemTime`] read together when it
/// started. Every time in a [`Timeline`] is an offset from that start, so instants (call
/// timestamps, [`crate::FaultProxy::accept_times`]) and wall-clock times (the server's ready
/// line, [`crate::Cluster::ready_at`]) land on one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The monotonic start.
    pub instant: Instant,
    /// The wall-clock time read at the same moment.
    pub system: SystemTime,
}

impl Clock {
    /// A clock starting now.
    pub fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// The offset of an instant (zero if it is earlier than the start).
    pub fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.instant)
    }

    /// The offset of a wall-clock time (zero if it is earlier than the start).
    pub fn offset_system(&self, at: SystemTime) -> Duration {
        at.duration_since(self.system).unwrap_or_default()
    }

    /// The instant of a wall-clock time (the start if it is earlier).
    pub fn instant_of(&self, at: SystemTime) -> Instant {
        self.instant + self.offset_system(at)
    }
}

/// One call of the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Which worker made it (0-based).
    pub worker: usize,
    /// When it started, from the workload's start.
    pub start: Duration,
    /// When it returned, from the workload's start.
    pub end: Duration,
    /// `None` when it succeeded, else how it failed.
    pub error: Option<ErrorClass>,
}

impl Call {
    /// True when the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// How long the call took.
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// A named interval during which a fault was being applied ("fast restart" from the stop
/// signal until the server was started again), with the moment the server said it was ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault's name.
    pub name: String,
    /// When the fault began, from the workload's start.
    pub start: Duration,
    /// When the fault was over (the controlling code said so), from the workload's start.
    pub end: Duration,
    /// When the server logged that it was ready again, from the workload's start; `None`
    /// when the server never went away (e.g. terminated sessions).
    pub ready: Option<Duration>,
}

impl FaultWindow {
    /// The moment from which callers could be served again: the server's ready time, else
    /// the end of the window.
    pub fn recoverable_at(&self) -> Duration {
        self.ready.unwrap_or(self.end)
    }
}

/// Figures for one fault window, computed by [`Timeline::fault_metrics`].
///
/// A window's calls are those that returned from its start until the next window's start
/// (or the end of the timeline): errors a fault causes usually surface after the controlling
/// code says the fault is over, while clients reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultMetrics {
    /// The fault's name.
    pub name: String,
    /// Errors surfaced to callers.
    pub errors: u64,
    /// The same errors by class.
    pub errors_by_class: BTreeMap<ErrorClass, u64>,
    /// Errors surfaced after the server was ready again.
    pub errors_after_ready: u64,
    /// Successful calls.
    pub calls_ok: u64,
    /// From the server's ready time ([`FaultWindow::recoverable_at`]) to the first successful
    /// call that returned at or after it; `None` if no call succeeded before the window's
    /// calls ended.
    pub ready_to_first_success: Option<Duration>,
    /// The longest time callers as a whole saw no success during the fault: the longest gap
    /// between consecutive successful returns (the start or end of the timeline standing in
    /// when there is none) that ends after the fault began and begins before the first success
    /// after ready.
    pub no_success: Duration,
    /// The longest single call.
    pub max_call: Duration,
}

/// Successes and errors returned within one bucket of time, from [`Timeline::histogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's start, from the workload's start.
    pub start: Duration,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub err: u64,
}

/// Everything a workload recorded. Build one with [`crate::workload::Workload::stop`], or by
/// hand for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The clock every offset is measured from.
    pub clock: Clock,
    /// How many workers ran.
    pub workers: usize,
    /// From the start until the workload stopped.
    pub elapsed: Duration,
    /// Every call, in the order they returned.
    pub calls: Vec<Call>,
    /// The fault windows, in the order they began.
    pub faults: Vec<FaultWindow>,
}

impl Timeline {
    /// Successful calls.
    pub fn ok(&self) -> u64 {
        self.calls.iter().filter(|c| c.is_ok()).count() as u64
    }

    /// Failed calls.
    pub fn errors(&self) -> u64 {
        self.calls.len() as u64 - self.ok()
    }

    /// Successful calls that returned within `[from, to)`.
    pub fn ok_between(&self, from: Duration, to: Duration) -> u64 {
        self.returned_between(from, to)
            .iter()
            .filter(|c| c.is_ok())
            .count() as u64
    }

    /// Figures for every fault window, in order.
    pub fn metrics(&self) -> Vec<FaultMetrics> {
        (0..self.faults.len())
            .map(|i| self.fault_metrics(i))
            .collect()
    }

    /// Figures for one fault window (see [`FaultMetrics`] for what each means).
    ///
    /// # Panics
    ///
    /// When `index` is not a window's index.
    pub fn fault_metrics(&self, index: usize) -> FaultMetrics {
        let window = &self.faults[index];
        let until = self
            .faults
            .get(index + 1)
            .map_or(Duration::MAX, |next| next.start);
        let calls = self.returned_between(window.start, until);
        let ready = window.recoverable_at();

        let mut errors_by_class = BTreeMap::new();
        let mut errors_after_ready = 0;
        let mut calls_ok = 0;
        let mut max_call = Duration::ZERO;
        let mut first_success = None;
        for call in calls {
            max_call = max_call.max(call.latency());
            match &call.error {
                None => {
                    calls_ok += 1;
                    if call.end >= ready && first_success.is_none() {
                        first_success = Some(call.end);
                    }
                }
                Some(class) => {
                    *errors_by_class.entry(class.clone()).or_insert(0) += 1;
                    if call.end >= ready {
                        errors_after_ready += 1;
                    }
                }
            }
        }
        let errors = errors_by_class.values().sum();
        let recovered_by = first_success.unwrap_or(until.min(self.elapsed));
        FaultMetrics {
            name: window.name.clone(),
            errors,
            errors_by_class,
            errors_after_ready,
            calls_ok,
            ready_to_first_success: first_success.map(|at| at - ready),
            no_success: self.longest_gap(window.start, recovered_by),
            max_call,
        }
    }

    /// Calls per bucket of `width` by the time they returned, from the start to the end of
    /// the timeline (the drill's chart uses 100 ms).
    ///
    /// # Panics
    ///
    /// When `width` is zero.
    pub fn histogram(&self, width: Duration) -> Vec<Bucket> {
        assert!(!width.is_zero(), "histogram bucket width must not be zero");
        let span = self
            .elapsed
            .max(self.calls.last().map_or(Duration::ZERO, |c| c.end));
        let count = (span.as_nanos() / width.as_nanos()) as usize + 1;
        let mut buckets: Vec<Bucket> = (0..count)
            .map(|i| Bucket {
                start: width * i as u32,
                ok: 0,
                err: 0,
            })
            .collect();
        for call in &self.calls {
            let bucket = &mut buckets[(call.end.as_nanos() / width.as_nanos()) as usize];
            if call.is_ok() {
                bucket.ok += 1;
            } else {
                bucket.err += 1;
            }
        }
        buckets
    }

    /// Calls that returned within `[from, to)` (they are sorted by return time).
    fn returned_between(&self, from: Duration, to: Duration) -> &[Call] {
        let first = self.calls.partition_point(|c| c.end < from);
        let last = self.calls.partition_point(|c| c.end < to);
        &self.calls[first..last.max(first)]
    }

    /// The longest gap between consecutive successful returns (the timeline's start and end
    /// standing in at the edges) that ends after `from` and begins before `to`.
    fn longest_gap(&self, from: Duration, to: Duration) -> Duration {
        let end = self
            .elapsed
            .max(self.calls.last().map_or(Duration::ZERO, |c| c.end));
        let successes = self.calls.iter().filter(|c| c.is_ok()).map(|c| c.end);
        let mut previous = Duration::ZERO;
        let mut longest = Duration::ZERO;
        for at in successes.chain(std::iter::once(end)) {
            if at > from && previous < to {
                longest = longest.max(at - previous);
            }
            if previous >= to {
                break;
            }
            previous = at;
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok(worker: usize, start: u64, end: u64) -> Call {
        Call {
            worker,
            start: ms(start),
            end: ms(end),
            error: None,
        }
    }

    fn err(worker: usize, start: u64, end: u64, class: &str) -> Call {
        Call {
            worker,
            start: ms(start),
            end: ms(end),
            error: Some(ErrorClass::new(class)),
        }
    }

    fn window(name: &str, start: u64, end: u64, ready: Option<u64>) -> FaultWindow {
        FaultWindow {
            name: name.to_owned(),
            start: ms(start),
            end: ms(end),
            ready: ready.map(ms),
        }
    }

    fn timeline(mut calls: Vec<Call>, faults: Vec<FaultWindow>, elapsed: u64) -> Timeline {
        calls.sort_by_key(|c| c.end);
        Timeline {
            clock: Clock::now(),
            workers: 2,
            elapsed: ms(elapsed),
            calls,
            faults,
        }
    }

    /// Two workers; a restart from 100 to 300 ms with the server ready at 290 ms.
    fn restart() -> Timeline {
        timeline(
            vec![
                ok(0, 0, 40),
                ok(1, 10, 60),
                ok(0, 40, 90),
                ok(1, 60, 110), // returned during the fault, before the server went away
                err(0, 90, 120, "57P01"),
                err(1, 110, 125, "57P01"),
                err(0, 120, 121, "refused"),
                err(1, 125, 126, "refused"),
                // worker 0 blocked in a pool until after ready
                ok(0, 121, 310),
                err(1, 126, 295, "57P03"), // a connect during recovery, after ready
                ok(1, 295, 330),
                ok(0, 310, 340),
            ],
            vec![window("fast restart", 100, 300, Some(290))],
            400,
        )
    }

    #[test]
    fn errors_are_counted_by_class_and_after_ready() {
        let m = restart().fault_metrics(0);
        assert_eq!(m.name, "fast restart");
        assert_eq!(m.errors, 5);
        let by_class: Vec<(&str, u64)> = m
            .errors_by_class
            .iter()
            .map(|(c, n)| (c.as_str(), *n))
            .collect();
        assert_eq!(by_class, [("57P01", 2), ("57P03", 1), ("refused", 2)]);
        assert_eq!(m.errors_after_ready, 1);
        // ok at 110, 310, 330, 340: calls returned before the window are not its own.
        assert_eq!(m.calls_ok, 4);
    }

    #[test]
    fn first_success_is_measured_from_the_ready_time() {
        let m = restart().fault_metrics(0);
        assert_eq!(m.ready_to_first_success, Some(ms(20))); // 290 -> 310
    }

    #[test]
    fn no_success_is_the_longest_gap_between_successes_across_the_fault() {
        let m = restart().fault_metrics(0);
        assert_eq!(m.no_success, ms(200)); // 110 -> 310
    }

    #[test]
    fn max_call_is_the_longest_call_returned_in_the_window() {
        let m = restart().fault_metrics(0);
        assert_eq!(m.max_call, ms(189)); // 121 -> 310
    }

    #[test]
    fn without_a_ready_time_the_window_end_counts() {
        let mut t = restart();
        t.faults[0].ready = None; // 300
        let m = t.fault_metrics(0);
        assert_eq!(m.ready_to_first_success, Some(ms(10))); // 300 -> 310
        assert_eq!(m.errors_after_ready, 0);
    }

    #[test]
    fn a_fault_without_recovery_reports_none_and_the_gap_to_the_end() {
        let t = timeline(
            vec![
                ok(0, 0, 50),
                err(0, 50, 150, "refused"),
                err(0, 150, 400, "timeout"),
            ],
            vec![window("outage", 100, 200, Some(190))],
            500,
        );
        let m = t.fault_metrics(0);
        assert_eq!(m.ready_to_first_success, None);
        assert_eq!(m.no_success, ms(450)); // 50 -> end of timeline
        assert_eq!(m.errors, 2);
        assert_eq!(m.max_call, ms(250));
    }

    #[test]
    fn each_window_owns_the_calls_until_the_next_one_begins() {
        let t = timeline(
            vec![
                ok(0, 0, 90),
                err(0, 100, 120, "57P01"),
                ok(0, 120, 200),
                ok(0, 200, 290),
                err(0, 300, 320, "closed"),
                err(0, 320, 330, "closed"),
                ok(0, 330, 350),
                ok(0, 350, 360),
            ],
            vec![
                window("terminate", 100, 110, None),
                window("fast restart", 300, 310, Some(305)),
            ],
            400,
        );
        let m = t.metrics();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].errors, m[0].calls_ok), (1, 2));
        assert_eq!(m[0].ready_to_first_success, Some(ms(90))); // 110 -> 200
        assert_eq!(m[0].no_success, ms(110)); // 90 -> 200
        assert_eq!((m[1].errors, m[1].calls_ok), (2, 2));
        assert_eq!(m[1].ready_to_first_success, Some(ms(45))); // 305 -> 350
        assert_eq!(m[1].no_success, ms(60)); // 290 -> 350
        assert_eq!(m[1].max_call, ms(20));
    }

    #[test]
    fn a_fault_nobody_noticed_reports_the_ordinary_gap() {
        let t = timeline(
            (0..10).map(|i| ok(0, i * 10, i * 10 + 10)).collect(),
            vec![window("nothing", 42, 43, None)],
            100,
        );
        let m = t.fault_metrics(0);
        assert_eq!(m.errors, 0);
        assert_eq!(m.no_success, ms(10));
        assert_eq!(m.ready_to_first_success, Some(ms(7))); // 43 -> 50
    }

    #[test]
    fn histogram_counts_calls_by_the_bucket_they_returned_in() {
        let t = restart();
        let h = t.histogram(ms(100));
        assert_eq!(h.len(), 5); // 0..=400 ms
        let counts: Vec<(u64, u64)> = h.iter().map(|b| (b.ok, b.err)).collect();
        assert_eq!(counts, [(3, 0), (1, 4), (0, 1), (3, 0), (0, 0)]);
        assert_eq!(h[3].start, ms(300));
        let total: u64 = h.iter().map(|b| b.ok + b.err).sum();
        assert_eq!(total, t.calls.len() as u64);
    }

    #[test]
    fn totals_and_ranges() {
        let t = restart();
        assert_eq!((t.ok(), t.errors()), (7, 5));
        assert_eq!(t.ok_between(ms(0), ms(100)), 3);
        assert_eq!(t.ok_between(ms(300), ms(400)), 3);
    }

    #[test]
    fn the_clock_puts_instants_and_wall_clock_times_on_one_axis() {
        let clock = Clock::now();
        assert_eq!(clock.offset(clock.instant + ms(250)), ms(250));
        assert_eq!(clock.offset_system(clock.system + ms(250)), ms(250));
        assert_eq!(clock.offset_system(clock.system - ms(250)), Duration::ZERO);
        assert_eq!(
            clock.instant_of(clock.system + ms(5)),
            clock.instant + ms(5)
        );
    }
}
