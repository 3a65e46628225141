//! `pgsteady drill`: a throwaway cluster, a sequence of real faults, and what two clients
//! side by side saw: tokio-postgres as people write it today, and `pgsteady::Pool`.
//!
//! The engine of the `pgsteady-drill` binary (`src/main.rs`), which `pgsteady drill` runs: a
//! crate and a binary of its own so that the production `pgsteady` carries neither the test
//! kit nor the chart library.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod args;
mod chart;
mod clients;
pub mod exit;
mod faults;
mod figures;
mod ha;
mod herd;
mod output;
mod shared;
pub mod soak;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgsteady::{Config, Pool};
use pgsteady_testkit::workload::{Clock, Workload};
use pgsteady_testkit::{Cluster, FaultProxy, PgBouncer, PoolMode, StopMode};
use tokio_postgres::NoTls;

use args::parse_faults;
pub use args::{DrillArgs, Via};
use chart::Format;
use clients::{Ledger, NaiveWorker, PoolWorker, Side, TrafficControl};
use faults::{Step, Target, Window};
use output::{Mode, Progress, Report};
use shared::{
    ACQUIRE_TIMEOUT, BoxError, CONNECT_TIMEOUT, PACE, SETTLE, STOP_GRACE, WARMUP, assemble,
    pool_settings, records, start_cluster,
};

use exit::{COULD_NOT_RUN, HELD, INTERRUPTED, TERMINATED, USAGE};

/// How long to wait for the naive client after a silent fault before cutting its hung calls.
const NAIVE_CUT_AFTER: Duration = Duration::from_millis(1000);
/// The drill cluster's `max_connections` (the hog of `slots-exhausted` fills it).
const MAX_CONNECTIONS: u32 = 40;

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
    use crate::args::AFTER_HELP;
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
