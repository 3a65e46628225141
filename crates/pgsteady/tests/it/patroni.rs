//! "No host matches for a while", against a real Patroni cluster: the
//! leader's postmaster is killed (Patroni alive, `primary_start_timeout` 0, so Patroni
//! promotes the replica). Until it does, the multi-host string with
//! `target_session_attrs=read-write` matches no host: one refuses connections, the other is
//! a standby. `Pool::transaction` waits that out within its deadline and surfaces no error;
//! a pool whose deadline is shorter than the failover gets a typed timeout, on time.
//!
//! `#[ignore]`d (it boots a Patroni cluster); `.ci/run` runs it in its Patroni step:
//! `cargo test -p pgsteady --test it patroni:: -- --ignored`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pgsteady::{Config, Pool, Reason, RetryPolicy, TransactionError};
use pgsteady_testkit::{Error as KitError, PatroniCluster, PatroniTimings, Role};

const WORKERS: usize = 4;
const PACE: Duration = Duration::from_millis(20);
/// The run / transaction deadline (and acquire timeout) of the pool that must see no error:
/// more than this failover takes (3 s here: Patroni notices on its next loop, 2 s).
const DEADLINE: Duration = Duration::from_secs(20);

/// One write as its caller saw it.
#[derive(Debug)]
struct Outcome {
    key: String,
    took: Duration,
    ended: SystemTime,
    result: Result<(), String>,
}

fn pool(url: &str, deadline: Duration) -> Pool {
    let mut config = Config::parse(url).unwrap();
    config.connect_timeout = Some(Duration::from_millis(500));
    let mut retry = RetryPolicy::default();
    retry.deadline = deadline;
    Pool::builder(config)
        .max_size(WORKERS)
        .acquire_timeout(deadline)
        .retry(retry)
        .build()
        .unwrap()
}

async fn insert(pool: &Pool, key: String) -> Result<(), TransactionError> {
    pool.transaction(async move |tx| {
        tx.execute("INSERT INTO writes (key) VALUES ($1)", &[&key])
            .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a Patroni cluster: run in .ci/run's Patroni step"]
async fn no_host_matches_while_patroni_fails_over_and_transaction_surfaces_no_error() {
    let timings = PatroniTimings {
        primary_start_timeout: 0,
        ..PatroniTimings::default()
    };
    // Synchronous replication, as the check of every acknowledged write below needs: with
    // Patroni's default asynchronous replication a write the leader acknowledged just before
    // its kill may not have reached the replica, a loss of the cluster's, not the client's.
    // Not strict: once the old leader is gone the new one writes alone.
    let cluster = match PatroniCluster::builder()
        .timings(timings)
        .synchronous_mode(true)
        .start()
        .await
    {
        Err(KitError::Unsupported(why)) => {
            eprintln!("skipped: cannot run a Patroni cluster here: {why}");
            return;
        }
        started => started.unwrap(),
    };
    let before = cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
    // Streaming is not enough: in synchronous mode Patroni promotes only the replica it
    // marked synchronous (else it restarts the old leader in place).
    let marked = Instant::now();
    while !cluster.members().await.is_ok_and(|members| {
        members
            .iter()
            .any(|m| m.name == before.replica && m.role == Role::SyncStandby)
    }) {
        assert!(
            marked.elapsed() < Duration::from_secs(60),
            "{} was not marked synchronous within 60 s",
            before.replica
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (setup, conn) = cluster
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    setup
        .batch_execute("CREATE TABLE writes (id bigserial PRIMARY KEY, key text NOT NULL)")
        .await
        .unwrap();

    let pool = pool(&cluster.url(), DEADLINE);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (pool, stop) = (pool.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("{w}-{n}");
                let started = Instant::now();
                let result = insert(&pool, key.clone()).await.map_err(|e| e.to_string());
                seen.push(Outcome {
                    key,
                    took: started.elapsed(),
                    ended: SystemTime::now(),
                    result,
                });
                tokio::time::sleep(PACE).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = SystemTime::now();
    cluster.kill_postmaster(&before.leader).await.unwrap();
    let change = cluster
        .wait_leader_change(before.timeline, Duration::from_secs(30))
        .await
        .unwrap();
    let promoted = change.at.expect("Patroni recorded the promotion's time");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }

    let errors: Vec<&Outcome> = seen.iter().filter(|o| o.result.is_err()).collect();
    let longest = seen.iter().map(|o| o.took).max().unwrap();
    let first_after = seen
        .iter()
        .filter(|o| o.result.is_ok() && o.ended >= promoted)
        .map(|o| o.ended.duration_since(promoted).unwrap())
        .min();
    eprintln!(
        "patroni postmaster kill: {:?} -> {:?} promoted {:?} after the kill; {} writes, {} errors, \
         longest call {longest:?}, first write {first_after:?} after the promotion",
        before.leader,
        change.new_leader,
        promoted.duration_since(killed_at).unwrap_or_default(),
        seen.len(),
        errors.len()
    );
    assert_ne!(change.new_leader.as_deref(), Some(before.leader.as_str()));
    assert!(errors.is_empty(), "errors through transaction: {errors:#?}");
    // Not vacuous: calls did wait out a stretch with no read-write host.
    assert!(
        longest > Duration::from_millis(1000),
        "no call waited: longest {longest:?}"
    );
    assert!(longest < DEADLINE, "{longest:?}");
    let first_after = first_after.expect("writes resumed on the new leader");
    assert!(
        first_after < Duration::from_secs(1),
        "first write {first_after:?} after Patroni's promotion"
    );
    // Every acknowledged write is on the new leader, once.
    let (check, conn) = cluster
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows: HashMap<String, i64> = check
        .query("SELECT key, count(*) FROM writes GROUP BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for o in &seen {
        assert_eq!(rows.get(&o.key), Some(&1), "{o:?}");
    }
    pool.close(Duration::from_secs(1)).await;

    // Negative control: a failover longer than the deadline is a typed, bounded error. Kill
    // the new leader's postmaster once the old one streams from it again; a pool with a
    // 500 ms deadline finds no read-write host in that time.
    let now = cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
    let short = self::pool(&cluster.url(), Duration::from_millis(500));
    insert(&short, "short-before".to_owned()).await.unwrap();
    cluster.kill_postmaster(&now.leader).await.unwrap();
    let started = Instant::now();
    let result = insert(&short, "short-during".to_owned()).await;
    let took = started.elapsed();
    let err = match result {
        Err(TransactionError::NotCommitted(e)) => e,
        other => panic!("expected a typed failure, got {other:?}"),
    };
    eprintln!(
        "past a 500 ms deadline: {err} (reason {:?}) after {took:?}",
        err.reason()
    );
    assert!(err.is_timeout(), "{err}");
    // With acquire_timeout = deadline the pool's wait for a connection runs out first:
    // reason TimedOut (the message names each host's state); docs/failover.md's
    // WrongSessionType is what the run deadline gives when a connection attempt decided.
    assert!(
        matches!(
            err.reason(),
            Some(Reason::TimedOut | Reason::WrongSessionType)
        ),
        "{err}"
    );
    assert!(took < Duration::from_millis(1500), "bounded: {took:?}");
    short.close(Duration::from_secs(1)).await;
}
