//! `/metrics` covers the pool snapshot in the Prometheus text format, and no endpoint leaks
//! connection details.

use std::time::Duration;

use pgsteady::{Readiness, ShutdownConfig};
use pgsteady_testkit::{BackendFilter, Cluster};

use super::{Server, client, wait_status};
use crate::pool::pool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_the_pool_snapshot_and_readiness() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.min_idle(1));
    let readiness = Readiness::for_pool(&pool);
    let server = Server::start(&readiness, axum::Router::new(), ShutdownConfig::default()).await;
    let http = client();
    wait_status(&http, &server.url("/readyz"), 200, Duration::from_secs(10)).await;
    // A server-side close with its reason, then traffic.
    assert_eq!(
        cluster
            .terminate_backends(BackendFilter::ClientBackends)
            .await
            .unwrap(),
        1
    );
    // Let the pool see it (from the connection itself) before traffic runs into it.
    for _ in 0..200 {
        if pool.metrics().closed_by.total() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..5 {
        pool.run(async |conn| {
            conn.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
        .unwrap();
    }

    // Scrape until the pool held still around the scrape (the `min_idle` refill may still be
    // opening a connection), so the text can be compared with one snapshot.
    let mut quiet = None;
    for _ in 0..100 {
        let before = pool.metrics();
        let response = http.get(server.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let after = pool.metrics();
        if before == after && after.in_use == 0 && after.waiters == 0 {
            quiet = Some((text, after));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (text, m) = quiet.expect("the pool goes quiet");
    println!("{text}");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("missing `{series}`"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("pgsteady_pool_open_connections"), m.open as f64);
    assert!(m.open >= 1);
    assert_eq!(value("pgsteady_pool_idle_connections"), m.idle as f64);
    assert_eq!(value("pgsteady_pool_in_use_connections"), 0.0);
    assert_eq!(value("pgsteady_pool_waiters"), 0.0);
    assert_eq!(value("pgsteady_pool_max_size"), 10.0);
    assert_eq!(
        value("pgsteady_pool_connections_created_total"),
        m.creates as f64
    );
    assert!(m.creates >= 2, "the first and its replacement");
    assert_eq!(value("pgsteady_pool_checkouts_total"), m.checkouts as f64);
    assert!(m.checkouts >= 6, "fill + 5 runs: {m:?}");
    assert_eq!(value("pgsteady_pool_checkout_failures_total"), 0.0);
    assert_eq!(value("pgsteady_pool_retries_total"), 0.0);
    assert_eq!(
        value("pgsteady_pool_connection_failures_total{reason=\"refused\"}"),
        0.0
    );
    assert_eq!(
        value("pgsteady_pool_connections_closed_total{reason=\"admin_shutdown\"}"),
        1.0,
        "the server's reason (57P01) as the label"
    );
    assert_eq!(
        value("pgsteady_pool_evictions_total{reason=\"closed\"}"),
        1.0
    );
    assert_eq!(
        value("pgsteady_pool_evictions_total{reason=\"lifetime\"}"),
        0.0
    );
    // Every verdict and rule exists from the start, so rate() sees the first resolution.
    assert_eq!(
        value("pgsteady_pool_commit_resolutions_total{verdict=\"committed\",rule=\"same_server\"}"),
        0.0
    );
    assert_eq!(
        value("pgsteady_pool_commit_resolutions_total{verdict=\"unknown\",rule=\"no_answer\"}"),
        0.0
    );
    assert_eq!(
        value("pgsteady_pool_checkout_duration_seconds_count"),
        m.checkout_buckets.iter().sum::<u64>() as f64
    );
    assert_eq!(
        value("pgsteady_pool_checkout_duration_seconds_bucket{le=\"+Inf\"}"),
        m.checkouts as f64,
        "buckets are cumulative"
    );
    assert!(value("pgsteady_pool_checkout_duration_seconds_sum") > 0.0);
    assert_eq!(value("pgsteady_readiness_state{state=\"ready\"}"), 1.0);
    assert_eq!(value("pgsteady_readiness_state{state=\"not_ready\"}"), 0.0);
    assert!(value("pgsteady_readiness_last_success_age_seconds") < 5.0);
    for kind in [
        "# TYPE pgsteady_pool_open_connections gauge",
        "# TYPE pgsteady_pool_connections_created counter",
        "# TYPE pgsteady_pool_checkout_duration_seconds histogram",
    ] {
        assert!(text.contains(kind), "missing `{kind}`");
    }
    assert!(text.ends_with("# EOF\n"));

    for path in ["/metrics", "/readyz", "/livez"] {
        let body = http
            .get(server.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for secret in [cluster.password(), cluster.user(), cluster.host()] {
            assert!(!body.contains(secret), "{path} shows `{secret}`: {body}");
        }
    }
}
