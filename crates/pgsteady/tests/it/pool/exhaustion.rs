//! Connection slots exhausted (53300): the pool backs off with one attempt in flight instead
//! of storming, and recovers once slots free up.

use std::time::{Duration, Instant};

use pgsteady::Reason;
use pgsteady_testkit::Cluster;
use tokio_postgres::NoTls;

use super::pool;

#[tokio::test]
async fn exhausted_slots_are_backed_off_and_the_pool_recovers_when_they_free_up() {
    // 8 slots - 3 reserved for superusers = 5 for the application's user.
    let cluster = Cluster::builder().max_connections(8).start().await.unwrap();
    let mut hogs = Vec::new();
    while hogs.len() < 5 {
        match cluster.pg_config().connect(NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                hogs.push(client);
            }
            // A kit session may still be leaving.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let pool = pool(&cluster, None, |b| {
        b.max_size(4).acquire_timeout(Duration::from_secs(10))
    });

    // Four callers wait while every slot is taken.
    let started = Instant::now();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = pool.get().await?;
                conn.simple_query("SELECT 1").await?;
                Ok::<_, pgsteady::Error>(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = pool
        .metrics()
        .create_failures
        .get(Reason::TooManyConnections);
    eprintln!("53300 attempts in 2 s with 4 callers waiting: {refused}");
    assert!(
        refused >= 1,
        "the server refused the pool: {:?}",
        pool.metrics()
    );
    assert!(refused <= 60, "no storm: {refused} attempts in 2 s");

    drop(hogs);
    for waiter in waiters {
        waiter
            .await
            .unwrap()
            .expect("every waiter is served once slots free up");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
