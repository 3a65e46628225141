//! `pgsteady check`: one bounded attempt with the same exit codes as `wait`.

use std::time::Duration;

use pgsteady_testkit::Cluster;

use crate::{TestCommand, url};

#[tokio::test]
async fn exit_codes() {
    let cluster = Cluster::start().await.unwrap();
    let done = TestCommand::new(["check", &cluster.url()]).run().await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    let done = TestCommand::new(["check", &cluster.url(), "--json"])
        .run()
        .await;
    done.assert_exit_code(0);
    assert_eq!(done.events()[0]["event"], "ready");
    // A false answer is "not ready".
    TestCommand::new(["check", &cluster.url(), "--query", "SELECT false"])
        .run()
        .await
        .assert_exit_code(1);
    // A syntax error is a usage error.
    TestCommand::new(["check", &cluster.url(), "--query", "SELEC 1"])
        .run()
        .await
        .assert_exit_code(2);
    let bad = url(&cluster, cluster.user(), "nope-Pw-123", cluster.dbname());
    TestCommand::new(["check", &bad])
        .run()
        .await
        .assert_exit_code(3)
        .assert_no_secret("nope-Pw-123");
    TestCommand::new(["check", "postgresql://h:bad/db"])
        .run()
        .await
        .assert_exit_code(2);

    // Down: exit 1 at once (refused), hung: exit 1 at the timeout.
    cluster.pause().unwrap();
    let done = TestCommand::new(["check", &cluster.url(), "--timeout", "700ms"])
        .run()
        .await;
    cluster.resume().unwrap();
    done.assert_exit_code(1);
    assert!(
        done.elapsed >= Duration::from_millis(700) && done.elapsed < Duration::from_millis(1300),
        "{:?}",
        done.elapsed
    );
    cluster
        .stop(pgsteady_testkit::StopMode::Fast)
        .await
        .unwrap();
    let done = TestCommand::new(["check", &cluster.url()]).run().await;
    done.assert_exit_code(1);
    assert!(done.elapsed < Duration::from_secs(1));
}
