//! `patronictl switchover` to a named candidate.

use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Error, PatroniCluster};

use crate::{connect, create_table, server_port, start, values_on, wait_replicated, write_until};

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn switchover_moves_the_leader_and_haproxy_and_the_multi_host_url_follow() {
    let Some(cluster) = start(PatroniCluster::builder().haproxy(true)).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    create_table(&cluster).await;
    let url = cluster.pg_config();
    for v in 1..=10 {
        write_until(&url, v, Duration::from_secs(5)).await;
    }

    // Refused without touching the cluster: the leader itself, a node that does not exist.
    let err = cluster.switchover(&before.leader).await.unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    let err = cluster.switchover("node9").await.unwrap_err();
    assert!(err.to_string().contains("node1, node2"), "{err}");
    assert!(cluster.history().await.unwrap().is_empty());

    let fault_at = SystemTime::now();
    let fault = Instant::now();
    cluster.switchover(&before.replica).await.unwrap();
    let returned = fault.elapsed();
    assert_eq!(cluster.leader().await.unwrap().name, before.replica);

    // Patroni's own record of the change: the candidate, one timeline on, stamped between
    // the call and now, and within a second of the new leader's server saying it is ready.
    let change = cluster
        .wait_leader_change(before.timeline, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(change.new_leader.as_deref(), Some(before.replica.as_str()));
    assert_eq!(change.timeline, before.timeline + 1);
    let at = change.at.expect("Patroni 3 stamps the promotion");
    assert!(
        at > fault_at && at < SystemTime::now(),
        "{at:?} outside the switchover"
    );
    let ready = *cluster
        .node(&before.replica)
        .unwrap()
        .ready_times()
        .last()
        .expect("the promoted server logged that it is ready");
    let skew = ready.duration_since(at).unwrap_or_else(|e| e.duration());
    assert!(
        skew < Duration::from_secs(1),
        "history {at:?} vs log {ready:?}"
    );

    // The multi-host URL writes to the new leader.
    let (port, wrote) = write_until(&url, 11, Duration::from_secs(30)).await;
    assert_eq!(port, before.replica_port);

    // HAProxy routes to the new leader (one check interval after the promotion, give or
    // take a check in flight).
    let haproxy = cluster.pg_config_with_port(cluster.haproxy_port().unwrap());
    let routed = loop {
        if let Ok(client) = connect(&haproxy).await
            && server_port(&client).await == before.replica_port
        {
            break fault.elapsed();
        }
        assert!(
            fault.elapsed() < Duration::from_secs(30),
            "HAProxy still not on the new leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let through = connect(&haproxy).await.unwrap();
    through
        .execute("INSERT INTO t VALUES (12)", &[])
        .await
        .unwrap();

    // The old leader rejoins as a streaming replica, with every write.
    let after = cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
    let healthy = fault.elapsed();
    assert_eq!(
        (
            after.leader.as_str(),
            after.replica.as_str(),
            after.timeline
        ),
        (
            before.replica.as_str(),
            before.leader.as_str(),
            before.timeline + 1
        )
    );
    let all: Vec<i32> = (1..=12).collect();
    assert_eq!(values_on(&cluster, &after.leader).await, all);
    wait_replicated(&cluster, &after.replica, &all).await;

    eprintln!(
        "patroni switchover: patronictl returned {returned:?}; promotion (Patroni /history) \
         +{:?}; first write via multi-host URL +{:?}; HAProxy on new leader +{routed:?}; \
         healthy (old leader streaming) +{healthy:?}",
        at.duration_since(fault_at).unwrap(),
        wrote - fault,
    );
}
