//! `pgsteady drill --herd N`: N independent single-connection clients lose their connection
//! to the same restart and reconnect. How hard do they hit the server? Connection attempts are
//! counted where the server would see them (at the fault proxy in front of it), per 10 ms,
//! for pgsteady pools and for the fixed-interval retry loop of the field reports.

mod figures;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgsteady::{Config, Pool, Reason};
use pgsteady_testkit::workload::Clock;
use pgsteady_testkit::{Cluster, FaultProxy, StopMode};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::output;
use super::output::{Mode, Progress};
use crate::exit::COULD_NOT_RUN;
use figures::{ms, rate, window_rate};

/// The fixed retry interval the comparison uses (the field reports sleep a fixed 2 s; a
/// shorter one is kinder to recovery time and just as synchronised).
const FIXED_INTERVAL: Duration = Duration::from_millis(100);
/// How long all N may take to serve again after the server is ready.
const ALL_SERVING_WITHIN: Duration = Duration::from_secs(30);
/// The target for pgsteady: peak attempts per bucket under this many times the mean, over
/// the time the server is down (from the postmaster's exit to its ready line). The span
/// figure is reported beside it for information: how fast a 2-core server ends its sessions
/// decides most of it.
const PEAK_TO_MEAN_TARGET: f64 = 3.0;
/// The server's nice value (see `ClusterBuilder::nice`).
const SERVER_NICE: i32 = 19;

/// One side of the comparison.
#[derive(Debug, Serialize)]
struct Herd {
    client: &'static str,
    /// Connection attempts from the restart until all N were serving again.
    attempts: usize,
    peak_per_10ms: usize,
    mean_per_10ms: f64,
    peak_to_mean: f64,
    /// The same over the time the server was down or starting (from the postmaster's exit to
    /// the ready log line), where the herd's steady rate shows without the shutdown before it
    /// (sessions end one by one, and attempts wait on a busy server) or the logins after it.
    down_peak_per_10ms: usize,
    down_mean_per_10ms: f64,
    down_peak_to_mean: f64,
    /// From the restart's stop signal to the server's ready log line, in ms.
    downtime_ms: f64,
    /// From the server's ready log line until the last of the N was serving, in ms;
    /// `None` when not all of them were within 30 s.
    ready_to_all_serving_ms: Option<f64>,
    /// 53300 (too many connections) errors seen while reconnecting.
    too_many_connections: u64,
    /// Errors returned to the members' callers from the restart on.
    errors: u64,
    /// pgsteady only: failed connection attempts by reason.
    failures: BTreeMap<String, u64>,
    /// Attempts per 10 ms from the restart on.
    per_10ms: Vec<usize>,
}

#[derive(Debug, Serialize)]
struct HerdReport {
    n: usize,
    max_connections: u32,
    fixed_interval_ms: u64,
    herds: Vec<Herd>,
    /// pgsteady: 0 errors returned to callers, no 53300, all N serving within 30 s of ready
    /// (decides the exit code).
    guarantees_held: bool,
    /// pgsteady: peak attempts per 10 ms under 3x the mean while the server was down (a
    /// measurement, reported only: on a loaded machine the scheduler batches attempts into
    /// alternate buckets).
    peak_target_met: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) async fn run(n: usize, pg_bin: Option<PathBuf>, json: bool, mode: Mode) -> u8 {
    let progress = Progress::new(mode, Default::default());
    match herds(n, pg_bin, &progress).await {
        Ok(report) => output::verdict(json, &report, table, report.guarantees_held),
        Err(e) => {
            progress.note(&format!("pgsteady drill --herd: {e:#}"));
            COULD_NOT_RUN
        }
    }
}

/// The text result: the two sides of the comparison, then pgsteady's verdict.
fn table(report: &HerdReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "herd: {} single-connection clients, each making one call per {} ms, reconnecting after a \
         fast restart (max_connections {}, server at nice {}); connection attempts counted at the \
         proxy in front of the server, per 10 ms, from the restart until all {} were serving \
         again (peak/mean over the span with attempts; \"while down\": over the time from the \
         postmaster's exit to the ready line)",
        report.n,
        PACE.as_millis(),
        report.max_connections,
        SERVER_NICE,
        report.n
    );
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>10} {:>10} {:>10} {:>16} {:>10} {:>19} {:>7} {:>7}",
        "client",
        "attempts",
        "peak/10ms",
        "mean/10ms",
        "peak/mean",
        "while down: p/m",
        "downtime",
        "ready->all serving",
        "53300",
        "errors"
    );
    for h in &report.herds {
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>10} {:>10.1} {:>9.1}x {:>16} {:>7.0} ms {:>19} {:>7} {:>7}",
            h.client,
            h.attempts,
            h.peak_per_10ms,
            h.mean_per_10ms,
            h.peak_to_mean,
            format!(
                "{}/{:.1} = {:.1}x",
                h.down_peak_per_10ms, h.down_mean_per_10ms, h.down_peak_to_mean
            ),
            h.downtime_ms,
            h.ready_to_all_serving_ms
                .map_or_else(|| "never".to_owned(), |ms| format!("{ms:.0} ms")),
            h.too_many_connections,
            h.errors
        );
    }
    for h in report.herds.iter().filter(|h| !h.failures.is_empty()) {
        let by: Vec<String> = h.failures.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            out,
            "{}: failed connection attempts: {}",
            h.client,
            by.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "pgsteady: {} errors returned to callers, {} 53300, all {} serving: {}; peak under {}x \
         the mean while the server was down: {} ({:.1}x; over the span {:.1}x, for information)",
        report.herds[0].errors,
        report.herds[0].too_many_connections,
        report.n,
        if report.guarantees_held {
            "held"
        } else {
            "BROKEN"
        },
        PEAK_TO_MEAN_TARGET,
        if report.peak_target_met {
            "met"
        } else {
            "not met"
        },
        report.herds[0].down_peak_to_mean,
        report.herds[0].peak_to_mean,
    );
    out
}

async fn herds(
    n: usize,
    pg_bin: Option<PathBuf>,
    progress: &Progress,
) -> Result<HerdReport, BoxError> {
    let max_connections = (n as u32 + 50).max(250);
    // The N clients stand for N machines other than the server's: the server runs at a lower
    // priority, so its hundreds of busy backends cannot starve the clients' threads (which
    // would show up as bursts made by the scheduler, not by the clients).
    let mut builder = Cluster::builder()
        .max_connections(max_connections)
        .nice(SERVER_NICE);
    if let Some(dir) = pg_bin {
        builder = builder.pg_bin(dir);
    }
    let (cluster, _version) = crate::shared::start_cluster(builder, progress).await?;
    let mut herds = Vec::new();
    for fixed in [false, true] {
        // On a thread of its own: the N clients keep the drill's runtime busy, and an accept
        // loop sharing it would stamp attempts late and in batches.
        let proxy = FaultProxy::start_on_own_thread(cluster.addr()).await?;
        let name = if fixed {
            "fixed 100 ms retry"
        } else {
            "pgsteady"
        };
        progress.note(&format!("{name}: connecting {n} clients"));
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            serving: tx,
            errors: Arc::new(AtomicU64::new(0)),
            too_many: Arc::new(AtomicU64::new(0)),
        };
        let clients = if fixed {
            Clients::fixed(n, cluster.pg_config_with_port(proxy.port()), &shared)
        } else {
            Clients::pools(n, &cluster.url_with_port(proxy.port()), &shared)?
        };
        let herd =
            restart_and_measure(name, n, &cluster, &proxy, rx, &shared.errors, progress).await?;
        let too_many_connections = shared.too_many.load(Ordering::Relaxed) + clients.too_many();
        let failures = clients.failures();
        clients.close().await;
        herds.push(Herd {
            too_many_connections,
            failures,
            ..herd
        });
    }
    let pg = &herds[0];
    let guarantees_held =
        pg.errors == 0 && pg.too_many_connections == 0 && pg.ready_to_all_serving_ms.is_some();
    let peak_target_met = pg.down_peak_to_mean < PEAK_TO_MEAN_TARGET;
    Ok(HerdReport {
        n,
        max_connections,
        fixed_interval_ms: FIXED_INTERVAL.as_millis() as u64,
        herds,
        guarantees_held,
        peak_target_met,
    })
}

/// Each member makes one call per this interval, as an application's traffic would.
const PACE: Duration = Duration::from_millis(100);

/// What the members of one side share with the measurement.
#[derive(Debug, Clone)]
struct Shared {
    /// `(member, when)` for every successful call.
    serving: mpsc::UnboundedSender<(usize, Instant)>,
    /// Errors returned to the members' callers.
    errors: Arc<AtomicU64>,
    /// 53300 errors seen by the fixed-interval loops.
    too_many: Arc<AtomicU64>,
}

/// The N clients of one side, each with its own traffic.
enum Clients {
    Pools {
        pools: Vec<Pool>,
        tasks: JoinSet<()>,
    },
    Fixed(JoinSet<()>),
}

impl Clients {
    /// N pools of one connection each, kept warm (`min_idle` 1), each with a caller making
    /// one `Pool::run` call per [`PACE`].
    fn pools(n: usize, url: &str, shared: &Shared) -> Result<Clients, BoxError> {
        let mut config = Config::parse(url)?;
        config.connect_timeout = Some(Duration::from_secs(2));
        let pools = (0..n)
            .map(|_| {
                Pool::builder(config.clone())
                    .max_size(1)
                    .min_idle(1)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut tasks = JoinSet::new();
        for (i, pool) in pools.iter().enumerate() {
            let (pool, shared) = (pool.clone(), shared.clone());
            tasks.spawn(async move {
                loop {
                    let call = pool
                        .run(async |conn| {
                            conn.simple_query("SELECT 1").await?;
                            Ok(())
                        })
                        .await;
                    match call {
                        Ok(()) => {
                            let _ = shared.serving.send((i, Instant::now()));
                        }
                        Err(_) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(PACE).await;
                }
            });
        }
        Ok(Clients::Pools { pools, tasks })
    }

    /// N loops as the field reports write them: one connection, one call per [`PACE`]; when a
    /// call fails, connect again at once and then every 100 ms until it works.
    fn fixed(n: usize, mut config: tokio_postgres::Config, shared: &Shared) -> Clients {
        config.connect_timeout(Duration::from_secs(2));
        let mut set = JoinSet::new();
        for i in 0..n {
            let (config, shared) = (config.clone(), shared.clone());
            set.spawn(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                loop {
                    let c = match &client {
                        Some(c) => c,
                        None => match config.connect(NoTls).await {
                            Ok((c, connection)) => {
                                tokio::spawn(connection);
                                client.insert(c)
                            }
                            Err(e) => {
                                shared.errors.fetch_add(1, Ordering::Relaxed);
                                if e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) {
                                    shared.too_many.fetch_add(1, Ordering::Relaxed);
                                }
                                tokio::time::sleep(FIXED_INTERVAL).await;
                                continue;
                            }
                        },
                    };
                    match c.simple_query("SELECT 1").await {
                        Ok(_) => {
                            let _ = shared.serving.send((i, Instant::now()));
                            tokio::time::sleep(PACE).await;
                        }
                        Err(_) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            client = None;
                        }
                    }
                }
            });
        }
        Clients::Fixed(set)
    }

    /// Failed connection attempts by reason (pgsteady's pools count them; the fixed loops
    /// count only 53300).
    fn failures(&self) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        if let Clients::Pools { pools, .. } = self {
            for pool in pools {
                for (reason, n) in pool.metrics().create_failures.iter() {
                    *by.entry(reason.to_owned()).or_insert(0) += n;
                }
            }
        }
        by
    }

    fn too_many(&self) -> u64 {
        match self {
            Clients::Pools { pools, .. } => pools
                .iter()
                .map(|p| p.metrics().create_failures.get(Reason::TooManyConnections))
                .sum(),
            Clients::Fixed(_) => 0,
        }
    }

    async fn close(self) {
        match self {
            Clients::Pools { pools, mut tasks } => {
                tasks.shutdown().await;
                for pool in &pools {
                    pool.close(Duration::from_secs(1)).await;
                }
            }
            Clients::Fixed(mut set) => set.shutdown().await,
        }
    }
}

async fn restart_and_measure(
    name: &'static str,
    n: usize,
    cluster: &Cluster,
    proxy: &FaultProxy,
    mut serving: mpsc::UnboundedReceiver<(usize, Instant)>,
    errors: &AtomicU64,
    progress: &Progress,
) -> Result<Herd, BoxError> {
    // Everyone connected once.
    let mut connected = vec![false; n];
    let mut count = 0;
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    while count < n {
        let (i, _) = tokio::time::timeout_at(warm_deadline.into(), serving.recv())
            .await
            .map_err(|_| format!("{name}: only {count} of {n} clients connected within 60 s"))?
            .ok_or("the clients stopped")?;
        if !std::mem::replace(&mut connected[i], true) {
            count += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while serving.try_recv().is_ok() {}

    progress.note(&format!("{name}: fast restart with {n} clients connected"));
    let clock = Clock::now();
    let fault_at = clock.instant;
    let errors_before = errors.load(Ordering::Relaxed);
    cluster.stop(StopMode::Fast).await?;
    let down_at = Instant::now();
    cluster.start_server().await?;
    let ready = cluster
        .ready_at()
        .map(|at| clock.instant_of(at))
        .filter(|at| *at >= fault_at)
        .unwrap_or_else(Instant::now);

    let mut back = vec![None; n];
    let mut count = 0;
    let deadline = ready + ALL_SERVING_WITHIN;
    while count < n {
        match tokio::time::timeout_at(deadline.into(), serving.recv()).await {
            // A call that returned after the server said ready ran on a new connection.
            Ok(Some((i, at))) if at >= ready => {
                if back[i].is_none() {
                    back[i] = Some(at);
                    count += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let all_serving = (count == n)
        .then(|| back.iter().flatten().max().copied())
        .flatten();
    let until = all_serving.unwrap_or_else(Instant::now);
    let attempts: Vec<Instant> = proxy
        .accept_times()
        .into_iter()
        .filter(|at| *at >= fault_at && *at <= until)
        .collect();
    let figures = rate(&attempts, fault_at, until);
    let down = window_rate(&attempts, down_at, ready);
    let herd = Herd {
        client: name,
        attempts: attempts.len(),
        peak_per_10ms: figures.peak,
        mean_per_10ms: figures.mean,
        peak_to_mean: figures.peak_to_mean(),
        down_peak_per_10ms: down.peak,
        down_mean_per_10ms: down.mean,
        down_peak_to_mean: down.peak_to_mean(),
        downtime_ms: ms(ready.saturating_duration_since(fault_at)),
        ready_to_all_serving_ms: all_serving.map(|at| ms(at.saturating_duration_since(ready))),
        too_many_connections: 0,
        errors: errors.load(Ordering::Relaxed) - errors_before,
        failures: BTreeMap::new(),
        per_10ms: figures.buckets,
    };
    progress.note(&format!(
        "{name}: {} attempts, peak {} per 10 ms, mean {:.1}; all {n} serving {} after ready",
        herd.attempts,
        herd.peak_per_10ms,
        herd.mean_per_10ms,
        herd.ready_to_all_serving_ms
            .map_or_else(|| "never".to_owned(), |ms| format!("{ms:.0} ms"))
    ));
    Ok(herd)
}
