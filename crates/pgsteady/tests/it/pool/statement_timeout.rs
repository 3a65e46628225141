//! statement_timeout set through the pool's connection options: 57014 comes back to the
//! caller, and the connection stays in the pool, usable.

use pgsteady::{Config, Pool, SqlState};
use pgsteady_testkit::Cluster;

use super::backend_pid;

#[tokio::test]
async fn statement_timeout_is_returned_and_the_connection_is_kept() {
    let cluster = Cluster::start().await.unwrap();
    let url = format!("{}?options=-c%20statement_timeout%3D100", cluster.url());
    let pool = Pool::builder(Config::parse(&url).unwrap())
        .max_size(1)
        .build()
        .unwrap();

    let conn = pool.get().await.unwrap();
    let pid: i32 = backend_pid(&conn).await;
    let err = conn.simple_query("SELECT pg_sleep(2)").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    drop(conn);

    // Through run, 57014 is returned at once, not retried: it is not a connection problem.
    let err = pool
        .run(async move |conn| {
            conn.simple_query("SELECT pg_sleep(2)").await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    assert_eq!(pool.metrics().retries, 0);

    let conn = pool.get().await.unwrap();
    let again: i32 = backend_pid(&conn).await;
    assert_eq!(again, pid, "the same connection is still in the pool");
    assert_eq!(pool.metrics().creates, 1);
}
