//! One quick failover cell per side (fenced primary + promotion of a synchronous standby),
//! so that the `failover` benchmark's runner cannot rot: pgsteady's `transaction()` surfaces
//! nothing and loses nothing; the naive loop (the negative control) sees the fenced server's
//! 25006 errors, so the runner does count what callers see.

use std::time::Duration;

use pgsteady_bench::failover::{Failover, FailoverPlan, Replication, WriteClient, run_once};

fn quick_plan() -> FailoverPlan {
    FailoverPlan {
        workers: 2,
        pool_size: 2,
        pace: Duration::from_millis(10),
        warmup: Duration::from_millis(200),
        decide: Duration::from_millis(300),
        after: Duration::from_millis(1000),
        call_timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgsteady_transaction_writes_through_a_fenced_primary_and_a_promotion() {
    let r = run_once(
        WriteClient::PgsteadyTransaction,
        Failover::Fence,
        Replication::Sync,
        &quick_plan(),
    )
    .await
    .unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert_eq!(
        (r.lost, r.duplicated, r.not_committed_present),
        (0, 0, 0),
        "{r:?}"
    );
    assert!(r.acknowledged > 20, "{r:?}");
    assert!(r.promotion_to_first_write_ms.is_some(), "{r:?}");
    // The gap spans the fence and the promotion, not more than the run after it.
    assert!(
        r.longest_gap_ms >= 200.0 && r.longest_gap_ms < r.fault_to_promotion_ms + 1000.0,
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_loop_sees_the_fenced_primarys_25006() {
    let r = run_once(
        WriteClient::Naive,
        Failover::Fence,
        Replication::Sync,
        &quick_plan(),
    )
    .await
    .unwrap();
    eprintln!("{r:?}");
    assert!(
        r.errors_by_class.get("25006").is_some_and(|n| *n >= 1),
        "{r:?}"
    );
    assert!(r.errors >= 2, "{r:?}");
    // Each failed INSERT was rolled back: none of them is on the new primary.
    assert_eq!(
        (r.lost, r.duplicated, r.not_committed_present),
        (0, 0, 0),
        "{r:?}"
    );
}
