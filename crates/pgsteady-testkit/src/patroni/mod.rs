//! A throwaway Patroni cluster: one etcd node, two Patroni nodes running PostgreSQL, and
//! optionally HAProxy in front of them, all on free ports of 127.0.0.1.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, Config, NoTls};

use crate::bin::PgBin;
use crate::process::{self, RunAs};
use crate::{Error, Result, log};

mod builder;
mod control;
mod haproxy;
mod rest;

pub use builder::{PatroniBuilder, PatroniTimings};
pub use control::Healthy;
pub use rest::{LeaderChange, Member, Role};

/// How often waits look again.
const POLL: Duration = Duration::from_millis(50);

/// A throwaway high-availability cluster managed by [Patroni](https://patroni.readthedocs.io):
/// one etcd node (its v3 API, Patroni's `etcd3` settings), two Patroni nodes `node1` and
/// `node2` each running a PostgreSQL server from [`PgBin`], and, when asked for
/// ([`PatroniBuilder::haproxy`]), HAProxy routing to whichever node answers Patroni's
/// `GET /primary` health check. Every port is a free port of 127.0.0.1 chosen at start.
///
/// The programs come from the Debian packages `patroni`, `etcd-server` and `haproxy`, which
/// are installed with apt-get when missing (once per machine, said on stderr;
/// `PGSTEADY_NO_INSTALL=1` turns that off, and then [`PatroniCluster::start`] fails with
/// [`Error::Unsupported`] naming what is missing).
///
/// As in a [`crate::Cluster`], there is a login user (default `app`, SCRAM password, created
/// by Patroni's `post_bootstrap` script) owning a database of the same name, reachable over
/// TCP on every node ([`PatroniCluster::url`] names both, `target_session_attrs=read-write`),
/// and a superuser `postgres` reachable without a password over each node's Unix socket
/// ([`PatroniCluster::admin`]). As root, Patroni, PostgreSQL, etcd and HAProxy run as the
/// `postgres` user (or `$PGSTEADY_PG_USER`).
///
/// Dropping it stops every process (immediate shutdown of the servers, SIGKILL of the rest)
/// and removes the directory, also while a test panics. If the test process itself is
/// killed, its helpers get a parent-death signal and the next cluster created on this machine
/// removes the directory and any process still running in it.
///
/// The processes are tied to the thread that started them: start the cluster from async code
/// running on a runtime thread (as `#[tokio::test]` does), not from `spawn_blocking`.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> pgsteady_testkit::Result<()> {
/// use std::time::Duration;
/// use pgsteady_testkit::PatroniCluster;
///
/// let cluster = PatroniCluster::builder().haproxy(true).start().await?;
/// let before = cluster.wait_healthy(Duration::from_secs(60)).await?;
/// cluster.switchover(&before.replica).await?;
/// let change = cluster.wait_leader_change(before.timeline, Duration::from_secs(30)).await?;
/// println!("{} took over at {:?}", change.new_leader.unwrap_or_default(), change.at);
/// # Ok(()) }
/// ```
pub struct PatroniCluster {
    dir: Option<tempfile::TempDir>,
    bin: PgBin,
    run_as: RunAs,
    programs: Programs,
    scope: String,
    timings: PatroniTimings,
    etcd_port: u16,
    etcd: Mutex<Option<Child>>,
    haproxy: Option<Haproxy>,
    nodes: Vec<PatroniNode>,
    user: String,
    password: String,
    dbname: String,
    http: reqwest::Client,
}

/// Everything but the password, which must not reach a log or a panic message.
impl std::fmt::Debug for PatroniCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatroniCluster")
            .field("dir", &self.dir)
            .field("scope", &self.scope)
            .field("timings", &self.timings)
            .field("etcd_port", &self.etcd_port)
            .field("haproxy", &self.haproxy)
            .field("nodes", &self.nodes)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

/// Where the helper programs are.
#[derive(Debug, Clone)]
struct Programs {
    patroni: PathBuf,
    patronictl: PathBuf,
    etcd: PathBuf,
    haproxy: Option<PathBuf>,
}

#[derive(Debug)]
struct Haproxy {
    port: u16,
    check_interval: Duration,
    child: Mutex<Option<Child>>,
}

/// One Patroni node of a [`PatroniCluster`]: its name, its ports and its files.
///
/// Which node is the leader changes; ask the cluster ([`PatroniCluster::leader`],
/// [`PatroniCluster::wait_healthy`]).
#[derive(Debug)]
pub struct PatroniNode {
    name: String,
    dir: PathBuf,
    pg_port: u16,
    rest_port: u16,
    patroni: Mutex<Option<Child>>,
}

impl PatroniNode {
    /// The Patroni member name: `node1` or `node2`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port PostgreSQL listens on (127.0.0.1).
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// The TCP port of Patroni's REST API (127.0.0.1).
    pub fn rest_port(&self) -> u16 {
        self.rest_port
    }

    /// The base URL of Patroni's REST API, e.g. `http://127.0.0.1:8008`.
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// The node's directory (configuration, logs, data directory, socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Patroni's configuration file (also what `patronictl -c` takes).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }

    /// Patroni's log (its stderr).
    pub fn patroni_log_path(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }

    /// The PostgreSQL log (every start of the server appends to it), written with the
    /// `log_line_prefix` of [`crate::Cluster`]: timestamps in UTC with milliseconds.
    pub fn pg_log_path(&self) -> PathBuf {
        self.dir.join("pglog").join("postgresql.log")
    }

    /// Every time this node's server logged "database system is ready to accept
    /// connections", oldest first: each start as a primary, each promotion, and each restart
    /// after a crash. (A replica logs "ready to accept read-only connections" instead.)
    pub fn ready_times(&self) -> Vec<SystemTime> {
        log::ready_times(&fs::read_to_string(self.pg_log_path()).unwrap_or_default())
    }

    /// The pid of the running Patroni process started by the kit, if any.
    pub fn patroni_pid(&self) -> Option<i32> {
        let mut patroni = self.patroni.lock().expect("patroni state");
        let child = patroni.as_mut()?;
        if matches!(child.try_wait(), Ok(None)) {
            Some(child.id() as i32)
        } else {
            *patroni = None;
            None
        }
    }

    /// The pid of this node's running postmaster (read from `postmaster.pid`), if any.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        // The file outlives a killed postmaster: check the pid is a server of this node.
        process::server_processes(&self.data_dir())
            .contains(&pid)
            .then_some(pid)
    }
}

impl PatroniCluster {
    /// The two nodes, `node1` then `node2`.
    pub fn nodes(&self) -> &[PatroniNode] {
        &self.nodes
    }

    /// The node with this member name; an [`Error::State`] naming the known ones otherwise.
    pub fn node(&self, name: &str) -> Result<&PatroniNode> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            Error::State(format!(
                "no Patroni node named {name:?} (nodes: {})",
                known.join(", ")
            ))
        })
    }

    /// The Patroni cluster name (`scope`), random per cluster.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The timings the cluster was bootstrapped with.
    pub fn timings(&self) -> PatroniTimings {
        self.timings
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("directory kept until drop").path()
    }

    /// The etcd client URL, e.g. `http://127.0.0.1:2379`.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// The login user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The login user's password (random per cluster).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The login user's database.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The multi-host URL of the login user naming every node, which connects to whichever
    /// is writable: `postgresql://app:PW@127.0.0.1:P1,127.0.0.1:P2/app?target_session_attrs=read-write`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.pg_port))
            .collect();
        format!(
            "postgresql://{}:{}@{}/{}?target_session_attrs=read-write",
            self.user,
            self.password,
            hosts.join(","),
            self.dbname
        )
    }

    /// [`PatroniCluster::url`] as a tokio-postgres configuration.
    pub fn pg_config(&self) -> Config {
        let mut config = Config::new();
        for node in &self.nodes {
            config.host("127.0.0.1").port(node.pg_port);
        }
        config
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname)
            .target_session_attrs(TargetSessionAttrs::ReadWrite);
        config
    }

    /// The login user's URL for one port of 127.0.0.1 (one node, or a proxy in front of it).
    pub fn url_with_port(&self, port: u16) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{port}/{}",
            self.user, self.password, self.dbname
        )
    }

    /// The login user's tokio-postgres configuration for one port of 127.0.0.1.
    pub fn pg_config_with_port(&self, port: u16) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname);
        config
    }

    /// HAProxy's port, when the cluster has one ([`PatroniBuilder::haproxy`]).
    pub fn haproxy_port(&self) -> Option<u16> {
        self.haproxy.as_ref().map(|h| h.port)
    }

    /// The login user's URL through HAProxy, when the cluster has one.
    pub fn haproxy_url(&self) -> Option<String> {
        self.haproxy_port().map(|port| self.url_with_port(port))
    }

    /// The interval of HAProxy's health checks ([`PatroniBuilder::haproxy_check_interval`]),
    /// when the cluster has HAProxy.
    pub fn haproxy_check_interval(&self) -> Option<Duration> {
        self.haproxy.as_ref().map(|h| h.check_interval)
    }

    /// HAProxy's configuration file, when the cluster has one.
    pub fn haproxy_config_path(&self) -> Option<PathBuf> {
        self.haproxy
            .as_ref()
            .map(|_| self.dir().join("haproxy").join("haproxy.cfg"))
    }

    /// A superuser session in database `postgres` on one node's server over its Unix
    /// socket, its connection driven by a spawned task.
    pub async fn admin(&self, node: &str) -> Result<Client> {
        self.admin_in(node, "postgres").await
    }

    /// Like [`PatroniCluster::admin`], in another database (e.g. [`PatroniCluster::dbname`],
    /// to read the login user's tables on a replica).
    pub async fn admin_in(&self, node: &str, dbname: &str) -> Result<Client> {
        let node = self.node(node)?;
        let mut config = Config::new();
        config
            .host_path(node.socket_dir())
            .port(node.pg_port)
            .user("postgres")
            .dbname(dbname)
            .application_name("pgsteady-testkit")
            .connect_timeout(Duration::from_secs(3));
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    fn spawn_patroni(&self, node: &PatroniNode) -> Result<()> {
        let mut slot = node.patroni.lock().expect("patroni state");
        if let Some(child) = slot.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            return Err(Error::State(format!("Patroni on {} is running", node.name)));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.patroni_log_path())?;
        // SIGTERM if the test process dies: Patroni then stops its PostgreSQL server, which
        // it started in a session of its own that no signal of ours would otherwise reach.
        let mut cmd =
            self.run_as
                .daemon_command(&self.programs.patroni, &node.dir, Signal::SIGTERM);
        cmd.arg(node.config_path())
            .env("HOME", &node.dir)
            // Patroni stamps /history with local time: make that UTC.
            .env("TZ", "UTC")
            .stdout(log.try_clone()?)
            .stderr(log);
        *slot = Some(cmd.spawn()?);
        Ok(())
    }
}

/// SIGKILLs every process running in `dir` or below, until none is left or `timeout` passes.
fn kill_all_under(dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = process::processes_under(dir);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = process::signal_pid(pid, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop_child(slot: &Mutex<Option<Child>>) {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(mut child) = slot.take() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGKILL,
        );
        let _ = child.wait();
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if let Some(haproxy) = &self.haproxy {
            stop_child(&haproxy.child);
        }
        // Patroni first, so it restarts nothing; then an immediate shutdown of each server
        // (which removes its shared memory), then SIGKILL of whatever is left.
        for node in &self.nodes {
            stop_child(&node.patroni);
        }
        for node in &self.nodes {
            if let Some(pid) = node.postmaster_pid() {
                let _ = process::signal_pid(pid, Signal::SIGQUIT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .nodes
            .iter()
            .any(|n| !process::server_processes(&n.data_dir()).is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop_child(&self.etcd);
        kill_all_under(dir.path(), Duration::from_secs(5));
        let path = dir.path().to_owned();
        if let Err(e) = dir.close() {
            eprintln!("pgsteady-testkit: could not remove {}: {e}", path.display());
        }
    }
}
