//! Faults without a plan: the leader's postmaster killed (Patroni alive), the whole leader
//! node killed, and the killed node brought back.

use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Error, PatroniCluster, PatroniTimings};

use crate::{connect, create_table, server_port, start, values_on, wait_replicated, write_until};

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn leader_postmaster_kill_is_restarted_in_place_by_patroni() {
    let Some(cluster) = start(PatroniCluster::builder()).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    create_table(&cluster).await;
    let url = cluster.pg_config();
    write_until(&url, 1, Duration::from_secs(5)).await;
    let leader = cluster.node(&before.leader).unwrap();
    let starts = leader.ready_times().len();
    let patroni = leader.patroni_pid().unwrap();

    let fault = Instant::now();
    let killed = cluster.kill_postmaster(&before.leader).await.unwrap();
    assert_ne!(leader.postmaster_pid(), Some(killed));
    // Killing it again is refused while it is down (unless Patroni was quicker).
    if leader.postmaster_pid().is_none() {
        let err = cluster.kill_postmaster(&before.leader).await.unwrap_err();
        assert!(matches!(err, Error::State(_)), "{err}");
    }

    // Patroni (primary_start_timeout 300) restarts the same server: no failover.
    let (port, wrote) = write_until(&url, 2, Duration::from_secs(60)).await;
    assert_eq!(port, before.leader_port, "the same node is writable again");
    assert_eq!(
        leader.patroni_pid(),
        Some(patroni),
        "Patroni itself was not touched"
    );
    assert!(leader.postmaster_pid().is_some_and(|pid| pid != killed));
    assert_eq!(leader.ready_times().len(), starts + 1, "one restart");
    let restarted_at = *leader.ready_times().last().unwrap();
    let after = cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
    assert_eq!(after.leader, before.leader, "no failover");
    // Patroni starts the crashed primary again; depending on what it finds it either lets
    // crash recovery finish (same timeline) or starts it in recovery and promotes it (a new
    // timeline, recorded in /history as a promotion of the same node). Both seen here.
    if after.timeline > before.timeline {
        let change = cluster
            .wait_leader_change(before.timeline, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(change.new_leader.as_deref(), Some(before.leader.as_str()));
    } else {
        assert!(cluster.history().await.unwrap().is_empty(), "no promotion");
    }
    wait_replicated(&cluster, &after.replica, &[1, 2]).await;
    eprintln!(
        "patroni postmaster kill (restart in place): server ready again +{:?}; first write \
         +{:?}; healthy +{:?}; timeline {} -> {}",
        restarted_at
            .duration_since(SystemTime::now() - fault.elapsed())
            .unwrap_or_default(),
        wrote - fault,
        fault.elapsed(),
        before.timeline,
        after.timeline
    );
}

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn leader_postmaster_kill_fails_over_with_primary_start_timeout_0() {
    let timings = PatroniTimings {
        primary_start_timeout: 0,
        ..PatroniTimings::default()
    };
    let Some(cluster) = start(PatroniCluster::builder().timings(timings)).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    create_table(&cluster).await;
    let url = cluster.pg_config();
    write_until(&url, 1, Duration::from_secs(5)).await;
    wait_replicated(&cluster, &before.replica, &[1]).await;

    let fault_at = SystemTime::now();
    let fault = Instant::now();
    cluster.kill_postmaster(&before.leader).await.unwrap();
    let change = cluster
        .wait_leader_change(before.timeline, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(change.new_leader.as_deref(), Some(before.replica.as_str()));
    let (port, wrote) = write_until(&url, 2, Duration::from_secs(60)).await;
    assert_eq!(port, before.replica_port);
    let after = cluster.wait_healthy(Duration::from_secs(90)).await.unwrap();
    assert_eq!(
        (after.leader.as_str(), after.replica.as_str()),
        (before.replica.as_str(), before.leader.as_str()),
        "the old leader rejoined as a replica"
    );
    wait_replicated(&cluster, &after.replica, &[1, 2]).await;
    eprintln!(
        "patroni postmaster kill (primary_start_timeout 0): promotion +{:?}; first write \
         +{:?}; healthy +{:?}",
        change.at.unwrap().duration_since(fault_at).unwrap(),
        wrote - fault,
        fault.elapsed()
    );
}

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn leader_node_kill_fails_over_after_the_ttl_and_the_node_rejoins() {
    let Some(cluster) = start(PatroniCluster::builder().haproxy(true)).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    create_table(&cluster).await;
    let url = cluster.pg_config();
    for v in 1..=5 {
        write_until(&url, v, Duration::from_secs(5)).await;
    }
    wait_replicated(&cluster, &before.replica, &[1, 2, 3, 4, 5]).await;
    let old = cluster.node(&before.leader).unwrap();

    let fault_at = SystemTime::now();
    let fault = Instant::now();
    cluster.kill_node(&before.leader).await.unwrap();
    assert_eq!(old.patroni_pid(), None);
    assert_eq!(old.postmaster_pid(), None);
    let err = cluster.kill_node(&before.leader).await.unwrap_err();
    assert!(
        matches!(err, Error::State(_)),
        "a dead node cannot be killed: {err}"
    );

    // Negative control: with one node dead there is no streaming replica, and the bounded
    // wait says so.
    let err = cluster
        .wait_healthy(Duration::from_secs(2))
        .await
        .expect_err("one node is dead");
    assert!(matches!(err, Error::NotReady { .. }), "{err}");

    let change = cluster
        .wait_leader_change(before.timeline, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(change.new_leader.as_deref(), Some(before.replica.as_str()));
    let at = change.at.unwrap();
    let ttl = Duration::from_secs(u64::from(cluster.timings().ttl));
    let waited = at.duration_since(fault_at).unwrap();
    // The leader key outlives its node by up to `ttl` (from the last renewal).
    assert!(
        waited > ttl / 2 - Duration::from_secs(u64::from(cluster.timings().loop_wait)),
        "promoted after {waited:?}: before the lease can have run out"
    );
    let (port, wrote) = write_until(&url, 6, Duration::from_secs(60)).await;
    assert_eq!(port, before.replica_port);
    let haproxy = cluster.pg_config_with_port(cluster.haproxy_port().unwrap());
    let routed = loop {
        if let Ok(client) = connect(&haproxy).await
            && server_port(&client).await == before.replica_port
        {
            break fault.elapsed();
        }
        assert!(
            fault.elapsed() < Duration::from_secs(60),
            "HAProxy not on the new leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        values_on(&cluster, &before.replica).await,
        vec![1, 2, 3, 4, 5, 6]
    );

    // The killed node comes back as a replica of the new leader.
    let restart = Instant::now();
    cluster.start_node(&before.leader).await.unwrap();
    let err = cluster.start_node(&before.leader).await.unwrap_err();
    assert!(
        matches!(err, Error::State(_)),
        "Patroni runs already: {err}"
    );
    let after = cluster.wait_healthy(Duration::from_secs(90)).await.unwrap();
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
    wait_replicated(&cluster, &before.leader, &[1, 2, 3, 4, 5, 6]).await;
    eprintln!(
        "patroni node kill: promotion (Patroni /history) +{waited:?}; first write via \
         multi-host URL +{:?}; HAProxy on new leader +{routed:?}; killed node streaming again \
         {:?} after its restart",
        wrote - fault,
        restart.elapsed()
    );
}
