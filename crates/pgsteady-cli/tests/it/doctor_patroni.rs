//! `pgsteady doctor --patroni URL`: Patroni's REST view against each server's own
//! `pg_is_in_recovery()`. A stand-in REST API (canned JSON, as Patroni 3.0 answers) in front
//! of a real primary makes both a match and a split brain; the real Patroni cluster case is
//! `#[ignore]`d and runs in `.ci/run`'s Patroni step.

use std::time::Duration;

use pgsteady_testkit::{Cluster, PatroniCluster};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::TestCommand;

/// A stand-in Patroni REST API answering GET /patroni and GET /cluster; stops when dropped.
struct FakeRest {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_rest(node: Value, cluster: Value) -> FakeRest {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (node, cluster) = (node.to_string(), cluster.to_string());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let body = if request.starts_with("GET /cluster ") {
                    cluster
                } else if request.starts_with("GET /patroni ") {
                    node
                } else {
                    "{}".to_owned()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    FakeRest { url, task }
}

/// Patroni's answers for one member `node1` with `role`, whose server is `port`.
async fn patroni_saying(role: &str, port: u16) -> FakeRest {
    fake_rest(
        json!({"state": "running", "role": role, "patroni": {"name": "node1", "scope": "demo"}}),
        json!({"members": [{"name": "node1", "role": role, "state": "running",
                            "host": "127.0.0.1", "port": port, "api_url": "x"}]}),
    )
    .await
}

async fn doctor(args: &[&str]) -> (crate::Finished, Value) {
    let mut all = vec!["doctor", "--json", "--timeout", "2s"];
    all.extend_from_slice(args);
    let done = TestCommand::new(&all).run().await;
    let report: Value =
        serde_json::from_str(done.stdout()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    (done, report)
}

fn patroni_layer<'a>(report: &'a Value, host: &str) -> &'a Value {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["layers"].as_array().unwrap())
        .find(|l| l["layer"] == "patroni")
        .unwrap_or_else(|| panic!("no patroni layer for {host}: {report:#}"))
}

#[tokio::test]
async fn patroni_agreeing_with_the_server_passes_and_a_split_brain_fails_with_a_fix() {
    let cluster = Cluster::start().await.unwrap();
    let host = format!("127.0.0.1:{}", cluster.port());

    // Patroni says leader, the server is a primary: agreed.
    let rest = patroni_saying("leader", cluster.port()).await;
    let (done, report) = doctor(&[&cluster.url(), "--patroni", &rest.url]).await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    let layer = patroni_layer(&report, &host);
    assert_eq!(layer["status"], "ok", "{report:#}");
    assert!(
        layer["detail"].as_str().unwrap().contains("node1: leader"),
        "{layer}"
    );

    // Patroni says replica, the server is not in recovery: a second primary.
    let rest = patroni_saying("replica", cluster.port()).await;
    let (done, report) = doctor(&[&cluster.url(), "--patroni", &rest.url]).await;
    done.assert_exit_code(1)
        .assert_no_secret(cluster.password());
    assert_eq!(report["broken"]["layer"], "patroni", "{report:#}");
    assert_eq!(report["broken"]["host"], host.as_str());
    let detail = report["broken"]["detail"].as_str().unwrap();
    assert!(detail.contains("split brain"), "{detail}");
    assert!(detail.contains("node1"), "{detail}");
    let fix = report["broken"]["fix"].as_str().unwrap();
    assert!(fix.contains("patronictl reinit"), "{fix}");
    // The human report names the layer and the fix.
    let done = TestCommand::new(["doctor", &cluster.url(), "--patroni", &rest.url])
        .run()
        .await;
    done.assert_exit_code(1);
    assert!(
        done.stdout().contains("first broken layer: patroni"),
        "{}",
        done.stdout()
    );
    assert!(
        done.stdout().contains("fix: keep clients off node1"),
        "{}",
        done.stdout()
    );
    drop(rest);

    // Nothing listens on the REST address: a failing layer naming it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (done, report) = doctor(&[&cluster.url(), "--patroni", &dead_url]).await;
    done.assert_exit_code(1);
    assert_eq!(report["broken"]["layer"], "patroni", "{report:#}");
    assert_eq!(report["broken"]["host"], dead_url.as_str());

    // Bad input: a usage error naming the address, before anything is tried.
    let done = TestCommand::new(["doctor", &cluster.url(), "--patroni", "https://db1:8008"])
        .run()
        .await;
    done.assert_exit_code(2);
    assert!(
        done.stderr().contains("https://db1:8008"),
        "{}",
        done.stderr()
    );
}

/// A real Patroni cluster: the multi-host string's two hosts are named leader and replica,
/// and Patroni's view (both REST addresses) agrees with the servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a Patroni cluster: run in .ci/run's Patroni step"]
async fn doctor_names_the_leader_and_the_replica_of_a_patroni_cluster() {
    let cluster = match PatroniCluster::start().await {
        Err(pgsteady_testkit::Error::Unsupported(why)) => {
            eprintln!("skipped: cannot run a Patroni cluster here: {why}");
            return;
        }
        started => started.unwrap(),
    };
    let healthy = cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
    let rest: Vec<String> = cluster.nodes().iter().map(|n| n.rest_url()).collect();
    let url = cluster.url();
    let (done, report) = doctor(&[&url, "--patroni", &rest[0], "--patroni", &rest[1]]).await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    let leader = patroni_layer(&report, &format!("127.0.0.1:{}", healthy.leader_port));
    assert_eq!(leader["status"], "ok", "{report:#}");
    let detail = leader["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{}: leader", healthy.leader)),
        "{detail}"
    );
    let replica = patroni_layer(&report, &format!("127.0.0.1:{}", healthy.replica_port));
    assert_eq!(replica["status"], "ok", "{report:#}");
    let detail = replica["detail"].as_str().unwrap();
    assert!(detail.contains(&healthy.replica), "{detail}");
    assert!(detail.contains("in recovery"), "{detail}");
}
