//! TCP keepalives are set on the socket we dial (tokio-postgres' own connect is bypassed).

use std::time::Duration;

use pgsteady::{Config, Connector};
use pgsteady_testkit::Cluster;

/// `ss` shows a keepalive timer counting down from `keepalives_idle` on an idle connection.
#[tokio::test]
async fn keepalive_timer_runs_with_the_configured_idle_time() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        eprintln!("skipped: `ss` (iproute2) is not installed");
        return;
    }
    let cluster = Cluster::start().await.unwrap();
    let url = format!(
        "{}?keepalives_idle=37&keepalives_interval=4&keepalives_count=2&tcp_user_timeout=9000",
        cluster.url()
    );
    let connected = Connector::new(Config::parse(&url).unwrap())
        .unwrap()
        .connect_once()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = std::process::Command::new("ss")
        .args(["-tno", "state", "established"])
        .arg(format!("( dport = :{} )", cluster.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // e.g. `timer:(keepalive,36sec,0)`
    let timer = text
        .split("timer:(keepalive,")
        .nth(1)
        .unwrap_or_else(|| panic!("no keepalive timer in:\n{text}"));
    let secs: f64 = timer
        .split("sec")
        .next()
        .unwrap()
        .replace("min", "")
        .parse()
        .unwrap_or_else(|_| panic!("{timer}"));
    assert!((30.0..=37.0).contains(&secs), "{text}");
    drop(connected);
}

/// With the default settings, a silently dropped network is noticed within 20 s on an idle
/// connection (keepalive probes) and with a query in flight (`tcp_user_timeout`).
mod default_bound {
    use std::time::{Duration, Instant};

    use pgsteady::{Config, Connector};
    use pgsteady_testkit::Cluster;
    use pgsteady_testkit::netns::{self, Blackhole};

    /// What the defaults promise, with a margin for timer granularity.
    const BOUND: Duration = Duration::from_secs(20);

    async fn connect(cluster: &Cluster, extra: &str) -> pgsteady::Connected {
        let url = format!("{}?connect_timeout=2{extra}", cluster.url());
        let connected = Connector::new(Config::parse(&url).unwrap())
            .unwrap()
            .connect_once()
            .await
            .unwrap();
        connected.client.simple_query("SELECT 1").await.unwrap();
        connected
    }

    #[tokio::test]
    async fn an_idle_connection_to_a_vanished_peer_ends_within_20_s() {
        if let Err(reason) = netns::support() {
            eprintln!("SKIPPED kernel-level silent drop test: {reason}");
            return;
        }
        netns::isolate_thread().unwrap();
        let cluster = Cluster::start().await.unwrap();
        let connected = connect(&cluster, "").await;
        let _hole = Blackhole::install(cluster.port()).unwrap();
        let started = Instant::now();
        tokio::time::timeout(BOUND + Duration::from_secs(20), connected.monitor.closed())
            .await
            .expect("the kernel must end the idle connection");
        let took = started.elapsed();
        eprintln!("idle silent drop noticed after {took:?}");
        assert!(took <= BOUND, "an idle silent drop noticed after {took:?}");
        assert!(connected.client.is_closed());
    }

    /// Negative control: with keepalives and `tcp_user_timeout` off, the same idle connection
    /// still looks open after the bound, so the test above measures the defaults.
    #[tokio::test]
    async fn without_keepalives_an_idle_connection_to_a_vanished_peer_stays_open() {
        if let Err(reason) = netns::support() {
            eprintln!("SKIPPED kernel-level silent drop test: {reason}");
            return;
        }
        netns::isolate_thread().unwrap();
        let cluster = Cluster::start().await.unwrap();
        let connected = connect(&cluster, "&keepalives=0&tcp_user_timeout=0").await;
        let _hole = Blackhole::install(cluster.port()).unwrap();
        let ended = tokio::time::timeout(BOUND, connected.monitor.closed()).await;
        assert!(ended.is_err(), "closed without keepalives: {ended:?}");
        assert!(!connected.client.is_closed());
    }

    #[tokio::test]
    async fn a_query_in_flight_to_a_vanished_peer_fails_within_20_s() {
        if let Err(reason) = netns::support() {
            eprintln!("SKIPPED kernel-level silent drop test: {reason}");
            return;
        }
        netns::isolate_thread().unwrap();
        let cluster = Cluster::start().await.unwrap();
        let connected = connect(&cluster, "").await;
        let _hole = Blackhole::install(cluster.port()).unwrap();
        let started = Instant::now();
        let err = tokio::time::timeout(
            BOUND + Duration::from_secs(20),
            connected.client.simple_query("SELECT 1"),
        )
        .await
        .expect("the kernel must end the connection with a request in flight")
        .unwrap_err();
        let took = started.elapsed();
        eprintln!("in-flight silent drop noticed after {took:?}");
        assert!(err.is_closed(), "{err:?}");
        assert!(
            took <= BOUND,
            "an in-flight silent drop noticed after {took:?}"
        );
    }
}
