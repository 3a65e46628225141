//! The workload recorder against a real server: a naive tokio-postgres client through a fast
//! restart.

use std::time::{Duration, Instant};

use pgsteady_testkit::workload::{ErrorClass, NaiveClient, Workload};
use pgsteady_testkit::{Cluster, StopMode};

#[tokio::test]
async fn fast_restart_surfaces_errors_to_a_naive_client_and_the_metrics_show_it() {
    let cluster = Cluster::start().await.unwrap();
    let config = crate::with_timeout(cluster.pg_config());
    let workload = Workload::start(4, |_| NaiveClient::new(config.clone()));
    // Every worker connected and served before the fault.
    let started = Instant::now();
    while workload.progress().ok < 40 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = workload.progress();
    assert!(before.ok >= 40 && before.err == 0, "{before:?}");

    let fault = workload.begin_fault("fast restart");
    cluster.stop(StopMode::Fast).await.unwrap();
    let down = workload.clock().offset(Instant::now());
    cluster.start_server().await.unwrap();
    workload.end_fault(fault);
    workload.server_ready(fault, cluster.ready_at());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timeline = workload.stop().await;

    let window = &timeline.faults[0];
    let ready = window.ready.expect("ready time from the server log");
    assert!(
        window.start < down && down <= ready && ready <= window.end,
        "{window:?}"
    );
    let m = timeline.fault_metrics(0);
    eprintln!("{m:?}");
    // Every worker's connection was ended by the shutdown: at least one error each, and only
    // the ones a restart causes (57P01 on the open session; refused while down; 57P03 while
    // starting; a closed or reset connection).
    assert!(m.errors >= 4, "{m:?}");
    let expected = ["57P01", "57P03", "refused", "closed", "reset", "eof"];
    assert!(
        m.errors_by_class
            .keys()
            .all(|c| expected.contains(&c.as_str())),
        "{m:?}"
    );
    assert!(
        m.errors_by_class
            .contains_key(&ErrorClass::sqlstate("57P01"))
            || m.errors_by_class.contains_key(&ErrorClass::CLOSED),
        "{m:?}"
    );
    // A naive client reconnects at once: it is serving again soon after ready.
    let first = m.ready_to_first_success.expect("recovered");
    assert!(first < Duration::from_secs(1), "{m:?}");
    // Nothing can succeed between the server being gone and it being ready again.
    assert!(
        m.no_success >= ready - down,
        "{m:?} down at {down:?}, ready at {ready:?}"
    );
    assert!(m.max_call < Duration::from_secs(5), "{m:?}");
    assert!(m.calls_ok > 0);
    // The chart's histogram accounts for every call.
    let histogram = timeline.histogram(Duration::from_millis(100));
    let total: u64 = histogram.iter().map(|b| b.ok + b.err).sum();
    assert_eq!(total, timeline.calls.len() as u64);
    assert!(histogram.iter().any(|b| b.err > 0));
}
