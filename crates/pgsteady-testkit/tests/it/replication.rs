//! Streaming replication: a standby that replays the primary's writes, a
//! synchronous one that holds commits, promotion onto a new timeline, an old primary rewound
//! into a standby of the new one, a fenced primary, and bounded waits on WAL positions.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Cluster, Rewind, StopMode};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::{connect, processes_in, scalar};

async fn app(cluster: &Cluster) -> Client {
    connect(&cluster.pg_config()).await.unwrap().0
}

async fn count(client: &Client, sql: &str) -> i64 {
    scalar::<i64>(client, sql).await
}

fn assert_gone(dir: &Path) {
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
async fn a_standby_is_in_recovery_replays_rows_and_refuses_writes() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    assert_ne!(standby.port(), primary.port());
    assert_ne!(standby.dir(), primary.dir());
    assert!(!primary.is_in_recovery().await.unwrap());
    assert!(standby.is_in_recovery().await.unwrap());
    assert_eq!(
        standby.system_identifier().await.unwrap(),
        primary.system_identifier().await.unwrap()
    );
    assert_eq!(primary.timeline_id().await.unwrap(), 1);
    assert_eq!(standby.timeline_id().await.unwrap(), 1);

    let writer = app(&primary).await;
    writer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 500)")
        .await
        .unwrap();
    standby
        .catch_up(&primary, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(standby.lag_bytes(&primary).await.unwrap(), 0);
    // The login user, its password and its database came with the base backup.
    let reader = app(&standby).await;
    assert_eq!(count(&reader, "SELECT count(*) FROM t").await, 500);
    assert_eq!(
        scalar::<i32>(&reader, "SELECT inet_server_port()").await,
        i32::from(standby.port())
    );
    let err = reader
        .batch_execute("INSERT INTO t VALUES (0)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));

    // The standby cleans up like any cluster, and the primary does not notice.
    let dir = standby.dir().to_owned();
    drop(standby);
    assert_gone(&dir);
    writer
        .batch_execute("INSERT INTO t VALUES (501)")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_synchronous_standby_holds_commits_an_asynchronous_one_does_not() {
    let primary = Cluster::start().await.unwrap();
    let sync = primary
        .standby()
        .synchronous()
        .application_name("sync_one")
        .start()
        .await
        .unwrap();
    let admin = primary.admin().await.unwrap();
    let state: String = admin
        .query_one(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'sync_one'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "sync");
    let writer = app(&primary).await;
    writer
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();

    // With the standby hung, a commit waits for it; once it resumes, the commit returns.
    sync.pause().unwrap();
    let commit = tokio::spawn(async move {
        writer
            .batch_execute("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        writer
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!commit.is_finished(), "commit returned without the standby");
    sync.resume().unwrap();
    let writer = tokio::time::timeout(Duration::from_secs(10), commit)
        .await
        .expect("commit returns once the standby is back")
        .unwrap();

    // Negative control: the same with an asynchronous standby does not wait.
    let primary2 = Cluster::start().await.unwrap();
    let asynchronous = primary2.standby().start().await.unwrap();
    let writer2 = app(&primary2).await;
    writer2
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    asynchronous.pause().unwrap();
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        writer2.batch_execute("INSERT INTO t VALUES (1)"),
    )
    .await
    .expect("an asynchronous standby does not hold commits")
    .unwrap();
    assert!(started.elapsed() < Duration::from_millis(700));
    asynchronous.resume().unwrap();
    drop(writer);
}

#[tokio::test]
async fn promotion_moves_to_a_new_timeline_and_accepts_writes() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    let writer = app(&primary).await;
    writer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    standby
        .catch_up(&primary, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(standby.promoted_at(), None);
    primary.stop(StopMode::Immediate).await.unwrap();

    let before = SystemTime::now();
    standby.promote().await.unwrap();
    let returned = SystemTime::now();
    let promoted_at = standby.promoted_at().expect("promotion logged");
    // The log has millisecond precision.
    assert!(
        promoted_at + Duration::from_millis(1) >= before,
        "{promoted_at:?}"
    );
    assert!(promoted_at <= returned, "{promoted_at:?} {returned:?}");
    assert!(!standby.is_in_recovery().await.unwrap());
    assert_eq!(standby.timeline_id().await.unwrap(), 2);
    let new_writer = app(&standby).await;
    new_writer
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    assert_eq!(count(&new_writer, "SELECT count(*) FROM t").await, 2);
}

/// Split brain on purpose: the standby is promoted while the primary keeps taking writes, so
/// the two histories diverge; `follow` rewinds the old primary, which then streams from the
/// new one: it has the new primary's rows and not its own diverged one.
#[tokio::test]
async fn a_rewound_old_primary_streams_from_the_new_one() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    let old = app(&primary).await;
    old.batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('both')")
        .await
        .unwrap();
    standby
        .catch_up(&primary, Duration::from_secs(10))
        .await
        .unwrap();
    standby.promote().await.unwrap();
    old.batch_execute("INSERT INTO t VALUES ('only_old')")
        .await
        .unwrap();
    let new = app(&standby).await;
    new.batch_execute("INSERT INTO t VALUES ('only_new')")
        .await
        .unwrap();
    drop(old);

    assert_eq!(primary.follow(&standby).await.unwrap(), Rewind::Rewound);
    assert!(primary.is_in_recovery().await.unwrap());
    assert_eq!(primary.timeline_id().await.unwrap(), 2);
    assert_eq!(
        primary.system_identifier().await.unwrap(),
        standby.system_identifier().await.unwrap()
    );
    new.batch_execute("INSERT INTO t VALUES ('after')")
        .await
        .unwrap();
    primary
        .catch_up(&standby, Duration::from_secs(10))
        .await
        .unwrap();
    let reader = app(&primary).await;
    let rows: Vec<String> = reader
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["after", "both", "only_new"]);
    let err = reader
        .batch_execute("INSERT INTO t VALUES ('x')")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
}

/// A primary stopped cleanly before the promotion has nothing to roll back: it follows the new
/// primary without a rewind.
#[tokio::test]
async fn a_cleanly_stopped_old_primary_follows_without_a_rewind() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    app(&primary)
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    primary.stop(StopMode::Fast).await.unwrap();
    standby.promote().await.unwrap();
    assert_eq!(primary.follow(&standby).await.unwrap(), Rewind::NotNeeded);
    assert!(primary.is_in_recovery().await.unwrap());
    app(&standby)
        .await
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    primary
        .catch_up(&standby, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        count(&app(&primary).await, "SELECT count(*) FROM t").await,
        2
    );
}

#[tokio::test]
async fn fence_turns_open_sessions_read_only_and_unfence_reverts() {
    let primary = Cluster::start().await.unwrap();
    let session = app(&primary).await;
    session
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    primary.fence().await.unwrap();
    // The open session turns read-only at its next statement; the server is still a primary.
    let err = session
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    assert!(!primary.is_in_recovery().await.unwrap());
    let fresh = app(&primary).await;
    assert_eq!(
        scalar::<String>(&fresh, "SHOW default_transaction_read_only").await,
        "on"
    );
    primary.unfence().await.unwrap();
    session
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert_eq!(count(&session, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn wait_replayed_is_bounded_while_replay_is_paused() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    let standby_admin = standby.admin().await.unwrap();
    standby_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    app(&primary)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
        .await
        .unwrap();
    let lsn = primary.current_wal_lsn().await.unwrap();
    assert!(standby.lag_bytes(&primary).await.unwrap() > 0);

    let started = Instant::now();
    let err = standby
        .wait_replayed(lsn, Duration::from_millis(300))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(err.to_string().contains(&lsn.to_string()), "{err}");

    standby_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    standby
        .wait_replayed(lsn, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(standby.replay_lsn().await.unwrap().unwrap() >= lsn);
    assert_eq!(
        count(&app(&standby).await, "SELECT count(*) FROM t").await,
        1000
    );
}

#[tokio::test]
async fn a_panicking_test_cleans_up_its_primary_and_standby() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let primary = Cluster::start().await.unwrap();
        let standby = primary.standby().synchronous().start().await.unwrap();
        tx.send((primary.dir().to_owned(), standby.dir().to_owned()))
            .unwrap();
        panic!("the test fails while both servers stream");
    });
    let (primary_dir, standby_dir) = rx.await.unwrap();
    assert!(task.await.unwrap_err().is_panic());
    assert_gone(&standby_dir);
    assert_gone(&primary_dir);
}

/// The old primary crashed (immediate stop) rather than stopping cleanly: `pg_rewind` first
/// finishes its crash recovery (single-user mode), then rewinds it.
#[tokio::test]
async fn a_crashed_old_primary_is_rewound_and_follows() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    let old = app(&primary).await;
    old.batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('both')")
        .await
        .unwrap();
    standby
        .catch_up(&primary, Duration::from_secs(10))
        .await
        .unwrap();
    standby.promote().await.unwrap();
    old.batch_execute("INSERT INTO t VALUES ('only_old')")
        .await
        .unwrap();
    primary.stop(StopMode::Immediate).await.unwrap();
    assert_eq!(primary.follow(&standby).await.unwrap(), Rewind::Rewound);
    app(&standby)
        .await
        .batch_execute("INSERT INTO t VALUES ('after')")
        .await
        .unwrap();
    primary
        .catch_up(&standby, Duration::from_secs(10))
        .await
        .unwrap();
    let rows: Vec<String> = app(&primary)
        .await
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["after", "both"]);
}
