//! Permanent errors: wrong password, missing database. Reported at once, no retry storm.

use std::time::{Duration, Instant};

use pgsteady::{ErrorKind, FailFastClass, Reason};
use pgsteady_testkit::Cluster;

use crate::{Seen, connector};

#[tokio::test]
async fn wrong_password_fails_fast_once() {
    let cluster = Cluster::start().await.unwrap();
    let url = format!(
        "postgresql://{}:wrong-password-xyz@127.0.0.1:{}/{}",
        cluster.user(),
        cluster.port(),
        cluster.dbname()
    );
    let seen = Seen::default();
    let started = Instant::now();
    let err = connector(&url, Duration::from_secs(30))
        .with_observer(seen.observer())
        .connect()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.reason(), Some(Reason::InvalidPassword));
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"));
    assert_eq!(err.attempts(), 1, "no retry");
    assert_eq!(seen.failures(), vec![(1, Reason::InvalidPassword, false)]);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-password-xyz"), "{shown}");
}

#[tokio::test]
async fn missing_database_fails_fast_unless_opted_in() {
    let cluster = Cluster::start().await.unwrap();
    let url = format!(
        "postgresql://{}:{}@127.0.0.1:{}/later_db",
        cluster.user(),
        cluster.password(),
        cluster.port()
    );
    let err = connector(&url, Duration::from_secs(30))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingDatabase);
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"));
    assert_eq!(err.attempts(), 1);

    // Opted in: keeps trying until an "init script" creates the database.
    let connector =
        connector(&url, Duration::from_secs(30)).with_retry_on(FailFastClass::MissingDb);
    let connect = tokio::spawn(async move { connector.connect().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = cluster.admin().await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE later_db OWNER {}",
            cluster.user()
        ))
        .await
        .unwrap();
    let connected = connect
        .await
        .unwrap()
        .expect("connects once the database exists");
    connected.client.simple_query("SELECT 1").await.unwrap();
}
