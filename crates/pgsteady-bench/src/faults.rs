//! One fault at a time under load: what each client's callers saw.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgsteady_testkit::workload::{FaultMetrics, Workload};
use pgsteady_testkit::{BackendFilter, Cluster, Fault, FaultProxy, StopMode};
use serde::Serialize;

use crate::attempts::AttemptCounter;
use crate::report::{Table, fmt_ms, median, median_ms, thousands};
use crate::subject::{BoxError, ClientKind, Target};

/// The faults a benchmark run can pick (`--faults`), each one of the test kit's [`Fault`]s
/// applied to the server while the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
pub enum FaultKind {
    /// `pg_ctl stop -m fast` (SIGINT), then start: sessions end with 57P01.
    FastRestart,
    /// `pg_ctl stop -m immediate` (SIGQUIT), then start with crash recovery.
    ImmediateRestart,
    /// SIGKILL of the postmaster, then start with crash recovery.
    KillPostmaster,
    /// `pg_terminate_backend` of every client session; the server stays up.
    TerminateBackends,
    /// The server stopped (fast) for the outage time, then started.
    Outage,
}

impl FaultKind {
    /// Every fault, in report order.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::FastRestart,
        FaultKind::ImmediateRestart,
        FaultKind::KillPostmaster,
        FaultKind::TerminateBackends,
        FaultKind::Outage,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::FastRestart => "fast restart",
            FaultKind::ImmediateRestart => "immediate restart",
            FaultKind::KillPostmaster => "SIGKILL of the postmaster",
            FaultKind::TerminateBackends => "pg_terminate_backend of every session",
            FaultKind::Outage => "outage",
        }
    }

    /// Applies the fault during a fault window of `workload`. Returns when the server is
    /// available again, with how long it was down and not starting and the connection
    /// attempts counted meanwhile, for the outage.
    async fn apply(
        self,
        cluster: &Cluster,
        workload: &Workload,
        outage: Duration,
        attempts: &AttemptCounter,
    ) -> Result<(Option<Duration>, Option<u64>), BoxError> {
        let id = workload.begin_fault(self.name());
        let (mut down, mut attempts_down) = (None, None);
        let fault = self.fault(outage);
        if let Fault::Outage(hold) = fault {
            // `Fault::Outage` by hand: the attempts are counted while the server is down,
            // not while it stops and starts.
            cluster.stop(StopMode::Fast).await?;
            let (from, count) = (Instant::now(), attempts.total().await);
            tokio::time::sleep(hold).await;
            down = Some(from.elapsed());
            attempts_down = count
                .zip(attempts.total().await)
                .map(|(b, a)| a.saturating_sub(b));
            cluster.start_server().await?;
        } else {
            fault.apply(cluster).await?;
        }
        workload.end_fault(id);
        if fault.starts_the_server() {
            workload.server_ready(id, cluster.ready_at());
        }
        Ok((down, attempts_down))
    }

    /// The test kit's fault; `outage` is how long [`FaultKind::Outage`] keeps the server down.
    pub fn fault(self, outage: Duration) -> Fault {
        match self {
            FaultKind::FastRestart => Fault::Restart(StopMode::Fast),
            FaultKind::ImmediateRestart => Fault::Restart(StopMode::Immediate),
            FaultKind::KillPostmaster => Fault::KillPostmaster,
            FaultKind::TerminateBackends => Fault::Terminate(BackendFilter::ClientBackends),
            FaultKind::Outage => Fault::Outage(outage),
        }
    }
}

/// How the fault runs are done.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Workers looping checkout + query.
    pub workers: usize,
    /// Maximum connections per pool.
    pub pool_size: usize,
    /// How long [`FaultKind::Outage`] keeps the server down.
    pub outage: Duration,
    /// Load before the fault, once the first call succeeded.
    pub warmup: Duration,
    /// Load after callers are served again, to catch late errors.
    pub settle: Duration,
    /// Give up waiting for callers to be served again after this long past the fault.
    pub recovery_cap: Duration,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            workers: 8,
            pool_size: 8,
            outage: Duration::from_secs(10),
            warmup: Duration::from_millis(300),
            settle: Duration::from_millis(500),
            recovery_cap: Duration::from_secs(30),
        }
    }
}

/// What callers saw in one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Client name.
    pub client: String,
    /// Fault.
    pub fault: FaultKind,
    /// Errors surfaced to callers.
    pub errors: u64,
    /// The same by class.
    pub errors_by_class: BTreeMap<String, u64>,
    /// Errors surfaced after the server was ready again.
    pub errors_after_ready: u64,
    /// Server ready (log line) to the first successful call, in ms; `None` if callers were
    /// not served again before the recovery cap.
    pub ready_to_first_success_ms: Option<f64>,
    /// Longest time no caller saw a success, in ms.
    pub no_success_ms: f64,
    /// Longest single call, in ms.
    pub max_call_ms: f64,
    /// Successful calls from the fault to the end of the run.
    pub calls_ok: u64,
    /// Connection attempts from the fault to the end of the run, if counted.
    pub attempts: Option<u64>,
    /// Connection attempts per second while the server was down (outage only).
    pub attempts_per_sec_down: Option<f64>,
}

impl RunResult {
    fn new(kind: ClientKind, fault: FaultKind, m: &FaultMetrics) -> RunResult {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        RunResult {
            client: kind.name().to_owned(),
            fault,
            errors: m.errors,
            errors_by_class: m
                .errors_by_class
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
            errors_after_ready: m.errors_after_ready,
            ready_to_first_success_ms: m.ready_to_first_success.map(ms),
            no_success_ms: ms(m.no_success),
            max_call_ms: ms(m.max_call),
            calls_ok: m.calls_ok,
            attempts: None,
            attempts_per_sec_down: None,
        }
    }
}

async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// One run: a fresh client (through the proxy if `attempts` is one, else directly) with the
/// plan's workers, warm-up, the fault, recovery, settle; then the figures for the fault
/// window, with the connection attempts `attempts` counted.
pub async fn run_once(
    cluster: &Cluster,
    attempts: &AttemptCounter,
    kind: ClientKind,
    fault: FaultKind,
    plan: &FaultPlan,
) -> Result<RunResult, BoxError> {
    let port = attempts.proxy().map_or(cluster.port(), FaultProxy::port);
    let target = Target::new(cluster, port, plan.pool_size);
    let subject = crate::clients::build(kind, &target).await?;
    let workload = subject.start(plan.workers);
    let serving = wait_until(Instant::now() + Duration::from_secs(10), || {
        workload.progress().ok > 0
    })
    .await;
    if !serving {
        workload.stop_within(Duration::from_secs(1)).await;
        return Err(format!("{kind}: no call succeeded within 10 s before the fault").into());
    }
    tokio::time::sleep(plan.warmup).await;

    let before = attempts.total().await;
    let (down, attempts_down) = fault
        .apply(cluster, &workload, plan.outage, attempts)
        .await?;
    let ok_after_fault = workload.progress().ok;
    let workers = plan.workers as u64;
    wait_until(Instant::now() + plan.recovery_cap, || {
        workload.progress().ok >= ok_after_fault + workers
    })
    .await;
    tokio::time::sleep(plan.settle).await;
    let timeline = workload.stop_within(plan.recovery_cap).await;
    subject.close().await;

    let after = attempts.total().await;

    let metrics = timeline.fault_metrics(0);
    let mut result = RunResult::new(kind, fault, &metrics);
    result.attempts = before.zip(after).map(|(b, a)| a.saturating_sub(b));
    result.attempts_per_sec_down = down
        .zip(attempts_down)
        .map(|(d, n)| n as f64 / d.as_secs_f64());
    Ok(result)
}

/// The medians of a client's runs under one fault.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Client name.
    pub client: String,
    /// Fault.
    pub fault: FaultKind,
    /// Runs.
    pub runs: usize,
    /// Median errors surfaced.
    pub errors: f64,
    /// Errors by class, summed over the runs.
    pub errors_by_class: BTreeMap<String, u64>,
    /// Median ms from ready to first success; `None` if most runs did not recover.
    pub ready_to_first_success_ms: Option<f64>,
    /// Median ms without any success.
    pub no_success_ms: f64,
    /// Median of the longest call, ms.
    pub max_call_ms: f64,
    /// Median connection attempts from the fault to the end of the run, if counted.
    pub attempts: Option<f64>,
    /// Median connection attempts per second while down (outage only).
    pub attempts_per_sec_down: Option<f64>,
}

impl Summary {
    /// Medians over `runs` (all of one client and fault).
    ///
    /// # Panics
    ///
    /// When `runs` is empty.
    pub fn of(runs: &[RunResult]) -> Summary {
        let first = &runs[0];
        let values = |f: fn(&RunResult) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        let mut errors_by_class = BTreeMap::new();
        for run in runs {
            for (class, n) in &run.errors_by_class {
                *errors_by_class.entry(class.clone()).or_insert(0) += n;
            }
        }
        let rates: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.attempts_per_sec_down)
            .collect();
        let attempts: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.attempts.map(|n| n as f64))
            .collect();
        Summary {
            client: first.client.clone(),
            fault: first.fault,
            runs: runs.len(),
            errors: values(|r| r.errors as f64),
            errors_by_class,
            ready_to_first_success_ms: median_ms(
                &runs
                    .iter()
                    .map(|r| {
                        r.ready_to_first_success_ms
                            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                    })
                    .collect::<Vec<_>>(),
            ),
            no_success_ms: values(|r| r.no_success_ms),
            max_call_ms: values(|r| r.max_call_ms),
            attempts: median(&attempts),
            attempts_per_sec_down: median(&rates),
        }
    }
}

/// The markdown table for one fault: one row per client summary.
pub fn fault_table(summaries: &[&Summary]) -> Table {
    let outage = summaries.iter().any(|s| s.attempts_per_sec_down.is_some());
    let mut header = vec![
        "client",
        "errors",
        "error classes (all runs)",
        "ready → 1st success ms",
        "no success ms",
        "max call ms",
        "connects",
    ];
    if outage {
        header.push("connects/s while down");
    }
    let mut table = Table::new(&header);
    for s in summaries {
        let mut classes: Vec<(&String, &u64)> = s.errors_by_class.iter().collect();
        classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let classes = classes
            .iter()
            .map(|(c, n)| format!("{c} {}", thousands(**n)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut row = vec![
            s.client.clone(),
            thousands(s.errors.round() as u64),
            classes,
            match s.ready_to_first_success_ms {
                Some(ms) => fmt_ms(Some(ms)),
                None => "not recovered".to_owned(),
            },
            fmt_ms(Some(s.no_success_ms)),
            fmt_ms(Some(s.max_call_ms)),
            s.attempts
                .map_or("-".to_owned(), |n| thousands(n.round() as u64)),
        ];
        if outage {
            row.push(s.attempts_per_sec_down.map_or("-".to_owned(), |r| {
                if r >= 100.0 {
                    thousands(r.round() as u64)
                } else {
                    format!("{r:.1}")
                }
            }));
        }
        table.row(row);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(errors: u64, first: Option<f64>, classes: &[(&str, u64)]) -> RunResult {
        RunResult {
            client: "deadpool-postgres".into(),
            fault: FaultKind::Outage,
            errors,
            errors_by_class: classes.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
            errors_after_ready: 0,
            ready_to_first_success_ms: first,
            no_success_ms: errors as f64 * 10.0,
            max_call_ms: 5.0,
            calls_ok: 100,
            attempts: Some(10),
            attempts_per_sec_down: Some(errors as f64),
        }
    }

    #[test]
    fn a_summary_takes_medians_and_sums_classes() {
        let runs = [
            run(7, Some(3.0), &[("reset", 7)]),
            run(1, None, &[("57P01", 1)]),
            run(4, Some(5.0), &[("reset", 3), ("57P01", 1)]),
        ];
        let s = Summary::of(&runs);
        assert_eq!(s.errors, 4.0);
        assert_eq!(s.ready_to_first_success_ms, Some(5.0));
        assert_eq!(s.no_success_ms, 40.0);
        assert_eq!(s.attempts_per_sec_down, Some(4.0));
        assert_eq!(s.errors_by_class["reset"], 10);
        assert_eq!(s.errors_by_class["57P01"], 2);
        let table = fault_table(&[&s]).to_string();
        assert!(table.contains("reset 10, 57P01 2"), "{table}");
        assert!(table.contains("connects/s while down"), "{table}");
    }
}
