//! One fault at a time under load (8 workers looping checkout + `SELECT 1`, pool of 8),
//! every client connecting directly while connection attempts are counted as SYNs in a
//! private network namespace (or through a counting fault proxy with `--proxy`). See
//! BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pgsteady_bench::{
    AttemptCounter, ClientKind, FaultKind, FaultPlan, RunResult, Summary, SynCounter, fault_table,
    run_once,
};
use pgsteady_testkit::{Cluster, FaultProxy, netns};

/// What callers of each client see when the server restarts, crashes or goes away.
#[derive(Debug, Parser)]
struct Args {
    /// Clients to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ClientKind::ALL)]
    clients: Vec<ClientKind>,
    /// Faults to apply.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = FaultKind::ALL)]
    faults: Vec<FaultKind>,
    /// Runs per fault and client (the report shows medians).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Fewer runs (2 per fault and client).
    #[arg(long)]
    quick: bool,
    /// Workers looping checkout + SELECT 1.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Maximum connections per pool.
    #[arg(long, default_value_t = 8)]
    pool_size: usize,
    /// Seconds the server stays down in the outage fault.
    #[arg(long, default_value_t = 10)]
    outage_secs: u64,
    /// Connect through a fault proxy and count the connections it accepts, instead of
    /// connecting directly and counting SYNs in a private network namespace. A proxy resets
    /// connections the server cannot take where a direct connect is refused, which changes
    /// how some clients behave (see BENCHMARKS.md).
    #[arg(long)]
    proxy: bool,
    /// Also write every run and summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> Result<(), pgsteady_bench::BoxError> {
    let args = Args::parse();
    // Before the runtime starts, so that its threads, the server and the nftables counter
    // all live in the private namespace.
    let isolated = if args.proxy {
        false
    } else {
        match netns::isolate_thread() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("connection attempts not counted: {e}");
                false
            }
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, isolated))
}

async fn run(mut args: Args, isolated: bool) -> Result<(), pgsteady_bench::BoxError> {
    if args.quick {
        args.runs = 2;
    }
    let clients = ClientKind::runnable(&args.clients);
    let plan = FaultPlan {
        workers: args.workers,
        pool_size: args.pool_size,
        outage: Duration::from_secs(args.outage_secs),
        ..FaultPlan::default()
    };
    let cluster = Cluster::start().await?;
    let attempts = if args.proxy {
        AttemptCounter::Proxy(FaultProxy::start(cluster.addr()).await?)
    } else if isolated {
        AttemptCounter::Syn(SynCounter::install(cluster.port()).await?)
    } else {
        AttemptCounter::None
    };
    let via = match &attempts {
        AttemptCounter::Proxy(proxy) => format!("through a fault proxy on {}", proxy.addr()),
        AttemptCounter::Syn(_) => "directly, SYNs counted in a private network namespace".into(),
        AttemptCounter::None => "directly, attempts not counted".into(),
    };
    eprintln!(
        "server {} on {}, clients connect {via}; {} workers, pool size {}, {} runs",
        cluster.bin().dir().display(),
        cluster.addr(),
        plan.workers,
        plan.pool_size,
        args.runs
    );
    let mut runs: Vec<RunResult> = Vec::new();
    for &fault in &args.faults {
        for run in 0..args.runs {
            for &kind in &clients {
                let r = run_once(&cluster, &attempts, kind, fault, &plan).await?;
                eprintln!(
                    "{:<38} run {}/{} {kind:<22} errors {:>6}  ready->1st ok {:>8}  no success {:>7.0} ms  max call {:>7.0} ms{}",
                    fault.name(),
                    run + 1,
                    args.runs,
                    r.errors,
                    r.ready_to_first_success_ms
                        .map_or("never".to_owned(), |ms| format!("{ms:.1} ms")),
                    r.no_success_ms,
                    r.max_call_ms,
                    r.attempts_per_sec_down
                        .map_or(String::new(), |rate| format!("  {rate:.1} connects/s down")),
                );
                runs.push(r);
            }
        }
    }
    let mut summaries = Vec::new();
    for &fault in &args.faults {
        let mut rows = Vec::new();
        for &kind in &clients {
            let mine: Vec<RunResult> = runs
                .iter()
                .filter(|r| r.fault == fault && r.client == kind.name())
                .cloned()
                .collect();
            if !mine.is_empty() {
                rows.push(Summary::of(&mine));
            }
        }
        let title = match fault {
            FaultKind::Outage => format!("{} ({} s)", fault.name(), args.outage_secs),
            _ => fault.name().to_owned(),
        };
        println!("\n### {title}: median of {} runs\n", args.runs);
        println!("{}", fault_table(&rows.iter().collect::<Vec<_>>()));
        summaries.extend(rows);
    }
    if let Some(path) = args.json {
        let doc = serde_json::json!({ "runs": runs, "summaries": summaries });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
