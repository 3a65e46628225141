//! `/readyz` follows the server: 200 -> 503 within 2 s of a stop (grace period 1 s), back to
//! 200 within 500 ms of the server's ready line; `/livez` 200 throughout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pgsteady::{Readiness, ShutdownConfig};
use pgsteady_testkit::{Cluster, StopMode};

use super::{Server, client, wait_status};
use crate::pool::pool;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: SystemTime,
    readyz: Option<u16>,
    livez: Option<u16>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_stop_and_a_start_while_livez_stays_up() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| b.min_idle(1));
    let readiness = Readiness::for_pool(&pool);
    assert_eq!(readiness.config().grace, Duration::from_secs(1));
    let server = Server::start(&readiness, axum::Router::new(), ShutdownConfig::default()).await;
    let http = client();
    wait_status(&http, &server.url("/readyz"), 200, Duration::from_secs(10)).await;

    // Poll both endpoints every ~20 ms, recording what came back and when.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let poller = tokio::spawn({
        let (samples, http) = (samples.clone(), http.clone());
        let (readyz, livez) = (server.url("/readyz"), server.url("/livez"));
        async move {
            loop {
                let r = http
                    .get(&readyz)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                let l = http
                    .get(&livez)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                let at = SystemTime::now();
                samples.lock().unwrap().push(Sample {
                    at,
                    readyz: r,
                    livez: l,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let first_after = |since: SystemTime, status: u16| {
        samples
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.at > since && s.readyz == Some(status))
            .map(|s| s.at)
    };
    let poll_until = async |since: SystemTime, status: u16| {
        for _ in 0..500 {
            if let Some(at) = first_after(since, status) {
                return at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("/readyz never answered {status}");
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = SystemTime::now();
    cluster.stop(StopMode::Fast).await.unwrap();
    let unready = poll_until(stopping, 503).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.start_server().await.unwrap();
    let ready_at = cluster.ready_at().expect("ready line");
    let ready_again = poll_until(ready_at, 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A loaded machine polls more slowly: keep polling (bounded) until the sample count
    // asserted below can tell a poller that stalled from one that was merely slow.
    let cap = std::time::Instant::now() + Duration::from_secs(30);
    while samples.lock().unwrap().len() <= 60 && std::time::Instant::now() < cap {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    poller.abort();

    let samples = samples.lock().unwrap().clone();
    let to_unready = unready.duration_since(stopping).unwrap();
    let to_ready = ready_again.duration_since(ready_at).unwrap_or_default();
    println!(
        "{} samples; stop -> 503 in {to_unready:?}; ready line -> 200 in {to_ready:?}",
        samples.len()
    );
    assert!(
        to_unready <= Duration::from_secs(2),
        "stop -> 503 took {to_unready:?}"
    );
    assert!(
        to_ready <= Duration::from_millis(500),
        "ready -> 200 took {to_ready:?}"
    );
    for s in &samples {
        assert_eq!(s.livez, Some(200), "/livez must never fail: {s:?}");
        if s.at < stopping {
            assert_eq!(s.readyz, Some(200), "ready before the stop: {s:?}");
        }
        if s.at > unready && s.at < ready_at {
            assert_eq!(
                s.readyz,
                Some(503),
                "not ready while the server is down: {s:?}"
            );
        }
    }
    assert!(samples.len() > 50, "polled often enough: {}", samples.len());
}
