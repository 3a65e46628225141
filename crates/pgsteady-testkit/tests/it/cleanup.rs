//! Nothing survives a cluster: no process, no directory, also when the test panics.

use std::path::Path;
use std::time::Duration;

use pgsteady_testkit::Cluster;

use crate::processes_in;

fn assert_gone(dir: &Path) {
    // Give the kernel a moment to finish reaping, then insist.
    for _ in 0..200 {
        if processes_in(dir).is_empty() && !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(processes_in(dir).is_empty(), "server processes survived");
    assert!(!dir.exists(), "{} survived", dir.display());
}

#[tokio::test]
async fn drop_stops_the_server_and_removes_the_directory() {
    let cluster = Cluster::start().await.unwrap();
    let dir = cluster.dir().to_owned();
    assert!(!processes_in(&dir).is_empty());
    drop(cluster);
    assert_gone(&dir);
}

#[tokio::test]
async fn drop_of_a_paused_server_cleans_up() {
    let cluster = Cluster::start().await.unwrap();
    let dir = cluster.dir().to_owned();
    cluster.pause().unwrap();
    drop(cluster);
    assert_gone(&dir);
}

#[tokio::test]
async fn a_panicking_test_still_cleans_up() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let cluster = Cluster::start().await.unwrap();
        tx.send(cluster.dir().to_owned()).unwrap();
        panic!("the test fails while the cluster is running");
    });
    let dir = rx.await.unwrap();
    assert!(task.await.unwrap_err().is_panic());
    assert_gone(&dir);
}

#[tokio::test]
async fn a_stopped_or_crashed_cluster_cleans_up() {
    let cluster = Cluster::start().await.unwrap();
    let dir = cluster.dir().to_owned();
    cluster.kill_postmaster().await.unwrap();
    drop(cluster);
    assert_gone(&dir);
}
