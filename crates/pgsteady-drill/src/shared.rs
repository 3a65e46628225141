//! What the drill, `--ha` and `--herd` share: the pace, the pool's settings, starting the
//! cluster, and turning the clients' records into the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgsteady::{Config, PoolConfig, RetryPolicy};
use pgsteady_testkit::{Cluster, ClusterBuilder};
use tokio_postgres::NoTls;

use crate::clients::{Ledger, Side};
use crate::faults::Window;
use crate::figures::{self, Record};
use crate::output::{self, Guarantees, Progress, Report, Totals};

/// Each worker makes at most one call per this interval.
pub(crate) const PACE: Duration = Duration::from_millis(10);
/// Steady traffic before the first fault, between faults and after the last.
pub(crate) const WARMUP: Duration = Duration::from_millis(1000);
pub(crate) const SETTLE: Duration = Duration::from_millis(1500);
/// How long stopping the clients may take; calls still running are recorded as unfinished.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(3);

/// The pool's settings for the drill.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const RETRY_DEADLINE: Duration = Duration::from_secs(15);
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const COMMIT_TIMEOUT: Duration = Duration::from_secs(1);

/// The error of a drill that could not run.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

pub(crate) fn pool_settings(workers: usize) -> (PoolConfig, RetryPolicy, Vec<String>) {
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
