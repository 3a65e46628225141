//! One run per fault with the naive client: the runner applies the fault, sees the errors and
//! the recovery, and counts connection attempts.

use std::time::Duration;

use pgsteady_bench::{AttemptCounter, ClientKind, FaultKind, FaultPlan, SynCounter, run_once};
use pgsteady_testkit::{Cluster, FaultProxy, netns};

fn short_plan(outage: Duration) -> FaultPlan {
    FaultPlan {
        workers: 4,
        pool_size: 4,
        outage,
        warmup: Duration::from_millis(100),
        settle: Duration::from_millis(200),
        recovery_cap: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn fast_restart_through_the_proxy_surfaces_errors_of_a_naive_client() {
    let cluster = Cluster::start().await.unwrap();
    let attempts = AttemptCounter::Proxy(FaultProxy::start(cluster.addr()).await.unwrap());
    let plan = short_plan(Duration::ZERO);
    let r = run_once(
        &cluster,
        &attempts,
        ClientKind::Naive,
        FaultKind::FastRestart,
        &plan,
    )
    .await
    .unwrap();
    // Each worker's session was ended by the shutdown; a naive client reports every one.
    assert!(r.errors >= 4, "{r:?}");
    assert!(r.ready_to_first_success_ms.is_some(), "{r:?}");
    assert!(r.calls_ok > 0, "{r:?}");
    // Every worker reconnected through the proxy at least once.
    assert!(r.attempts.is_some_and(|n| n >= 4), "{r:?}");
    assert_eq!(r.attempts_per_sec_down, None);
}

#[tokio::test]
async fn terminated_sessions_are_seen_as_57p01_and_recovered_from_at_once() {
    let cluster = Cluster::start().await.unwrap();
    let r = run_once(
        &cluster,
        &AttemptCounter::None,
        ClientKind::Naive,
        FaultKind::TerminateBackends,
        &short_plan(Duration::ZERO),
    )
    .await
    .unwrap();
    assert!(r.errors >= 1, "{r:?}");
    assert!(
        r.errors_by_class
            .keys()
            .all(|c| c == "57P01" || c == "closed"),
        "{r:?}"
    );
    // The server never went away: a reconnect is all it takes.
    assert!(
        r.ready_to_first_success_ms.is_some_and(|ms| ms < 1000.0),
        "{r:?}"
    );
    assert_eq!(r.attempts, None);
}

/// SYN counting in a private network namespace (needs root and nftables): connection attempts
/// refused while the server is down are counted, which a proxy cannot do without turning
/// "refused" into "reset".
#[tokio::test]
async fn attempts_refused_during_an_outage_are_counted_at_the_server_port() {
    if let Err(why) = netns::support() {
        eprintln!("skipped: {why}");
        return;
    }
    // The single-threaded test runtime runs every task on this thread.
    netns::isolate_thread().unwrap();
    let cluster = Cluster::start().await.unwrap();
    let attempts = AttemptCounter::Syn(SynCounter::install(cluster.port()).await.unwrap());
    let r = run_once(
        &cluster,
        &attempts,
        ClientKind::Naive,
        FaultKind::Outage,
        &short_plan(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    assert!(r.errors_by_class.contains_key("refused"), "{r:?}");
    // A naive client reconnects without a pause: many attempts per second while down.
    let rate = r.attempts_per_sec_down.expect("counted");
    assert!(rate > 50.0, "{r:?}");
    // Each refused connect is an error surfaced and one attempt counted.
    let refused = r.errors_by_class["refused"];
    assert!(r.attempts.unwrap() >= refused, "{r:?}");
}
