//! SIGTERM during 50 in-flight slow requests: all 50 complete with 200, new
//! connections are refused, the process exits 0 within the deadline, and no session is left
//! on the server.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgsteady_testkit::Cluster;

use crate::{Service, http, poll_status};

const DEADLINE: Duration = Duration::from_secs(5);
const POOL_CLOSE: Duration = Duration::from_secs(2);

/// In-use connections plus callers waiting for one, from `/metrics`.
async fn busy(http: &reqwest::Client, url: &str) -> u64 {
    let text = crate::text(http, url).await;
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    value("pgsteady_pool_in_use_connections") + value("pgsteady_pool_waiters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_fifty_slow_requests_finishes_them_all() {
    let cluster = Cluster::start().await.unwrap();
    let mut service = Service::spawn(
        &cluster.url(),
        &[
            ("POOL_MAX_SIZE", "50"),
            ("SHUTDOWN_DEADLINE_MS", "5000"),
            ("SHUTDOWN_POOL_CLOSE_MS", "2000"),
        ],
    );
    let http = http();
    poll_status(
        &http,
        &service.url("/readyz").await,
        200,
        Duration::from_secs(10),
    )
    .await;

    let slow = service.url("/slow?ms=1000").await;
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (http, url) = (http.clone(), slow.clone());
            tokio::spawn(async move {
                let r = http.get(url).send().await?;
                Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
            })
        })
        .collect();
    // All 50 are inside the handler: holding a connection or waiting for one.
    let metrics = service.url("/metrics").await;
    let started = Instant::now();
    loop {
        let n = busy(&http, &metrics).await;
        if n == 50 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {n} in flight"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    service.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    // New connections are refused (no linger configured).
    let livez = service.url("/livez").await;
    let refused = loop {
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        match fresh.get(&livez).send().await {
            Err(e) if e.is_connect() => break signalled.elapsed(),
            _ => {}
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "still accepting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    let mut statuses = Vec::new();
    for r in requests {
        let (status, body) = r.await.unwrap().expect("in-flight request completes");
        statuses.push((status, body));
    }
    let exit = service
        .exited(DEADLINE + POOL_CLOSE + Duration::from_secs(2))
        .await;
    let took = signalled.elapsed();
    let logs = service.logs();
    println!("new connections refused {refused:?} after SIGTERM; exited after {took:?}");
    assert!(
        statuses.iter().all(|(s, b)| *s == 200 && b == "done"),
        "{statuses:?}"
    );
    assert_eq!(statuses.len(), 50);
    assert_eq!(exit.code(), Some(0), "{logs}");
    assert!(
        took < DEADLINE,
        "exited after {took:?}, beyond the request deadline"
    );
    let stopped = logs
        .lines()
        .find(|l| l.contains("\"stopped\""))
        .expect("a stopped line");
    assert!(stopped.contains("\"requests_cut\":0"), "{stopped}");
    assert!(stopped.contains("\"signal\":\"SIGTERM\""), "{stopped}");
    cluster
        .assert_no_client_sessions_within(Duration::from_secs(1))
        .await;
    assert!(!logs.contains(cluster.password()));
}

/// With a linger, the service keeps answering after SIGTERM: `/readyz` 503 `draining` at
/// once (so load balancers stop sending), `/livez` 200; then new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flips_readyz_to_draining_at_once_and_lingers() {
    let cluster = Cluster::start().await.unwrap();
    let linger = Duration::from_millis(1500);
    let mut service = Service::spawn(&cluster.url(), &[("SHUTDOWN_LINGER_MS", "1500")]);
    let http = http();
    let (readyz, livez) = (service.url("/readyz").await, service.url("/livez").await);
    poll_status(&http, &readyz, 200, Duration::from_secs(10)).await;

    service.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let draining = loop {
        let r = http.get(&readyz).send().await.unwrap();
        if r.status().as_u16() == 503 {
            let body = r.text().await.unwrap();
            assert!(body.contains(r#""state":"draining""#), "{body}");
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(200),
            "/readyz still 200"
        );
    };
    // Still accepting while lingering: liveness holds, the application still answers.
    assert_eq!(crate::status(&http, &livez).await, Some(200));
    assert_eq!(
        crate::status(&http, &service.url("/notes").await).await,
        Some(200)
    );
    assert!(
        signalled.elapsed() < linger,
        "the checks above ran inside the linger"
    );
    let refused = loop {
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        if let Err(e) = fresh.get(&livez).send().await
            && e.is_connect()
        {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < linger + Duration::from_secs(1),
            "still accepting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let exit = service.exited(Duration::from_secs(10)).await;
    println!("/readyz 503 draining {draining:?} after SIGTERM; refused after {refused:?}");
    assert_eq!(exit.code(), Some(0), "{}", service.logs());
    assert!(
        refused >= linger,
        "refused after {refused:?}, before the linger ended"
    );
    cluster
        .assert_no_client_sessions_within(Duration::from_secs(1))
        .await;
}
