//! Creating clusters and stopping / starting them.

use std::time::{Duration, SystemTime};

use pgsteady_testkit::{Cluster, StopMode};
use tokio_postgres::error::SqlState;

use crate::{connect, io_kind, scalar, with_timeout};

#[tokio::test]
async fn start_serves_the_password_user_over_tcp_and_rejects_a_wrong_password() {
    let cluster = Cluster::start().await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, inet_server_port()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert_eq!(row.get::<_, String>(1), "app");
    assert_eq!(row.get::<_, i32>(2), i32::from(cluster.port()));

    let url: tokio_postgres::Config = cluster.url().parse().unwrap();
    connect(&url).await.unwrap();

    let mut wrong = cluster.pg_config();
    wrong.password("not-the-password");
    let err = connect(&wrong)
        .await
        .expect_err("a wrong password must fail");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));
}

#[tokio::test]
async fn fast_stop_ends_sessions_with_57p01_then_refuses_then_start_serves_again() {
    let cluster = Cluster::start().await.unwrap();
    let port = cluster.port();
    let (client, conn) = connect(&cluster.pg_config()).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    cluster.stop(StopMode::Fast).await.unwrap();
    assert!(!cluster.is_running());
    // The idle session was told why it ended; only the connection task knows.
    let ended = conn.await.unwrap();
    let reason = ended
        .result
        .expect_err("the connection must end with an error");
    assert_eq!(reason.code(), Some(&SqlState::ADMIN_SHUTDOWN));
    assert!(
        client
            .simple_query("SELECT 1")
            .await
            .unwrap_err()
            .is_closed()
    );

    let err = connect(&with_timeout(cluster.pg_config()))
        .await
        .err()
        .unwrap();
    assert_eq!(
        io_kind(&err),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );

    cluster.start_server().await.unwrap();
    assert_eq!(cluster.port(), port, "the port survives a restart");
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn immediate_restart_runs_crash_recovery() {
    let cluster = Cluster::start().await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    cluster.restart(StopMode::Immediate).await.unwrap();
    assert!(client.simple_query("SELECT 1").await.is_err());
    assert!(
        cluster.log().contains("automatic recovery in progress"),
        "{}",
        cluster.log()
    );
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    let n: i64 = scalar(&client, "SELECT count(*) FROM t").await;
    assert_eq!(n, 1, "a committed row survives an immediate shutdown");
}

#[tokio::test]
async fn init_leaves_the_server_stopped_until_started() {
    let cluster = Cluster::builder().init().await.unwrap();
    assert!(!cluster.is_running());
    let err = connect(&with_timeout(cluster.pg_config()))
        .await
        .err()
        .unwrap();
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::ConnectionRefused));
    cluster.start_server().await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn ready_at_is_read_from_the_log_and_moves_forward_with_each_start() {
    let before_start = SystemTime::now();
    let cluster = Cluster::start().await.unwrap();
    let first = cluster.ready_at().expect("a ready line after start");
    // Millisecond timestamps from the server's clock, the same clock as ours.
    assert!(
        first + Duration::from_millis(2) >= before_start,
        "{first:?} < {before_start:?}"
    );
    assert!(first <= SystemTime::now());

    let before_restart = SystemTime::now();
    cluster.restart(StopMode::Fast).await.unwrap();
    let second = cluster.ready_at().unwrap();
    assert!(second > first);
    assert!(second + Duration::from_millis(2) >= before_restart);
    assert!(second <= SystemTime::now());
    assert_eq!(cluster.ready_times().len(), 2);
}

#[tokio::test]
async fn max_connections_is_applied_and_exhaustion_is_53300() {
    let cluster = Cluster::builder().max_connections(6).start().await.unwrap();
    // Wait for the kit's own start-up sessions to have left.
    let admin = cluster.admin().await.unwrap();
    for _ in 0..200 {
        let n: i64 = scalar(
            &admin,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .await;
        if n == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Keep the superuser session: 6 slots - 1 in use - 3 reserved leaves 2 for the user.
    let mut held = Vec::new();
    let mut rejected = None;
    for _ in 0..8 {
        match connect(&cluster.pg_config()).await {
            Ok(session) => held.push(session),
            Err(e) => {
                rejected = Some(e);
                break;
            }
        }
    }
    assert_eq!(held.len(), 2);
    assert_eq!(
        rejected.unwrap().code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS)
    );
}

#[tokio::test]
async fn clusters_started_together_do_not_collide() {
    let (a, b, c) = tokio::join!(Cluster::start(), Cluster::start(), Cluster::start());
    let clusters = [a.unwrap(), b.unwrap(), c.unwrap()];
    let mut ports: Vec<u16> = clusters.iter().map(Cluster::port).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for cluster in &clusters {
        let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
    }
}

/// The nice value of a process, from `/proc/<pid>/stat` (field 19).
fn nice_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // Fields after the command name start at field 3 (state): nice is field 19.
    fields[19 - 3].parse().unwrap()
}

#[tokio::test]
async fn nice_applies_to_the_postmaster_and_its_backends_across_restarts() {
    let cluster = Cluster::builder().nice(10).start().await.unwrap();
    let (client, _driver) = connect(&cluster.pg_config()).await.unwrap();
    let backend: i32 = scalar(&client, "SELECT pg_backend_pid()").await;
    assert_eq!(nice_of(cluster.postmaster_pid().unwrap()), 10);
    assert_eq!(nice_of(backend), 10);
    cluster.restart(StopMode::Fast).await.unwrap();
    assert_eq!(nice_of(cluster.postmaster_pid().unwrap()), 10);
    // Without it, the server runs at the caller's priority.
    let plain = Cluster::start().await.unwrap();
    assert_eq!(
        nice_of(plain.postmaster_pid().unwrap()),
        nice_of(std::process::id() as i32)
    );
}
