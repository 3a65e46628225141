//! Pipelined one-shot statements (`Pool::query` and the like): many callers on few server
//! connections, and through restarts, crashes and terminated sessions no error surfaces.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgsteady::{EvictReason, Pool, Reason, RetryPolicy};
use pgsteady_testkit::workload::{ErrorClass, Workload};
use pgsteady_testkit::{BackendFilter, Cluster, Fault, StopMode};

use super::{pool, report, run_for};

/// A recovery guard, not the target (see `restart.rs`).
const RECOVERY_GUARD: Duration = Duration::from_secs(1);

/// `workers` tasks looping `SELECT 1` through [`Pool::query_one`].
pub fn load_query(pool: &Pool, workers: usize) -> Workload {
    let pool = pool.clone();
    Workload::start(workers, move |_| {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                pool.query_one("SELECT 1", &[])
                    .await
                    .map(drop)
                    .map_err(|e| ErrorClass::of(&e))
            }
        }
    })
}

/// The most of the pool's sessions (user `app`) the server showed while `load` ran, sampled
/// until `stop` is set.
async fn sample_sessions(cluster: &Cluster, stop: Arc<AtomicBool>) -> usize {
    let admin = cluster.admin().await.unwrap();
    let mut most = 0;
    while !stop.load(Ordering::Relaxed) {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        most = most.max(n as usize);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_callers_share_four_connections_with_no_error() {
    // 10 slots - 3 reserved for superusers = 7 for the application's user.
    let cluster = Cluster::builder()
        .max_connections(10)
        .start()
        .await
        .unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(4));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_sessions(&cluster, stop.clone());
    let workload = load_query(&pool, 256);
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let watch = {
        let pool = pool.clone();
        let most = most_in_flight.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut most_shared = 0;
            while !stop.load(Ordering::Relaxed) {
                let m = pool.metrics();
                most.fetch_max(m.pipelined_in_flight, Ordering::Relaxed);
                most_shared = most_shared.max(m.shared_connections);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most_shared
        })
    };
    let stopper = {
        let stop = stop.clone();
        async move {
            run_for(Duration::from_secs(2)).await;
            stop.store(true, Ordering::Relaxed);
        }
    };
    let (most_sessions, ()) = tokio::join!(sampler, stopper);
    let timeline = workload.stop().await;
    let most_shared = watch.await.unwrap();
    let metrics = pool.metrics();
    eprintln!(
        "256 callers: ok {}, errors {}, server sessions at most {most_sessions}, shared at most \
         {most_shared}, in flight at most {}",
        timeline.ok(),
        timeline.errors(),
        most_in_flight.load(Ordering::Relaxed)
    );
    assert_eq!(
        timeline.errors(),
        0,
        "{:?}",
        report("pool.query", &timeline)
    );
    assert!(
        timeline.ok() > 1000,
        "the callers were served: {}",
        timeline.ok()
    );
    assert!(
        (1..=4).contains(&most_sessions),
        "the server saw {most_sessions} of the pool's sessions"
    );
    assert!(most_shared <= 4, "{most_shared} shared connections");
    // Not one caller per connection: statements were pipelined.
    assert!(
        most_in_flight.load(Ordering::Relaxed) > 4,
        "statements shared connections: {}",
        most_in_flight.load(Ordering::Relaxed)
    );
    assert_eq!(
        metrics.create_failures.get(Reason::TooManyConnections),
        0,
        "{metrics:?}"
    );
    assert_eq!(metrics.pipelined_in_flight, 0, "every lease was given back");
}

/// The negative control of the test above: on the same server, exclusive checkouts with one
/// connection per caller run out of slots (53300).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_checkouts_for_256_callers_exhaust_the_same_server() {
    let cluster = Cluster::builder()
        .max_connections(10)
        .start()
        .await
        .unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(256));
    let workload = super::load_run(&pool, 256);
    let refused = async {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let n = pool
                .metrics()
                .create_failures
                .get(Reason::TooManyConnections);
            if n > 0 || Instant::now() >= until {
                return n;
            }
            run_for(Duration::from_millis(20)).await;
        }
    }
    .await;
    drop(workload.stop().await);
    assert!(refused >= 1, "the server refused connections: {refused}");
}

async fn run_under(fault: Fault) {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(2).pipeline_depth(8));
    let workload = load_query(&pool, 16);
    run_for(Duration::from_millis(300)).await;

    let ok_at_fault = workload.progress().ok;
    let id = workload.begin_fault(format!("{fault:?}"));
    let applied = fault.apply(&cluster).await.unwrap();
    if let Fault::Terminate(_) = fault {
        assert!(
            applied.terminated >= Some(1),
            "the pool's connections were terminated"
        );
    }
    workload.end_fault(id);
    if fault.starts_the_server() {
        workload.server_ready(id, cluster.ready_at());
    }
    run_for(Duration::from_millis(700)).await;
    // Bounded; the assertions decide (see `restart.rs`).
    let cap = Instant::now() + Duration::from_secs(30);
    while workload.progress().ok <= ok_at_fault + 100 && Instant::now() < cap {
        run_for(Duration::from_millis(20)).await;
    }
    let timeline = workload.stop().await;
    let m = report("pool.query", &timeline).remove(0);

    assert_eq!(
        m.errors, 0,
        "errors surfaced through query: {:?}",
        m.errors_by_class
    );
    let first = m
        .ready_to_first_success
        .expect("served again after the fault");
    assert!(
        first <= RECOVERY_GUARD,
        "first success {first:?} after ready"
    );
    assert!(
        m.calls_ok > 100,
        "the workload kept running: {}",
        m.calls_ok
    );
    let metrics = pool.metrics();
    assert!(
        metrics.evictions(EvictReason::Closed) >= 1,
        "dead connections were evicted: {metrics:?}"
    );
    assert!(metrics.open <= 2);
}

#[tokio::test]
async fn fast_restart_surfaces_no_error_through_pipelined_statements() {
    run_under(Fault::Restart(StopMode::Fast)).await;
}

#[tokio::test]
async fn immediate_restart_surfaces_no_error_through_pipelined_statements() {
    run_under(Fault::Restart(StopMode::Immediate)).await;
}

#[tokio::test]
async fn postmaster_sigkill_and_start_surfaces_no_error_through_pipelined_statements() {
    run_under(Fault::KillPostmaster).await;
}

#[tokio::test]
async fn terminating_every_pool_connection_surfaces_no_error_through_pipelined_statements() {
    run_under(Fault::Terminate(BackendFilter::User("app".into()))).await;
}

/// `pg_sleep` statements pipelined on one connection, with `attempts` attempts each, while
/// its backend is terminated: the results, and the backend pids before and after.
async fn terminate_during_batch(attempts: u32) -> (Vec<Result<(), pgsteady::Error>>, Pool) {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        let mut retry = RetryPolicy::default();
        retry.max_attempts = attempts;
        b.max_size(1).retry(retry)
    });
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.query_one("SELECT pg_sleep(0.3)", &[]).await.map(drop) })
        })
        .collect();
    // Until all eight are in flight on the one connection.
    let until = Instant::now() + Duration::from_secs(10);
    while pool.metrics().pipelined_in_flight < 8 && Instant::now() < until {
        run_for(Duration::from_millis(5)).await;
    }
    assert_eq!(pool.metrics().pipelined_in_flight, 8);
    assert_eq!(pool.metrics().shared_connections, 1);
    let terminated = cluster
        .terminate_backends(BackendFilter::User("app".into()))
        .await
        .unwrap();
    assert_eq!(terminated, 1, "the shared connection's backend");
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    (results, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shared_connection_fails_every_statement_in_flight_on_it() {
    let (results, pool) = terminate_during_batch(1).await;
    for (i, result) in results.iter().enumerate() {
        let err = result
            .as_ref()
            .expect_err("a statement on the terminated connection");
        assert!(
            err.reason().is_some_and(|r| r.is_connection_lost()),
            "statement {i}: {err:?}"
        );
    }
    // The maintenance task evicts it once it is back in the pool (woken by its close).
    let until = Instant::now() + Duration::from_secs(5);
    while pool.metrics().evictions(EvictReason::Closed) == 0 && Instant::now() < until {
        run_for(Duration::from_millis(10)).await;
    }
    let metrics = pool.metrics();
    assert!(
        metrics.evictions(EvictReason::Closed) >= 1,
        "the dead connection was evicted: {metrics:?}"
    );
    assert_eq!(metrics.pipelined_in_flight, 0);
    assert_eq!(metrics.retries, 0, "nothing was retried with one attempt");
}

/// The same with retries: every statement is retried on a new connection and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_in_flight_on_a_dead_shared_connection_are_retried() {
    let (results, pool) = terminate_during_batch(3).await;
    for (i, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "statement {i}: {result:?}");
    }
    let metrics = pool.metrics();
    assert!(metrics.retries >= 8, "{metrics:?}");
    assert!(metrics.evictions(EvictReason::Closed) >= 1, "{metrics:?}");
}
