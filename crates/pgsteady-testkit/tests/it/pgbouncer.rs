//! The PgBouncer harness: a real PgBouncer in front of a real server, its pool modes, admin
//! console, restarts and cleanup. Skipped, with the reason printed, where PgBouncer cannot run.

use std::time::Duration;

use pgsteady_testkit::{Cluster, Error, PgBouncer, PoolMode};

use crate::{connect, processes_in, scalar};

/// Starts PgBouncer or prints why not and returns `None` (the test then passes as skipped).
async fn bouncer(cluster: &Cluster, mode: PoolMode) -> Option<PgBouncer> {
    match PgBouncer::builder()
        .pool_mode(mode)
        .default_pool_size(2)
        .start(cluster)
        .await
    {
        Ok(b) => Some(b),
        Err(Error::Unsupported(why)) => {
            eprintln!("skipped: PgBouncer cannot run here: {why}");
            None
        }
        Err(e) => panic!("PgBouncer did not start: {e}"),
    }
}

#[tokio::test]
async fn transaction_pooling_moves_a_client_between_server_connections() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, PoolMode::Transaction).await else {
        return;
    };
    // Two clients each holding a transaction open force a second server connection; a
    // third client's statements then land on either of them.
    let (a, _da) = connect(&bouncer.pg_config()).await.unwrap();
    let (b, _db) = connect(&bouncer.pg_config()).await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let pa: i32 = scalar(&a, "SELECT pg_backend_pid()").await;
    let pb: i32 = scalar(&b, "SELECT pg_backend_pid()").await;
    assert_ne!(pa, pb);
    a.batch_execute("COMMIT").await.unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    let servers = bouncer.show("SERVERS").await.unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    let pool = bouncer.pool().await.unwrap();
    assert_eq!(pool["pool_mode"], "transaction", "{pool:?}");

    // A client's next transaction may run on the other server connection: seen by its
    // backend pid changing. Forced, not left to PgBouncer's reuse order: with both server
    // connections held by a and b, releasing one leaves c exactly that one.
    let c = bouncer.pg_config();
    let (c, _dc) = connect(&c).await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let pa: i32 = scalar(&a, "SELECT pg_backend_pid()").await;
    let pb: i32 = scalar(&b, "SELECT pg_backend_pid()").await;
    a.batch_execute("COMMIT").await.unwrap();
    let first: i32 = scalar(&c, "SELECT pg_backend_pid()").await;
    // a takes the only free server connection back; releasing b's leaves c that one.
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    let second: i32 = scalar(&c, "SELECT pg_backend_pid()").await;
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        (first, second),
        (pa, pb),
        "one client connection moved between the two backends"
    );
}

#[tokio::test]
async fn session_pooling_keeps_one_backend_per_client() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, PoolMode::Session).await else {
        return;
    };
    let (a, _da) = connect(&bouncer.pg_config()).await.unwrap();
    let first: i32 = scalar(&a, "SELECT pg_backend_pid()").await;
    for _ in 0..5 {
        assert_eq!(scalar::<i32>(&a, "SELECT pg_backend_pid()").await, first);
    }
    assert_eq!(bouncer.pool().await.unwrap()["pool_mode"], "session");
}

#[tokio::test]
async fn pause_holds_queries_until_resume() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, PoolMode::Transaction).await else {
        return;
    };
    let (a, _da) = connect(&bouncer.pg_config()).await.unwrap();
    assert_eq!(scalar::<i32>(&a, "SELECT 1").await, 1);
    bouncer.pause().await.unwrap();
    let held = tokio::time::timeout(Duration::from_millis(500), a.simple_query("SELECT 1")).await;
    assert!(held.is_err(), "a query ran while PgBouncer was paused");
    bouncer.resume().await.unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(5), a.simple_query("SELECT 1")).await;
    assert!(ran.is_ok_and(|r| r.is_ok()), "no answer after RESUME");
}

#[tokio::test]
async fn restart_disconnects_clients_and_listens_again_on_the_same_port() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, PoolMode::Transaction).await else {
        return;
    };
    let port = bouncer.port();
    let (a, driver) = connect(&bouncer.pg_config()).await.unwrap();
    assert_eq!(scalar::<i32>(&a, "SELECT 1").await, 1);
    let before = bouncer.pid();
    bouncer.restart().await.unwrap();
    assert_ne!(bouncer.pid(), before);
    assert_eq!(bouncer.port(), port);
    let ended = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the old client connection did not end")
        .unwrap();
    assert!(ended.result.is_err() || a.is_closed(), "{ended:?}");
    let (b, _db) = connect(&bouncer.pg_config()).await.unwrap();
    assert_eq!(scalar::<i32>(&b, "SELECT 1").await, 1);
}

#[tokio::test]
async fn server_down_longer_than_query_wait_timeout_is_a_pooler_error() {
    let cluster = Cluster::start().await.unwrap();
    let bouncer = match PgBouncer::builder()
        .query_wait_timeout(1)
        .start(&cluster)
        .await
    {
        Ok(b) => b,
        Err(Error::Unsupported(why)) => return eprintln!("skipped: {why}"),
        Err(e) => panic!("{e}"),
    };
    let (a, da) = connect(&bouncer.pg_config()).await.unwrap();
    assert_eq!(scalar::<i32>(&a, "SELECT 1").await, 1);
    cluster
        .stop(pgsteady_testkit::StopMode::Fast)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), a.simple_query("SELECT 1"))
        .await
        .expect("PgBouncer never answered")
        .unwrap_err();
    // The FATAL error and the close come together: tokio-postgres hands the error to the
    // pending query, or, when it saw the close first, to the connection's own result; now
    // and then (about one run in three here) the client sees only the close. Either way
    // the wait is bounded; when the error is seen, it has PgBouncer's shape.
    let db = match err.as_db_error() {
        Some(db) => Some(db.clone()),
        None => {
            assert!(err.is_closed(), "{err:?}");
            let ended = tokio::time::timeout(Duration::from_secs(5), da)
                .await
                .expect("the connection did not end")
                .unwrap();
            ended.result.err().and_then(|e| e.as_db_error().cloned())
        }
    };
    if let Some(db) = db {
        assert_eq!(db.code().code(), "08P01", "{db:?}");
        // PgBouncer's own errors carry no source location (a server's always do).
        assert!(db.routine().is_none() && db.file().is_none(), "{db:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn drop_kills_pgbouncer_and_removes_its_directory_even_on_panic() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, PoolMode::Transaction).await else {
        return;
    };
    let dir = bouncer.dir().to_owned();
    assert!(!processes_in(&dir).is_empty(), "no PgBouncer process found");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = bouncer;
        panic!("a failing test");
    }));
    assert!(panicked.is_err());
    for _ in 0..200 {
        if processes_in(&dir).is_empty() && !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("PgBouncer or {} survived", dir.display());
}
