//! Start-up before the database: the service listens at once (`/livez` 200, `/readyz` 503
//! `starting`), waits without crashing, migrates, then serves; the request timeout answers
//! 504; SIGTERM exits 0.

use std::time::Duration;

use nix::sys::signal::Signal;
use pgsteady_testkit::Cluster;

use crate::{Service, http, poll_status, status, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_the_database_migrates_then_serves() {
    let cluster = Cluster::builder().init().await.unwrap();
    let mut service = Service::spawn(&cluster.url(), &[("REQUEST_TIMEOUT_MS", "500")]);
    let http = http();
    let readyz = service.url("/readyz").await;
    assert_eq!(status(&http, &service.url("/livez").await).await, Some(200));
    let body = http.get(&readyz).send().await.unwrap();
    assert_eq!(body.status().as_u16(), 503);
    let body = body.text().await.unwrap();
    assert!(body.contains(r#""state":"starting""#), "{body}");
    assert!(
        body.contains(r#""reason":"waiting_for_database""#),
        "{body}"
    );
    service
        .wait_log(&["database not ready", "refused"], Duration::from_secs(10))
        .await;

    cluster.start_server().await.unwrap();
    poll_status(&http, &readyz, 200, Duration::from_secs(10)).await;
    service
        .wait_log(
            &["migrations done", "\"applied\":1"],
            Duration::from_secs(1),
        )
        .await;
    let notes = service.url("/notes").await;
    let created = http.post(&notes).body("hello").send().await.unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let listed = text(&http, &notes).await;
    assert!(listed.contains(r#""body":"hello""#), "{listed}");
    // The request timeout middleware: 504 after 500 ms.
    let slow = http
        .get(service.url("/slow?ms=3000").await)
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status().as_u16(), 504);
    let metrics = text(&http, &service.url("/metrics").await).await;
    assert!(
        metrics.contains("pgsteady_readiness_state{state=\"ready\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgsteady_pool_open_connections"),
        "{metrics}"
    );

    service.signal(Signal::SIGTERM);
    let exit = service.exited(Duration::from_secs(10)).await;
    let logs = service.logs();
    println!("{logs}");
    assert_eq!(exit.code(), Some(0), "{logs}");
    service.assert_json_lines();
    // The connection string is logged, redacted.
    let redacted = format!(
        "postgresql://{}:***@127.0.0.1:{}/",
        cluster.user(),
        cluster.port()
    );
    assert!(logs.contains(&redacted), "{logs}");
    assert!(!logs.contains(cluster.password()), "{logs}");
    cluster
        .assert_no_client_sessions_within(Duration::from_secs(1))
        .await;
}
