//! Restarts, crashes and terminated sessions under load: through `Pool::run` callers see no
//! error at all; through plain `get()` at most the calls in flight at the fault fail.

use std::time::Duration;

use pgsteady::{EvictReason, Reason};
use pgsteady_testkit::{BackendFilter, Cluster, Fault, StopMode};

use super::{backend_pid, load_get, load_run, pool, report, run_for};

/// A recovery guard, not the target: the target (first success within 50 ms of the ready
/// log line, median of 5 runs) is measured by the `pool_faults` benchmark. This only keeps a
/// regression to seconds from passing.
const RECOVERY_GUARD: Duration = Duration::from_secs(1);

/// Terminates the pool's sessions (user `app`) and checks there was one.
async fn apply(cluster: &Cluster, fault: &Fault) {
    let applied = fault.apply(cluster).await.unwrap();
    if let Fault::Terminate(_) = fault {
        assert!(
            applied.terminated >= Some(1),
            "the pool's connections were terminated"
        );
    }
}

async fn run_under(fault: Fault) {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(8));
    let workload = load_run(&pool, 8);
    run_for(Duration::from_millis(300)).await;

    let ok_at_fault = workload.progress().ok;
    let id = workload.begin_fault(format!("{fault:?}"));
    apply(&cluster, &fault).await;
    workload.end_fault(id);
    if fault.starts_the_server() {
        workload.server_ready(id, cluster.ready_at());
    }
    run_for(Duration::from_millis(700)).await;
    // Until the calls asserted below were made: on a loaded machine 700 ms after a crash
    // recovery held 44 (the workload was slow, not stopped). Bounded; the assertion decides.
    let cap = std::time::Instant::now() + Duration::from_secs(30);
    while workload.progress().ok <= ok_at_fault + 100 && std::time::Instant::now() < cap {
        run_for(Duration::from_millis(20)).await;
    }
    let timeline = workload.stop().await;
    let m = report("pool.run", &timeline).remove(0);

    assert_eq!(
        m.errors, 0,
        "errors surfaced through run: {:?}",
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
    assert!(metrics.open <= 8);
}

#[tokio::test]
async fn fast_restart_surfaces_no_error_through_run() {
    run_under(Fault::Restart(StopMode::Fast)).await;
}

#[tokio::test]
async fn immediate_restart_surfaces_no_error_through_run() {
    run_under(Fault::Restart(StopMode::Immediate)).await;
}

#[tokio::test]
async fn postmaster_sigkill_and_start_surfaces_no_error_through_run() {
    run_under(Fault::KillPostmaster).await;
}

#[tokio::test]
async fn terminating_every_pool_connection_surfaces_no_error_through_run() {
    run_under(Fault::Terminate(BackendFilter::User("app".into()))).await;
}

#[tokio::test]
async fn plain_get_fails_at_most_the_calls_in_flight_and_keeps_the_real_reason() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(8));
    let workload = load_get(&pool, 8);
    run_for(Duration::from_millis(300)).await;
    let id = workload.begin_fault("fast restart");
    cluster.restart(StopMode::Fast).await.unwrap();
    workload.end_fault(id);
    workload.server_ready(id, cluster.ready_at());
    run_for(Duration::from_millis(700)).await;
    let m = report("pool.get", &workload.stop().await).remove(0);
    // A checkout never returns a connection known to be dead, and waits while the server is
    // down instead of failing. What can still fail: the call in flight when the server went
    // away, and a call on a connection whose 57P01 arrived in the instant it was handed out
    // (no task had read it yet; knowing would cost a round trip per checkout). So at most
    // two per worker, and only because the connection was lost.
    assert!(
        m.errors <= 16,
        "{} errors: {:?}",
        m.errors,
        m.errors_by_class
    );
    for class in m.errors_by_class.keys() {
        assert!(
            ["57P01", "closed", "reset"].contains(&class.as_str()),
            "only lost connections surface: {:?}",
            m.errors_by_class
        );
    }
    assert!(
        m.ready_to_first_success
            .is_some_and(|d| d <= RECOVERY_GUARD)
    );
}

#[tokio::test]
async fn idle_connections_killed_by_the_server_are_evicted_before_anyone_asks() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(4).min_idle(4));
    for _ in 0..200 {
        if pool.metrics().open == 4 {
            break;
        }
        run_for(Duration::from_millis(10)).await;
    }
    assert_eq!(
        pool.metrics().open,
        4,
        "min_idle connections were opened in the background"
    );
    let opened = pool.metrics();
    cluster
        .terminate_backends(BackendFilter::User("app".into()))
        .await
        .unwrap();
    // The pool learns it from the connections themselves, with no checkout and no ping...
    for _ in 0..200 {
        if pool.metrics().closed_by.get(Reason::AdminShutdown) == 4 {
            break;
        }
        run_for(Duration::from_millis(10)).await;
    }
    let metrics = pool.metrics();
    assert_eq!(
        metrics.closed_by.get(Reason::AdminShutdown),
        4,
        "{metrics:?}"
    );
    assert_eq!(metrics.evictions(EvictReason::Closed), 4);
    // ... and restores min_idle in the background.
    for _ in 0..200 {
        if pool.metrics().open == 4 && pool.metrics().creates == 8 {
            break;
        }
        run_for(Duration::from_millis(10)).await;
    }
    let metrics = pool.metrics();
    assert_eq!((metrics.open, metrics.creates), (4, 8), "{metrics:?}");
    assert_eq!(
        metrics.evictions(EvictReason::Validation),
        0,
        "learned without a ping: {metrics:?}"
    );
    assert_eq!(metrics.checkout_failures, opened.checkout_failures);
    let conn = pool.get().await.unwrap();
    conn.simple_query("SELECT 1").await.unwrap();
}

/// A benchmark finding: a connection whose statement failed because the session was
/// gone went back to the pool before its background task had read the end of the socket, and
/// the worker's very next checkout got it again: a second error for one lost connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_statement_saw_it_lost_is_never_handed_out_again() {
    let cluster = Cluster::start().await.unwrap();
    let admin = cluster.admin().await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(1));
    for round in 0..5 {
        let conn = pool.get().await.unwrap();
        let pid: i32 = backend_pid(&conn).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let err = conn.query_one("SELECT 1", &[]).await.unwrap_err();
        assert!(
            err.is_closed() || err.code().is_some_and(|c| c.code() == "57P01"),
            "round {round}: the session was terminated: {err:?}"
        );
        drop(conn);
        // At once, with no chance for the connection's task to run first.
        let next = pool.get().await.unwrap();
        let new_pid: i32 = next
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap_or_else(|e| panic!("round {round}: handed out the lost connection: {e}"))
            .get(0);
        assert_ne!(new_pid, pid, "round {round}");
    }
    let evicted = pool.metrics().evictions(EvictReason::Closed);
    assert!(evicted >= 5, "each lost connection was evicted: {evicted}");
}
