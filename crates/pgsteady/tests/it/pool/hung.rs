//! A hung server (SIGSTOP): checkouts give up at their acquire timeout instead of hanging,
//! and the pool recovers after SIGCONT.

use std::time::{Duration, Instant};

use pgsteady::ErrorKind;
use pgsteady_testkit::Cluster;

use super::pool;

#[tokio::test]
async fn get_fails_at_its_acquire_timeout_and_recovers_after_resume() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        b.acquire_timeout(Duration::from_secs(1))
    });
    cluster.pause().unwrap();

    let started = Instant::now();
    let err = pool.get().await.expect_err("a stopped server cannot serve");
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1500),
        "gave up after {waited:?}"
    );

    cluster.resume().unwrap();
    let conn = pool.get().await.expect("served after SIGCONT");
    conn.simple_query("SELECT 1").await.unwrap();
}
