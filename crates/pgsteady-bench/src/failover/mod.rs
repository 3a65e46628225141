//! A failover under write load: a primary and its streaming standby, every client given the
//! same multi-host URL (primary first, `target_session_attrs=read-write`), N workers writing
//! unique keys at a steady pace; the primary is stopped (fast, immediate) or fenced
//! read-only with its sessions open, and the standby is promoted. Per client: the errors its
//! callers saw, promotion (from the server log) to the first acknowledged write, the longest
//! time without one, and where every write ended up on the new primary.
//!
//! Error classes are SQLSTATEs or [`ErrorClass`] names. One needs a word: tokio-postgres
//! (so deadpool-postgres, bb8-postgres and the naive loop) reports "no host in the list is
//! read-write" as an `io::Error` of kind `PermissionDenied` (its `connect.rs`, after
//! `SHOW transaction_read_only` answered `on` on the last host), shown as
//! `io:PermissionDenied`.

mod writers;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::workload::ErrorClass;
use pgsteady_testkit::{Cluster, Fault, StopMode};
use serde::Serialize;

use crate::report::{Table, fmt_ms, median, median_ms, thousands};
use crate::subject::BoxError;

pub use writers::{Failure, INSERT, Told, WriteClient};

/// What happens to the primary before the standby is promoted (`--faults`), each one of
/// the test kit's [`Fault`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
pub enum Failover {
    /// `pg_ctl stop -m fast`: sessions end with 57P01, the standby receives everything.
    FastStop,
    /// `pg_ctl stop -m immediate`: sessions cut, in-flight COMMITs unanswered.
    ImmediateStop,
    /// `ALTER SYSTEM SET default_transaction_read_only = on` + reload: the old primary stays
    /// up, its sessions open, every new transaction on it read-only (25006).
    Fence,
}

impl Failover {
    /// Every fault, in report order.
    pub const ALL: [Failover; 3] = [Failover::FastStop, Failover::ImmediateStop, Failover::Fence];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Failover::FastStop => "fast stop + promotion",
            Failover::ImmediateStop => "immediate stop + promotion",
            Failover::Fence => "fenced primary + promotion",
        }
    }

    /// The test kit's fault done to the primary.
    pub fn fault(self) -> Fault {
        match self {
            Failover::FastStop => Fault::Stop(StopMode::Fast),
            Failover::ImmediateStop => Fault::Stop(StopMode::Immediate),
            Failover::Fence => Fault::Fence,
        }
    }
}

/// How the standby replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
pub enum Replication {
    /// `synchronous_standby_names` names the standby: every acknowledged commit is on it.
    Sync,
    /// Asynchronous: an acknowledged commit may not have reached the standby.
    Async,
}

/// How each run is done.
#[derive(Debug, Clone)]
pub struct FailoverPlan {
    /// Workers, each writing one key per call.
    pub workers: usize,
    /// Maximum connections per pool.
    pub pool_size: usize,
    /// Each worker's pause after every call, successful or not.
    pub pace: Duration,
    /// Load before the fault, once every worker has written once.
    pub warmup: Duration,
    /// Between the fault and the promotion (a failover takes a moment to be decided).
    pub decide: Duration,
    /// Load after the promotion.
    pub after: Duration,
    /// A single call longer than this is abandoned and counted as `timeout`, outcome unknown.
    pub call_timeout: Duration,
}

impl Default for FailoverPlan {
    fn default() -> Self {
        FailoverPlan {
            workers: 8,
            pool_size: 8,
            pace: Duration::from_millis(10),
            warmup: Duration::from_millis(500),
            decide: Duration::from_millis(300),
            after: Duration::from_secs(3),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// One write as its caller saw it.
#[derive(Debug, Clone)]
struct Record {
    key: String,
    done: SystemTime,
    result: Result<(), Failure>,
}

/// What one client's callers saw in one run, and what the new primary holds.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverRun {
    /// Client name.
    pub client: String,
    /// Fault.
    pub fault: Failover,
    /// Standby replication.
    pub replication: Replication,
    /// Acknowledged writes, the whole run.
    pub acknowledged: u64,
    /// Errors surfaced to callers, from the fault on.
    pub errors: u64,
    /// The same by class.
    pub errors_by_class: BTreeMap<String, u64>,
    /// From the fault to the promotion's completion in the server log, ms.
    pub fault_to_promotion_ms: f64,
    /// From the promotion's completion to the first write acknowledged after it, ms; `None`
    /// if none was before the end of the run.
    pub promotion_to_first_write_ms: Option<f64>,
    /// Longest time without an acknowledged write, from the last one before the fault to the
    /// end of the run, ms.
    pub longest_gap_ms: f64,
    /// Acknowledged writes missing from the new primary.
    pub lost: u64,
    /// Keys present more than once on the new primary.
    pub duplicated: u64,
    /// Writes the caller was told did not commit that are on the new primary.
    pub not_committed_present: u64,
    /// Writes whose outcome the caller could not know.
    pub unknown: u64,
    /// Of those, present on the new primary.
    pub unknown_present: u64,
}

/// The multi-host URL every client is given: the primary first, `read-write`, 2 s connect
/// timeout. (The test kit's passwords are alphanumeric: no escaping needed.)
pub fn multi_host_url(primary: &Cluster, standby: &Cluster) -> String {
    format!(
        "postgresql://{}:{}@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write&connect_timeout=2",
        primary.user(),
        primary.password(),
        primary.port(),
        standby.port(),
        primary.dbname()
    )
}

async fn admin_client(cluster: &Cluster) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = cluster.pg_config().connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// One run: a fresh primary and standby, the client, the workers, warm-up, the fault, the
/// promotion, `plan.after` of load, then the new primary's rows.
pub async fn run_once(
    client: WriteClient,
    fault: Failover,
    replication: Replication,
    plan: &FailoverPlan,
) -> Result<FailoverRun, BoxError> {
    let primary = Cluster::start().await?;
    let standby = match replication {
        Replication::Sync => primary.standby().synchronous().start().await?,
        Replication::Async => primary.standby().start().await?,
    };
    admin_client(&primary)
        .await?
        .batch_execute("CREATE TABLE writes (id bigserial PRIMARY KEY, key text NOT NULL)")
        .await?;
    standby.catch_up(&primary, Duration::from_secs(10)).await?;

    let writer = Arc::new(
        client
            .build(&multi_host_url(&primary, &standby), plan.pool_size)
            .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Workers stop on every way out of this function, an error included.
    let _stop_on_exit = StopOnDrop(stop.clone());
    let logs: Vec<Arc<Mutex<Vec<Record>>>> = (0..plan.workers).map(|_| Arc::default()).collect();
    let workers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(w, log)| {
            let (writer, stop, log) = (writer.clone(), stop.clone(), log.clone());
            let (pace, bound) = (plan.pace, plan.call_timeout);
            tokio::spawn(async move {
                let mut naive = None;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("w{w}-{i}");
                    let result =
                        match tokio::time::timeout(bound, writer.write(&mut naive, &key)).await {
                            Ok(result) => result,
                            Err(_) => {
                                naive = None;
                                Err(Failure {
                                    class: ErrorClass::TIMEOUT,
                                    told: Told::Unknown,
                                })
                            }
                        };
                    let done = SystemTime::now();
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(Record {
                        key,
                        done,
                        result,
                    });
                    tokio::time::sleep(pace).await;
                }
            })
        })
        .collect();

    // Every worker wrote once, then the warm-up.
    let started = Instant::now();
    while !logs.iter().all(|log| {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|r| r.result.is_ok())
    }) {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(
                format!("{client}: not every worker wrote within 10 s before the fault").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(plan.warmup).await;

    let fault_at = SystemTime::now();
    fault.fault().apply(&primary).await?;
    tokio::time::sleep(plan.decide).await;
    standby.promote().await?;
    let promoted = standby
        .promoted_at()
        .ok_or("the promotion is not in the standby's log")?;
    tokio::time::sleep(plan.after).await;
    let end = SystemTime::now();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        // A worker finishes its call (bounded by the call timeout) and stops.
        let abort = worker.abort_handle();
        if tokio::time::timeout(plan.call_timeout + Duration::from_secs(1), worker)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    match Arc::try_unwrap(writer) {
        Ok(writer) => writer.close().await,
        Err(_) => eprintln!("{client}: a worker still holds the client; not closed"),
    }

    let rows: HashMap<String, i64> = admin_client(&standby)
        .await?
        .query("SELECT key, count(*) FROM writes GROUP BY key", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let records: Vec<Record> = logs
        .iter()
        .flat_map(|log| log.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    Ok(tally(
        client,
        fault,
        replication,
        &records,
        &rows,
        fault_at,
        promoted,
        end,
    ))
}

/// Sets the workers' stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// The figures of one run from what callers saw (`records`) and the new primary's rows per
/// key.
#[allow(clippy::too_many_arguments)]
fn tally(
    client: WriteClient,
    fault: Failover,
    replication: Replication,
    records: &[Record],
    rows: &HashMap<String, i64>,
    fault_at: SystemTime,
    promoted: SystemTime,
    end: SystemTime,
) -> FailoverRun {
    let mut errors_by_class = BTreeMap::new();
    let (mut errors, mut acknowledged, mut lost) = (0, 0, 0);
    let (mut not_committed_present, mut unknown, mut unknown_present) = (0, 0, 0);
    let mut acks = Vec::new();
    for r in records {
        let present = rows.get(&r.key).copied().unwrap_or(0) > 0;
        match &r.result {
            Ok(()) => {
                acknowledged += 1;
                acks.push(r.done);
                if !present {
                    lost += 1;
                }
            }
            Err(f) => {
                if r.done >= fault_at {
                    errors += 1;
                    *errors_by_class.entry(f.class.to_string()).or_insert(0) += 1;
                }
                match f.told {
                    Told::NotCommitted => not_committed_present += u64::from(present),
                    Told::Unknown => {
                        unknown += 1;
                        unknown_present += u64::from(present);
                    }
                }
            }
        }
    }
    acks.sort();
    let first_after = acks.iter().find(|at| **at >= promoted);
    // The gap: from the last acknowledgement before the fault through every later one to the
    // end of the run.
    let mut points: Vec<SystemTime> = acks.iter().copied().filter(|at| *at >= fault_at).collect();
    points.insert(
        0,
        acks.iter()
            .rev()
            .find(|at| **at < fault_at)
            .copied()
            .unwrap_or(fault_at),
    );
    points.push(end);
    let longest_gap = points
        .windows(2)
        .map(|w| since(w[1], w[0]))
        .max()
        .unwrap_or_default();
    FailoverRun {
        client: client.name().to_owned(),
        fault,
        replication,
        acknowledged,
        errors,
        errors_by_class,
        fault_to_promotion_ms: ms(since(promoted, fault_at)),
        promotion_to_first_write_ms: first_after.map(|at| ms(since(*at, promoted))),
        longest_gap_ms: ms(longest_gap),
        lost,
        duplicated: rows.values().filter(|n| **n > 1).count() as u64,
        not_committed_present,
        unknown,
        unknown_present,
    }
}

/// One client's runs under one fault and replication: medians of the timings and error
/// counts, totals of the rare events (a median would hide them).
#[derive(Debug, Clone, Serialize)]
pub struct FailoverSummary {
    /// Client name.
    pub client: String,
    /// Fault.
    pub fault: Failover,
    /// Standby replication.
    pub replication: Replication,
    /// Runs.
    pub runs: usize,
    /// Median errors surfaced.
    pub errors: f64,
    /// Errors by class, summed over the runs.
    pub errors_by_class: BTreeMap<String, u64>,
    /// Median ms from the fault to the promotion.
    pub fault_to_promotion_ms: f64,
    /// Median ms from the promotion to the first write; `None` if most runs had none.
    pub promotion_to_first_write_ms: Option<f64>,
    /// Median longest gap, ms.
    pub longest_gap_ms: f64,
    /// Median acknowledged writes per run.
    pub acknowledged: f64,
    /// Acknowledged writes lost, all runs.
    pub lost: u64,
    /// Keys duplicated, all runs.
    pub duplicated: u64,
    /// "Not committed" but present, all runs.
    pub not_committed_present: u64,
    /// Outcome unknown, all runs.
    pub unknown: u64,
    /// Outcome unknown and present, all runs.
    pub unknown_present: u64,
}

impl FailoverSummary {
    /// Over `runs` (all of one client, fault and replication).
    ///
    /// # Panics
    ///
    /// When `runs` is empty.
    pub fn of(runs: &[FailoverRun]) -> FailoverSummary {
        let first = &runs[0];
        let med = |f: fn(&FailoverRun) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        let sum = |f: fn(&FailoverRun) -> u64| runs.iter().map(f).sum::<u64>();
        let mut errors_by_class = BTreeMap::new();
        for run in runs {
            for (class, n) in &run.errors_by_class {
                *errors_by_class.entry(class.clone()).or_insert(0) += n;
            }
        }
        FailoverSummary {
            client: first.client.clone(),
            fault: first.fault,
            replication: first.replication,
            runs: runs.len(),
            errors: med(|r| r.errors as f64),
            errors_by_class,
            fault_to_promotion_ms: med(|r| r.fault_to_promotion_ms),
            promotion_to_first_write_ms: median_ms(
                &runs
                    .iter()
                    .map(|r| {
                        r.promotion_to_first_write_ms
                            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                    })
                    .collect::<Vec<_>>(),
            ),
            longest_gap_ms: med(|r| r.longest_gap_ms),
            acknowledged: med(|r| r.acknowledged as f64),
            lost: sum(|r| r.lost),
            duplicated: sum(|r| r.duplicated),
            not_committed_present: sum(|r| r.not_committed_present),
            unknown: sum(|r| r.unknown),
            unknown_present: sum(|r| r.unknown_present),
        }
    }
}

/// The markdown table for one fault and replication: one row per client.
pub fn failover_table(summaries: &[&FailoverSummary]) -> Table {
    let mut table = Table::new(&[
        "client",
        "errors",
        "error classes (all runs)",
        "promotion → 1st write ms",
        "longest write gap ms",
        "acked writes",
        "acked lost",
        "duplicated",
        "not committed but present",
        "outcome unknown (present)",
    ]);
    for s in summaries {
        let mut classes: Vec<(&String, &u64)> = s.errors_by_class.iter().collect();
        classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let classes = classes
            .iter()
            .map(|(c, n)| format!("{c} {}", thousands(**n)))
            .collect::<Vec<_>>()
            .join(", ");
        table.row(vec![
            s.client.clone(),
            thousands(s.errors.round() as u64),
            if classes.is_empty() {
                "-".to_owned()
            } else {
                classes
            },
            match s.promotion_to_first_write_ms {
                Some(ms) => fmt_ms(Some(ms)),
                None => "never".to_owned(),
            },
            fmt_ms(Some(s.longest_gap_ms)),
            thousands(s.acknowledged.round() as u64),
            thousands(s.lost),
            thousands(s.duplicated),
            thousands(s.not_committed_present),
            format!(
                "{} ({})",
                thousands(s.unknown),
                thousands(s.unknown_present)
            ),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn rec(key: &str, done: u64, result: Result<(), Told>) -> Record {
        Record {
            key: key.to_owned(),
            done: at(done),
            result: result.map_err(|told| Failure {
                class: ErrorClass::sqlstate("25006"),
                told,
            }),
        }
    }

    #[test]
    fn a_tally_counts_losses_duplicates_and_what_callers_were_told() {
        let records = [
            rec("a", 100, Ok(())),                   // before the fault, present
            rec("b", 900, Ok(())),                   // last before the fault, lost
            rec("c", 1100, Err(Told::NotCommitted)), // present: a lie
            rec("d", 1200, Err(Told::Unknown)),      // present
            rec("e", 1300, Err(Told::Unknown)),      // absent
            rec("f", 2500, Ok(())),                  // first after the promotion at 2000
            rec("g", 2600, Ok(())),                  // duplicated
        ];
        let rows: HashMap<String, i64> = [("a", 1), ("c", 1), ("d", 1), ("f", 1), ("g", 2)]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        let r = tally(
            WriteClient::Naive,
            Failover::Fence,
            Replication::Sync,
            &records,
            &rows,
            at(1000),
            at(2000),
            at(3000),
        );
        assert_eq!(
            (r.acknowledged, r.errors, r.lost, r.duplicated),
            (4, 3, 1, 1)
        );
        assert_eq!(r.errors_by_class["25006"], 3);
        assert_eq!(
            (r.not_committed_present, r.unknown, r.unknown_present),
            (1, 2, 1)
        );
        assert_eq!(r.fault_to_promotion_ms, 1000.0);
        assert_eq!(r.promotion_to_first_write_ms, Some(500.0));
        // From the last ack before the fault (900) to the first after (2500).
        assert_eq!(r.longest_gap_ms, 1600.0);

        let s = FailoverSummary::of(&[r.clone(), r]);
        assert_eq!((s.lost, s.duplicated, s.unknown_present), (2, 2, 2));
        let table = failover_table(&[&s]).to_string();
        assert!(table.contains("25006 6"), "{table}");
        assert!(table.contains("4 (2)"), "{table}");
    }

    #[test]
    fn a_client_that_never_writes_again_has_no_first_write_and_a_gap_to_the_end() {
        let records = [
            rec("a", 900, Ok(())),
            rec("b", 1500, Err(Told::NotCommitted)),
        ];
        let rows = HashMap::from([("a".to_owned(), 1)]);
        let r = tally(
            WriteClient::Deadpool,
            Failover::Fence,
            Replication::Sync,
            &records,
            &rows,
            at(1000),
            at(2000),
            at(5000),
        );
        assert_eq!(r.promotion_to_first_write_ms, None);
        assert_eq!(r.longest_gap_ms, 4100.0);
        let s = FailoverSummary::of(&[r]);
        assert!(failover_table(&[&s]).to_string().contains("never"));
    }
}
