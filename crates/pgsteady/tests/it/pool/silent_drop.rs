//! Silent drops: a query fails within the configured bound instead of hanging, and the pool
//! replaces the connection.

use std::time::{Duration, Instant};

use pgsteady::{Config, EvictReason, Pool, RetryPolicy};
use pgsteady_testkit::netns::{self, Blackhole};
use pgsteady_testkit::{Cluster, FaultProxy, ProxyMode};

use super::pool;

#[tokio::test]
async fn behind_a_blackholed_proxy_run_gives_up_within_its_bounds_and_recovers() {
    let cluster = Cluster::start().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    let mut retry = RetryPolicy::default();
    retry.attempt_timeout = Some(Duration::from_millis(300));
    retry.deadline = Duration::from_secs(2);
    let pool = pool(&cluster, Some(proxy.port()), |b| {
        b.max_size(2)
            .retry(retry)
            .acquire_timeout(Duration::from_secs(2))
    });
    pool.run(async move |c| Ok(c.simple_query("SELECT 1").await.map(drop)?))
        .await
        .unwrap();

    // The proxy's kernel still acknowledges everything, so TCP cannot tell: only the
    // attempt timeout can.
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    let err = pool
        .run(async move |c| Ok(c.simple_query("SELECT 1").await.map(drop)?))
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(took < Duration::from_millis(2600), "gave up after {took:?}");
    assert!(
        pool.metrics().retries >= 1,
        "retried on another connection first"
    );

    proxy.set_mode(ProxyMode::Pass);
    pool.run(async move |c| Ok(c.simple_query("SELECT 1").await.map(drop)?))
        .await
        .expect("a new connection serves once the network is back");
    assert!(
        pool.metrics().creates >= 2,
        "the hung connection was replaced"
    );
}

#[tokio::test]
async fn kernel_level_drop_is_detected_by_tcp_user_timeout_and_the_pool_replaces_the_connection() {
    if let Err(reason) = netns::support() {
        eprintln!("SKIPPED kernel-level silent drop test: {reason}");
        return;
    }
    netns::isolate_thread().unwrap();
    let cluster = Cluster::start().await.unwrap();
    let url = format!(
        "{}?keepalives_idle=1&keepalives_interval=1&keepalives_count=2&tcp_user_timeout=2000&connect_timeout=1",
        cluster.url()
    );
    let pool = Pool::builder(Config::parse(&url).unwrap())
        .max_size(1)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    conn.simple_query("SELECT 1").await.unwrap();

    let hole = Blackhole::install(cluster.port()).unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), conn.simple_query("SELECT 1"))
        .await
        .expect("the kernel must end the connection, not our 20 s guard")
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_closed(), "{err:?}");
    assert!(
        took < Duration::from_secs(6),
        "detected after {took:?} (tcp_user_timeout 2 s)"
    );
    drop(conn);

    hole.heal().unwrap();
    let conn = pool
        .get()
        .await
        .expect("a fresh connection after the network is back");
    conn.simple_query("SELECT 1").await.unwrap();
    let metrics = pool.metrics();
    assert_eq!(metrics.evictions(EvictReason::Closed), 1, "{metrics:?}");
    assert_eq!(metrics.creates, 2);
}
