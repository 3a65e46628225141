//! The connection's closing reason is kept, not lost inside tokio-postgres' task.

use std::time::Duration;

use pgsteady::{Config, Connector, Reason};
use pgsteady_testkit::{BackendFilter, Cluster, StopMode};

async fn connect(cluster: &Cluster) -> pgsteady::Connected {
    Connector::new(Config::parse(&cluster.url()).unwrap())
        .unwrap()
        .connect_once()
        .await
        .unwrap()
}

async fn closed(c: &pgsteady::Connected) -> pgsteady::CloseReason {
    tokio::time::timeout(Duration::from_secs(10), c.monitor.closed())
        .await
        .expect("the connection closes")
}

#[tokio::test]
async fn terminated_backend_reports_57p01() {
    let cluster = Cluster::start().await.unwrap();
    let c = connect(&cluster).await;
    assert!(!c.monitor.is_closed());
    assert_eq!(
        cluster
            .terminate_backends(BackendFilter::ClientBackends)
            .await
            .unwrap(),
        1
    );
    let why = closed(&c).await;
    assert_eq!(why.reason(), Some(Reason::AdminShutdown));
    assert_eq!(why.code().map(|c| c.code()), Some("57P01"));
    assert!(c.client.is_closed() || c.client.simple_query("SELECT 1").await.is_err());
    assert!(c.monitor.is_closed());
}

#[tokio::test]
async fn idle_session_timeout_reports_57p05() {
    let cluster = Cluster::builder()
        .setting("idle_session_timeout", "300ms")
        .start()
        .await
        .unwrap();
    let c = connect(&cluster).await;
    let why = closed(&c).await;
    assert_eq!(why.reason(), Some(Reason::IdleSessionTimeout), "{why}");
    assert_eq!(why.code().map(|c| c.code()), Some("57P05"));
}

#[tokio::test]
async fn crash_of_another_backend_reports_57p02() {
    let cluster = Cluster::start().await.unwrap();
    let c = connect(&cluster).await;
    let victim = connect(&cluster).await;
    let pid = victim
        .client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .unwrap();
    let pid: i32 = match &pid[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().parse().unwrap(),
        _ => match &pid[0] {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().parse().unwrap(),
            other => panic!("{other:?}"),
        },
    };
    cluster.kill_backend(pid).unwrap();
    let why = closed(&c).await;
    assert_eq!(why.reason(), Some(Reason::CrashShutdown), "{why}");
    assert_eq!(why.code().map(|c| c.code()), Some("57P02"));
}

#[tokio::test]
async fn fast_restart_reports_57p01_and_dropping_the_client_is_clean() {
    let cluster = Cluster::start().await.unwrap();
    let c = connect(&cluster).await;
    cluster.restart(StopMode::Fast).await.unwrap();
    let why = closed(&c).await;
    assert_eq!(why.reason(), Some(Reason::AdminShutdown), "{why}");

    let c = connect(&cluster).await;
    let monitor = c.monitor.clone();
    drop(c);
    let why = tokio::time::timeout(Duration::from_secs(5), monitor.closed())
        .await
        .unwrap();
    assert!(why.is_clean(), "{why}");
}
