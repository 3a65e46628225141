//! `pgsteady drill`: a throwaway cluster, a sequence of real faults, and what two clients
//! side by side saw: tokio-postgres as people write it today, and `pgsteady::Pool`.
//!
//! The engine of the `pgsteady-drill` binary (`src/main.rs`), which `pgsteady drill` runs: a
//! crate and a binary of its own so that the production `pgsteady` carries neither the test
//! kit nor the chart library.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod chart;
mod clients;
mod faults;
mod figures;
mod ha;
mod herd;
mod output;
pub mod soak;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgsteady::{Config, Pool, PoolConfig, RetryPolicy};
use pgsteady_testkit::workload::{Clock, Workload};
use pgsteady_testkit::{Cluster, ClusterBuilder, FaultProxy, PgBouncer, PoolMode, StopMode};
use tokio_postgres::NoTls;

use chart::Format;
use clients::{Ledger, NaiveWorker, PoolWorker, Side, TrafficControl};
use faults::{Step, Target, Window};
use figures::Record;
use output::{Guarantees, Mode, Progress, Report, Totals};

pub mod exit {
    //! Exit codes of `pgsteady drill`, from the project's one-meaning-per-code table
    //! (docs/exit-codes.md): 1 and 3 mean "not ready in time" and "permanent" there, so a
    //! broken guarantee and a drill that could not run have codes of their own.

    /// pgsteady's guarantees held (or `--list`).
    pub const HELD: u8 = 0;
    /// Usage error: nothing was started.
    pub const USAGE: u8 = 2;
    /// A guarantee was broken (each one is named).
    pub const BROKEN: u8 = 9;
    /// The drill could not run: no PostgreSQL binaries, no Patroni, the cluster failed.
    pub const COULD_NOT_RUN: u8 = 10;
    /// Stopped by SIGINT (128 + 2): the cluster was stopped and its directory removed.
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM (128 + 15), with the same clean-up.
    pub const TERMINATED: u8 = 143;
}
use exit::{COULD_NOT_RUN, HELD, INTERRUPTED, TERMINATED, USAGE};

/// Workers per client.
const DEFAULT_WORKERS: u16 = 4;
/// Each worker makes at most one call per this interval.
const PACE: Duration = Duration::from_millis(10);
/// Steady traffic before the first fault, between faults and after the last.
const WARMUP: Duration = Duration::from_millis(1000);
const SETTLE: Duration = Duration::from_millis(1500);
/// How long to wait for the naive client after a silent fault before cutting its hung calls.
const NAIVE_CUT_AFTER: Duration = Duration::from_millis(1000);
/// How long stopping the clients may take; calls still running are recorded as unfinished.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The drill cluster's `max_connections` (the hog of `slots-exhausted` fills it).
const MAX_CONNECTIONS: u32 = 40;

/// The pool's settings for the drill.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_DEADLINE: Duration = Duration::from_secs(15);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(1);

const AFTER_HELP: &str = "\
Faults (run in this order; --faults picks some, --list shows them):
  late-start, fast-restart, crash, terminate, idle-timeout, slots-exhausted, hung,
  silent-drop, lost-commit
  with --ha (a Patroni cluster): switchover, leader-crash, leader-lost

pgsteady's guarantees (exit 0 when all hold, 9 otherwise):
  - 0 errors surfaced through run / transaction (an unknown commit outcome counts as one)
  - every acknowledged write is in the table
  - no write is in the table twice
  - no write reported not committed is in the table

Exit codes (docs/exit-codes.md):
  0    pgsteady's guarantees held (or --list); --herd: pgsteady's callers saw no error
       and no 53300, and all N were serving again within 30 s
  2    usage error (nothing was started)
  9    a guarantee was broken (each one is named)
  10   the drill could not run (no PostgreSQL binaries, no Patroni, the cluster failed)
  130  interrupted (SIGINT; 143 SIGTERM): the throwaway cluster was stopped and its
       directory removed";

/// Arguments of `pgsteady drill` (a clap `Args` struct for the CLI to embed).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct DrillArgs {
    /// Faults to apply, comma-separated (see --list; with --ha: switchover, leader-crash,
    /// leader-lost). Default: all of them.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "FAULT,...",
        conflicts_with = "herd"
    )]
    faults: Vec<String>,
    /// List the faults and exit.
    #[arg(long)]
    list: bool,
    /// HA mode: a throwaway Patroni cluster (etcd, two PostgreSQL nodes, HAProxy) and the
    /// faults switchover, leader-crash, leader-lost, applied once with the clients on the
    /// multi-host string (target_session_attrs=read-write) and once through HAProxy. Per
    /// fault, Patroni's own leader-change time beside each client's write gap.
    #[arg(long, conflicts_with_all = ["herd", "report"])]
    ha: bool,
    /// With --ha: the connection paths, comma-separated: multi-host, haproxy. Default: both.
    #[arg(long, value_delimiter = ',', value_name = "PATH,...", requires = "ha")]
    paths: Vec<ha::HaPath>,
    /// With --ha: pgsteady's run / transaction deadline (and acquire timeout). A failover
    /// that takes longer surfaces as a typed timeout error after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = humantime::parse_duration, requires = "ha")]
    deadline: Duration,
    /// With --ha: Patroni's primary_start_timeout in seconds. 0 (the default here): a
    /// leader whose postmaster died is failed over at once; Patroni's default 300 restarts
    /// it in place.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, requires = "ha")]
    primary_start_timeout: u32,
    /// With --ha: HAProxy's health-check interval (`inter`; a node is up after one good
    /// check, down after two failed ones). It bounds how late HAProxy follows a new leader.
    /// Patroni's example configuration uses 3s.
    #[arg(long, value_name = "DURATION", default_value = "250ms",
          value_parser = humantime::parse_duration, requires = "ha")]
    haproxy_check_interval: Duration,
    /// Workers per client.
    #[arg(long, default_value_t = DEFAULT_WORKERS, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    workers: u16,
    /// Write a timeline chart to FILE.svg, or FILE.html (chart, table and verdict).
    #[arg(long, value_name = "FILE", conflicts_with = "herd")]
    report: Option<PathBuf>,
    /// Print the raw figures as one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Herd mode: N single-connection clients, each making one call per 100 ms, reconnect
    /// after one fast restart: N pgsteady pools (jittered reconnection), then N loops
    /// retrying every 100 ms; connection attempts per 10 ms at the server, time until all N
    /// serve again, errors and 53300s. The cluster gets max_connections max(N + 50, 250).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    herd: Option<u32>,
    /// Directory holding the PostgreSQL server binaries (initdb, postgres). Default: found
    /// through $PGSTEADY_PG_BIN, `pg_config --bindir`, then /usr/lib/postgresql/*/bin.
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// Run both clients through a connection pooler: `pgbouncer` starts a real PgBouncer
    /// (Debian package `pgbouncer`, installed when missing) in transaction pooling mode in
    /// front of the cluster, between the fault proxies and the server; pgsteady's pool then
    /// runs with `statement_cache=off` (docs/pgbouncer.md). Faults still hit the server or
    /// the proxies.
    #[arg(long, value_enum, value_name = "POOLER", conflicts_with = "herd")]
    via: Option<Via>,
}

/// A pooler the drill's clients can go through (`--via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// PgBouncer in transaction pooling mode.
    Pgbouncer,
}

/// A validated drill.
#[derive(Debug)]
struct Plan {
    faults: Vec<Step>,
    workers: usize,
    report: Option<(PathBuf, Format)>,
    json: bool,
    pg_bin: Option<PathBuf>,
    via: Option<Via>,
}

/// Parses `--faults` names against `all`: an unknown one is named with the possible values.
pub(crate) fn parse_faults<F: Copy + Ord>(
    names: &[String],
    all: &[F],
    name: impl Fn(F) -> &'static str,
) -> Result<Vec<F>, String> {
    let mut faults = Vec::new();
    for given in names {
        match all.iter().find(|f| name(**f) == given.trim()) {
            Some(f) => faults.push(*f),
            None => {
                let possible: Vec<&str> = all.iter().map(|f| name(*f)).collect();
                return Err(format!(
                    "--faults {given}: no such fault (possible values: {})",
                    possible.join(", ")
                ));
            }
        }
    }
    if faults.is_empty() {
        faults = all.to_vec();
    }
    faults.sort();
    faults.dedup();
    Ok(faults)
}

impl Plan {
    fn new(args: DrillArgs) -> Result<Plan, String> {
        let faults = parse_faults(&args.faults, &Step::ALL, Step::name)?;
        let report = match args.report {
            None => None,
            Some(path) => {
                let format = Format::of(&path).ok_or_else(|| {
                    format!(
                        "--report {}: the file name must end in .svg or .html",
                        path.display()
                    )
                })?;
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                if !dir.is_dir() {
                    return Err(format!(
                        "--report {}: directory {} does not exist",
                        path.display(),
                        dir.display()
                    ));
                }
                Some((path, format))
            }
        };
        Ok(Plan {
            faults,
            workers: usize::from(args.workers),
            report,
            json: args.json,
            pg_bin: args.pg_bin,
            via: args.via,
        })
    }
}

/// Runs `pgsteady drill` with these arguments and returns its exit code (see [`exit`]: 0
/// the guarantees held, 2 usage, 9 one was broken, 10 could not run, 130 / 143 interrupted).
pub async fn run(args: DrillArgs) -> ExitCode {
    if args.list {
        if args.ha {
            for fault in ha::HaFault::ALL {
                println!("{:<16} {}", fault.name(), fault.summary());
            }
        } else {
            for fault in Step::ALL {
                println!("{:<16} {}", fault.name(), fault.summary());
            }
        }
        return ExitCode::from(HELD);
    }
    let mode = Mode::detect();
    let work = async {
        if let Some(dir) = args.pg_bin.as_deref().filter(|d| !d.is_dir()) {
            eprintln!(
                "pgsteady drill: --pg-bin {}: no such directory",
                dir.display()
            );
            return USAGE;
        }
        if let Some(n) = args.herd {
            return herd::run(n as usize, args.pg_bin, args.json, mode).await;
        }
        if args.ha {
            return match ha::HaPlan::new(args) {
                Ok(plan) => ha::run(plan, mode).await,
                Err(message) => {
                    eprintln!("pgsteady drill: {message}");
                    USAGE
                }
            };
        }
        match Plan::new(args) {
            Ok(plan) => drill(plan, mode).await,
            Err(message) => {
                eprintln!("pgsteady drill: {message}");
                USAGE
            }
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
    // Everything the drill started lives inside `work`: when a signal wins, dropping it stops
    // the clients, the proxies and the server, and removes the cluster's directory.
    let code = tokio::select! {
        code = work => code,
        _ = tokio::signal::ctrl_c() => INTERRUPTED,
        _ = sigterm => TERMINATED,
    };
    if code == INTERRUPTED || code == TERMINATED {
        let clear = if mode == Mode::Tty { "\r\x1b[2K" } else { "" };
        eprintln!(
            "{clear}interrupted: the throwaway cluster was stopped and its directory removed"
        );
    }
    ExitCode::from(code)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the throwaway cluster, printing where it lives (stderr).
pub(crate) async fn start_cluster(
    builder: ClusterBuilder,
    progress: &Progress,
) -> Result<(Cluster, String), BoxError> {
    let started = Instant::now();
    let cluster = builder.start().await?;
    let (client, connection) = cluster.pg_config().connect(NoTls).await?;
    tokio::spawn(connection);
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    progress.note(&format!(
        "cluster: {} in {} (PostgreSQL {version} from {}, started in {} ms)",
        cluster.addr(),
        cluster.dir().display(),
        cluster.bin().dir().display(),
        started.elapsed().as_millis()
    ));
    Ok((cluster, version))
}

fn pool_settings(workers: usize) -> (PoolConfig, RetryPolicy, Vec<String>) {
    pool_settings_with(workers, RETRY_DEADLINE, ACQUIRE_TIMEOUT)
}

/// The pool's settings with this run / transaction deadline and acquire timeout, and the
/// same in words for the report.
pub(crate) fn pool_settings_with(
    workers: usize,
    deadline: Duration,
    acquire_timeout: Duration,
) -> (PoolConfig, RetryPolicy, Vec<String>) {
    let mut retry = RetryPolicy::default();
    retry.deadline = deadline;
    retry.attempt_timeout = Some(ATTEMPT_TIMEOUT);
    retry.commit_timeout = COMMIT_TIMEOUT;
    let pool = PoolConfig::default();
    let defaults = Config::parse("host=127.0.0.1 user=app").expect("a valid config");
    let words = vec![
        format!("pgsteady::Pool max_size {workers}"),
        format!("acquire_timeout {acquire_timeout:?}"),
        format!("connect_timeout {CONNECT_TIMEOUT:?}"),
        format!(
            "single-flight reconnect with jittered back-off capped at {:?}",
            pool.reconnect.cap()
        ),
        format!(
            "run/transaction deadline {:?}, attempt_timeout {ATTEMPT_TIMEOUT:?}, max_attempts {}",
            retry.deadline, retry.max_attempts
        ),
        format!("commit_timeout {COMMIT_TIMEOUT:?} (then resolved with txid_status)"),
        format!(
            "TCP keepalives {:?}/{:?}x{}, tcp_user_timeout {:?}",
            defaults.keepalives_idle,
            defaults.keepalives_interval,
            defaults.keepalives_count,
            defaults.tcp_user_timeout.unwrap_or_default()
        ),
    ];
    (pool, retry, words)
}

async fn drill(plan: Plan, mode: Mode) -> u8 {
    let ledgers = [Arc::new(Ledger::default()), Arc::new(Ledger::default())];
    let progress = Progress::new(mode, ledgers.clone());
    match steps(&plan, &progress, ledgers).await {
        Ok(report) => finish(&plan, &report),
        Err(e) => {
            progress.note(&format!("pgsteady drill: {e:#}"));
            COULD_NOT_RUN
        }
    }
}

async fn steps(
    plan: &Plan,
    progress: &Arc<Progress>,
    ledgers: [Arc<Ledger>; 2],
) -> Result<Report, BoxError> {
    let mut builder = Cluster::builder().max_connections(MAX_CONNECTIONS);
    if let Some(dir) = &plan.pg_bin {
        builder = builder.pg_bin(dir);
    }
    let (cluster, version) = start_cluster(builder, progress).await?;
    let (setup, connection) = cluster.pg_config().connect(NoTls).await?;
    let setup_task = tokio::spawn(connection);
    setup.batch_execute(clients::SCHEMA).await?;
    drop(setup);
    let _ = setup_task.await;

    // With --via pgbouncer: clients -> fault proxy -> PgBouncer -> server. Kept until the
    // end of the drill (dropping it stops PgBouncer).
    let bouncer = match plan.via {
        None => None,
        Some(Via::Pgbouncer) => {
            progress.stage("starting PgBouncer (transaction pooling)");
            Some(
                PgBouncer::builder()
                    .pool_mode(PoolMode::Transaction)
                    .default_pool_size(plan.workers as u32 * 2)
                    .server_login_retry(1)
                    .start(&cluster)
                    .await?,
            )
        }
    };
    let upstream = bouncer.as_ref().map_or(cluster.addr(), PgBouncer::addr);
    let naive_proxy = FaultProxy::start(upstream).await?;
    let pool_proxy = FaultProxy::start(upstream).await?;
    let mut naive_config = cluster.pg_config_with_port(naive_proxy.port());
    naive_config.application_name(Side::Naive.application_name());
    let (pool_config, retry, mut pool_words) = pool_settings(plan.workers);
    let mut config = Config::parse(&cluster.url_with_port(pool_proxy.port()))?;
    if bouncer.is_some() {
        config.statement_cache = pgsteady::StatementCache::Off;
        pool_words.push("statement_cache=off, via PgBouncer (transaction pooling)".to_owned());
    }
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.application_name = Some(Side::Pgsteady.application_name().to_owned());
    let pool = Pool::builder(config)
        .pool_config(pool_config)
        .max_size(plan.workers)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .retry(retry)
        .build()?;

    if plan.faults.contains(&Step::LateStart) {
        cluster.stop(StopMode::Fast).await?;
    }
    let control = TrafficControl::new(PACE);
    let clock = Clock::now();
    let t0 = clock.instant;
    let naive = Workload::start(plan.workers, |w| {
        NaiveWorker::new(w, naive_config.clone(), &control, ledgers[0].clone())
    });
    let pgsteady = Workload::start(plan.workers, |w| {
        PoolWorker::new(w, pool.clone(), &control, ledgers[1].clone())
    });
    let ticker = progress.ticker();
    let target = Target {
        cluster: &cluster,
        proxies: [&naive_proxy, &pool_proxy],
        traffic: &control,
        clock,
    };
    let mut windows: Vec<Window> = Vec::new();
    let n = plan.faults.len();
    for (i, &fault) in plan.faults.iter().enumerate() {
        if fault != Step::LateStart {
            progress.stage(if i == 0 { "warming up" } else { "steady" });
            tokio::time::sleep(if i == 0 { WARMUP } else { SETTLE }).await;
        }
        progress.stage(format!(
            "{} ({}/{n}): {}",
            fault.name(),
            i + 1,
            fault.summary()
        ));
        let mut window = target.apply(fault, t0).await?;
        progress.stage(format!("{} lifted", fault.name()));
        if fault.may_hang_naive()
            && let Some(note) = cut_hung_naive(&naive_proxy, &ledgers[0]).await
        {
            progress.stage(format!("{}: {note}", fault.name()));
            window.notes.push(note);
        }
        windows.push(window);
    }
    progress.stage("steady");
    tokio::time::sleep(SETTLE).await;
    progress.stage("stopping the clients and checking every write");
    let (naive, pgsteady) = tokio::join!(
        naive.stop_within(STOP_GRACE),
        pgsteady.stop_within(STOP_GRACE)
    );
    drop(ticker);
    let duration = t0.elapsed();
    pool.close(Duration::from_secs(1)).await;
    drop(bouncer);

    let (check, connection) = cluster.pg_config().connect(NoTls).await?;
    tokio::spawn(connection);
    let records = records(&check, t0, &windows, [&naive, &pgsteady], &ledgers).await?;
    Ok(assemble(
        cluster.dir().display().to_string(),
        version,
        duration,
        plan.workers,
        pool_words,
        t0,
        &windows,
        records,
    ))
}

/// Both clients' records: their timelines on the drill's clock and each write with how many
/// rows its key has in the table (read through `check`).
pub(crate) async fn records(
    check: &tokio_postgres::Client,
    t0: Instant,
    windows: &[Window],
    timelines: [&pgsteady_testkit::workload::Timeline; 2],
    ledgers: &[Arc<Ledger>; 2],
) -> Result<[Record; 2], BoxError> {
    let mut records = Vec::new();
    for ((side, timeline), ledger) in Side::BOTH.into_iter().zip(timelines).zip(ledgers) {
        let rows: HashMap<i64, i64> = check
            .query(
                "SELECT key, count(*) FROM drill_writes WHERE client = $1 GROUP BY key",
                &[&side.name()],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        records.push(Record::new(t0, timeline, windows, ledger.writes(), &rows));
    }
    Ok(<[Record; 2]>::try_from(records).expect("two clients"))
}

/// The report of one drill run from its records.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    cluster_dir: String,
    server_version: String,
    duration: Duration,
    workers: usize,
    pool_words: Vec<String>,
    t0: Instant,
    windows: &[Window],
    [naive, pgsteady]: [Record; 2],
) -> Report {
    let totals = Totals {
        naive: figures::totals(&naive),
        pgsteady: figures::totals(&pgsteady),
    };
    let violations = figures::violations(&totals.pgsteady);
    let bucket = Duration::from_millis(100);
    Report {
        cluster_dir,
        server_version,
        duration_ms: duration.as_secs_f64() * 1000.0,
        workers_per_client: workers,
        pace_ms: PACE.as_secs_f64() * 1000.0,
        pgsteady_config: pool_words,
        faults: figures::per_fault(t0, windows, &naive, &pgsteady),
        guarantees: Guarantees {
            held: violations.is_empty(),
            checked: output::GUARANTEES.to_vec(),
            violations,
        },
        totals,
        timeline: output::Timeline {
            bucket_ms: bucket.as_millis() as u64,
            naive: figures::histogram(&naive, bucket, duration),
            pgsteady: figures::histogram(&pgsteady, bucket, duration),
        },
    }
}

/// The naive client has no timeouts: after a silent fault its calls may wait for a reply
/// that never comes (on a real network until TCP gives up, ~15 min by default; here, behind
/// a proxy whose kernel acknowledges everything, forever). When none of its calls succeeds
/// within a second of the network coming back, the drill resets its connections so the
/// rest of the drill can go on, and says so.
async fn cut_hung_naive(proxy: &FaultProxy, ledger: &Ledger) -> Option<String> {
    let (ok_before, _) = ledger.progress();
    let deadline = Instant::now() + NAIVE_CUT_AFTER;
    while Instant::now() < deadline {
        if ledger.progress().0 > ok_before {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.reset_all();
    Some(format!(
        "naive calls still hung {NAIVE_CUT_AFTER:?} after the network came back (no timeouts: \
         on a real network they wait until TCP gives up, ~15 min); the drill reset them"
    ))
}

/// Prints the result, writes the report file, and picks the exit code.
fn finish(plan: &Plan, report: &Report) -> u8 {
    let code = output::verdict(plan.json, report, output::summary, report.guarantees.held);
    if code == COULD_NOT_RUN {
        return code;
    }
    if let Some((path, format)) = &plan.report {
        match chart::write(path, *format, report) {
            Ok(()) => eprintln!("report written to {}", path.display()),
            Err(e) => {
                eprintln!("pgsteady drill: cannot write {}: {e:#}", path.display());
                return COULD_NOT_RUN;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DrillArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("drill").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Plan::new(cli.args)
    }

    #[test]
    fn faults_run_in_the_listed_order_once_each() {
        let p = plan(&["--faults", "terminate,fast-restart,terminate"]).unwrap();
        assert_eq!(p.faults, [Step::FastRestart, Step::Terminate]);
        assert_eq!(plan(&[]).unwrap().faults, Step::ALL);
    }

    #[test]
    fn an_unknown_fault_is_named() {
        let err = plan(&["--faults", "fast-restart,meteor"]).unwrap_err();
        assert!(err.contains("meteor"), "{err}");
        assert!(
            err.contains("silent-drop"),
            "lists the possible values: {err}"
        );
    }

    #[test]
    fn the_report_must_be_svg_or_html_in_an_existing_directory() {
        assert!(plan(&["--report", "out.svg"]).is_ok());
        assert!(plan(&["--report", "out.HTML"]).is_ok());
        let err = plan(&["--report", "out.png"]).unwrap_err();
        assert!(err.contains(".svg or .html"), "{err}");
        let err = plan(&["--report", "/no/such/dir/out.svg"]).unwrap_err();
        assert!(err.contains("/no/such/dir"), "{err}");
    }

    fn ha_plan(args: &[&str]) -> Result<ha::HaPlan, String> {
        let cli = Cli::try_parse_from(std::iter::once("drill").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        ha::HaPlan::new(cli.args)
    }

    #[test]
    fn ha_takes_its_own_faults_paths_and_deadline() {
        let p = ha_plan(&["--ha", "--faults", "leader-lost,switchover,leader-lost"]).unwrap();
        assert_eq!(
            format!("{p:?}"),
            format!(
                "{:?}",
                ha_plan(&["--ha", "--faults", "switchover,leader-lost"]).unwrap()
            )
        );
        assert!(
            format!("{p:?}").contains("faults: [Switchover, LeaderLost]"),
            "{p:?}"
        );
        assert!(
            format!("{p:?}").contains("paths: [MultiHost, Haproxy]"),
            "{p:?}"
        );
        assert!(format!("{p:?}").contains("deadline: 30s"), "{p:?}");
        let err = ha_plan(&["--ha", "--faults", "crash"]).unwrap_err();
        assert!(
            err.contains("crash") && err.contains("leader-crash"),
            "{err}"
        );
        // A single-server fault name is not an HA one and the other way round.
        assert!(
            plan(&["--faults", "switchover"])
                .unwrap_err()
                .contains("switchover")
        );
        let p = ha_plan(&["--ha", "--paths", "haproxy", "--deadline", "3s"]).unwrap();
        assert!(format!("{p:?}").contains("paths: [Haproxy]"), "{p:?}");
        assert!(format!("{p:?}").contains("deadline: 3s"), "{p:?}");
        for bad in [
            &["--paths", "haproxy"][..],
            &["--deadline", "3s"],
            &["--ha", "--deadline", "0s"],
            &["--ha", "--deadline", "soon"],
            &["--ha", "--paths", "pgbouncer"],
            &["--ha", "--herd", "10"],
            &["--ha", "--report", "x.svg"],
        ] {
            assert!(ha_plan(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn herd_excludes_faults_and_report() {
        assert!(plan(&["--herd", "10", "--faults", "crash"]).is_err());
        assert!(plan(&["--herd", "0"]).is_err());
    }

    #[test]
    fn every_fault_has_a_name_clap_accepts() {
        use clap::ValueEnum;
        for fault in Step::ALL {
            let parsed = Step::from_str(fault.name(), false).unwrap();
            assert_eq!(parsed, fault);
            assert!(AFTER_HELP.contains(fault.name()));
        }
    }
}
