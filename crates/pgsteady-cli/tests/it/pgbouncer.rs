//! `pgsteady migrate` (and `doctor`) through a real PgBouncer in transaction pooling mode.
//! Skipped, with the reason printed, where PgBouncer cannot run.

use std::path::Path;
use std::time::Duration;

use pgsteady_testkit::{Cluster, Error as KitError, PgBouncer, PoolMode};
use tokio_postgres::{Client, NoTls};

use crate::TestCommand;

async fn bouncer(cluster: &Cluster) -> Option<PgBouncer> {
    match PgBouncer::builder()
        .pool_mode(PoolMode::Transaction)
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

async fn direct(cluster: &Cluster) -> Client {
    let mut config = cluster.pg_config();
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).unwrap();
}

/// Six files; each records its version in `effects` (a double apply shows as a duplicate)
/// and sleeps a little, so two runners overlap.
fn numbered() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for v in 1..=6 {
        let mut sql = String::new();
        if v == 1 {
            sql.push_str("CREATE TABLE effects (version int NOT NULL);\n");
        }
        sql.push_str(&format!(
            "CREATE TABLE t{v} (id int);\nINSERT INTO effects VALUES ({v});\nSELECT pg_sleep(0.1);\n"
        ));
        write(dir.path(), &format!("{v:04}_step_{v}.sql"), &sql);
    }
    dir
}

fn migrate(url: &str, dir: &Path) -> TestCommand {
    TestCommand::new([
        "migrate".to_owned(),
        url.to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
        "--json".to_owned(),
    ])
}

async fn advisory_locks(cluster: &Cluster) -> i64 {
    cluster
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Done when: two `pgsteady migrate` runs started together through PgBouncer in transaction
/// mode: each file applied exactly once, and afterwards no advisory lock held on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_through_transaction_pooling_apply_each_file_once_and_leave_no_lock() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster).await else {
        return;
    };
    let dir = numbered();
    let url = format!("{}?statement_cache=off", bouncer.url());
    let running: Vec<_> = (0..2).map(|_| migrate(&url, dir.path()).spawn()).collect();
    let mut applied = Vec::new();
    for r in running {
        let done = r.finish().await;
        done.assert_exit_code(0)
            .assert_no_secret(cluster.password());
        let end = done.events().into_iter().last().expect("a final event");
        assert_eq!(end["event"], "done", "{end}");
        applied.extend(
            end["applied"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["version"].as_i64().unwrap()),
        );
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6],
        "each applied by exactly one runner"
    );
    let c = direct(&cluster).await;
    let row = c
        .query_one("SELECT count(*), count(DISTINCT version) FROM effects", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (6, 6));
    assert_eq!(
        advisory_locks(&cluster).await,
        0,
        "an advisory lock was left behind"
    );
}

/// The same with no setting in the URL: migrate finds the transaction pooler itself before
/// it takes a lock (two autocommit statements that must see one backend, see
/// docs/migrate.md) and uses transaction-level locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_through_transaction_pooling_with_no_setting_apply_each_file_once() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster).await else {
        return;
    };
    let dir = numbered();
    let url = bouncer.url();
    assert!(!url.contains("statement_cache"), "{url}");
    let running: Vec<_> = (0..2).map(|_| migrate(&url, dir.path()).spawn()).collect();
    let mut applied = Vec::new();
    for r in running {
        let done = r.finish().await;
        done.assert_exit_code(0)
            .assert_no_secret(cluster.password());
        let events = done.events();
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "session_mode" && e["transaction_pooler"] == true),
            "the pooler was not detected: {events:?}"
        );
        let end = events.into_iter().last().expect("a final event");
        assert_eq!(end["event"], "done", "{end}");
        applied.extend(
            end["applied"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["version"].as_i64().unwrap()),
        );
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6],
        "each applied by exactly one runner"
    );
    let c = direct(&cluster).await;
    let row = c
        .query_one("SELECT count(*), count(DISTINCT version) FROM effects", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (6, 6));
    assert_eq!(
        advisory_locks(&cluster).await,
        0,
        "an advisory lock was left behind"
    );
}

/// A pending `-- pgsteady:no-transaction` file cannot be covered by a transaction-level
/// lock: refused with exit 2 before anything is applied, the message naming the file and
/// saying what to do.
#[tokio::test]
async fn a_no_transaction_file_through_transaction_pooling_is_refused_with_exit_2() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0001_table.sql", "CREATE TABLE t (id int);\n");
    write(
        dir.path(),
        "0002_index.sql",
        "-- pgsteady:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
    );
    let url = format!("{}?statement_cache=off", bouncer.url());
    let done = TestCommand::new([
        "migrate".to_owned(),
        url,
        "--dir".to_owned(),
        dir.path().display().to_string(),
    ])
    .run()
    .await;
    done.assert_exit_code(2)
        .assert_no_secret(cluster.password());
    assert!(done.stderr().contains("0002_index.sql"), "{done:#?}");
    assert!(done.stderr().contains("transaction pooler"), "{done:#?}");
    assert!(done.stderr().contains("direct connection"), "{done:#?}");
    let c = direct(&cluster).await;
    let t: bool = c
        .query_one("SELECT to_regclass('t') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!t, "0001 was applied before the refusal");
    assert_eq!(advisory_locks(&cluster).await, 0);
}

async fn doctor(target: &str) -> (crate::Finished, serde_json::Value) {
    let done = TestCommand::new(["doctor", target, "--json", "--timeout", "2s"])
        .run()
        .await;
    let report = serde_json::from_str(done.stdout()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    (done, report)
}

fn layer<'a>(report: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    report["hosts"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == name)
}

/// `doctor` through PgBouncer in transaction mode notices the pooler (a warning, exit 0);
/// directly it does not (the negative control); with the server behind it stopped it says
/// "PgBouncer answers; the server behind it does not" and exits 1.
#[tokio::test]
async fn doctor_notices_pgbouncer_and_the_server_behind_it_being_down() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster).await else {
        return;
    };
    let (done, report) = doctor(&cluster.url()).await;
    done.assert_exit_code(0);
    assert!(layer(&report, "pooler").is_none(), "{report:#}");

    let (done, report) = doctor(&bouncer.url()).await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    let pooler = layer(&report, "pooler").unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(pooler["status"], "warn", "{pooler}");
    assert!(
        pooler["detail"]
            .as_str()
            .unwrap()
            .contains("transaction pooler"),
        "{pooler}"
    );

    cluster
        .stop(pgsteady_testkit::StopMode::Fast)
        .await
        .unwrap();
    let (done, report) = doctor(&bouncer.url()).await;
    done.assert_exit_code(1)
        .assert_no_secret(cluster.password());
    assert_eq!(report["broken"]["layer"], "pooler", "{report:#}");
    assert!(
        report["broken"]["detail"]
            .as_str()
            .unwrap()
            .contains("PgBouncer answers; the server behind it does not"),
        "{report:#}"
    );
}
