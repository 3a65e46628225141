//! The server is not up yet: refused, then 57P03, then ready.

use std::time::{Duration, Instant, SystemTime};

use pgsteady::Reason;
use pgsteady_testkit::Cluster;

use crate::{Seen, connector};

#[tokio::test]
async fn late_start_connects_soon_after_ready() {
    let cluster = Cluster::builder().init().await.unwrap();
    let seen = Seen::default();
    let connector =
        connector(&cluster.url(), Duration::from_secs(30)).with_observer(seen.observer());
    let started = Instant::now();
    let connect = tokio::spawn(async move { connector.connect().await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.start_server().await.unwrap();
    let connected = connect
        .await
        .unwrap()
        .expect("connects once the server is up");
    let done = SystemTime::now();
    assert!(started.elapsed() >= Duration::from_millis(700));
    connected.client.simple_query("SELECT 1").await.unwrap();

    let failures = seen.failures();
    assert!(!failures.is_empty(), "the server was down at first");
    assert!(
        failures.iter().all(|(_, r, retried)| *retried
            && matches!(
                r,
                Reason::Refused | Reason::CannotConnectNow | Reason::Reset
            )),
        "{failures:?}"
    );
    // Polling every 30.6-36 ms: no storm while it was down (<= 30 attempts per second).
    let per_sec = failures.len() as f64 / started.elapsed().as_secs_f64();
    assert!(per_sec <= 30.0, "{per_sec} attempts/s");
    // First success soon after the server's own "ready" log line.
    let ready = cluster.ready_at().expect("ready time in the log");
    let after_ready = done.duration_since(ready).unwrap_or_default();
    assert!(
        after_ready < Duration::from_millis(500),
        "{after_ready:?} after ready"
    );
}

#[tokio::test]
async fn never_starts_gives_up_at_the_deadline_with_the_last_reason() {
    let cluster = Cluster::builder().init().await.unwrap();
    let connector = connector(&cluster.url(), Duration::from_millis(800));
    let started = Instant::now();
    let err = connector.connect().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1300),
        "{took:?}"
    );
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.reason(), Some(Reason::Refused));
    assert!(err.attempts() > 5, "{err:?}");
    let text = format!("{err:#}");
    assert!(
        text.contains("refused") && text.contains("attempts"),
        "{text}"
    );
    assert!(!text.contains(cluster.password()), "{text}");
}
