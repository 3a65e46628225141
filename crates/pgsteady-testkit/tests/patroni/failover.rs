//! Faults without a plan: the leader's postmaster killed (Patroni alive), the whole leader
//! node killed, and the killed node brought back.

use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Error, PatroniCluster, PatroniTimings, Role};

use crate::switchover::gap;
use crate::{
    Writer, acked, create_table, first_ack_on, instant_at, since, start, values_on,
    wait_replicated, write_until,
};

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn leader_postmaster_kill_is_restarted_in_place_by_patroni() {
    let Some(cluster) = start(PatroniCluster::builder()).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    create_table(&cluster).await;
    write_until(&cluster.pg_config(), 1, Duration::from_secs(5)).await;
    let leader = cluster.node(&before.leader).unwrap();
    let err = cluster.haproxy_routes_to().await.unwrap_err();
    assert!(matches!(err, Error::State(_)), "no HAProxy here: {err}");
    let starts = leader.ready_times().len();
    let patroni = leader.patroni_pid().unwrap();
    let writer = Writer::spawn(cluster.pg_config(), 1000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let origin = (SystemTime::now(), Instant::now());
    let killed = cluster.kill_postmaster(&before.leader).await.unwrap();
    assert_ne!(leader.postmaster_pid(), Some(killed));
    // Killing it again is refused while it is down (unless Patroni was quicker).
    if leader.postmaster_pid().is_none() {
        let err = cluster.kill_postmaster(&before.leader).await.unwrap_err();
        assert!(matches!(err, Error::State(_)), "{err}");
    }

    // Patroni (primary_start_timeout 300) restarts the same server: no failover.
    let after = cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
    let healthy = origin.1.elapsed();
    assert_eq!(after.leader, before.leader, "no failover");
    assert_eq!(
        leader.patroni_pid(),
        Some(patroni),
        "Patroni itself was not touched"
    );
    assert!(leader.postmaster_pid().is_some_and(|pid| pid != killed));
    assert_eq!(leader.ready_times().len(), starts + 1, "one restart");
    let ready = *leader.ready_times().last().unwrap();
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = writer.stop().await;
    let first = first_ack_on(&attempts, before.leader_port, instant_at(origin, ready))
        .expect("writes resume on the restarted leader");
    let acked = acked(&attempts);
    // Committed WAL survives a crash of the server (fsync off, but the kernel has it).
    let on_leader = values_on(&cluster, &before.leader).await;
    assert!(
        acked.iter().all(|v| on_leader.contains(v)),
        "acknowledged writes lost"
    );
    wait_replicated(&cluster, &after.replica, &on_leader).await;
    eprintln!(
        "patroni postmaster kill (restart in place): server ready again +{:?}; first write \
         {:?} after that; healthy +{healthy:?}; timeline {} -> {}",
        since(origin.0, ready),
        first
            .ended
            .saturating_duration_since(instant_at(origin, ready)),
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
    write_until(&cluster.pg_config(), 1, Duration::from_secs(5)).await;
    wait_replicated(&cluster, &before.replica, &[1]).await;
    let writer = Writer::spawn(cluster.pg_config(), 1000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let origin = (SystemTime::now(), Instant::now());
    cluster.kill_postmaster(&before.leader).await.unwrap();
    let change = cluster
        .wait_leader_change(before.timeline, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(change.new_leader.as_deref(), Some(before.replica.as_str()));
    let at = change.at.unwrap();
    let after = cluster.wait_healthy(Duration::from_secs(90)).await.unwrap();
    let healthy = origin.1.elapsed();
    assert_eq!(
        (after.leader.as_str(), after.replica.as_str()),
        (before.replica.as_str(), before.leader.as_str()),
        "the old leader rejoined as a replica"
    );
    let attempts = writer.stop().await;
    let (last_old, first_new) = gap(&attempts, before.leader_port, before.replica_port, origin.1);
    let on_leader = values_on(&cluster, &after.leader).await;
    let lost = acked(&attempts)
        .iter()
        .filter(|v| !on_leader.contains(v))
        .count();
    wait_replicated(&cluster, &after.replica, &on_leader).await;
    eprintln!(
        "patroni postmaster kill (primary_start_timeout 0): promotion +{:?}; multi-host write \
         gap {:?}, first write {:?} after the promotion; healthy +{healthy:?}; acknowledged \
         writes lost (asynchronous replication): {lost}",
        since(origin.0, at),
        first_new - last_old,
        first_new.saturating_duration_since(instant_at(origin, at)),
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
    for v in 1..=5 {
        write_until(&cluster.pg_config(), v, Duration::from_secs(5)).await;
    }
    wait_replicated(&cluster, &before.replica, &[1, 2, 3, 4, 5]).await;
    let old = cluster.node(&before.leader).unwrap();
    let multi = Writer::spawn(cluster.pg_config(), 1000);
    let haproxy = Writer::spawn(
        cluster.pg_config_with_port(cluster.haproxy_port().unwrap()),
        1_000_000,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let origin = (SystemTime::now(), Instant::now());
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
    let waited = since(origin.0, at);
    // The leader key outlives its node by up to `ttl` (from its last renewal, at most
    // `loop_wait` before the kill).
    let loop_wait = Duration::from_secs(u64::from(cluster.timings().loop_wait));
    assert!(
        waited > ttl - loop_wait - Duration::from_secs(1),
        "promoted after {waited:?}: before the lease can have run out"
    );
    // Writes resume on the new leader through both paths.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let multi = multi.stop().await;
    let haproxy = haproxy.stop().await;
    let promoted = instant_at(origin, at);
    let mut report = Vec::new();
    for (name, attempts) in [("multi-host URL", &multi), ("HAProxy", &haproxy)] {
        let (last_old, first_new) =
            gap(attempts, before.leader_port, before.replica_port, origin.1);
        report.push(format!(
            "{name}: write gap {:?}, first write {:?} after the promotion",
            first_new - last_old,
            first_new.saturating_duration_since(promoted)
        ));
    }
    let on_leader = values_on(&cluster, &before.replica).await;
    assert!(
        (1..=5).all(|v| on_leader.contains(&v)),
        "replicated before the fault"
    );
    let after_promotion: Vec<i32> = multi
        .iter()
        .chain(&haproxy)
        .filter(|a| a.started >= promoted && a.acked_by.is_some())
        .map(|a| a.value)
        .collect();
    assert!(!after_promotion.is_empty());
    assert!(after_promotion.iter().all(|v| on_leader.contains(v)));
    let lost = acked(&multi)
        .iter()
        .chain(&acked(&haproxy))
        .filter(|v| !on_leader.contains(v))
        .count();

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
    wait_replicated(&cluster, &before.leader, &on_leader).await;
    eprintln!(
        "patroni node kill: promotion (Patroni /history) +{waited:?}; {}; acknowledged writes \
         lost (asynchronous replication): {lost}; killed node streaming again {:?} after its \
         restart",
        report.join("; "),
        restart.elapsed()
    );
}

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn synchronous_mode_node_kill_loses_no_acknowledged_write() {
    let Some(cluster) = start(PatroniCluster::builder().synchronous_mode(true)).await else {
        return;
    };
    let before = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    // Patroni names the replica the synchronous standby (bounded: it does so on a loop).
    let started = Instant::now();
    loop {
        let members = cluster.members().await.unwrap();
        let admin = cluster.admin(&before.leader).await.unwrap();
        let sync_state: Option<String> = admin
            .query_opt(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                &[&before.replica],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        let standby = members.iter().find(|m| m.name == before.replica).unwrap();
        if standby.role == Role::SyncStandby && sync_state.as_deref() == Some("sync") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no synchronous standby: {members:?}, {sync_state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_table(&cluster).await;
    let writer = Writer::spawn(cluster.pg_config(), 1000);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let origin = (SystemTime::now(), Instant::now());
    cluster.kill_node(&before.leader).await.unwrap();
    let change = cluster
        .wait_leader_change(before.timeline, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(change.new_leader.as_deref(), Some(before.replica.as_str()));
    let promoted = instant_at(origin, change.at.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = writer.stop().await;
    first_ack_on(&attempts, before.replica_port, promoted).expect("writes resume");
    let acked = acked(&attempts);
    assert!(
        acked.len() > 10,
        "the writer wrote before the fault: {acked:?}"
    );
    let on_leader = values_on(&cluster, &before.replica).await;
    let lost: Vec<&i32> = acked.iter().filter(|v| !on_leader.contains(v)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    eprintln!(
        "patroni node kill (synchronous_mode): promotion +{:?}; {} acknowledged writes, none lost",
        since(origin.0, change.at.unwrap()),
        acked.len()
    );
}
