//! A failover under write load, per client: a fresh primary and streaming standby per run,
//! 8 workers writing unique keys every 10 ms through a client given the multi-host URL
//! `postgresql://…@127.0.0.1:P,127.0.0.1:S/…?target_session_attrs=read-write`; the primary
//! is stopped (fast, immediate) or fenced read-only, and 300 ms later the standby is
//! promoted. See BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pgsteady_bench::failover::{
    Failover, FailoverPlan, FailoverRun, FailoverSummary, Replication, WriteClient, failover_table,
    run_once,
};

/// Promotion -> first successful write, errors surfaced and writes lost, per client.
#[derive(Debug, Parser)]
struct Args {
    /// Clients to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = WriteClient::ALL)]
    clients: Vec<WriteClient>,
    /// Faults to apply to the primary before the promotion.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Failover::ALL)]
    faults: Vec<Failover>,
    /// Standby replication modes.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Replication::Sync])]
    replication: Vec<Replication>,
    /// Runs per cell (the report shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Workers writing.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Maximum connections per pool.
    #[arg(long, default_value_t = 8)]
    pool_size: usize,
    /// Each worker's pause after every call, ms.
    #[arg(long, default_value_t = 10)]
    pace_ms: u64,
    /// Load after the promotion, ms.
    #[arg(long, default_value_t = 3000)]
    after_ms: u64,
    /// Also write every run and summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), pgsteady_bench::BoxError> {
    let args = Args::parse();
    let clients: Vec<WriteClient> = args
        .clients
        .iter()
        .copied()
        .filter(|c| match c.unavailable() {
            Some(why) => {
                eprintln!("skipping {c}: {why}");
                false
            }
            None => true,
        })
        .collect();
    let plan = FailoverPlan {
        workers: args.workers,
        pool_size: args.pool_size,
        pace: Duration::from_millis(args.pace_ms),
        after: Duration::from_millis(args.after_ms),
        ..FailoverPlan::default()
    };
    eprintln!(
        "{} workers every {} ms, pool size {}, {} runs per cell, {} ms of load after the promotion",
        plan.workers, args.pace_ms, plan.pool_size, args.runs, args.after_ms
    );
    let mut runs: Vec<FailoverRun> = Vec::new();
    for &replication in &args.replication {
        for &fault in &args.faults {
            for run in 0..args.runs {
                for &client in &clients {
                    let r = run_once(client, fault, replication, &plan).await?;
                    eprintln!(
                        "{replication:?} {:<27} run {}/{} {client:<22} errors {:>5}  promotion->1st write {:>9}  gap {:>6.0} ms  acked {:>5}  lost {}  dup {}  nc-present {}  unknown {} ({} present)",
                        fault.name(),
                        run + 1,
                        args.runs,
                        r.errors,
                        r.promotion_to_first_write_ms
                            .map_or("never".to_owned(), |ms| format!("{ms:.0} ms")),
                        r.longest_gap_ms,
                        r.acknowledged,
                        r.lost,
                        r.duplicated,
                        r.not_committed_present,
                        r.unknown,
                        r.unknown_present,
                    );
                    runs.push(r);
                }
            }
        }
    }
    let mut summaries = Vec::new();
    for &replication in &args.replication {
        for &fault in &args.faults {
            let rows: Vec<FailoverSummary> = clients
                .iter()
                .filter_map(|c| {
                    let mine: Vec<FailoverRun> = runs
                        .iter()
                        .filter(|r| {
                            r.fault == fault && r.replication == replication && r.client == c.name()
                        })
                        .cloned()
                        .collect();
                    (!mine.is_empty()).then(|| FailoverSummary::of(&mine))
                })
                .collect();
            let promotion = pgsteady_bench::report::median(
                &rows
                    .iter()
                    .map(|s| s.fault_to_promotion_ms)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(f64::NAN);
            println!(
                "\n### {}, {} standby: median of {} runs (fault -> promotion done: {promotion:.0} ms)\n",
                fault.name(),
                match replication {
                    Replication::Sync => "synchronous",
                    Replication::Async => "asynchronous",
                },
                args.runs
            );
            println!("{}", failover_table(&rows.iter().collect::<Vec<_>>()));
            summaries.extend(rows);
        }
    }
    if let Some(path) = args.json {
        let doc = serde_json::json!({ "runs": runs, "summaries": summaries });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
