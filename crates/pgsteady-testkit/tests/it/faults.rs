//! Crashes, killed backends, terminated sessions, a hung server and changed settings.

use std::time::{Duration, Instant};

use pgsteady_testkit::{BackendFilter, Cluster};
use tokio_postgres::error::SqlState;

use crate::{connect, io_kind, scalar, with_timeout};

#[tokio::test]
async fn kill_postmaster_takes_everything_down_and_start_recovers_committed_data() {
    let cluster = Cluster::start().await.unwrap();
    let (client, conn) = connect(&cluster.pg_config()).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    let postmaster = cluster.postmaster_pid().unwrap();

    cluster.kill_postmaster().await.unwrap();
    assert!(!cluster.is_running());
    assert!(crate::processes_in(&cluster.data_dir()).is_empty());
    // The backend saw its postmaster die: the session ended, with or without a message.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("session must end")
        .unwrap();
    // "terminating connection due to unexpected postmaster exit", or a bare close.
    assert!(
        ended.code().is_none_or(|c| c == SqlState::ADMIN_SHUTDOWN),
        "{ended:?}"
    );
    let err = connect(&with_timeout(cluster.pg_config()))
        .await
        .err()
        .unwrap();
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::ConnectionRefused));

    cluster.start_server().await.unwrap();
    assert_ne!(cluster.postmaster_pid(), Some(postmaster));
    assert!(cluster.log().contains("database system was interrupted"));
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    let v: i32 = scalar(&client, "SELECT v FROM t").await;
    assert_eq!(v, 7);
}

#[tokio::test]
async fn kill_all_is_a_crash_seen_as_a_closed_connection() {
    let cluster = Cluster::start().await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    cluster.kill_all().await.unwrap();
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(err.is_closed() || io_kind(&err).is_some(), "{err:?}");
    cluster.start_server().await.unwrap();
    assert!(
        cluster.log().contains("database system was interrupted"),
        "{}",
        cluster.log()
    );
}

#[tokio::test]
async fn kill_backend_makes_the_server_end_every_other_session_with_57p02_and_recover() {
    let cluster = Cluster::start().await.unwrap();
    let (victim, _victim_conn) = connect(&cluster.pg_config()).await.unwrap();
    let (bystander, bystander_conn) = connect(&cluster.pg_config()).await.unwrap();
    let victim_pid: i32 = scalar(&victim, "SELECT pg_backend_pid()").await;
    bystander.simple_query("SELECT 1").await.unwrap();
    let readies = cluster.ready_times().len();

    cluster.kill_backend(victim_pid).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), bystander_conn)
        .await
        .expect("the bystander's session must be ended")
        .unwrap();
    // The reason comes as a WARNING notice before the socket closes.
    assert_eq!(ended.code(), Some(SqlState::CRASH_SHUTDOWN), "{ended:?}");

    cluster.wait_ready().await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        cluster.ready_times().len(),
        readies + 1,
        "the server restarted by itself:\n{}",
        cluster.log()
    );
    assert!(
        cluster
            .kill_backend(cluster.postmaster_pid().unwrap())
            .is_err()
    );
}

#[tokio::test]
async fn terminate_backends_ends_matching_sessions_with_57p01() {
    let cluster = Cluster::start().await.unwrap();
    let mut tagged = cluster.pg_config();
    tagged.application_name("victim");
    let (_victim, victim_conn) = connect(&tagged).await.unwrap();
    let (other, _other_conn) = connect(&cluster.pg_config()).await.unwrap();

    let pids = cluster
        .backend_pids(BackendFilter::ClientBackends)
        .await
        .unwrap();
    assert_eq!(pids.len(), 2);
    let n = cluster
        .terminate_backends(BackendFilter::ApplicationName("victim".into()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let ended = tokio::time::timeout(Duration::from_secs(5), victim_conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ended.result.unwrap_err().code(),
        Some(&SqlState::ADMIN_SHUTDOWN)
    );
    other
        .simple_query("SELECT 1")
        .await
        .expect("the other session is untouched");

    assert_eq!(
        cluster
            .terminate_backends(BackendFilter::User("app".into()))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn pause_hangs_queries_and_new_connections_until_resume() {
    let cluster = Cluster::start().await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    cluster.pause().unwrap();

    let started = Instant::now();
    let hung =
        tokio::time::timeout(Duration::from_millis(300), client.simple_query("SELECT 1")).await;
    assert!(hung.is_err(), "a query to a stopped server must hang");
    let mut config = cluster.pg_config();
    config.connect_timeout(Duration::from_millis(300));
    // The kernel completes the TCP handshake; the startup message is never answered.
    let hung = tokio::time::timeout(Duration::from_secs(2), connect(&config)).await;
    assert!(
        !matches!(hung, Ok(Ok(_))),
        "connecting to a stopped server must not succeed"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    cluster.resume().unwrap();
    let rows = tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1")).await;
    assert!(
        matches!(rows, Ok(Ok(_))),
        "the session works again after resume: {rows:?}"
    );
}

#[tokio::test]
async fn set_reloads_and_new_sessions_see_the_value() {
    let cluster = Cluster::start().await.unwrap();
    cluster.set("statement_timeout", "50ms").await.unwrap();
    let (client, _conn) = connect(&cluster.pg_config()).await.unwrap();
    let err = client.simple_query("SELECT pg_sleep(2)").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    assert!(cluster.set("bad name; DROP", "1").await.is_err());
}
