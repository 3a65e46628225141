//! Starting a cluster: a leader, a streaming replica, the login user, HAProxy, cleanup.

use std::time::Duration;

use pgsteady_testkit::{PatroniCluster, Role};
use tokio_postgres::error::SqlState;

use crate::{
    assert_gone, connect, create_table, processes_in, server_port, start, wait_replicated,
};

#[tokio::test]
#[ignore = "boots a Patroni cluster: run with --ignored (.ci/run does)"]
async fn bootstrap_gives_a_leader_a_streaming_replica_the_app_user_and_haproxy() {
    let Some(cluster) = start(PatroniCluster::builder().haproxy(true)).await else {
        return;
    };
    let healthy = cluster.wait_healthy(Duration::from_secs(10)).await.unwrap();
    assert_ne!(healthy.leader, healthy.replica);
    assert_eq!(healthy.timeline, 1, "a fresh cluster is on timeline 1");

    // Patroni's view agrees with the servers' own.
    let members = cluster.members().await.unwrap();
    assert_eq!(members.len(), 2);
    let leader = members.iter().find(|m| m.role == Role::Leader).unwrap();
    assert_eq!(leader.name, healthy.leader);
    assert_eq!(leader.pg_port, Some(healthy.leader_port));
    let admin = cluster.admin(&healthy.leader).await.unwrap();
    let row = admin
        .query_one(
            "SELECT pg_is_in_recovery(), (SELECT state FROM pg_stat_replication \
             WHERE application_name = $1)",
            &[&healthy.replica],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("streaming")
    );
    let replica_admin = cluster.admin(&healthy.replica).await.unwrap();
    let in_recovery: bool = replica_admin
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the replica is a standby");
    assert_eq!(
        cluster
            .rest_status(&healthy.leader, "/primary")
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        cluster
            .rest_status(&healthy.replica, "/primary")
            .await
            .unwrap(),
        503
    );
    assert!(
        cluster.history().await.unwrap().is_empty(),
        "no leader change yet"
    );

    // The login user, with a SCRAM password, owns its database on both nodes.
    let verifier: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        verifier.starts_with("SCRAM-SHA-256$"),
        "stored as a SCRAM verifier"
    );
    let mut wrong = cluster.pg_config_with_port(healthy.leader_port);
    wrong.password("not-the-password");
    let err = connect(&wrong)
        .await
        .expect_err("a wrong password must fail");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));

    // The multi-host URL lands on the leader, whichever node that is.
    let url: tokio_postgres::Config = cluster.url().parse().unwrap();
    let client = connect(&url).await.unwrap();
    assert_eq!(server_port(&client).await, healthy.leader_port);
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("app".into(), "app".into())
    );
    // The replica's port alone serves reads only.
    let on_replica = connect(&cluster.pg_config_with_port(healthy.replica_port))
        .await
        .unwrap();
    let err = on_replica
        .batch_execute("CREATE TABLE nope (v int)")
        .await
        .expect_err("a standby refuses writes");
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));

    // A write on the leader reaches the replica.
    create_table(&cluster).await;
    client
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    wait_replicated(&cluster, &healthy.replica, &[1]).await;

    // HAProxy routes to the leader, and only to it.
    assert_eq!(
        cluster.haproxy_routes_to().await.unwrap(),
        vec![healthy.leader.clone()]
    );
    let haproxy = cluster.pg_config_with_port(cluster.haproxy_port().unwrap());
    let through = connect(&haproxy).await.unwrap();
    assert_eq!(server_port(&through).await, healthy.leader_port);
    assert_eq!(
        cluster.haproxy_check_interval(),
        Some(Duration::from_millis(500))
    );

    // The password stays out of debug output (and so out of panic messages).
    assert!(!format!("{cluster:?}").contains(cluster.password()));

    // Dropped while a test panics: nothing is left.
    let dir = cluster.dir().to_owned();
    assert!(
        processes_in(&dir).len() > 10,
        "etcd, haproxy, 2 x (patroni + server)"
    );
    drop((client, through, on_replica, admin, replica_admin));
    let task = tokio::spawn(async move {
        let _cluster = cluster;
        panic!("the test fails while the cluster is running");
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_gone(&dir);
}

#[tokio::test]
async fn bad_settings_are_refused_before_anything_starts() {
    use pgsteady_testkit::PatroniTimings;
    let timings = PatroniTimings {
        ttl: 6,
        loop_wait: 2,
        retry_timeout: 3,
        ..PatroniTimings::default()
    };
    let err = PatroniCluster::builder()
        .timings(timings)
        .start()
        .await
        .expect_err("2 + 2 * 3 > 6");
    assert!(
        err.to_string()
            .contains("loop_wait + 2 * retry_timeout <= ttl"),
        "{err}"
    );
    let err = PatroniCluster::builder()
        .user("a-b")
        .start()
        .await
        .expect_err("names are not quoted in the bootstrap SQL");
    assert!(err.to_string().contains("\"a-b\""), "{err}");
}
