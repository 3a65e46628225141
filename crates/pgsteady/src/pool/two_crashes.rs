//! The two-crash case against a real server: a transaction in doubt on one incarnation, its
//! id handed to another session by the next one and committed there, settled on the third.
//! The pool reached the incarnation in between (settling another transaction), so its
//! memory of restart checkpoints, not the third incarnation's own checkpoint, decides.

use std::time::Duration;

use pgsteady_testkit::Cluster;

use super::PooledConnection;
use super::resolve::{INCARNATION, ORIGIN_SQL, Origin, Verdict, verdict};
use super::restarts::Restarts;
use crate::metrics::ResolveRule;
use crate::{Config, Pool};

/// A server whose unflushed WAL stays unflushed until a commit: no WAL writer wake-up
/// within the test, no background writer or autovacuum writing pages (which would flush
/// WAL first), no timed checkpoint.
async fn server() -> Cluster {
    Cluster::builder()
        .setting("wal_writer_delay", "10s")
        .setting("bgwriter_lru_maxpages", "0")
        .setting("autovacuum", "off")
        .setting("checkpoint_timeout", "1h")
        .start()
        .await
        .expect("cluster starts")
}

/// A checkout on an incarnation other than `before` (the text of [`Origin::started`]; `""`
/// for any). The postmaster learns of a killed backend asynchronously: until it ends the
/// other sessions, a pooled connection to the old incarnation still answers.
async fn reconnected(pool: &Pool, before: &str) -> PooledConnection {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(conn) = pool.get().await
            && let Ok(row) = conn
                .query_one(&format!("SELECT {INCARNATION}::text"), &[])
                .await
            && row.get::<_, String>(0) != before
        {
            return conn;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new incarnation of the server within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A transaction left open after an insert: its id and origin, and its backend's pid.
async fn in_doubt(conn: &PooledConnection, key: i32) -> (i64, Origin, i32) {
    conn.batch_execute("BEGIN").await.unwrap();
    conn.execute("INSERT INTO t VALUES ($1)", &[&key])
        .await
        .unwrap();
    let row = conn.query_one(ORIGIN_SQL, &[]).await.unwrap();
    let origin = Origin::from_row(&row).unwrap();
    let xid: Option<i64> = row.get(1);
    let pid = origin.pid;
    (xid.expect("the insert assigned an id"), origin, pid)
}

async fn crash(cluster: &Cluster, pid: i32) {
    cluster.kill_backend(pid).expect("backend killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_reused_between_two_crashes_is_not_taken_for_ours() {
    let cluster = server().await;
    let config = Config::parse(&format!("{}?connect_timeout=2", cluster.url())).unwrap();
    let pool = Pool::builder(config).build().unwrap();

    // Incarnation 1: two transactions with ids, neither committed nor flushed.
    let setup = reconnected(&pool, "").await;
    setup.batch_execute("CREATE TABLE t (k int)").await.unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let (xid_a, origin_a, pid_a) = in_doubt(&a, 1).await;
    let (xid_b, origin_b, _) = in_doubt(&b, 2).await;
    assert!(xid_a < xid_b);
    crash(&cluster, pid_a).await;
    drop((a, b, setup));

    // Incarnation 2: the pool settles `a` and so sees this incarnation's restart
    // checkpoint, from which ids are handed out again.
    let restarts = Restarts::default();
    let conn = reconnected(&pool, &origin_a.started).await;
    let found = verdict(&conn, xid_a, &origin_a, &restarts).await.unwrap();
    assert_eq!(found.verdict, Verdict::Aborted, "{found:?}");
    let second = found.reached.incarnation.clone();
    let handed_out_from = found.next_xid.expect("a restart checkpoint");
    assert!(
        handed_out_from <= xid_a,
        "the precondition: the crash lost the ids' WAL (restart checkpoint next_xid \
         {handed_out_from}, ids {xid_a} and {xid_b}); something flushed it"
    );
    // Another session takes `b`'s id and commits, with a write so that the commit is
    // flushed (a transaction that wrote no WAL commits asynchronously).
    let other = cluster.admin().await.unwrap();
    other.batch_execute("CREATE TABLE o (x int)").await.unwrap();
    loop {
        let row = other
            .query_one("INSERT INTO o VALUES (0) RETURNING txid_current()", &[])
            .await
            .unwrap();
        if row.get::<_, i64>(0) >= xid_b {
            break;
        }
    }
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    crash(&cluster, pid).await;
    drop(conn);

    // Incarnation 3: `b`'s id is committed (by the other session) and below this
    // incarnation's checkpoint.
    let conn = reconnected(&pool, &second).await;
    let found = verdict(&conn, xid_b, &origin_b, &restarts).await.unwrap();
    assert_eq!(found.txid_status.as_deref(), Some("committed"));
    assert_eq!(
        (found.verdict, found.rule),
        (Verdict::Aborted, ResolveRule::ReassignedAfterRestart)
    );
    // The negative control: without the memory of incarnation 2, the third one's own
    // checkpoint would have it committed, the acknowledged write that is not there.
    let forgetful = verdict(&conn, xid_b, &origin_b, &Restarts::default())
        .await
        .unwrap();
    assert_eq!(
        (forgetful.verdict, forgetful.rule),
        (Verdict::Committed, ResolveRule::BelowRestartCheckpoint)
    );
    let rows: i64 = conn
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "neither insert survived the crash");
    drop(conn);
    pool.close(Duration::from_secs(5)).await;
}
