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

/// Found by the fault soak: a transaction whose statement the network swallowed timed out
/// and its connection was discarded, but tokio-postgres kept the socket open waiting for a
/// reply that never came. The server session stayed idle in transaction, holding its row
/// lock, after the network healed, forever (behind PgBouncer it also held a server
/// connection, so `PAUSE` never completed). Discarding a connection closes its socket.
#[tokio::test]
async fn a_discarded_connection_ends_its_server_session_and_releases_its_locks() {
    let cluster = Cluster::start().await.unwrap();
    let admin = cluster.admin().await.unwrap();
    let setup = cluster.pg_config();
    let (client, connection) = setup.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE locked (id int PRIMARY KEY, n int); INSERT INTO locked VALUES (1, 0)",
        )
        .await
        .unwrap();
    let proxy = std::sync::Arc::new(FaultProxy::start(cluster.addr()).await.unwrap());
    let mut retry = RetryPolicy::default();
    retry.attempt_timeout = Some(Duration::from_millis(300));
    retry.deadline = Duration::from_secs(2);
    let pool = pool(&cluster, Some(proxy.port()), |b| {
        b.max_size(2)
            .retry(retry)
            .acquire_timeout(Duration::from_secs(2))
    });
    let cut = proxy.clone();
    let result = pool
        .transaction(async move |tx| {
            tx.execute("UPDATE locked SET n = n + 1 WHERE id = 1", &[])
                .await?;
            // The next statement is swallowed: the server session waits, in transaction.
            cut.set_mode(ProxyMode::Blackhole);
            tx.execute("SELECT 1", &[]).await?;
            Ok(())
        })
        .await;
    assert!(
        matches!(result, Err(pgsteady::TransactionError::NotCommitted(_))),
        "{result:?}"
    );
    proxy.set_mode(ProxyMode::Pass);
    let in_transaction = async || -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
                 AND usename = $1",
                &[&cluster.user()],
            )
            .await
            .unwrap()
            .get(0)
    };
    // Generous: the session ends as soon as the server reads the close (milliseconds);
    // without the fix it never does.
    let started = Instant::now();
    while in_transaction().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the discarded connection's session is still idle in transaction, holding its lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lock is free: an update from elsewhere goes through at once.
    client
        .batch_execute("SET lock_timeout = '5s'; UPDATE locked SET n = n + 1 WHERE id = 1")
        .await
        .expect("the row lock was released");
}
