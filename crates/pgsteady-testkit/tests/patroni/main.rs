//! Tests of the Patroni harness against a real Patroni cluster (etcd, two nodes running
//! PostgreSQL, HAProxy): every control is exercised and its effect observed from clients,
//! from the servers' own views (`pg_stat_replication`, `pg_is_in_recovery()`) and from
//! Patroni's REST API.
//!
//! Ignored by default: each test boots a cluster (about 15 s on a loaded two-core machine)
//! and waits out real failovers, so the default `cargo test` stays quick. Run them with
//! `cargo test -p pgsteady-testkit --test patroni -- --ignored` (`.ci/run` does, as its own
//! step). Where Patroni, etcd or HAProxy are missing and cannot be installed, each test
//! prints why and passes without running.

mod bootstrap;
mod failover;
mod switchover;

use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Error, PatroniBuilder, PatroniCluster};
use tokio_postgres::{Client, Config, NoTls};

/// Starts a cluster, or returns `None` after printing why this machine cannot run one.
pub async fn start(builder: PatroniBuilder) -> Option<PatroniCluster> {
    let started = Instant::now();
    match builder.start().await {
        Ok(cluster) => {
            eprintln!("patroni: cluster up in {:?}", started.elapsed());
            Some(cluster)
        }
        Err(e @ (Error::Unsupported(_) | Error::NoBinaries { .. })) => {
            eprintln!("skipped: cannot run a Patroni cluster here: {e}");
            None
        }
        Err(e) => panic!("the Patroni cluster did not start: {e}"),
    }
}

/// Connects (1 s connect timeout) and drives the connection on a task.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.connect_timeout(Duration::from_secs(1));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The port of the server a session landed on.
pub async fn server_port(client: &Client) -> u16 {
    let port: i32 = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    u16::try_from(port).unwrap()
}

/// Inserts `value` into table `t` through `config` (a new session each try) until it
/// succeeds or `timeout` passes; returns the port of the server that took the write and
/// when it succeeded. The insert is idempotent (`ON CONFLICT DO NOTHING`), so a try whose
/// outcome is unknown (connection lost before the reply) can be repeated safely.
pub async fn write_until(config: &Config, value: i32, timeout: Duration) -> (u16, Instant) {
    let started = Instant::now();
    loop {
        if let Ok(client) = connect(config).await
            && client
                .execute(
                    "INSERT INTO t VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&value],
                )
                .await
                .is_ok()
        {
            return (server_port(&client).await, Instant::now());
        }
        assert!(
            started.elapsed() < timeout,
            "no write succeeded within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The values in table `t` on one node, read as the superuser.
pub async fn values_on(cluster: &PatroniCluster, node: &str) -> Vec<i32> {
    try_values_on(cluster, node).await.unwrap()
}

async fn try_values_on(
    cluster: &PatroniCluster,
    node: &str,
) -> Result<Vec<i32>, pgsteady_testkit::Error> {
    let admin = cluster.admin_in(node, cluster.dbname()).await?;
    Ok(admin
        .query("SELECT v FROM t ORDER BY v", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Creates table `t (v int primary key)` owned by the login user, through the leader.
pub async fn create_table(cluster: &PatroniCluster) {
    let client = connect(&cluster.pg_config()).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (v int PRIMARY KEY)")
        .await
        .unwrap();
}

/// Waits until `node` has replayed every value in `expected` (bounded; the table itself
/// may not have reached it yet).
pub async fn wait_replicated(cluster: &PatroniCluster, node: &str, expected: &[i32]) {
    let started = Instant::now();
    loop {
        let seen = try_values_on(cluster, node).await;
        if seen.as_ref().is_ok_and(|seen| seen == expected) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{node} has {seen:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids of live processes running in `dir` or below it.
pub fn processes_in(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            !zombie && cwd.is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Asserts that nothing of a dropped cluster is left: no process, no directory.
pub fn assert_gone(dir: &std::path::Path) {
    for _ in 0..500 {
        if processes_in(dir).is_empty() && !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(processes_in(dir).is_empty(), "processes survived");
    assert!(!dir.exists(), "{} survived", dir.display());
}

/// One write of a [`Writer`].
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The value inserted.
    pub value: i32,
    /// When the attempt started.
    pub started: Instant,
    /// When it ended.
    pub ended: Instant,
    /// `Some(port)` of the server that acknowledged the commit; `None` when it failed.
    pub acked_by: Option<u16>,
}

/// A client writing `INSERT INTO t VALUES (n)`, n = first, first + 1, ..., every 20 ms through one
/// session, reconnecting (1 s connect timeout) after any error. A failed write is not
/// retried: the next attempt inserts the next value.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Attempt>>,
}

impl Writer {
    pub fn spawn(config: Config, first: i32) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut attempts = Vec::new();
            let mut session: Option<(Client, u16)> = None;
            let mut value = first;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                if session.is_none()
                    && let Ok(client) = connect(&config).await
                {
                    let port = server_port(&client).await;
                    session = Some((client, port));
                }
                let mut acked_by = None;
                if let Some((client, port)) = &session {
                    match client.execute("INSERT INTO t VALUES ($1)", &[&value]).await {
                        Ok(_) => acked_by = Some(*port),
                        Err(_) => session = None,
                    }
                }
                attempts.push(Attempt {
                    value,
                    started,
                    ended: Instant::now(),
                    acked_by,
                });
                value += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            attempts
        });
        Writer { stop, task }
    }

    /// Stops the writer and returns every attempt, in order.
    pub async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// The first write acknowledged by `port` that started after `after`.
pub fn first_ack_on(attempts: &[Attempt], port: u16, after: Instant) -> Option<&Attempt> {
    attempts
        .iter()
        .find(|a| a.started >= after && a.acked_by == Some(port))
}

/// The values the writer saw acknowledged.
pub fn acked(attempts: &[Attempt]) -> Vec<i32> {
    attempts
        .iter()
        .filter(|a| a.acked_by.is_some())
        .map(|a| a.value)
        .collect()
}

/// `at` as an offset from `origin` (a wall-clock instant taken together with an `Instant`).
pub fn since(origin: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(origin).unwrap_or_default()
}

/// The `Instant` matching wall-clock time `at`, given a pair taken together.
pub fn instant_at(origin: (SystemTime, Instant), at: SystemTime) -> Instant {
    origin.1 + since(origin.0, at)
}
