//! Real packet loss in a private network namespace: TCP keepalive and tcp_user_timeout.

use std::time::{Duration, Instant};

use pgsteady_testkit::Cluster;
use pgsteady_testkit::netns::{self, Blackhole};

use crate::{connect, io_kind};

#[tokio::test]
async fn blackhole_drops_packets_until_tcp_user_timeout_ends_the_connection() {
    if let Err(reason) = netns::support() {
        eprintln!("SKIPPED blackhole test: {reason}");
        return;
    }
    netns::isolate_thread().unwrap();
    let cluster = Cluster::start().await.unwrap();
    let mut config = cluster.pg_config();
    config
        .keepalives_idle(Duration::from_secs(1))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(2)
        .tcp_user_timeout(Duration::from_secs(2));
    let (client, conn) = connect(&config).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    let hole = Blackhole::install(cluster.port()).unwrap();
    let started = Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(20), client.simple_query("SELECT 1")).await;
    let elapsed = started.elapsed();
    let err = result
        .expect("tcp_user_timeout must end the query, not our 20 s guard")
        .unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    let reason = conn.await.unwrap().result.unwrap_err();
    assert_eq!(
        io_kind(&reason),
        Some(std::io::ErrorKind::TimedOut),
        "{reason:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );

    // While the hole is open, a new connection hangs in SYN retransmission.
    let attempt =
        tokio::time::timeout(Duration::from_millis(500), connect(&cluster.pg_config())).await;
    assert!(attempt.is_err(), "a connect through the hole must hang");

    hole.heal().unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}
