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
