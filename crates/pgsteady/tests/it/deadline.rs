//! The connect deadline runs out while the last attempt waits on a server that accepted the
//! connection and says nothing: that attempt, cut short, tells only that time ran out, so the
//! error must keep what the attempt before it learned.

use std::time::Duration;

use pgsteady::{Backoff, Config, Connector, ErrorKind, Reason};
use pgsteady_testkit::fake::{Behavior, FakeServer};

fn connector(url: &str, attempt: Duration, deadline: Duration) -> Connector {
    Connector::new(Config::parse(url).expect("test url parses"))
        .expect("connector")
        .with_backoff(Backoff::polling().with_max_elapsed(deadline))
        .with_attempt_timeout(attempt)
}

/// First connection: 57P03 (starting up); every later one accepted and never answered. The
/// per-attempt timeout (10 s) is far longer than the deadline, so the second attempt always
/// ends cut short by the deadline, whatever the machine's load.
#[tokio::test]
async fn a_last_attempt_cut_short_keeps_the_reason_the_one_before_gave() {
    let server = FakeServer::start(Behavior::Sequence(vec![
        Behavior::StartupError {
            code: "57P03".to_owned(),
            message: "the database system is starting up".to_owned(),
        },
        Behavior::Silent,
    ]))
    .await
    .unwrap();
    let connector = connector(
        &server.url("app", "db"),
        Duration::from_secs(10),
        Duration::from_millis(1500),
    );
    let err = connector.connect().await.unwrap_err();
    let chain = format!("{err:#}");
    assert!(server.connections() >= 2, "{}", server.connections());
    assert_eq!(err.kind(), ErrorKind::Timeout, "{chain}");
    assert_eq!(err.reason(), Some(Reason::CannotConnectNow), "{chain}");
    assert!(chain.contains("starting up"), "{chain}");
    assert!(!chain.contains("timed out"), "{chain}");
    assert_eq!(err.attempts(), 2, "{chain}");
}

/// Every attempt meets the silent server. The attempts that ran their full timeout did say
/// something (the server is hung), so the error reports one of them, not the last attempt
/// the deadline cut to a sliver.
#[tokio::test]
async fn a_hung_server_is_reported_with_a_full_attempt_timeout() {
    let server = FakeServer::start(Behavior::Silent).await.unwrap();
    let connector = connector(
        &server.url("app", "db"),
        Duration::from_millis(400),
        Duration::from_millis(1000),
    );
    let err = connector.connect().await.unwrap_err();
    let chain = format!("{err:#}");
    assert_eq!(err.reason(), Some(Reason::TimedOut), "{chain}");
    assert!(chain.contains("timed out after 0.4s"), "{chain}");
}

/// A silent server with a deadline shorter than one attempt: nothing informative came before,
/// so the timeout itself is the reason.
#[tokio::test]
async fn a_single_attempt_cut_short_is_still_a_timeout() {
    let server = FakeServer::start(Behavior::Silent).await.unwrap();
    let connector = connector(
        &server.url("app", "db"),
        Duration::from_secs(10),
        Duration::from_millis(500),
    );
    let err = connector.connect().await.unwrap_err();
    assert_eq!(err.reason(), Some(Reason::TimedOut), "{err:#}");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:#}");
}

/// Two hosts in one pass: the first says it is starting up (57P03), the second accepts and
/// says nothing until the deadline cuts it short. The pass's reason is the first host's; both
/// hosts are still listed.
#[tokio::test]
async fn in_one_pass_a_host_cut_short_does_not_speak_over_one_that_answered() {
    let starting = FakeServer::start(Behavior::StartupError {
        code: "57P03".to_owned(),
        message: "the database system is starting up".to_owned(),
    })
    .await
    .unwrap();
    let silent = FakeServer::start(Behavior::Silent).await.unwrap();
    let url = format!(
        "postgresql://app@127.0.0.1:{},127.0.0.1:{}/db?sslmode=disable",
        starting.port(),
        silent.port()
    );
    let both = connector(&url, Duration::from_secs(10), Duration::from_millis(1000));
    let err = both.connect().await.unwrap_err();
    let chain = format!("{err:#}");
    assert_eq!(err.reason(), Some(Reason::CannotConnectNow), "{chain}");
    assert_eq!(err.hosts().len(), 2, "{chain}");
    assert_eq!(err.hosts()[1].reason, Reason::TimedOut, "{chain}");
    // Negative control: the silent host alone is a timeout.
    let alone = connector(
        &silent.url("app", "db"),
        Duration::from_secs(10),
        Duration::from_millis(300),
    );
    assert_eq!(
        alone.connect().await.unwrap_err().reason(),
        Some(Reason::TimedOut)
    );
}
