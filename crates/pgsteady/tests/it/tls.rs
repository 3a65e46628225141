//! sslmode against a server without TLS: prefer falls back to plain text, require fails fast.

use pgsteady::{Config, Connector, ErrorKind, Reason};
use pgsteady_testkit::Cluster;

#[tokio::test]
async fn prefer_falls_back_and_require_fails_fast() {
    let cluster = Cluster::start().await.unwrap();
    for (mode, ok) in [
        ("disable", true),
        ("allow", true),
        ("prefer", true),
        ("require", false),
    ] {
        let url = format!("{}?sslmode={mode}", cluster.url());
        let result = Connector::new(Config::parse(&url).unwrap())
            .unwrap()
            .connect()
            .await;
        match (result, ok) {
            (Ok(c), true) => assert!(!c.tls, "{mode}"),
            (Err(e), false) => {
                assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
                assert_eq!(e.reason(), Some(Reason::Tls));
                assert_eq!(e.attempts(), 1, "fails fast");
                assert!(e.to_string().contains("does not support TLS"), "{e}");
            }
            (r, _) => panic!("{mode}: {r:?}"),
        }
    }
}
