//! The fault proxy's modes, each observed by a client.

use std::time::{Duration, Instant};

use pgsteady_testkit::{Cluster, FaultProxy, ProxyMode};

use crate::{connect, io_kind, scalar, with_timeout};

async fn setup() -> (Cluster, FaultProxy, tokio_postgres::Config) {
    let cluster = Cluster::start().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    let config = cluster.pg_config_with_port(proxy.port());
    (cluster, proxy, with_timeout(config))
}

#[tokio::test]
async fn pass_forwards_and_counts() {
    let (_cluster, proxy, config) = setup().await;
    let (client, _conn) = connect(&config).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.open, 1);
    assert!(stats.bytes_up > 0 && stats.bytes_down > 0, "{stats:?}");
    assert_eq!(proxy.accept_times().len(), 1);
}

#[tokio::test]
async fn refuse_refuses_new_connections_and_keeps_open_ones() {
    let (_cluster, proxy, config) = setup().await;
    let (client, _conn) = connect(&config).await.unwrap();
    proxy.set_mode(ProxyMode::Refuse);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = connect(&config).await.expect_err("refused");
    assert_eq!(
        io_kind(&err),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    client
        .simple_query("SELECT 1")
        .await
        .expect("open connections keep working");

    proxy.set_mode(ProxyMode::Pass);
    let started = Instant::now();
    loop {
        match connect(&config).await {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(2) => drop(e),
            Err(e) => panic!("proxy did not listen again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn reset_all_resets_open_connections() {
    let (_cluster, proxy, config) = setup().await;
    let (client, conn) = connect(&config).await.unwrap();
    proxy.reset_all();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .unwrap()
        .unwrap();
    let err = ended.result.expect_err("the connection ends in an error");
    assert_eq!(
        io_kind(&err),
        Some(std::io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    assert!(
        client
            .simple_query("SELECT 1")
            .await
            .unwrap_err()
            .is_closed()
    );
    let (client, _conn) = connect(&config).await.expect("new connections are served");
    client.simple_query("SELECT 1").await.unwrap();
}

async fn median_round_trip(client: &tokio_postgres::Client) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        client.simple_query("SELECT 1").await.unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn delay_adds_the_configured_latency_each_way() {
    let (_cluster, proxy, config) = setup().await;
    let (client, _conn) = connect(&config).await.unwrap();
    let base = median_round_trip(&client).await;
    let delay = Duration::from_millis(50);
    proxy.set_mode(ProxyMode::Delay(delay));
    let delayed = median_round_trip(&client).await;
    let added = delayed.saturating_sub(base).as_secs_f64();
    let expected = (2 * delay).as_secs_f64();
    assert!(
        (added - expected).abs() <= 0.2 * expected,
        "added {added:.4}s, expected {expected:.4}s +-20%"
    );
}

#[tokio::test]
async fn blackhole_hangs_a_query_until_the_clients_own_timeout() {
    let (_cluster, proxy, config) = setup().await;
    let (client, _conn) = connect(&config).await.unwrap();
    proxy.set_mode(ProxyMode::Blackhole);
    let started = Instant::now();
    let hung =
        tokio::time::timeout(Duration::from_millis(500), client.simple_query("SELECT 1")).await;
    assert!(hung.is_err(), "the query must hang, got {hung:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(proxy.stats().bytes_dropped > 0);
    // New connections are accepted and then hear nothing. (tokio-postgres' connect_timeout
    // covers only the TCP connect, so the handshake needs a timeout of its own.)
    let handshake = tokio::time::timeout(Duration::from_millis(300), connect(&config)).await;
    assert!(handshake.is_err(), "the handshake must hang");
}

#[tokio::test]
async fn drop_replies_executes_the_commit_but_the_client_never_hears() {
    let (cluster, proxy, config) = setup().await;
    let (client, _conn) = connect(&config).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (v int)")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (42)")
        .await
        .unwrap();
    proxy.set_mode(ProxyMode::DropReplies);
    let commit =
        tokio::time::timeout(Duration::from_millis(500), client.batch_execute("COMMIT")).await;
    assert!(
        commit.is_err(),
        "the client must not hear the commit's reply"
    );
    let (direct, _direct_conn) = connect(&cluster.pg_config()).await.unwrap();
    let mut committed = 0i64;
    for _ in 0..100 {
        committed = scalar(&direct, "SELECT count(*) FROM t").await;
        if committed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(committed, 1, "the server committed");
}

#[tokio::test]
async fn a_mode_armed_on_commit_switches_exactly_when_commit_is_sent() {
    let (cluster, proxy, config) = setup().await;
    let (client, _conn) = connect(&config).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (v int)")
        .await
        .unwrap();
    proxy.set_mode_on_query("COMMIT", ProxyMode::DropReplies);
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // Other statements, COMMIT inside a longer text included, do not fire it.
    client.simple_query("SELECT 'COMMIT'").await.unwrap();
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    let commit =
        tokio::time::timeout(Duration::from_millis(500), client.batch_execute("COMMIT")).await;
    assert!(commit.is_err(), "the reply to COMMIT is swallowed");
    assert_eq!(proxy.mode(), ProxyMode::DropReplies);
    let (direct, _direct_conn) = connect(&cluster.pg_config()).await.unwrap();
    let n: i64 = scalar(&direct, "SELECT count(*) FROM t").await;
    assert_eq!(n, 1, "the server executed the COMMIT");
}
