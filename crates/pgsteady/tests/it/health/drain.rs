//! Graceful shutdown in process: draining flips readiness, requests in flight finish, new
//! connections are refused, the pool closes and leaves nothing on the server. (The same with
//! a real SIGTERM to a real process is in the example service's tests.)

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use pgsteady::{Pool, Readiness, ReadyState, ShutdownConfig};
use pgsteady_testkit::Cluster;

use super::{Server, client, wait_status};
use crate::pool::pool;

async fn slow(State(pool): State<Pool>) -> &'static str {
    pool.run(async |conn| {
        conn.simple_query("SELECT pg_sleep(0.5)").await?;
        Ok(())
    })
    .await
    .map(|()| "done")
    .unwrap_or("failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_requests_in_flight_then_closes_the_pool() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.min_idle(1).max_size(4));
    let readiness = Readiness::for_pool(&pool);
    let app = axum::Router::new()
        .route("/slow", get(slow))
        .with_state(pool.clone());
    let config = ShutdownConfig::default().with_deadline(Duration::from_secs(10));
    let server = Server::start(&readiness, app, config).await;
    let http = client();
    wait_status(&http, &server.url("/readyz"), 200, Duration::from_secs(10)).await;

    let requests: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (http.clone(), server.url("/slow"));
            tokio::spawn(async move {
                let r = http.get(url).send().await?;
                Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
            })
        })
        .collect();
    // Every request is in the handler: 4 hold a connection, 6 wait for one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.metrics().in_use + pool.metrics().waiters < 10 {
        assert!(Instant::now() < deadline, "{:?}", pool.metrics());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let draining = Instant::now();
    readiness.drain();
    assert_eq!(readiness.check().state, ReadyState::Draining);
    // New connections are refused once the listener closed (at once: no linger).
    let mut refused = false;
    for _ in 0..50 {
        match reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(server.url("/livez"))
            .send()
            .await
        {
            Err(e) if e.is_connect() => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(refused, "new connections refused after draining began");

    for r in requests {
        let (status, body) = r.await.unwrap().expect("in-flight request completes");
        assert_eq!((status, body.as_str()), (200, "done"));
    }
    let report = server.handle.await.unwrap().unwrap();
    println!("{report:?} after {:?}", draining.elapsed());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.signal, None);
    assert!(pool.is_closed());
    // Our side closed every socket; the server needs a moment to notice and end the backends.
    cluster
        .assert_no_client_sessions_within(Duration::from_secs(1))
        .await;
}
