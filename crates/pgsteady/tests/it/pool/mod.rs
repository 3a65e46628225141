//! `pgsteady::Pool` against real servers, one module per failure mode.

mod exhaustion;
mod herd;
mod hung;
mod idle;
mod lifecycle;
mod outage;
mod pipelined;
mod restart;
mod silent_drop;
mod statement_cache;
mod statement_timeout;
mod transaction;

use std::time::Duration;

use pgsteady::{Config, Pool, PoolBuilder};
use pgsteady_testkit::Cluster;
use pgsteady_testkit::workload::{ErrorClass, Timeline, Workload};

/// A pool for the cluster's password user (through `port` if given, e.g. a proxy's).
pub fn pool(
    cluster: &Cluster,
    port: Option<u16>,
    tune: impl FnOnce(PoolBuilder) -> PoolBuilder,
) -> Pool {
    let url = cluster.url_with_port(port.unwrap_or(cluster.port()));
    let config = Config::parse(&format!("{url}?connect_timeout=2")).expect("url parses");
    tune(Pool::builder(config)).build().expect("pool builds")
}

/// `workers` tasks looping `SELECT 1` through [`Pool::run`] with a cached statement.
pub fn load_run(pool: &Pool, workers: usize) -> Workload {
    let pool = pool.clone();
    Workload::start(workers, move |_| {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                pool.run(async move |conn| {
                    let stmt = conn.prepare_cached("SELECT 1").await?;
                    conn.query_one(&stmt, &[]).await?;
                    Ok(())
                })
                .await
                .map_err(|e| ErrorClass::of(&e))
            }
        }
    })
}

/// `workers` tasks looping a plain checkout + `SELECT 1`, errors surfacing as they come.
pub fn load_get(pool: &Pool, workers: usize) -> Workload {
    let pool = pool.clone();
    Workload::start(workers, move |_| {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                let conn = pool.get().await.map_err(|e| ErrorClass::of(&e))?;
                let stmt = conn
                    .prepare_cached("SELECT 1")
                    .await
                    .map_err(|e| ErrorClass::of(&e))?;
                conn.query_one(&stmt, &[])
                    .await
                    .map_err(|e| ErrorClass::of(&e))?;
                Ok::<(), ErrorClass>(())
            }
        }
    })
}

/// The pid of the backend serving `conn`.
pub async fn backend_pid(conn: &pgsteady::PooledConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Lets a workload run for `d`.
pub async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Prints a timeline's per-fault figures (visible with --nocapture) and returns them.
pub fn report(label: &str, timeline: &Timeline) -> Vec<pgsteady_testkit::workload::FaultMetrics> {
    let metrics = timeline.metrics();
    for m in &metrics {
        eprintln!(
            "{label}: {}: {} errors {:?}, ready->first success {:?}, no success {:?}, max call {:?}, ok {}",
            m.name,
            m.errors,
            m.errors_by_class,
            m.ready_to_first_success,
            m.no_success,
            m.max_call,
            m.calls_ok
        );
    }
    metrics
}
