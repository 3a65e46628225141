//! 1,000 `/readyz` probes cost the database nothing: counted on the server (pg_stat_database
//! transactions) and on the wire (fault proxy byte counters).

use std::time::{Duration, Instant};

use pgsteady::{Readiness, ShutdownConfig};
use pgsteady_testkit::{Cluster, FaultProxy};

use super::{Server, client, wait_status};
use crate::pool::pool;

/// Transactions of the application database, from the administrator's session (which is in
/// the `postgres` database, so its own queries are not counted here).
async fn xacts(admin: &tokio_postgres::Client, db: &str) -> i64 {
    admin
        .query_one(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

/// A round trip through the pool that makes its backend publish its statistics right away
/// (PostgreSQL 15 otherwise holds them back for up to 10 s). Counts one transaction.
async fn flush_stats(pool: &pgsteady::Pool) {
    pool.run(async |conn| {
        // Reading a catalog leaves relation statistics pending; without any, PostgreSQL 15
        // does not flush the transaction counters at all.
        conn.simple_query("SELECT pg_stat_force_next_flush(), count(*) FROM pg_class")
            .await?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_readiness_probes_add_no_database_round_trip() {
    // Autovacuum workers would add transactions of their own to the count.
    let cluster = Cluster::builder()
        .setting("autovacuum", "off")
        .start()
        .await
        .unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    // The pool's idle ping (a round trip after 5 s without one) is driven by the clock, not by
    // probes; pushed out of the window so that a slow run cannot count it against them.
    let pool = pool(&cluster, Some(proxy.port()), |b| {
        b.min_idle(1).idle_ping(Some(Duration::from_secs(3600)))
    });
    let readiness = Readiness::for_pool(&pool);
    let server = Server::start(&readiness, axum::Router::new(), ShutdownConfig::default()).await;
    let http = client();
    let readyz = server.url("/readyz");
    wait_status(&http, &readyz, 200, Duration::from_secs(10)).await;
    let admin = cluster.admin().await.unwrap();

    flush_stats(&pool).await;
    let xacts_before = xacts(&admin, cluster.dbname()).await;
    let wire_before = proxy.stats();
    let started = Instant::now();
    for i in 0..1000 {
        let response = http.get(&readyz).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "probe {i}");
        let body = response.text().await.unwrap();
        assert!(body.contains(r#""ready":true"#), "{body}");
        assert!(!body.contains(cluster.password()) && !body.contains(cluster.host()));
    }
    let took = started.elapsed();
    let wire_after = proxy.stats();
    flush_stats(&pool).await;
    let xacts_after = xacts(&admin, cluster.dbname()).await;

    println!(
        "1,000 probes in {took:?}; bytes up {} -> {}, down {} -> {}; transactions {xacts_before} -> {xacts_after}",
        wire_before.bytes_up, wire_after.bytes_up, wire_before.bytes_down, wire_after.bytes_down
    );
    assert_eq!(
        wire_after.bytes_up, wire_before.bytes_up,
        "no byte sent to the server"
    );
    assert_eq!(
        wire_after.bytes_down, wire_before.bytes_down,
        "no byte from the server"
    );
    assert_eq!(
        xacts_after - xacts_before,
        1,
        "only the measuring flush ran in the application database"
    );
}
