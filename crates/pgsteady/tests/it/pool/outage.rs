//! A 10 s outage: callers wait instead of failing, one reconnection loop runs at a bounded
//! rate whatever the number of waiters, and recovery does not slow down with the outage's
//! length.

use std::time::{Duration, Instant};

use pgsteady_testkit::{Cluster, FaultProxy, StopMode};

use super::{load_run, pool, report, run_for};

#[tokio::test]
async fn ten_second_outage_surfaces_no_error_and_reconnects_under_30_attempts_per_second() {
    let cluster = Cluster::start().await.unwrap();
    // The proxy counts every connection attempt the server would see.
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    let pool = pool(&cluster, Some(proxy.port()), |b| b.max_size(8));
    let workload = load_run(&pool, 8);
    run_for(Duration::from_millis(300)).await;

    let id = workload.begin_fault("10 s outage");
    cluster.stop(StopMode::Fast).await.unwrap();
    let down_at = Instant::now();
    run_for(Duration::from_secs(10)).await;
    let up_at = Instant::now();
    cluster.start_server().await.unwrap();
    workload.end_fault(id);
    workload.server_ready(id, cluster.ready_at());
    run_for(Duration::from_millis(700)).await;
    let timeline = workload.stop().await;
    let m = report("pool.run", &timeline).remove(0);

    assert_eq!(m.errors, 0, "{:?}", m.errors_by_class);
    let first = m.ready_to_first_success.expect("served again");
    assert!(
        first <= Duration::from_secs(1),
        "first success {first:?} after ready"
    );

    let attempts = proxy
        .accept_times()
        .iter()
        .filter(|t| **t >= down_at && **t < up_at)
        .count();
    let rate = attempts as f64 / (up_at - down_at).as_secs_f64();
    eprintln!(
        "connection attempts during the outage: {attempts} ({rate:.1}/s) with 8 callers waiting"
    );
    assert!(rate < 30.0, "{rate:.1} attempts per second");
    assert!(attempts >= 10, "the pool kept trying: {attempts}");
}
