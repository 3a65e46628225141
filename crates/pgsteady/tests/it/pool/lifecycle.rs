//! Start-up, permanent errors, and a draining close.

use std::time::{Duration, Instant};

use pgsteady::{Config, ErrorKind, Pool};
use pgsteady_testkit::{BackendFilter, Cluster};

use super::pool;

#[tokio::test]
async fn a_wrong_password_fails_fast_without_a_retry_storm() {
    let cluster = Cluster::start().await.unwrap();
    let url = format!(
        "postgresql://app:Xy7-not-the-password@127.0.0.1:{}/app",
        cluster.port()
    );
    let pool = Pool::builder(Config::parse(&url).unwrap()).build().unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        let err = pool.get().await.expect_err("wrong password");
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert!(
            !format!("{err} {err:?}").contains("Xy7-not-the-password"),
            "no password in errors: {err}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let attempts = pool.metrics().create_failures.total();
    assert!(attempts <= 3, "20 checkouts made {attempts} attempts");
}

#[tokio::test]
async fn a_missing_database_fails_fast() {
    let cluster = Cluster::start().await.unwrap();
    let url = format!(
        "postgresql://app:{}@127.0.0.1:{}/nope",
        cluster.password(),
        cluster.port()
    );
    let pool = Pool::builder(Config::parse(&url).unwrap()).build().unwrap();
    let err = pool.get().await.expect_err("no such database");
    assert_eq!(err.kind(), ErrorKind::MissingDatabase, "{err}");
}

#[tokio::test]
async fn get_waits_for_a_server_that_starts_late() {
    let cluster = Cluster::builder().init().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        b.acquire_timeout(Duration::from_secs(10))
    });
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.start_server().await.unwrap();
    waiter.await.unwrap().expect("served once the server is up");
}

#[tokio::test]
async fn close_refuses_new_checkouts_lets_work_finish_then_closes_everything() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.max_size(4).min_idle(2));
    let busy = pool.get().await.unwrap();
    let slow =
        tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(0.5)").await.map(drop) });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = pool.get().await.expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::PoolClosed);

    slow.await.unwrap().expect("in-flight work finishes");
    assert!(closing.await.unwrap(), "drained within the deadline");
    // The server notices each Terminate a moment later.
    let mut left = Vec::new();
    for _ in 0..100 {
        left = cluster
            .backend_pids(BackendFilter::User("app".into()))
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(left.is_empty(), "connections left on the server: {left:?}");
}
