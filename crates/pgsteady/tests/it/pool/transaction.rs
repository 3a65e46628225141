//! Writes through `Pool::transaction`: replayed only when they certainly did not commit, and
//! a COMMIT lost in flight resolved with txid_status() instead of guessed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgsteady::{
    CommitResolution, PoolEvent, ResolveRule, ResolveVerdict, RetryPolicy, TransactionError,
};
use pgsteady_testkit::{Cluster, FaultProxy, ProxyMode, StopMode};

use super::pool;

const SETUP: &str = "CREATE TABLE writes (id bigserial PRIMARY KEY, key text NOT NULL)";

async fn create_table(cluster: &Cluster) {
    let (client, conn) = cluster
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(SETUP).await.unwrap();
}

/// How many rows each key has (no unique constraint, so duplicates would show).
async fn rows_per_key(cluster: &Cluster) -> HashMap<String, i64> {
    let (client, conn) = cluster
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query("SELECT key, count(*) FROM writes GROUP BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[derive(Debug, Default)]
struct Outcomes {
    acknowledged: Vec<String>,
    not_committed: Vec<String>,
    unknown: Vec<(String, i64)>,
}

#[tokio::test]
async fn acknowledged_writes_survive_restarts_and_crashes_exactly_once() {
    let cluster = Arc::new(Cluster::start().await.unwrap());
    create_table(&cluster).await;
    // The evidence a failure prints for the key it names: the transaction ids each attempt
    // had and every commit resolution the pool's observer was told of.
    let resolutions = Arc::new(Mutex::new(Vec::new()));
    let sink = resolutions.clone();
    let pool = pool(&cluster, None, |b| {
        b.max_size(8).observer(move |e| {
            if let PoolEvent::CommitResolved(r) = e {
                sink.lock().unwrap().push((**r).clone());
            }
        })
    });
    let xids: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();

    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (pool, acked, xids) = (pool.clone(), acked.clone(), xids.clone());
            tokio::spawn(async move {
                let mut out = Outcomes::default();
                for i in 0..u32::MAX {
                    let key = format!("w{w}-{i}");
                    let row_key = key.clone();
                    let xids = xids.clone();
                    let result = pool
                        .transaction(async move |tx| {
                            tx.execute("INSERT INTO writes (key) VALUES ($1)", &[&row_key])
                                .await?;
                            let xid: i64 = tx.query_one("SELECT txid_current()", &[]).await?.get(0);
                            xids.lock().unwrap().push((row_key.clone(), xid));
                            Ok(())
                        })
                        .await;
                    match result {
                        Ok(()) => {
                            out.acknowledged.push(key);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TransactionError::NotCommitted(_)) => out.not_committed.push(key),
                        Err(TransactionError::OutcomeUnknown(u)) => out.unknown.push((key, u.xid)),
                    }
                    if pool.is_closed() {
                        break;
                    }
                }
                out
            })
        })
        .collect();

    for fault in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Slow writers on a loaded machine: each phase lasts until enough writes were
        // acknowledged (bounded), so "the writers kept writing" below means a stalled pool.
        let target = (fault + 1) * 30;
        let cap = std::time::Instant::now() + Duration::from_secs(30);
        while acked.load(Ordering::Relaxed) < target && std::time::Instant::now() < cap {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match fault % 3 {
            0 => cluster.restart(StopMode::Fast).await.unwrap(),
            1 => {
                cluster.kill_postmaster().await.unwrap();
                cluster.start_server().await.unwrap();
            }
            _ => cluster.restart(StopMode::Immediate).await.unwrap(),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cap = std::time::Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Relaxed) < 150 && std::time::Instant::now() < cap {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close(Duration::from_secs(10)).await;
    let mut all = Outcomes::default();
    for writer in writers {
        let out = writer.await.unwrap();
        all.acknowledged.extend(out.acknowledged);
        all.not_committed.extend(out.not_committed);
        all.unknown.extend(out.unknown);
    }

    let rows = rows_per_key(&cluster).await;
    eprintln!(
        "acknowledged {}, not committed {}, outcome unknown {}, rows {}",
        all.acknowledged.len(),
        all.not_committed.len(),
        all.unknown.len(),
        rows.values().sum::<i64>()
    );
    assert!(all.acknowledged.len() > 100, "the writers kept writing");
    let evidence = |key: &str| {
        let xids = xids.lock().unwrap();
        let mine: Vec<i64> = xids
            .iter()
            .filter(|(k, _)| k == key)
            .map(|&(_, x)| x)
            .collect();
        let resolutions = resolutions.lock().unwrap();
        let about: Vec<&CommitResolution> = resolutions
            .iter()
            .filter(|r| mine.contains(&r.xid))
            .collect();
        format!(
            "attempts' transaction ids {mine:?}; commit resolutions of those ids \
             ({} in all): {about:#?}",
            resolutions.len()
        )
    };
    for key in &all.acknowledged {
        assert_eq!(
            rows.get(key),
            Some(&1),
            "acknowledged {key} must be present exactly once; {}",
            evidence(key)
        );
    }
    for key in &all.not_committed {
        assert_eq!(
            rows.get(key),
            None,
            "{key} was reported not committed but is present; {}",
            evidence(key)
        );
    }
    for (key, count) in &rows {
        assert_eq!(*count, 1, "{key} is duplicated");
    }
    // Every row is accounted for: acknowledged or reported unknown (never silently there).
    let reported: std::collections::HashSet<&String> = all
        .acknowledged
        .iter()
        .chain(all.unknown.iter().map(|(k, _)| k))
        .collect();
    for key in rows.keys() {
        assert!(
            reported.contains(key),
            "{key} is in the table but was never acknowledged"
        );
    }
}

/// A transaction whose COMMIT meets the proxy switching to `mode`; the network heals after
/// `heal_after`. Also returns the commit resolutions the pool's observer was told of, after
/// checking they agree with its counters.
async fn commit_through(
    mode: ProxyMode,
    heal_after: Duration,
    deadline: Duration,
) -> (
    Result<(), TransactionError>,
    u32,
    HashMap<String, i64>,
    Vec<CommitResolution>,
) {
    let cluster = Cluster::start().await.unwrap();
    create_table(&cluster).await;
    let proxy = Arc::new(FaultProxy::start(cluster.addr()).await.unwrap());
    let mut retry = RetryPolicy::default();
    retry.commit_timeout = Duration::from_millis(300);
    retry.deadline = deadline;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let pool = pool(&cluster, Some(proxy.port()), |b| {
        b.max_size(2)
            .retry(retry)
            .acquire_timeout(Duration::from_secs(1))
            .observer(move |e| {
                if let PoolEvent::CommitResolved(r) = e {
                    sink.lock().unwrap().push((**r).clone());
                }
            })
    });
    proxy.set_mode_on_query("COMMIT", mode);
    let healer = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(heal_after).await;
            proxy.set_mode(ProxyMode::Pass);
        })
    };
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let result = pool
        .transaction(async move |tx| {
            counter.fetch_add(1, Ordering::SeqCst);
            tx.execute("INSERT INTO writes (key) VALUES ('k')", &[])
                .await?;
            Ok(())
        })
        .await;
    healer.abort();
    let rows = rows_per_key(&cluster).await;
    let resolutions = events.lock().unwrap().clone();
    let counted = pool.metrics().commit_resolutions;
    assert_eq!(counted.total(), resolutions.len() as u64);
    for r in &resolutions {
        assert!(counted.get(r.verdict, r.rule) > 0, "{r:?} not counted");
        assert!(r.xid > 0 && !r.origin.incarnation.is_empty(), "{r:?}");
    }
    (result, runs.load(Ordering::SeqCst), rows, resolutions)
}

/// The one resolution a test expects, with its verdict and rule.
fn only(resolutions: &[CommitResolution]) -> (ResolveVerdict, ResolveRule) {
    assert_eq!(resolutions.len(), 1, "{resolutions:?}");
    (resolutions[0].verdict, resolutions[0].rule)
}

#[tokio::test]
async fn a_commit_whose_reply_is_lost_is_resolved_as_committed_and_not_replayed() {
    // The server gets COMMIT and commits; the client never hears back.
    let (result, runs, rows, resolutions) = commit_through(
        ProxyMode::DropReplies,
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .await;
    result.expect("txid_status says committed");
    assert_eq!(
        only(&resolutions),
        (ResolveVerdict::Committed, ResolveRule::SameServer)
    );
    let reached = resolutions[0].reached.as_ref().expect("a server answered");
    assert_eq!(reached.incarnation, resolutions[0].origin.incarnation);
    assert_eq!(resolutions[0].txid_status.as_deref(), Some("committed"));
    assert_eq!(
        runs, 1,
        "a transaction that may have committed is never replayed"
    );
    assert_eq!(rows.get("k"), Some(&1));
}

#[tokio::test]
async fn a_commit_that_never_arrived_is_resolved_as_aborted_and_replayed_once() {
    // COMMIT is swallowed: the old backend sits idle in transaction, txid_status says
    // "in progress" until the pool terminates that backend; then "aborted", and a replay.
    let (result, runs, rows, resolutions) = commit_through(
        ProxyMode::Blackhole,
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .await;
    result.expect("replayed after the outcome was resolved as aborted");
    // "in progress" is not a resolution: only the final "aborted" is told.
    assert_eq!(
        only(&resolutions),
        (ResolveVerdict::Aborted, ResolveRule::SameServer)
    );
    assert_eq!(runs, 2);
    assert_eq!(rows.get("k"), Some(&1), "exactly once");
}

#[tokio::test]
async fn an_unresolvable_commit_is_reported_as_outcome_unknown() {
    // The network stays broken past the deadline: nothing can be learned.
    let (result, runs, rows, resolutions) = commit_through(
        ProxyMode::DropReplies,
        Duration::from_secs(30),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        only(&resolutions),
        (ResolveVerdict::Unknown, ResolveRule::NoAnswer)
    );
    assert!(resolutions[0].reached.is_none() && resolutions[0].why.is_some());
    match result {
        Err(TransactionError::OutcomeUnknown(u)) => {
            assert!(u.xid > 0);
            assert_eq!(runs, 1);
            // It did commit (the server got the COMMIT): "unknown" was the honest answer.
            assert_eq!(rows.get("k"), Some(&1));
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
}

#[tokio::test]
async fn serialization_failures_are_replayed() {
    let cluster = Cluster::start().await.unwrap();
    create_table(&cluster).await;
    let pool = pool(&cluster, None, |b| b.max_size(4));
    // Two serializable transactions that each read what the other writes: one of them gets
    // 40001 and is replayed.
    let tasks: Vec<_> = (0..2)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let runs = Arc::new(AtomicU32::new(0));
                let counter = runs.clone();
                let result = pool
                    .transaction(async move |tx| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                            .await?;
                        let n: i64 = tx
                            .query_one("SELECT count(*) FROM writes", &[])
                            .await?
                            .get(0);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        tx.execute(
                            "INSERT INTO writes (key) VALUES ($1)",
                            &[&format!("s{i}-{n}")],
                        )
                        .await?;
                        Ok(())
                    })
                    .await;
                (
                    result.map_err(|e| e.to_string()),
                    runs.load(Ordering::SeqCst),
                )
            })
        })
        .collect();
    let mut total_runs = 0;
    for task in tasks {
        let (result, runs) = task.await.unwrap();
        result.expect("both commit in the end");
        total_runs += runs;
    }
    assert!(
        total_runs >= 3,
        "one of them was replayed: {total_runs} runs"
    );
    assert_eq!(rows_per_key(&cluster).await.len(), 2);
    assert!(pool.metrics().retries >= 1);
}

/// Found by the fault soak (`single`, fault `kill-backend`): a backend killed by a signal
/// makes the postmaster end every session and run crash recovery without restarting
/// itself, so `pg_postmaster_start_time()` stays the same while WAL that was not flushed is
/// gone and transaction ids are handed out again. An in-doubt COMMIT whose id another
/// session then used and committed was settled "committed" by the same-server rule, and the
/// acknowledged write was not in the table. Here: the COMMIT is swallowed, the WAL writer is
/// too slow to flush the transaction's insert, a backend is killed, the id is reused and
/// committed by someone else, then the network heals.
#[tokio::test]
async fn an_id_handed_out_again_after_a_crash_cycle_is_not_taken_for_our_commit() {
    let cluster = Cluster::builder()
        .setting("wal_writer_delay", "10s")
        .start()
        .await
        .unwrap();
    create_table(&cluster).await;
    let proxy = Arc::new(FaultProxy::start(cluster.addr()).await.unwrap());
    let mut retry = RetryPolicy::default();
    retry.commit_timeout = Duration::from_millis(300);
    retry.deadline = Duration::from_secs(30);
    let pool = pool(&cluster, Some(proxy.port()), |b| {
        b.max_size(1)
            .retry(retry)
            .acquire_timeout(Duration::from_secs(30))
    });
    // A first transaction, so the pool's connection exists before the fault is armed.
    pool.transaction(async move |tx| {
        tx.execute("INSERT INTO writes (key) VALUES ('warm')", &[])
            .await?;
        Ok(())
    })
    .await
    .unwrap();
    proxy.set_mode_on_query("COMMIT", ProxyMode::Blackhole);
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.transaction(async move |tx| {
                tx.execute("INSERT INTO writes (key) VALUES ('ours')", &[])
                    .await?;
                Ok(())
            })
            .await
        })
    };
    let armed = std::time::Instant::now();
    while proxy.mode() != ProxyMode::Blackhole {
        assert!(armed.elapsed() < Duration::from_secs(20), "no COMMIT came");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pids = cluster
        .backend_pids(pgsteady_testkit::BackendFilter::ClientBackends)
        .await
        .unwrap();
    cluster.kill_backend(pids[0]).unwrap();
    cluster.wait_ready().await.unwrap();
    // Others take the ids after recovery, ours among them if it was lost, and commit.
    // wait_ready may see the server up a moment before it accepts sessions again (57P03).
    let started = std::time::Instant::now();
    let other = loop {
        match cluster.pg_config().connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW) => {
                assert!(started.elapsed() < Duration::from_secs(60), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    for _ in 0..20 {
        other
            .batch_execute("INSERT INTO writes (key) VALUES ('other')")
            .await
            .unwrap();
    }
    proxy.set_mode(ProxyMode::Pass);
    let result = writer.await.unwrap();
    let rows = rows_per_key(&cluster).await;
    match result {
        Ok(()) => assert_eq!(
            rows.get("ours"),
            Some(&1),
            "acknowledged, so present exactly once: {rows:?}"
        ),
        Err(TransactionError::OutcomeUnknown(_)) => {}
        Err(e) => panic!("{e}"),
    }
}
