//! Run a workload against any client while faults happen, and record what callers saw.
//!
//! [`Workload::start`] spawns N workers, each calling its [`Operation`] in a loop until
//! [`Workload::stop`]. Every call is recorded with its start and end instants and its outcome
//! (an [`ErrorClass`] on failure). Recording costs two `Instant::now()` and a push to the
//! worker's own `Vec`: no lock and no shared counter per call; the vectors are merged when
//! the workload stops.
//!
//! While it runs, the controlling code marks fault windows ([`Workload::begin_fault`],
//! [`Workload::end_fault`]) and the moments the server said it was ready again
//! ([`Workload::server_ready`], from [`crate::Cluster::ready_at`]). The resulting
//! [`Timeline`] computes, per fault window, the errors surfaced to callers, the time from
//! ready to the first success, the longest time without any success and the longest call
//! ([`FaultMetrics`]), and a histogram of successes and errors over time.
//!
//! [`NaiveClient`] is the baseline most code is compared with: one tokio-postgres connection
//! per worker, reconnecting after any error, with no back-off.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pgsteady_testkit::workload::{NaiveClient, Workload};
//! use pgsteady_testkit::{Cluster, StopMode};
//!
//! let cluster = Cluster::start().await?;
//! let config = cluster.pg_config();
//! let workload = Workload::start(8, |_| NaiveClient::new(config.clone()));
//! tokio::time::sleep(std::time::Duration::from_millis(200)).await;
//!
//! let fault = workload.begin_fault("fast restart");
//! cluster.restart(StopMode::Fast).await?;
//! workload.end_fault(fault);
//! workload.server_ready(fault, cluster.ready_at());
//! tokio::time::sleep(std::time::Duration::from_millis(500)).await;
//!
//! let timeline = workload.stop().await;
//! let m = timeline.fault_metrics(0);
//! println!(
//!     "{}: {} errors {:?}, first success {:?} after ready, {:?} without success",
//!     m.name, m.errors, m.errors_by_class, m.ready_to_first_success, m.no_success
//! );
//! # Ok(()) }
//! ```

mod class;
mod naive;
mod timeline;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;

pub use class::{Classify, ErrorClass};
pub use naive::NaiveClient;
pub use timeline::{Bucket, Call, Clock, FaultMetrics, FaultWindow, Timeline};

/// One unit of work a worker repeats: e.g. check a connection out of a pool and run
/// `SELECT 1`. Each worker owns its operation, so per-worker state (a connection, a
/// statement cache) lives in `self`.
///
/// Closures `FnMut() -> impl Future<Output = Result<(), E>>` are operations too (their future
/// cannot borrow the closure; share state through `Arc`s or clones).
pub trait Operation: Send + 'static {
    /// What a failed call returns.
    type Error: Classify;

    /// Runs the operation once.
    fn call(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send + '_;
}

impl<F, Fut, E> Operation for F
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Classify,
{
    type Error = E;

    fn call(&mut self) -> impl Future<Output = Result<(), E>> + Send + '_ {
        self()
    }
}

/// Identifies a fault window of a running [`Workload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(usize);

/// Calls finished so far, from [`Workload::progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Successful calls.
    pub ok: u64,
    /// Failed calls.
    pub err: u64,
}

/// A workload in progress: N workers looping an [`Operation`].
#[derive(Debug)]
pub struct Workload {
    clock: Clock,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    logs: Arc<Mutex<Vec<WorkerLog>>>,
    progress: Vec<Arc<Counters>>,
    faults: Mutex<Vec<OpenWindow>>,
}

#[derive(Debug)]
struct OpenWindow {
    name: String,
    start: Instant,
    end: Option<Instant>,
    ready: Option<SystemTime>,
}

impl Workload {
    /// Starts `workers` tasks on the current tokio runtime; worker `i` repeats the operation
    /// `make(i)` returns until [`Workload::stop`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start<O: Operation>(workers: usize, mut make: impl FnMut(usize) -> O) -> Workload {
        let clock = Clock::now();
        let stop = Arc::new(AtomicBool::new(false));
        let logs = Arc::new(Mutex::new(Vec::with_capacity(workers)));
        let mut progress = Vec::with_capacity(workers);
        let handles = (0..workers)
            .map(|worker| {
                let counters = Arc::new(Counters::default());
                progress.push(counters.clone());
                let recorder = Recorder {
                    worker,
                    calls: Vec::with_capacity(4096),
                    in_flight: None,
                    counters,
                    sink: logs.clone(),
                };
                tokio::spawn(run_worker(make(worker), stop.clone(), recorder))
            })
            .collect();
        Workload {
            clock,
            stop,
            workers: handles,
            logs,
            progress,
            faults: Mutex::new(Vec::new()),
        }
    }

    /// The clock the timeline is measured with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Calls finished so far (for a progress line; exact per worker, summed without a lock).
    pub fn progress(&self) -> Progress {
        self.progress
            .iter()
            .fold(Progress::default(), |sum, c| Progress {
                ok: sum.ok + c.ok.load(Ordering::Relaxed),
                err: sum.err + c.err.load(Ordering::Relaxed),
            })
    }

    /// Marks the start of a fault window, now.
    pub fn begin_fault(&self, name: impl Into<String>) -> FaultId {
        let mut faults = self.faults.lock().expect("fault windows");
        faults.push(OpenWindow {
            name: name.into(),
            start: Instant::now(),
            end: None,
            ready: None,
        });
        FaultId(faults.len() - 1)
    }

    /// Marks the end of a fault window, now. A window never ended ends when the workload
    /// stops.
    pub fn end_fault(&self, id: FaultId) {
        self.faults.lock().expect("fault windows")[id.0].end = Some(Instant::now());
    }

    /// Records when the server said it was ready again during this fault (e.g.
    /// [`crate::Cluster::ready_at`] after `start_server`). `None` is ignored.
    pub fn server_ready(&self, id: FaultId, at: Option<SystemTime>) {
        if let Some(at) = at {
            self.faults.lock().expect("fault windows")[id.0].ready = Some(at);
        }
    }

    /// Tells the workers to stop, waits for every call in flight to return and returns the
    /// timeline.
    pub async fn stop(self) -> Timeline {
        self.stop_within(Duration::MAX).await
    }

    /// Like [`Workload::stop`], but calls still running after `grace` are abandoned and
    /// recorded as [`ErrorClass::UNFINISHED`], ending at the moment they were abandoned.
    pub async fn stop_within(mut self, grace: Duration) -> Timeline {
        self.stop.store(true, Ordering::Relaxed);
        let stopped = Instant::now();
        let deadline = stopped.checked_add(grace);
        for handle in &mut self.workers {
            let waited = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), &mut *handle)
                    .await
                    .is_ok(),
                None => {
                    let _ = (&mut *handle).await;
                    true
                }
            };
            if !waited {
                handle.abort();
                // The aborted task drops its recorder, which files the log.
                let _ = (&mut *handle).await;
            }
        }
        let end = Instant::now();
        let clock = self.clock;
        let mut calls: Vec<Call> = std::mem::take(&mut *self.logs.lock().expect("worker logs"))
            .into_iter()
            .flat_map(|log| {
                let worker = log.worker;
                log.calls.into_iter().map(move |raw| Call {
                    worker,
                    start: clock.offset(raw.start),
                    end: clock.offset(raw.end),
                    error: raw.error,
                })
            })
            .collect();
        calls.sort_by_key(|c| c.end);
        let faults = std::mem::take(&mut *self.faults.lock().expect("fault windows"))
            .into_iter()
            .map(|w| FaultWindow {
                name: w.name,
                start: clock.offset(w.start),
                end: clock.offset(w.end.unwrap_or(stopped)),
                ready: w.ready.map(|at| clock.offset_system(at)),
            })
            .collect();
        Timeline {
            clock,
            workers: self.workers.len(),
            elapsed: clock.offset(end),
            calls,
            faults,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in &self.workers {
            handle.abort();
        }
    }
}

async fn run_worker<O: Operation>(mut op: O, stop: Arc<AtomicBool>, mut recorder: Recorder) {
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        recorder.in_flight = Some(start);
        let result = op.call().await;
        let end = Instant::now();
        recorder.in_flight = None;
        recorder.record(start, end, result.err().map(|e| e.class()));
        // A call that fails without awaiting anything (a refused connect can) must not
        // starve the other tasks: give the scheduler a turn when the budget is spent.
        tokio::task::coop::consume_budget().await;
    }
}

#[derive(Debug)]
struct RawCall {
    start: Instant,
    end: Instant,
    error: Option<ErrorClass>,
}

#[derive(Debug)]
struct WorkerLog {
    worker: usize,
    calls: Vec<RawCall>,
}

/// Padded so that workers counting on different cores do not share a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Counters {
    ok: AtomicU64,
    err: AtomicU64,
}

/// A worker's own log. Dropping it (the worker returned or was aborted) files the log, with
/// a call still in flight recorded as unfinished.
#[derive(Debug)]
struct Recorder {
    worker: usize,
    calls: Vec<RawCall>,
    in_flight: Option<Instant>,
    counters: Arc<Counters>,
    sink: Arc<Mutex<Vec<WorkerLog>>>,
}

impl Recorder {
    fn record(&mut self, start: Instant, end: Instant, error: Option<ErrorClass>) {
        // Only this worker writes its counters: a load and a store, no read-modify-write.
        let counter = if error.is_none() {
            &self.counters.ok
        } else {
            &self.counters.err
        };
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.calls.push(RawCall { start, end, error });
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(start) = self.in_flight.take() {
            self.record(start, Instant::now(), Some(ErrorClass::UNFINISHED));
        }
        let log = WorkerLog {
            worker: self.worker,
            calls: std::mem::take(&mut self.calls),
        };
        if let Ok(mut logs) = self.sink.lock() {
            logs.push(log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_is_recorded_in_order_with_its_outcome() {
        let workload = Workload::start(3, |worker| {
            let mut n = 0u32;
            move || {
                n += 1;
                let fail = worker == 1 && n.is_multiple_of(2);
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if fail {
                        Err(ErrorClass::REFUSED)
                    } else {
                        Ok(())
                    }
                }
            }
        });
        let fault = workload.begin_fault("nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
        workload.end_fault(fault);
        workload.server_ready(fault, Some(SystemTime::now()));
        let progress = workload.progress();
        let timeline = workload.stop().await;

        assert_eq!(timeline.workers, 3);
        assert!(timeline.calls.len() as u64 >= progress.ok + progress.err);
        assert!(timeline.calls.windows(2).all(|w| w[0].end <= w[1].end));
        assert!(timeline.calls.iter().all(|c| c.start <= c.end));
        assert!(timeline.calls.iter().all(|c| c.end <= timeline.elapsed));
        let failed: Vec<&Call> = timeline.calls.iter().filter(|c| !c.is_ok()).collect();
        assert!(!failed.is_empty());
        assert!(failed.iter().all(|c| c.worker == 1));
        assert!(
            failed
                .iter()
                .all(|c| c.error.as_ref() == Some(&ErrorClass::REFUSED))
        );
        for worker in 0..3 {
            assert!(
                timeline
                    .calls
                    .iter()
                    .any(|c| c.worker == worker && c.is_ok())
            );
        }
        let window = &timeline.faults[0];
        assert_eq!(window.name, "nothing");
        assert!(window.start < window.end);
        assert!(window.ready.is_some_and(|r| r >= window.start));
    }

    #[tokio::test]
    async fn calls_still_running_after_the_grace_period_are_recorded_as_unfinished() {
        let workload = Workload::start(2, |worker| {
            move || async move {
                if worker == 0 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<(), ErrorClass>(())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let timeline = workload.stop_within(Duration::from_millis(20)).await;
        let stuck: Vec<&Call> = timeline.calls.iter().filter(|c| c.worker == 0).collect();
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].error, Some(ErrorClass::UNFINISHED));
        assert!(stuck[0].latency() >= Duration::from_millis(40));
        assert!(timeline.calls.iter().any(|c| c.worker == 1 && c.is_ok()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_worker_that_never_awaits_does_not_starve_the_runtime() {
        let workload = Workload::start(1, |_| || async { Err::<(), _>(ErrorClass::REFUSED) });
        // On a single thread this sleep only returns if the worker yields.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let timeline = workload.stop().await;
        assert!(timeline.errors() > 0);
    }
}
