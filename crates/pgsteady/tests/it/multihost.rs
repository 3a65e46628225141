//! Several hosts: tried in order (libpq), every failure reported, session attributes checked.

use std::net::TcpListener;

use pgsteady::{Config, Connector, ErrorKind, Reason};
use pgsteady_testkit::Cluster;

/// A loopback port with nothing listening.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn multi(cluster: &Cluster, ports: &[u16], extra: &str) -> Connector {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = format!(
        "postgresql://{}:{}@{}/{}?{extra}",
        cluster.user(),
        cluster.password(),
        hosts.join(","),
        cluster.dbname()
    );
    Connector::new(Config::parse(&url).unwrap()).unwrap()
}

#[tokio::test]
async fn falls_through_to_the_live_host_and_reports_every_dead_one() {
    let cluster = Cluster::start().await.unwrap();
    let (d1, d2) = (dead_port(), dead_port());
    let c = multi(&cluster, &[d1, cluster.port()], "")
        .connect_once()
        .await
        .unwrap();
    assert_eq!(c.host.port, cluster.port());

    let err = multi(&cluster, &[d1, d2], "")
        .connect_once()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let hosts: Vec<_> = err
        .hosts()
        .iter()
        .map(|h| (h.host.clone(), h.reason))
        .collect();
    assert_eq!(
        hosts,
        vec![
            (format!("127.0.0.1:{d1}"), Reason::Refused),
            (format!("127.0.0.1:{d2}"), Reason::Refused)
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains(&d1.to_string()) && text.contains(&d2.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn target_session_attrs_are_checked_by_query() {
    let cluster = Cluster::start().await.unwrap();
    let port = cluster.port();
    // A primary satisfies primary / read-write / any.
    for attrs in ["primary", "read-write", "any"] {
        multi(&cluster, &[port], &format!("target_session_attrs={attrs}"))
            .connect_once()
            .await
            .unwrap_or_else(|e| panic!("{attrs}: {e}"));
    }
    // ... but not standby / read-only.
    for attrs in ["standby", "read-only"] {
        let err = multi(&cluster, &[port], &format!("target_session_attrs={attrs}"))
            .connect_once()
            .await
            .unwrap_err();
        assert_eq!(
            err.reason(),
            Some(Reason::WrongSessionType),
            "{attrs}: {err}"
        );
        assert!(!err.is_transient(), "{attrs}");
    }
    // prefer-standby falls back to any server when no standby exists.
    multi(&cluster, &[port], "target_session_attrs=prefer-standby")
        .connect_once()
        .await
        .unwrap();
}
