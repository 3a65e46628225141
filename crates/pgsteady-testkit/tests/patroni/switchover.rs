//! `patronictl switchover` to a named candidate.

use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Error, PatroniCluster};

use crate::{
    Attempt, Writer, acked, create_table, first_ack_on, instant_at, since, start, values_on,
    wait_replicated, write_until,
};

/// What one writer saw across a leader change: the last acknowledgement by the old leader
/// and the first by the new one.
pub(crate) fn gap(attempts: &[Attempt], old: u16, new: u16, fault: Instant) -> (Instant, Instant) {
    let first_new =
        first_ack_on(attempts, new, fault).expect("a write acknowledged by the new leader");
    let last_old = attempts
        .iter()
        .filter(|a| a.acked_by == Some(old) && a.ended <= first_new.started)
        .map(|a| a.ended)
        .next_back()
        .unwrap_or(fault);
    (last_old, first_new.ended)
}

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn switchover_moves_the_leader_and_haproxy_and_the_multi_host_url_follow() {
    let Some(cluster) = start(PatroniCluster::builder().haproxy(true)).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    create_table(&cluster).await;
    write_until(&cluster.pg_config(), 1, Duration::from_secs(5)).await;

    // Refused without touching the cluster: the leader itself, a node that does not exist.
    let err = cluster.switchover(&before.leader).await.unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    let err = cluster.switchover("node9").await.unwrap_err();
    assert!(err.to_string().contains("node1, node2"), "{err}");
    assert!(cluster.history().await.unwrap().is_empty());

    // Two clients write throughout: one through the multi-host URL, one through HAProxy.
    let multi = Writer::spawn(cluster.pg_config(), 1000);
    let haproxy = Writer::spawn(
        cluster.pg_config_with_port(cluster.haproxy_port().unwrap()),
        1_000_000,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let origin = (SystemTime::now(), Instant::now());
    let fault = origin.1;
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
        at > origin.0 && at < SystemTime::now(),
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

    // The old leader rejoins as a streaming replica.
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
    // HAProxy's checks route to the new leader alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.haproxy_routes_to().await.unwrap() != [before.replica.clone()] {
        assert!(
            Instant::now() < deadline,
            "HAProxy does not route to the new leader alone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let multi = multi.stop().await;
    let haproxy = haproxy.stop().await;

    // Both clients write to the new leader afterwards; every acknowledged write of either
    // is on it (a switchover loses nothing), and on the rejoined replica.
    let promoted = instant_at(origin, at);
    let mut report = Vec::new();
    for (name, attempts) in [("multi-host URL", &multi), ("HAProxy", &haproxy)] {
        let (last_old, first_new) = gap(attempts, before.leader_port, before.replica_port, fault);
        report.push(format!(
            "{name}: write gap {:?}, first write on the new leader {:?} after the promotion",
            first_new - last_old,
            first_new.saturating_duration_since(promoted)
        ));
    }
    let mut all = vec![1];
    all.extend(acked(&multi));
    all.extend(acked(&haproxy));
    all.sort();
    let on_leader = values_on(&cluster, &after.leader).await;
    assert!(
        all.iter().all(|v| on_leader.contains(v)),
        "acknowledged writes lost"
    );
    wait_replicated(&cluster, &after.replica, &on_leader).await;

    eprintln!(
        "patroni switchover: promotion (Patroni /history) +{:?}; patronictl returned \
         +{returned:?}; healthy (old leader streaming) +{healthy:?}; {}",
        since(origin.0, at),
        report.join("; ")
    );
}
