//! With no setting, the migrator finds out whether a transaction pooler is in front before it
//! takes a lock (`Migrator::behind_pooler`). Skipped, with the reason printed, where PgBouncer
//! cannot run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgsteady::{Backoff, Config, Connector};
use pgsteady_migrate::{Event, HistoryTable, Migration, Migrator};
use pgsteady_testkit::{Cluster, Error as KitError, PgBouncer, PoolMode};

async fn bouncer(cluster: &Cluster, mode: PoolMode) -> Option<PgBouncer> {
    match PgBouncer::builder()
        .pool_mode(mode)
        .default_pool_size(3)
        .start(cluster)
        .await
    {
        Ok(b) => Some(b),
        Err(KitError::Unsupported(why)) => {
            eprintln!("skipped: PgBouncer cannot run here: {why}");
            None
        }
        Err(e) => panic!("PgBouncer did not start: {e}"),
    }
}

fn connector(url: &str) -> Connector {
    Connector::new(Config::parse(url).unwrap())
        .unwrap()
        .with_backoff(Backoff::polling().with_max_elapsed(Duration::from_secs(30)))
        .with_attempt_timeout(Duration::from_secs(5))
}

/// Runs one migration through `url` with no setting, history table `h{n}`; returns what the
/// probe said.
async fn probe_says(url: &str, n: u32) -> Vec<bool> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let file = Migration::new("0001_t.sql", format!("CREATE TABLE t{n} (id int)")).unwrap();
    let migrator = Migrator::new([file])
        .unwrap()
        .with_table(HistoryTable::parse(&format!("h{n}")).unwrap())
        .on_event(move |e| {
            if let Event::SessionMode { transaction_pooler } = e {
                record.lock().unwrap().push(*transaction_pooler);
            }
        });
    let report = migrator.run(&connector(url)).await.expect("the run");
    assert_eq!(report.applied.len(), 1, "{report:?}");
    seen.lock().unwrap().clone()
}

/// Through PgBouncer in transaction mode the probe says so; directly and through session
/// pooling (the negative controls: a probe that always said "pooler" would pass the first
/// assertion alone) it does not.
#[tokio::test]
async fn the_probe_tells_a_transaction_pooler_from_a_session() {
    let cluster = Cluster::start().await.unwrap();
    let Some(tx) = bouncer(&cluster, PoolMode::Transaction).await else {
        return;
    };
    assert_eq!(
        probe_says(&tx.url(), 1).await,
        [true],
        "transaction pooling"
    );
    drop(tx);
    assert_eq!(probe_says(&cluster.url(), 2).await, [false], "direct");
    let Some(session) = bouncer(&cluster, PoolMode::Session).await else {
        return;
    };
    assert_eq!(
        probe_says(&session.url(), 3).await,
        [false],
        "session pooling"
    );
}

/// `statement_cache=off` already says a transaction pooler is in front: no probe.
#[tokio::test]
async fn no_probe_when_the_setting_says_so() {
    let cluster = Cluster::start().await.unwrap();
    let Some(tx) = bouncer(&cluster, PoolMode::Transaction).await else {
        return;
    };
    let url = format!("{}?statement_cache=off", tx.url());
    assert_eq!(probe_says(&url, 1).await, Vec::<bool>::new());
}
