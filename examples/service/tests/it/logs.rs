//! The JSON logs never show a password, whatever fails: wrong password, missing
//! database, nothing listening, a malformed URL, the database stopping and killing sessions
//! while the service runs. Every line of every run is grepped for every password in play.

use std::time::Duration;

use nix::sys::signal::Signal;
use pgsteady_testkit::{BackendFilter, Cluster, StopMode};

use crate::{Service, http, poll_status, status, text};

const WRONG_PASSWORD: &str = "Wr0ng-Secret-4e1b";
const URL_PASSWORD: &str = "Url-Secret-9c2d";

/// Stops the service with SIGTERM, checks it exits 0 with JSON lines only, returns its logs.
async fn stop(mut service: Service) -> String {
    service.signal(Signal::SIGTERM);
    let exit = service.exited(Duration::from_secs(10)).await;
    let logs = service.logs();
    assert_eq!(exit.code(), Some(0), "{logs}");
    service.assert_json_lines();
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_the_logs_under_any_failure() {
    let cluster = Cluster::start().await.unwrap();
    let url = |password: &str, port: u16, db: &str| {
        format!(
            "postgresql://{}:{password}@127.0.0.1:{port}/{db}",
            cluster.user()
        )
    };
    let http = http();
    let mut all = Vec::new();

    // Wrong password: permanent, retried every 5 s; /readyz says why.
    let service = Service::spawn(&url(WRONG_PASSWORD, cluster.port(), cluster.dbname()), &[]);
    service
        .wait_log(&["database unavailable"], Duration::from_secs(10))
        .await;
    service
        .wait_log(&["readiness", "invalid_password"], Duration::from_secs(2))
        .await;
    let body = text(&http, &service.url("/readyz").await).await;
    assert!(body.contains("invalid_password"), "{body}");
    all.push(("wrong password", stop(service).await));

    // Missing database.
    let service = Service::spawn(&url(cluster.password(), cluster.port(), "no_such_db"), &[]);
    service
        .wait_log(&["readiness", "missing_database"], Duration::from_secs(10))
        .await;
    all.push(("missing database", stop(service).await));

    // Nothing listening (an initialised, stopped cluster's port).
    let down = Cluster::builder().init().await.unwrap();
    let service = Service::spawn(&url(down.password(), down.port(), down.dbname()), &[]);
    service
        .wait_log(&["database not ready", "refused"], Duration::from_secs(10))
        .await;
    all.push(("refused", stop(service).await));

    // A malformed URL holding a password: a clear message, exit 2.
    let mut service = Service::spawn(
        &format!("postgresql://app:{URL_PASSWORD}@127.0.0.1:notaport/app"),
        &[],
    );
    let exit = service.exited(Duration::from_secs(10)).await;
    let logs = service.logs();
    assert_eq!(exit.code(), Some(2), "{logs}");
    // The message names the bad part (the port of host entry 1) without echoing
    // it: a URL missing `@host` puts the password exactly there.
    assert!(
        logs.contains("bad configuration") && logs.contains("invalid port in host entry 1"),
        "{logs}"
    );
    assert!(!logs.contains("notaport"), "{logs}");
    service.assert_json_lines();
    all.push(("malformed url", logs));

    // The database goes away while serving, sessions are killed, it comes back.
    let service = Service::spawn(&cluster.url(), &[("REQUEST_TIMEOUT_MS", "300")]);
    let readyz = service.url("/readyz").await;
    poll_status(&http, &readyz, 200, Duration::from_secs(10)).await;
    cluster
        .terminate_backends(BackendFilter::ClientBackends)
        .await
        .unwrap();
    assert_eq!(status(&http, &service.url("/notes").await).await, Some(200));
    cluster.stop(StopMode::Immediate).await.unwrap();
    poll_status(&http, &readyz, 503, Duration::from_secs(3)).await;
    service
        .wait_log(&["readiness", "not_ready"], Duration::from_secs(1))
        .await;
    assert_eq!(status(&http, &service.url("/notes").await).await, Some(504));
    cluster.start_server().await.unwrap();
    poll_status(&http, &readyz, 200, Duration::from_secs(5)).await;
    all.push(("outage while serving", stop(service).await));

    for (scenario, logs) in &all {
        println!("--- {scenario}\n{logs}");
        assert!(!logs.is_empty(), "{scenario}: no logs");
        for secret in [
            cluster.password(),
            down.password(),
            WRONG_PASSWORD,
            URL_PASSWORD,
        ] {
            assert!(
                !logs.contains(secret),
                "{scenario}: `{secret}` in the logs:\n{logs}"
            );
        }
    }
}
