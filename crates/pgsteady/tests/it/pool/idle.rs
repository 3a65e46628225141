//! idle_session_timeout closing idle connections: later checkouts see no error.

use std::time::Duration;

use pgsteady::Reason;
use pgsteady_testkit::Cluster;

use super::pool;

#[tokio::test]
async fn connections_closed_by_idle_session_timeout_never_reach_a_caller() {
    let cluster = Cluster::start().await.unwrap();
    cluster.set("idle_session_timeout", "300ms").await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(4));
    for round in 0..3u64 {
        // Use all four connections, then let them sit idle past the server's timeout.
        let conns = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
        for conn in conns {
            conn.unwrap().simple_query("SELECT 1").await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        // A loaded server may send its 57P05 late; the claim is about connections the
        // server has closed, so wait (bounded) until the pool has seen all four close.
        let cap = std::time::Instant::now() + Duration::from_secs(30);
        while pool.metrics().closed_by.get(Reason::IdleSessionTimeout) < 4 * (round + 1)
            && std::time::Instant::now() < cap
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let metrics = pool.metrics();
    assert!(
        metrics.closed_by.get(Reason::IdleSessionTimeout) >= 8,
        "the server's reason (57P05) is kept: {metrics:?}"
    );
    assert_eq!(metrics.checkout_failures, 0);
}
