//! `pgsteady serve` as a real process over real HTTP: `/readyz` follows a stopped and
//! restarted server within its bounds, `/livez` never fails, SIGTERM stops it cleanly and
//! leaves no session on the server.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgsteady_testkit::{Cluster, StopMode};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStderr;

pub use pgsteady_testkit::http::{client as http, poll_status, status};

use crate::{Running, TestCommand};

/// Reads stderr lines until one holds `http://ADDR`; returns ADDR. Keeps the rest of the
/// lines for the caller.
pub async fn announced_addr(
    lines: &mut Lines<BufReader<ChildStderr>>,
    seen: &mut String,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an address is announced within 10 s")
            .unwrap()
            .unwrap_or_else(|| panic!("stderr ended before an address: {seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("http://").nth(1) {
            return rest.split_whitespace().next().unwrap().to_owned();
        }
    }
}

fn start(cluster: &Cluster) -> Running {
    TestCommand::new(["serve", &cluster.url(), "--listen", "127.0.0.1:0"]).spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_stop_and_a_start_and_sigterm_stops_cleanly() {
    let cluster = Cluster::start().await.unwrap();
    let mut running = start(&cluster);
    let mut stderr = BufReader::new(running.child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let addr = announced_addr(&mut stderr, &mut log).await;
    let (readyz, livez) = (
        format!("http://{addr}/readyz"),
        format!("http://{addr}/livez"),
    );
    let http = http();
    poll_status(&http, &readyz, 200, Duration::from_secs(10)).await;
    assert_eq!(status(&http, &livez).await, Some(200));

    let stopping = Instant::now();
    cluster.stop(StopMode::Fast).await.unwrap();
    // `/livez` is polled alongside `/readyz` the whole time the server is down.
    let mut livez_seen = 0;
    let unready = loop {
        assert_eq!(
            status(&http, &livez).await,
            Some(200),
            "/livez while the database is down"
        );
        livez_seen += 1;
        if status(&http, &readyz).await == Some(503) {
            break Instant::now();
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(3),
            "/readyz still 200"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let to_unready = unready - stopping;
    let body = http
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["state"], "not_ready", "{body}");
    assert_eq!(json["ready"], false);

    // Down a little longer, so the once-per-100-ms change log sees it too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&http, &livez).await, Some(200));
    cluster.start_server().await.unwrap();
    let ready_at = cluster.ready_at().expect("ready line");
    poll_status(&http, &readyz, 200, Duration::from_secs(5)).await;
    let to_ready = SystemTime::now()
        .duration_since(ready_at)
        .unwrap_or_default();
    assert_eq!(status(&http, &livez).await, Some(200));
    println!(
        "stop -> 503 in {to_unready:?} ({livez_seen} /livez 200 meanwhile); ready line -> 200 in {to_ready:?}"
    );
    assert!(
        to_unready <= Duration::from_secs(2),
        "stop -> 503 took {to_unready:?}"
    );
    // The ready line's time has millisecond precision; `to_ready` includes one poll.
    assert!(
        to_ready <= Duration::from_millis(500),
        "ready -> 200 took {to_ready:?}"
    );

    let pid = Pid::from_raw(running.child.id().unwrap() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), running.child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    while let Ok(Some(line)) = stderr.next_line().await {
        log.push_str(&line);
        log.push('\n');
    }
    println!("{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("readiness not_ready"), "{log}");
    assert!(log.contains("stopped on SIGTERM"), "{log}");
    assert!(!log.contains(cluster.password()), "{log}");
    cluster
        .assert_no_client_sessions_within(Duration::from_secs(1))
        .await;
}

#[tokio::test]
async fn an_address_in_use_is_a_usage_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let done = TestCommand::new([
        "serve",
        "postgresql://app:s3cret-pw@127.0.0.1:1/app",
        "--listen",
        &addr,
    ])
    .run()
    .await;
    done.assert_exit_code(2).assert_no_secret("s3cret-pw");
    assert!(
        done.stderr().contains(&format!("cannot listen on {addr}")),
        "{done:#?}"
    );
}
