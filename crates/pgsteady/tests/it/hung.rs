//! A server that accepts TCP connections and then says nothing: the per-host timeout covers
//! the whole handshake, not only the TCP connect (tokio-postgres' connect_timeout does not).

use std::time::{Duration, Instant};

use pgsteady::{Config, Connector, ErrorKind, Reason};
use pgsteady_testkit::{Cluster, FaultProxy, ProxyMode};

#[tokio::test]
async fn blackholed_proxy_times_out_within_the_attempt_timeout() {
    let cluster = Cluster::start().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    proxy.set_mode(ProxyMode::Blackhole);
    let config = Config::parse(&cluster.url_with_port(proxy.port())).unwrap();
    let connector = Connector::new(config)
        .unwrap()
        .with_attempt_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = connector.connect_once().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(900),
        "{took:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.reason(), Some(Reason::TimedOut));
    // The TCP connect succeeded: the time-out names the phase after it.
    let text = format!("{err:#}");
    assert!(
        text.contains("tls negotiation") || text.contains("startup"),
        "{text}"
    );

    // Back to normal: the same connector works.
    proxy.set_mode(ProxyMode::Pass);
    connector.connect_once().await.unwrap();
}

#[tokio::test]
async fn paused_server_honours_attempt_timeout_and_deadline() {
    let cluster = Cluster::start().await.unwrap();
    cluster.pause().unwrap();
    let connector = crate::connector(&cluster.url(), Duration::from_millis(1500))
        .with_attempt_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let err = connector.connect().await.unwrap_err();
    let took = started.elapsed();
    cluster.resume().unwrap();
    // Deadline 1.5 s; never overshoots by more than one attempt's timeout.
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(1900),
        "{took:?}"
    );
    assert!(err.is_timeout());
    assert_eq!(err.reason(), Some(Reason::TimedOut));
    // Each attempt was cut at 400 ms: 1.5 s holds 3 or 4 of them, not one long hang.
    assert!((3..=5).contains(&err.attempts()), "{err:?}");
    connector.connect_once().await.expect("works after SIGCONT");
}
