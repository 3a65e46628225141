//! `pgsteady drill soak`: random faults from a seed (a nemesis), a workload whose every call
//! is recorded (a history), and a checker over the history and the database's final state,
//! after Jepsen's method. The drill proves each guarantee once per fault; the soak looks for
//! the rare wrong answer under faults that overlap, and keeps the evidence when it finds one.

mod chart;
mod check;
mod env;
mod history;
mod nemesis;
mod timeline;
mod topology;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pgsteady::{Config, Pool, RetryPolicy};

use env::{APPLICATION_NAME, BoxError, Env, NETNS, netns};
use history::{Line, Phase, Recorder};
use nemesis::{Fault, Schedule, Step};
pub use topology::Topology;
use workload::{ACCOUNTS, INITIAL_BALANCE, Kind, Shared};

/// Exit codes, as the drill's.
use crate::exit::{BROKEN, COULD_NOT_RUN as FAILED, HELD, INTERRUPTED, TERMINATED, USAGE};

/// Each worker makes at most one call per this interval.
const PACE: Duration = Duration::from_millis(20);
/// Steady traffic before the first fault and after the last.
const WARMUP: Duration = Duration::from_secs(1);
const SETTLE: Duration = Duration::from_secs(2);
/// The pool's settings (the drill's, with a longer deadline: a failover with pg_rewind
/// takes seconds on a loaded machine).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

const AFTER_HELP: &str = "\
Faults by topology (--faults picks some; the seed picks the order, gaps and holds):
  single     fast-restart, crash, terminate, kill-backend, hung; network lane also
             net-blackhole (kernel drops in a network namespace; needs root, else skipped)
  standby    fast-restart, crash, terminate, hung, failover, kill-failover, fence,
             standby-restart
  pgbouncer  fast-restart, crash, terminate, hung, pooler-restart, pooler-pause
  patroni    switchover, leader-kill, node-kill, terminate
  all        (network lane, overlapping the others) blackhole, lost-commit, reset

Checked (exit 0 only when all hold):
  - every acknowledged insert and transfer is in the database exactly once
  - nothing reported not committed is in it, nothing nobody wrote, nothing twice
  - no call failed, none was left running, no commit outcome was unknown
  - every read saw the bank's initial total; the final total is the same, and each
    balance is its initial one plus the ledger's transfers

Exit codes: 0 all held, 1 an anomaly (each printed with the calls and pool events around
it), 2 usage, 3 the soak could not run (a fault failed, no binaries), 130 interrupted.";

/// Arguments of `pgsteady drill soak` (a clap `Args` struct for a CLI to embed).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SoakArgs {
    /// How long faults are applied (the run takes a few seconds more).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The nemesis's seed: the same seed, topology, duration and --faults give the same
    /// schedule. Default: from the clock (printed, for a replay).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// What to run against.
    #[arg(long, value_enum, default_value = "single")]
    topology: Topology,
    /// Write the history (one JSON object per line) to FILE.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Check the history in FILE (written by an earlier soak) and exit; nothing is started.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["history", "seed"])]
    check: Option<PathBuf>,
    /// Draw the run as an SVG timeline in FILE (calls per second by outcome, faults as
    /// bands, commit resolutions as marks); with --check, of that history.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Only these faults, comma-separated (see the list below).
    #[arg(long, value_delimiter = ',', value_name = "FAULT,...")]
    faults: Vec<String>,
    /// Insert workers (transfers and reads get half as many each, at least one).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=32))]
    workers: u32,
    /// pgsteady's run / transaction deadline (and acquire timeout).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Directory holding the PostgreSQL server binaries (see `pgsteady drill --help`).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// With --topology patroni: Patroni's synchronous_mode_strict off, so Patroni turns
    /// synchronous replication off while no replica is synchronous (Patroni's default).
    #[arg(long)]
    non_strict: bool,
    /// Negative control: acknowledge a write that was rolled back now and then, as a wrong
    /// commit resolution would. The checker must fail the run.
    #[arg(long, hide = true)]
    plant_bug: bool,
}

/// The longest `--duration` or `--deadline`: a week of soak is already more than any CI
/// gives, and far below what overflows a deadline (`Instant` + centuries panics).
const MAX_SOAK: Duration = Duration::from_secs(7 * 24 * 3600);

/// A validated soak.
#[derive(Debug)]
struct Plan {
    duration: Duration,
    seed: u64,
    topology: Topology,
    history: Option<PathBuf>,
    schedule: Schedule,
    workers: u32,
    deadline: Duration,
    pg_bin: Option<PathBuf>,
    plant_bug: bool,
    non_strict: bool,
    chart: Option<PathBuf>,
}

/// `--chart FILE`: an `.svg` file in a directory that exists.
fn check_chart(chart: Option<&std::path::Path>) -> Result<(), String> {
    let Some(path) = chart else {
        return Ok(());
    };
    if !path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    {
        return Err(format!(
            "--chart {}: the file name must end in .svg",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "--chart {}: directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Draws `--chart` after the report; a chart that cannot be written fails a run that held.
fn chart(path: Option<&std::path::Path>, lines: &[Line], code: u8) -> u8 {
    let Some(path) = path else {
        return code;
    };
    let title = match lines.first() {
        Some(Line::Start { seed, topology, .. }) => format!(
            "pgsteady drill soak --topology {topology} --seed {seed}: calls per second, \
             faults shaded, commit resolutions marked"
        ),
        _ => "pgsteady drill soak".to_owned(),
    };
    match chart::write(path, &title, lines) {
        Ok(()) => {
            eprintln!("chart written to {}", path.display());
            code
        }
        Err(e) => {
            eprintln!("pgsteady drill soak: {e}");
            if code == HELD { FAILED } else { code }
        }
    }
}

impl Plan {
    fn new(args: SoakArgs) -> Result<Plan, String> {
        let possible = Fault::of(args.topology);
        let only = crate::parse_faults(&args.faults, &possible, Fault::name)
            .map_err(|e| format!("{e} (topology {})", args.topology.name()))?;
        let only = if args.faults.is_empty() {
            Vec::new()
        } else {
            only
        };
        check_chart(args.chart.as_deref())?;
        if let Some(dir) = args.pg_bin.as_deref().filter(|d| !d.is_dir()) {
            return Err(format!("--pg-bin {}: no such directory", dir.display()));
        }
        if let Some(path) = &args.history {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                return Err(format!(
                    "--history {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
        }
        for (flag, d) in [("--duration", args.duration), ("--deadline", args.deadline)] {
            if d > MAX_SOAK || d.is_zero() {
                return Err(format!(
                    "{flag} {}: must be more than 0 and at most 7 days",
                    humantime::format_duration(d)
                ));
            }
        }
        let seed = args.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(Plan {
            duration: args.duration,
            seed,
            topology: args.topology,
            history: args.history,
            schedule: Schedule::new(seed, args.topology, args.duration, &only),
            workers: args.workers,
            deadline: args.deadline,
            pg_bin: args.pg_bin,
            plant_bug: args.plant_bug,
            non_strict: args.non_strict,
            chart: args.chart,
        })
    }

    fn replay(&self) -> String {
        format!(
            "pgsteady drill soak --topology {} --duration {} --seed {}",
            self.topology.name(),
            humantime::format_duration(self.duration),
            self.seed
        )
    }
}

/// Call before the async runtime starts, from the main thread: with `--topology single`
/// (the one whose every server and proxy listen on loopback), moves the process into a
/// network namespace of its own, so the `net-blackhole` fault's firewall rules drop packets
/// of the soak alone. Threads started afterwards inherit the namespace. Without root (or
/// without `ip` / `nft`) that fault is skipped and says why.
pub fn isolate(args: &SoakArgs) {
    if args.check.is_some() || args.topology != Topology::Single {
        return;
    }
    let isolated = pgsteady_testkit::netns::isolate_thread().map_err(|e| e.to_string());
    let _ = NETNS.set(isolated);
}

/// Runs `pgsteady drill soak` and returns its exit code (see the help's table).
pub async fn run(args: SoakArgs) -> ExitCode {
    if let Some(path) = &args.check {
        if let Err(e) = check_chart(args.chart.as_deref()) {
            eprintln!("pgsteady drill soak: {e}");
            return ExitCode::from(USAGE);
        }
        return ExitCode::from(match history::read(path) {
            Ok(lines) => chart(args.chart.as_deref(), &lines, report(&lines, None)),
            Err(e) => {
                eprintln!("pgsteady drill soak: {e}");
                USAGE
            }
        });
    }
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("pgsteady drill soak: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    // Everything the soak started lives inside `soak`: when a signal wins, dropping it stops
    // the workers, the proxies and the servers, and removes their directories.
    let code = tokio::select! {
        code = soak(&plan) => code,
        _ = tokio::signal::ctrl_c() => INTERRUPTED,
        _ = sigterm => TERMINATED,
    };
    if code == INTERRUPTED || code == TERMINATED {
        eprintln!("interrupted: the throwaway servers were stopped and their directories removed");
        eprintln!("replay: {}", plan.replay());
    }
    ExitCode::from(code)
}

async fn soak(plan: &Plan) -> u8 {
    eprintln!(
        "soak: topology {}, {} of faults, seed {}",
        plan.topology.name(),
        humantime::format_duration(plan.duration),
        plan.seed
    );
    eprintln!("replay: {}", plan.replay());
    eprintln!("schedule (each lane runs its steps in order until the time is up):");
    for line in plan.schedule.lines() {
        eprintln!("  {line}");
    }
    let file = match &plan.history {
        None => None,
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("pgsteady drill soak: --history {}: {e}", path.display());
                return USAGE;
            }
        },
    };
    if plan.topology == Topology::Single {
        match netns() {
            Ok(()) => eprintln!("net-blackhole: the soak runs in a network namespace of its own"),
            Err(why) => eprintln!("net-blackhole: skipped ({why})"),
        }
    }
    let recorder = Recorder::new(file);
    match steps(plan, &recorder).await {
        Ok(nemesis_failure) => {
            let (lines, write_error) = recorder.finish();
            if let Some(e) = &write_error {
                eprintln!("pgsteady drill soak: the history file is incomplete: {e}");
            }
            if let Some(path) = &plan.history {
                eprintln!("history written to {}", path.display());
            }
            eprintln!("replay: {}", plan.replay());
            let code = chart(plan.chart.as_deref(), &lines, report(&lines, Some(plan)));
            match nemesis_failure {
                Some(e) if code == HELD => {
                    eprintln!("pgsteady drill soak: a fault could not be applied: {e}");
                    FAILED
                }
                Some(e) => {
                    eprintln!("pgsteady drill soak: a fault could not be applied: {e}");
                    code
                }
                None if write_error.is_some() => FAILED,
                None => code,
            }
        }
        Err(e) => {
            let _ = recorder.finish();
            eprintln!("pgsteady drill soak: {e}");
            FAILED
        }
    }
}

/// Runs the soak; `Ok(Some(error))` when the nemesis stopped early on a failed fault (the
/// workload is still checked).
async fn steps(plan: &Plan, recorder: &Recorder) -> Result<Option<String>, BoxError> {
    eprintln!("starting the {} topology...", plan.topology.name());
    let started = Instant::now();
    let env = Env::start(
        plan.topology,
        plan.pg_bin.as_deref(),
        plan.workers,
        !plan.non_strict,
    )
    .await?;
    eprintln!(
        "{} (started in {} ms)",
        env.describe(),
        started.elapsed().as_millis()
    );
    {
        let setup = env.primary_session().await?;
        setup.batch_execute(workload::SCHEMA).await?;
        setup
            .execute(
                "INSERT INTO soak_accounts SELECT g, $2 FROM generate_series(1, $1::bigint) g",
                &[&ACCOUNTS, &INITIAL_BALANCE],
            )
            .await?;
    }
    let mut config = Config::parse(&env.url())?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.application_name = Some(APPLICATION_NAME.to_owned());
    if plan.topology == Topology::Pgbouncer {
        config.statement_cache = pgsteady::StatementCache::Off;
    }
    let mut retry = RetryPolicy::default();
    retry.deadline = plan.deadline;
    retry.attempt_timeout = Some(ATTEMPT_TIMEOUT);
    retry.commit_timeout = COMMIT_TIMEOUT;
    let inserters = plan.workers;
    let others = (plan.workers / 2).max(1);
    let observed = recorder.clone();
    let pool = Pool::builder(config)
        .max_size((inserters + 2 * others) as usize)
        .acquire_timeout(plan.deadline)
        .retry(retry)
        .observer(move |event| observed.pool_event(event))
        .build()?;

    recorder.record(Line::Start {
        seed: plan.seed,
        topology: plan.topology.name().to_owned(),
        duration_ms: plan.duration.as_millis() as u64,
        accounts: ACCOUNTS,
        initial_balance: INITIAL_BALANCE,
        schedule: plan.schedule.lines(),
    });
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        history: recorder.clone(),
        stop: AtomicBool::new(false),
        calls: AtomicU64::new(0),
        pace: PACE,
        plant: plan.plant_bug,
    });
    let mut handles = Vec::new();
    let kinds = (0..inserters)
        .map(|_| Kind::Insert)
        .chain((0..others).map(|_| Kind::Transfer))
        .chain((0..others).map(|_| Kind::Read));
    for (id, kind) in kinds.enumerate() {
        handles.push(tokio::spawn(workload::worker(
            shared.clone(),
            id as u32,
            kind,
            plan.seed,
        )));
    }
    tokio::time::sleep(WARMUP).await;
    let t0 = Instant::now();
    let end = t0 + plan.duration;
    let applied = AtomicU64::new(0);
    let progress = async {
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            eprintln!(
                "  {:>5}s  calls {}  faults {}",
                t0.elapsed().as_secs(),
                shared.calls.load(Ordering::Relaxed),
                applied.load(Ordering::Relaxed)
            );
        }
    };
    let lanes = async {
        tokio::join!(
            lane(&env, &plan.schedule.server, end, recorder, &applied),
            lane(&env, &plan.schedule.network, end, recorder, &applied)
        )
    };
    let (server, network) = tokio::select! {
        done = lanes => done,
        _ = progress => unreachable!("progress never ends"),
    };
    let failure = server.err().or(network.err());
    tokio::time::sleep(SETTLE).await;
    shared.stop.store(true, Ordering::Relaxed);
    // A call waits at most its deadline; one still running after that is left unfinished.
    let grace = tokio::time::Instant::now() + plan.deadline + Duration::from_secs(5);
    for handle in handles {
        if tokio::time::timeout_at(grace, &mut Box::pin(handle))
            .await
            .is_err()
        {
            // Dropped: the worker's call stays invoked without a completion.
        }
    }
    pool.close(Duration::from_secs(1)).await;
    let metrics = pool.metrics();
    eprintln!(
        "pool: {} connections opened, {} evictions, {} commit resolutions",
        metrics.creates,
        metrics.evictions_total(),
        metrics.commit_resolutions.total()
    );
    let check = env.primary_session().await?;
    let writes = counts(&check, "SELECT key, count(*) FROM soak_writes GROUP BY key").await?;
    let transfers = counts(
        &check,
        "SELECT key, count(*) FROM soak_transfers GROUP BY key",
    )
    .await?;
    let balances = check
        .query("SELECT id, balance FROM soak_accounts", &[])
        .await?
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .collect();
    recorder.record(Line::Final {
        writes,
        transfers,
        balances,
    });
    Ok(failure)
}

async fn counts(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<BTreeMap<String, i64>, BoxError> {
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect())
}

/// Runs one lane's steps until `end`; a fault that fails stops the lane with its error.
async fn lane(
    env: &Env,
    steps: &[Step],
    end: Instant,
    recorder: &Recorder,
    applied: &AtomicU64,
) -> Result<(), String> {
    for step in steps {
        let at = Instant::now() + step.gap;
        if at >= end {
            return Ok(());
        }
        tokio::time::sleep_until(at.into()).await;
        let name = step.fault.name();
        recorder.nemesis(name, Phase::Start, step.to_string());
        applied.fetch_add(1, Ordering::Relaxed);
        match env.apply(step.fault, step.hold).await {
            Ok(note) => recorder.nemesis(name, Phase::End, note),
            Err(e) => {
                let e = format!("{name}: {e}");
                recorder.nemesis(name, Phase::End, format!("failed: {e}"));
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Checks `lines`, prints the summary and each anomaly with its context, and returns the
/// exit code.
fn report(lines: &[Line], plan: Option<&Plan>) -> u8 {
    let checked = check::check(lines);
    let mut out = String::new();
    if let Some(Line::Start {
        seed,
        topology,
        duration_ms,
        ..
    }) = lines.first()
    {
        out.push_str(&format!(
            "soak {topology}, seed {seed}, {} of faults, {:.0} s of calls\n",
            humantime::format_duration(Duration::from_millis(*duration_ms)),
            checked.span_ms / 1000.0
        ));
    }
    let total: u64 = checked.faults.values().sum();
    out.push_str(&format!("faults applied: {total}\n"));
    for (fault, n) in &checked.faults {
        out.push_str(&format!("  {fault:<16} {n}\n"));
    }
    let calls: u64 = checked.calls.values().sum();
    out.push_str(&format!("calls: {calls}\n"));
    for ((op, result), n) in &checked.calls {
        out.push_str(&format!("  {op:<9} {result:<14} {n}\n"));
    }
    out.push_str("pool events:\n");
    for (event, n) in &checked.pool {
        out.push_str(&format!("  {event:<48} {n}\n"));
    }
    out.push_str(&timeline::picture(lines));
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (a, _) in &checked.anomalies {
        *by_kind.entry(a.name()).or_default() += 1;
    }
    out.push_str(&format!("anomalies: {}\n", checked.anomalies.len()));
    for (kind, n) in &by_kind {
        out.push_str(&format!("  {kind:<36} {n}\n"));
    }
    out.push_str(&check::explain(lines, &checked));
    out.push_str(if checked.ok() {
        "HELD: every acknowledged write present exactly once, nothing else, no error\n"
    } else {
        "BROKEN: see the anomalies above\n"
    });
    print!("{out}");
    if plan.is_some_and(|p| p.plant_bug) {
        eprintln!("(--plant-bug: acknowledged writes were rolled back on purpose)");
    }
    if checked.ok() { HELD } else { BROKEN }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SoakArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("soak").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Plan::new(cli.args)
    }

    #[test]
    fn a_seed_replays_and_faults_are_per_topology() {
        let a = plan(&["--seed", "42", "--topology", "standby", "--duration", "1m"]).unwrap();
        let b = plan(&["--seed", "42", "--topology", "standby", "--duration", "1m"]).unwrap();
        assert_eq!(a.schedule, b.schedule);
        assert_eq!(
            a.replay(),
            "pgsteady drill soak --topology standby --duration 1m --seed 42"
        );
        let err = plan(&["--topology", "single", "--faults", "failover"]).unwrap_err();
        assert!(err.contains("failover") && err.contains("single"), "{err}");
        let p = plan(&[
            "--topology",
            "pgbouncer",
            "--faults",
            "pooler-pause,blackhole",
        ])
        .unwrap();
        assert!(
            p.schedule
                .server
                .iter()
                .all(|s| s.fault == Fault::PoolerPause)
        );
        assert!(
            p.schedule
                .network
                .iter()
                .all(|s| s.fault == Fault::Blackhole)
        );
        for bad in [
            &["--duration", "0s"][..],
            &["--topology", "mesh"],
            &["--history", "/no/such/dir/h.jsonl"],
            &["--check", "h.jsonl", "--seed", "1"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_fault_is_in_the_help() {
        for fault in Fault::ALL {
            assert!(AFTER_HELP.contains(fault.name()), "{}", fault.name());
        }
    }
}
