//! `pgsteady drill --ha`: the drill's two clients against a real Patroni cluster (etcd, two
//! PostgreSQL nodes, HAProxy) through the failovers the engine performs: a switchover, the
//! leader's postmaster killed, the leader's whole node killed. Each fault is applied once
//! per connection path (the multi-host string with `target_session_attrs=read-write`, then
//! HAProxy), and Patroni's own time of each leader change is reported beside each client's
//! write gap.
//!
//! The clients, the table, the write checks and pgsteady's guarantees are the single-server
//! drill's; this module adds the cluster, the faults and the engine's figures.

mod choices;
mod figures;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pgsteady::{Config, Pool};
use pgsteady_testkit::workload::{Clock, Workload};
use pgsteady_testkit::{Error as KitError, Healthy, PatroniCluster, PatroniTimings};
use tokio_postgres::NoTls;

use super::clients::{self, Ledger, NaiveWorker, PoolWorker, Side, TrafficControl};
use super::faults::Window;
use super::output::{self, Mode, Progress};
use crate::args::DrillArgs;
use crate::exit::COULD_NOT_RUN;
use crate::shared::{BoxError, PACE, SETTLE, STOP_GRACE, WARMUP};
pub(crate) use choices::{HaFault, HaPath};
use figures::Engine;
use report::{HaReport, Pass, PatroniSettings};

/// How long the cluster may take to become healthy (leader + streaming replica) before and
/// between faults, and how long a fault may take to give a writable leader.
const HEALTHY_WITHIN: Duration = Duration::from_secs(90);
const FAILOVER_WITHIN: Duration = Duration::from_secs(60);
/// How long after the new leader is running Patroni may take to record it in `/history`
/// (it does on the new leader's next HA loop: `loop_wait`, 2 s here).
const HISTORY_WITHIN: Duration = Duration::from_secs(10);
/// The pool's per-host connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the fault loop looks at the cluster while waiting for a writable leader.
const POLL: Duration = Duration::from_millis(25);

/// A validated `drill --ha`.
#[derive(Debug)]
pub(crate) struct HaPlan {
    faults: Vec<HaFault>,
    paths: Vec<HaPath>,
    workers: usize,
    deadline: Duration,
    primary_start_timeout: u32,
    haproxy_check_interval: Duration,
    json: bool,
    pg_bin: Option<std::path::PathBuf>,
}

impl HaPlan {
    pub(crate) fn new(args: DrillArgs) -> Result<HaPlan, String> {
        let faults = crate::args::parse_faults(&args.faults, &HaFault::ALL, HaFault::name)?;
        let mut paths = if args.paths.is_empty() {
            vec![HaPath::MultiHost, HaPath::Haproxy]
        } else {
            args.paths
        };
        paths.sort();
        paths.dedup();
        // Durations parse as everywhere in pgsteady (humantime, a unit required, `0` allowed);
        // these two bound waits that must be able to succeed.
        for (flag, d) in [
            ("--deadline", args.deadline),
            ("--haproxy-check-interval", args.haproxy_check_interval),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} must be more than 0"));
            }
        }
        Ok(HaPlan {
            faults,
            paths,
            workers: usize::from(args.workers),
            deadline: args.deadline,
            primary_start_timeout: args.primary_start_timeout,
            haproxy_check_interval: args.haproxy_check_interval,
            json: args.json,
            pg_bin: args.pg_bin,
        })
    }
}

/// Runs `drill --ha` and returns the exit code (0 the guarantees held on every path, 9 one
/// was broken, 10 the drill could not run: see [`crate::exit`]).
pub(crate) async fn run(plan: HaPlan, mode: Mode) -> u8 {
    let progress = Progress::new(mode, Default::default());
    match drill(&plan, mode, &progress).await {
        Ok(report) => finish(&plan, &report),
        Err(e) => {
            if let Some(KitError::Unsupported(why)) = e.downcast_ref::<KitError>() {
                progress.note(&format!(
                    "pgsteady drill: cannot run a Patroni cluster here: {why}"
                ));
            } else {
                progress.note(&format!("pgsteady drill: {e:#}"));
            }
            COULD_NOT_RUN
        }
    }
}

async fn drill(plan: &HaPlan, mode: Mode, progress: &Arc<Progress>) -> Result<HaReport, BoxError> {
    let timings = PatroniTimings {
        primary_start_timeout: plan.primary_start_timeout,
        ..PatroniTimings::default()
    };
    let haproxy = plan.paths.contains(&HaPath::Haproxy);
    let mut builder = PatroniCluster::builder()
        .timings(timings)
        .haproxy(haproxy)
        .haproxy_check_interval(plan.haproxy_check_interval);
    if let Some(dir) = &plan.pg_bin {
        builder = builder.pg_bin(dir);
    }
    progress.note("starting a Patroni cluster (etcd, two nodes, HAProxy)...");
    let started = Instant::now();
    let cluster = builder.start().await?;
    let healthy = cluster.wait_healthy(HEALTHY_WITHIN).await?;
    progress.note(&format!(
        "cluster: Patroni in {} (leader {} on port {}, replica {} on port {}{}, started in {} ms)",
        cluster.dir().display(),
        healthy.leader,
        healthy.leader_port,
        healthy.replica,
        healthy.replica_port,
        cluster
            .haproxy_port()
            .map(|p| format!(", HAProxy on port {p}"))
            .unwrap_or_default(),
        started.elapsed().as_millis()
    ));
    let (setup, connection) = cluster.pg_config().connect(NoTls).await?;
    let task = tokio::spawn(connection);
    setup.batch_execute(clients::SCHEMA).await?;
    let version: String = setup.query_one("SHOW server_version", &[]).await?.get(0);
    drop(setup);
    let _ = task.await;

    let mut passes = Vec::new();
    for &path in &plan.paths {
        passes.push(pass(plan, mode, &cluster, &version, path).await?);
    }
    let held = passes.iter().all(|p| p.report.guarantees.held);
    let t = cluster.timings();
    Ok(HaReport {
        mode: "ha",
        cluster_dir: cluster.dir().display().to_string(),
        patroni: PatroniSettings {
            ttl: t.ttl,
            loop_wait: t.loop_wait,
            retry_timeout: t.retry_timeout,
            primary_start_timeout: t.primary_start_timeout,
        },
        haproxy_check_interval_ms: cluster
            .haproxy_check_interval()
            .map(|d| d.as_secs_f64() * 1000.0),
        deadline_ms: plan.deadline.as_secs_f64() * 1000.0,
        passes,
        held,
    })
}

/// The connection string of a path, and the same for tokio-postgres.
fn target(
    cluster: &PatroniCluster,
    path: HaPath,
) -> Result<(String, tokio_postgres::Config), BoxError> {
    match path {
        HaPath::MultiHost => Ok((cluster.url(), cluster.pg_config())),
        // Through HAProxy too, both clients ask for a read-write session: HAProxy may route
        // a new connection to a node that is not (or not yet) a primary for a moment (its
        // check passes on the REST API's word, up to one interval late), and a write there
        // fails with 25006. Without this, a run saw 12 such errors surface from pgsteady
        // after a leader-lost (docs/drill-ha.md).
        HaPath::Haproxy => {
            let port = cluster.haproxy_port().ok_or("HAProxy is not running")?;
            let mut config = cluster.pg_config_with_port(port);
            config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
            Ok((
                format!(
                    "{}?target_session_attrs=read-write",
                    cluster.url_with_port(port)
                ),
                config,
            ))
        }
    }
}

/// One drill through `path`: both clients, every fault, the writes checked on the leader.
async fn pass(
    plan: &HaPlan,
    mode: Mode,
    cluster: &PatroniCluster,
    version: &str,
    path: HaPath,
) -> Result<Pass, BoxError> {
    let ledgers = [Arc::new(Ledger::default()), Arc::new(Ledger::default())];
    let progress = Progress::new(mode, ledgers.clone());
    let (url, mut naive_config) = target(cluster, path)?;
    naive_config.application_name(Side::Naive.application_name());
    let (pool_config, retry, mut pool_words) =
        crate::shared::pool_settings_with(plan.workers, plan.deadline, plan.deadline);
    pool_words[2] = format!("connect_timeout {CONNECT_TIMEOUT:?} per host");
    let mut config = Config::parse(&url)?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.application_name = Some(Side::Pgsteady.application_name().to_owned());
    let redacted = config.to_string();
    let pool = Pool::builder(config)
        .pool_config(pool_config)
        .max_size(plan.workers)
        .acquire_timeout(plan.deadline)
        .retry(retry)
        .build()?;

    progress.note(&format!("{}: clients on {redacted}", path.name()));
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
    let mut windows = Vec::new();
    let mut engines = Vec::new();
    let n = plan.faults.len();
    let result: Result<(), BoxError> = async {
        for (i, &fault) in plan.faults.iter().enumerate() {
            progress.stage(if i == 0 { "warming up" } else { "steady" });
            tokio::time::sleep(if i == 0 { WARMUP } else { SETTLE }).await;
            let healthy = cluster.wait_healthy(HEALTHY_WITHIN).await?;
            caught_up(cluster, &healthy).await?;
            progress.stage(format!(
                "{} ({}/{n}) via {}: {} (leader {})",
                fault.name(),
                i + 1,
                path.name(),
                fault.summary(),
                healthy.leader
            ));
            let (window, engine) = apply(cluster, fault, &healthy, &clock, &progress).await?;
            progress.stage(format!("{}: {}", fault.name(), engine.describe()));
            windows.push(window);
            engines.push(engine);
        }
        progress.stage("steady");
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }
    .await;
    progress.stage("stopping the clients and checking every write on the leader");
    let (naive, pgsteady) = tokio::join!(
        naive.stop_within(STOP_GRACE),
        pgsteady.stop_within(STOP_GRACE)
    );
    drop(ticker);
    let duration = t0.elapsed();
    pool.close(Duration::from_secs(1)).await;
    result?;

    // The writes, read on the leader (the multi-host string lands on it).
    cluster.wait_healthy(HEALTHY_WITHIN).await?;
    let (check, connection) = cluster.pg_config().connect(NoTls).await?;
    tokio::spawn(connection);
    let records =
        crate::shared::records(&check, t0, &windows, [&naive, &pgsteady], &ledgers).await?;
    let engine = engines
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let until = windows.get(i + 1).map(|w| w.start);
            e.figures(t0, &windows[i], until, &records)
        })
        .collect();
    let report = crate::shared::assemble(
        cluster.dir().display().to_string(),
        version.to_owned(),
        duration,
        plan.workers,
        pool_words,
        t0,
        &windows,
        records,
    );
    // The next path starts from an empty table: keys restart at 1 for its ledgers.
    check.batch_execute("TRUNCATE drill_writes").await?;
    Ok(Pass {
        path,
        target: redacted,
        report,
        engine,
        error_examples: Side::BOTH
            .into_iter()
            .zip(&ledgers)
            .map(|(side, ledger)| (side.name(), ledger.examples()))
            .collect(),
    })
}

/// Waits (bounded) until the replica has flushed everything the leader had written when
/// the wait began. `wait_healthy` only sees the replica streaming: a replica that has just
/// reconnected (after a switchover, the old leader restarts as one 5 s later) streams but
/// has not caught up, and a failover then loses every write it lacks. Seen here before this
/// wait: a leader-crash right after a switchover lost 200-440 acknowledged writes per client
/// (asynchronous replication: Patroni promoted the replica, its lag under
/// `maximum_lag_on_failover`, 1 MB). The drill measures clients, so each fault hits a
/// cluster in steady state.
async fn caught_up(cluster: &PatroniCluster, healthy: &Healthy) -> Result<(), BoxError> {
    let admin = cluster.admin(&healthy.leader).await?;
    let target: String = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let started = Instant::now();
    loop {
        let done: bool = admin
            .query_one(
                "SELECT coalesce((SELECT flush_lsn >= $1::text::pg_lsn FROM pg_stat_replication \
                 WHERE application_name = $2 AND state = 'streaming'), false)",
                &[&target, &healthy.replica],
            )
            .await?
            .get(0);
        if done {
            return Ok(());
        }
        if started.elapsed() > HEALTHY_WITHIN {
            return Err(format!(
                "{} did not catch up with {} (WAL {target}) within {HEALTHY_WITHIN:?}",
                healthy.replica, healthy.leader
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Applies one fault and waits until a leader is writable again (and, for `leader-lost`,
/// until the killed node is back as a streaming replica). The window's `ready` is when the
/// new leader's server logged it was ready for writes.
async fn apply(
    cluster: &PatroniCluster,
    fault: HaFault,
    before: &Healthy,
    clock: &Clock,
    progress: &Progress,
) -> Result<(Window, Engine), BoxError> {
    let start = Instant::now();
    let since = SystemTime::now();
    let mut notes = Vec::new();
    match fault {
        HaFault::Switchover => cluster.switchover(&before.replica).await?,
        HaFault::LeaderCrash => {
            let pid = cluster.kill_postmaster(&before.leader).await?;
            notes.push(format!("postmaster {pid} of {} killed", before.leader));
        }
        HaFault::LeaderLost => {
            cluster.kill_node(&before.leader).await?;
            notes.push(format!(
                "node {} killed (Patroni and PostgreSQL)",
                before.leader
            ));
        }
    }
    let end = Instant::now();
    let (new_leader, ready_at) = wait_writable(cluster, before, since).await?;
    // Patroni records a promotion in /history on the new leader's next loop; a postmaster
    // restarted in place has none (unless Patroni started it in recovery and promoted it).
    let change = if new_leader != before.leader {
        Some(
            cluster
                .wait_leader_change(before.timeline, HISTORY_WITHIN)
                .await?,
        )
    } else {
        cluster
            .history()
            .await?
            .into_iter()
            .find(|c| c.timeline > before.timeline)
    };
    match &change {
        None => notes.push(format!(
            "Patroni restarted {}'s server in place: no leader change (the engine's time is its ready line)",
            before.leader
        )),
        Some(c) if c.new_leader.as_deref() == Some(before.leader.as_str()) => notes.push(format!(
            "Patroni restarted {} and promoted it again (timeline {})",
            before.leader, c.timeline
        )),
        Some(_) => {}
    }
    let ready = clock.instant_of(ready_at);
    let mut rejoined = None;
    if fault == HaFault::LeaderLost {
        progress.stage(format!(
            "leader-lost: {new_leader} leads; restarting {}",
            before.leader
        ));
        cluster.start_node(&before.leader).await?;
        let back = cluster.wait_healthy(HEALTHY_WITHIN).await?;
        rejoined = Some(Instant::now());
        notes.push(format!(
            "{} restarted and streaming from {} again",
            before.leader, back.leader
        ));
    }
    let window = Window {
        name: fault.name(),
        summary: fault.summary(),
        start,
        end,
        ready,
        traffic_from: start,
        notes,
    };
    let engine = Engine {
        fault,
        old_leader: before.leader.clone(),
        new_leader,
        change_at: change
            .as_ref()
            .and_then(|c| c.at)
            .map(|at| clock.instant_of(at)),
        change_timeline: change.as_ref().map(|c| c.timeline),
        writable_at: ready,
        rejoined,
    };
    Ok((window, engine))
}

/// Waits (bounded) until Patroni reports a running leader whose server logged "ready to
/// accept connections" after `since`: a promotion, or a restart in place. Returns the
/// leader's name and that log time.
async fn wait_writable(
    cluster: &PatroniCluster,
    before: &Healthy,
    since: SystemTime,
) -> Result<(String, SystemTime), BoxError> {
    let started = Instant::now();
    loop {
        let last = match cluster.leader().await {
            Ok(leader) if leader.state == "running" => {
                let ready = cluster
                    .node(&leader.name)?
                    .ready_times()
                    .into_iter()
                    .rfind(|t| *t >= since);
                match ready {
                    Some(at) => return Ok((leader.name, at)),
                    None => format!("leader {} not ready since the fault", leader.name),
                }
            }
            Ok(leader) => format!("leader {} is {}", leader.name, leader.state),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > FAILOVER_WITHIN {
            return Err(format!(
                "no writable leader {FAILOVER_WITHIN:?} after the fault (leader was {}): {last}",
                before.leader
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

fn finish(plan: &HaPlan, report: &HaReport) -> u8 {
    output::verdict(plan.json, report, report::summary, report.held)
}
