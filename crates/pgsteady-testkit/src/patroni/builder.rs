//! [`PatroniBuilder`]: the settings a Patroni cluster is created with, its configuration
//! files, and its start (etcd, both Patroni nodes, HAProxy).

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use super::{Haproxy, PatroniCluster, PatroniNode, Programs};
use crate::bin::PgBin;
use crate::cluster::random_password;
use crate::log::LOG_LINE_PREFIX;
use crate::process::RunAs;
use crate::{Error, Result, apt, sweep};

/// Patroni's timing settings (its dynamic configuration, written at bootstrap), in seconds.
///
/// Patroni requires `loop_wait + 2 * retry_timeout <= ttl`;
/// [`PatroniBuilder::start`] refuses timings that break it.
///
/// # Default
///
/// - `ttl`: 10. The leader key's lease: a leader node that dies is replaced at most this
///   long after its last renewal (plus one loop of the replica).
/// - `loop_wait`: 2. Seconds between two runs of each node's HA loop.
/// - `retry_timeout`: 3. How long etcd and PostgreSQL operations are retried before the
///   leader demotes itself.
/// - `primary_start_timeout`: 300 (Patroni's default). How long a crashed leader's server
///   may take to come back before Patroni fails over to the replica; 0 fails over at once
///   when a healthy replica exists.
///
/// Patroni's own defaults (30, 10, 10) make tests slow; these keep a failover after a
/// whole node is lost under about 15 s. Going lower makes a loaded machine (two cores
/// shared by parallel builds) demote a healthy leader whose loop ran late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatroniTimings {
    /// The leader key's time to live. Default: 10.
    pub ttl: u32,
    /// The pause between runs of the HA loop. Default: 2.
    pub loop_wait: u32,
    /// How long DCS and PostgreSQL operations are retried. Default: 3.
    pub retry_timeout: u32,
    /// How long a crashed leader may take to restart before failing over. Default: 300.
    pub primary_start_timeout: u32,
}

impl Default for PatroniTimings {
    fn default() -> Self {
        PatroniTimings {
            ttl: 10,
            loop_wait: 2,
            retry_timeout: 3,
            primary_start_timeout: 300,
        }
    }
}

impl PatroniTimings {
    fn validate(&self) -> Result<()> {
        if self.loop_wait == 0 || self.loop_wait + 2 * self.retry_timeout > self.ttl {
            return Err(Error::State(format!(
                "Patroni timings need loop_wait >= 1 and loop_wait + 2 * retry_timeout <= ttl; \
                 got ttl {}, loop_wait {}, retry_timeout {}",
                self.ttl, self.loop_wait, self.retry_timeout
            )));
        }
        Ok(())
    }
}

/// Builds a [`PatroniCluster`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PatroniBuilder {
    bin: Option<PathBuf>,
    timings: PatroniTimings,
    haproxy: bool,
    haproxy_check_interval: Duration,
    synchronous_mode: bool,
    synchronous_mode_strict: bool,
    user: String,
    dbname: String,
    bootstrap_timeout: Duration,
}

impl Default for PatroniBuilder {
    fn default() -> Self {
        PatroniBuilder {
            bin: None,
            timings: PatroniTimings::default(),
            haproxy: false,
            haproxy_check_interval: Duration::from_millis(500),
            synchronous_mode: false,
            synchronous_mode_strict: false,
            user: "app".to_owned(),
            dbname: "app".to_owned(),
            bootstrap_timeout: Duration::from_secs(120),
        }
    }
}

// The cluster's two entry points live with the builder they hand out: the builder names the
// cluster it starts, so these in the cluster's file would make each file need the other.
impl PatroniCluster {
    /// Creates and starts a cluster with default settings (no HAProxy), returning once there
    /// is a leader, a streaming replica and the login user can query the leader over TCP.
    pub async fn start() -> Result<PatroniCluster> {
        PatroniBuilder::default().start().await
    }

    /// A builder for a cluster with other settings.
    pub fn builder() -> PatroniBuilder {
        PatroniBuilder::default()
    }
}

impl PatroniBuilder {
    /// Uses the server binaries in `dir` (Patroni's `bin_dir`) instead of searching
    /// ([`PgBin::find`]).
    pub fn pg_bin(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin = Some(dir.into());
        self
    }

    /// Patroni's timings. Default: [`PatroniTimings::default`].
    pub fn timings(mut self, timings: PatroniTimings) -> Self {
        self.timings = timings;
        self
    }

    /// Starts HAProxy in front of the nodes. Default: false.
    ///
    /// Its configuration is Patroni's documented one: a TCP listener whose servers are the
    /// nodes' PostgreSQL ports, checked with `option httpchk GET /primary` on their REST
    /// ports, `http-check expect status 200`, and `default-server inter I fall 2 rise 1
    /// on-marked-down shutdown-sessions` with `I` from
    /// [`PatroniBuilder::haproxy_check_interval`]: a node is marked down after two failed
    /// checks (sessions to it are then closed), up after one good check.
    pub fn haproxy(mut self, haproxy: bool) -> Self {
        self.haproxy = haproxy;
        self
    }

    /// HAProxy's health-check interval (`inter`). Default: 500 ms. After a leader change
    /// HAProxy routes to the new leader up to one interval after Patroni promoted it
    /// (`rise 1`), and stops routing to the old one within two (`fall 2`); Patroni's example
    /// uses 3 s.
    pub fn haproxy_check_interval(mut self, interval: Duration) -> Self {
        self.haproxy_check_interval = interval;
        self
    }

    /// Patroni's `synchronous_mode`: a commit on the leader waits for the replica, so a
    /// failover loses no acknowledged write. Default: false (asynchronous replication, as
    /// Patroni's default).
    pub fn synchronous_mode(mut self, on: bool) -> Self {
        self.synchronous_mode = on;
        self
    }

    /// Patroni's `synchronous_mode_strict` (with [`PatroniBuilder::synchronous_mode`]): while
    /// no replica is synchronous, commits wait instead of Patroni turning synchronous
    /// replication off. Without it, a commit made meanwhile is on the leader only, and a
    /// failover to a replica that becomes synchronous before receiving it loses it.
    /// Default: false (as Patroni's).
    pub fn synchronous_mode_strict(mut self, on: bool) -> Self {
        self.synchronous_mode_strict = on;
        self
    }

    /// The password user's name. Default: `app`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The database created for the password user. Default: `app`.
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = dbname.into();
        self
    }

    /// How long the start may take before giving up (the log tails are in the error).
    /// Default: 120 s.
    pub fn bootstrap_timeout(mut self, timeout: Duration) -> Self {
        self.bootstrap_timeout = timeout;
        self
    }

    /// Creates the cluster, returning once there is a leader, a replica streaming from it,
    /// the login user can query the leader over TCP, and (with HAProxy) through HAProxy.
    pub async fn start(self) -> Result<PatroniCluster> {
        self.timings.validate()?;
        for name in [&self.user, &self.dbname] {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::State(format!(
                    "user and database names must be ASCII letters, digits and _: {name:?}"
                )));
            }
        }
        sweep::sweep_stale_clusters();
        let bin = match &self.bin {
            Some(dir) => PgBin::from_dir(dir)?,
            None => PgBin::find()?,
        };
        let programs = find_programs(self.haproxy)?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix(sweep::DIR_PREFIX)
            .tempdir_in(sweep::base_dir())?;
        fs::write(
            dir.path().join(sweep::OWNER_FILE),
            std::process::id().to_string(),
        )?;
        run_as.chown(dir.path())?;

        // Every port at once, so no two are the same; another process may still take one
        // before its server binds it, which fails the start (rare; the error says so).
        let ports = free_ports(if self.haproxy { 7 } else { 6 })?;
        let nodes: Vec<PatroniNode> = (0..2)
            .map(|i| PatroniNode {
                name: format!("node{}", i + 1),
                dir: dir.path().join(format!("node{}", i + 1)),
                pg_port: ports[2 + 2 * i],
                rest_port: ports[3 + 2 * i],
                patroni: Mutex::new(None),
            })
            .collect();
        let haproxy = self.haproxy.then(|| Haproxy {
            port: ports[6],
            check_interval: self.haproxy_check_interval,
            child: Mutex::new(None),
        });
        let cluster = PatroniCluster {
            dir: Some(dir),
            bin,
            run_as,
            programs,
            scope: format!("pgsteady-{}", &random_password()[..8]).to_lowercase(),
            timings: self.timings,
            etcd_port: ports[0],
            etcd: Mutex::new(None),
            haproxy,
            nodes,
            user: self.user.clone(),
            password: random_password(),
            dbname: self.dbname.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .map_err(|e| Error::State(format!("HTTP client: {e}")))?,
        };
        let deadline = Instant::now() + self.bootstrap_timeout;
        cluster.start_etcd(ports[1], deadline).await?;
        let superuser_password = random_password();
        let replication_password = random_password();
        for node in &cluster.nodes {
            cluster.write_node_files(node, &self, &superuser_password, &replication_password)?;
        }
        // Both at once: one wins the race to initialise the cluster, the other copies it
        // with pg_basebackup once it exists.
        for node in &cluster.nodes {
            cluster.spawn_patroni(node)?;
        }
        let healthy = cluster.wait_healthy_until(deadline).await?;
        cluster.wait_login(healthy.leader_port, deadline).await?;
        if cluster.haproxy.is_some() {
            cluster.start_haproxy()?;
            cluster
                .wait_haproxy_routes_to(&healthy.leader, deadline)
                .await?;
            let port = cluster.haproxy_port().expect("haproxy");
            cluster.wait_login(port, deadline).await?;
        }
        Ok(cluster)
    }
}

impl PatroniCluster {
    async fn start_etcd(&self, peer_port: u16, deadline: Instant) -> Result<()> {
        let etcd_dir = self.dir().join("etcd");
        fs::create_dir(&etcd_dir)?;
        self.run_as.chown(&etcd_dir)?;
        let log = fs::File::create(etcd_dir.join("etcd.log"))?;
        let client = self.etcd_url();
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = self
            .run_as
            .daemon_command(&self.programs.etcd, &etcd_dir, Signal::SIGKILL);
        cmd.arg("--name=etcd0")
            .arg(format!("--data-dir={}", etcd_dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=etcd0={peer}"))
            .arg(format!("--initial-cluster-token={}", self.scope))
            .arg("--initial-cluster-state=new")
            // A single node elects itself leader after one election timeout: keep it short.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .env("HOME", &etcd_dir)
            .stdout(log.try_clone()?)
            .stderr(log);
        *self.etcd.lock().expect("etcd state") = Some(cmd.spawn()?);
        loop {
            let health = self.http.get(format!("{client}/health")).send().await;
            if let Ok(resp) = health
                && let Ok(body) = resp.text().await
                && body.contains("\"health\":\"true\"")
            {
                return Ok(());
            }
            if let Some(status) = self
                .etcd
                .lock()
                .expect("etcd state")
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(Error::Command {
                    program: "etcd".to_owned(),
                    detail: format!(
                        "exited with {status}:\n{}",
                        crate::log::tail(&etcd_dir.join("etcd.log"), 20)
                    ),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    waited: Duration::ZERO,
                    log_tail: format!(
                        "etcd not healthy; etcd.log:\n{}",
                        crate::log::tail(&etcd_dir.join("etcd.log"), 20)
                    ),
                });
            }
            tokio::time::sleep(super::POLL).await;
        }
    }

    fn write_node_files(
        &self,
        node: &PatroniNode,
        settings: &PatroniBuilder,
        superuser_password: &str,
        replication_password: &str,
    ) -> Result<()> {
        for dir in [node.dir.clone(), node.socket_dir(), node.dir.join("pglog")] {
            fs::create_dir(&dir)?;
            self.run_as.chown(&dir)?;
        }
        // Patroni runs this once, on the node that initialises the cluster, with a superuser
        // connection string as its last argument. The password stays in files readable by
        // the server's user only: never on a command line or in a log.
        let sql = node.dir.join("post_bootstrap.sql");
        write_private(
            &sql,
            &format!(
                "CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}';\n\
                 CREATE DATABASE \"{db}\" OWNER \"{user}\";\n",
                user = self.user,
                password = self.password,
                db = self.dbname
            ),
            0o600,
            &self.run_as,
        )?;
        let script = node.dir.join("post_bootstrap.sh");
        write_private(
            &script,
            &format!(
                "#!/bin/sh\nexec '{psql}' -X -q -v ON_ERROR_STOP=1 -f '{sql}' \"$1\"\n",
                psql = self.bin.tool("psql").display(),
                sql = sql.display()
            ),
            0o700,
            &self.run_as,
        )?;
        let t = settings.timings;
        // YAML is a superset of JSON: Patroni reads this as its YAML configuration.
        let config = json!({
            "scope": self.scope,
            "name": node.name,
            "log": { "level": "INFO" },
            "restapi": {
                "listen": format!("127.0.0.1:{}", node.rest_port),
                "connect_address": format!("127.0.0.1:{}", node.rest_port),
            },
            "etcd3": { "hosts": [format!("127.0.0.1:{}", self.etcd_port)] },
            "bootstrap": {
                "dcs": {
                    "ttl": t.ttl,
                    "loop_wait": t.loop_wait,
                    "retry_timeout": t.retry_timeout,
                    "primary_start_timeout": t.primary_start_timeout,
                    "maximum_lag_on_failover": 1_048_576,
                    "synchronous_mode": settings.synchronous_mode,
                    "synchronous_mode_strict": settings.synchronous_mode_strict,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "use_slots": true,
                        "parameters": {
                            "max_connections": 100,
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "128MB",
                            "hot_standby": "on",
                        },
                    },
                },
                "initdb": [
                    { "encoding": "UTF8" },
                    { "locale": "C" },
                    { "auth-local": "trust" },
                    { "auth-host": "scram-sha-256" },
                    "no-sync",
                ],
                "post_bootstrap": script,
            },
            "postgresql": {
                "listen": format!("127.0.0.1:{}", node.pg_port),
                "connect_address": format!("127.0.0.1:{}", node.pg_port),
                "data_dir": node.data_dir(),
                "bin_dir": self.bin.dir(),
                "pgpass": node.dir.join("pgpass"),
                "use_unix_socket": true,
                // pg_basebackup's default spread checkpoint paces itself over minutes.
                "basebackup": [{ "checkpoint": "fast" }],
                "authentication": {
                    "superuser": { "username": "postgres", "password": superuser_password },
                    "replication": { "username": "replicator", "password": replication_password },
                },
                "parameters": {
                    "unix_socket_directories": node.socket_dir(),
                    "shared_buffers": "32MB",
                    // Durability against an OS crash is not under test; against a process
                    // crash it is kept (committed WAL is in the kernel before the commit is
                    // acknowledged), as in `Cluster`.
                    "fsync": "off",
                    "logging_collector": "on",
                    "log_directory": node.dir.join("pglog"),
                    "log_filename": "postgresql.log",
                    "log_rotation_age": 0,
                    "log_rotation_size": 0,
                    "log_line_prefix": LOG_LINE_PREFIX,
                    "log_timezone": "UTC",
                },
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
                "remove_data_directory_on_rewind_failure": true,
                "remove_data_directory_on_diverged_timelines": true,
            },
        });
        let text = serde_json::to_string_pretty(&config)
            .map_err(|e| Error::State(format!("Patroni configuration: {e}")))?;
        write_private(&node.config_path(), &text, 0o600, &self.run_as)
    }

    /// Waits until the login user can run a query through `port` on a writable server.
    async fn wait_login(&self, port: u16, deadline: Instant) -> Result<()> {
        let mut config = self.pg_config_with_port(port);
        config.connect_timeout(Duration::from_secs(2));
        loop {
            let last = match config.connect(tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    let driver = tokio::spawn(connection);
                    match client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                        Ok(row) if !row.get::<_, bool>(0) => {
                            drop(client);
                            let _ = driver.await;
                            return Ok(());
                        }
                        Ok(_) => "connected to a server in recovery".to_owned(),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    waited: Duration::ZERO,
                    log_tail: format!("the login user cannot query port {port}: {last}"),
                });
            }
            tokio::time::sleep(super::POLL).await;
        }
    }
}

/// Finds Patroni, patronictl, etcd (and HAProxy when wanted), installing the Debian
/// packages once when one is missing.
fn find_programs(haproxy: bool) -> Result<Programs> {
    let search = || -> std::result::Result<Programs, Vec<&'static str>> {
        let mut missing = Vec::new();
        let mut find = |name: &str, package: &'static str| {
            let found = apt::find_program(name);
            if found.is_none() && !missing.contains(&package) {
                missing.push(package);
            }
            found.unwrap_or_default()
        };
        let programs = Programs {
            patroni: find("patroni", "patroni"),
            patronictl: find("patronictl", "patroni"),
            etcd: find("etcd", "etcd-server"),
            haproxy: haproxy.then(|| find("haproxy", "haproxy")),
        };
        if missing.is_empty() {
            Ok(programs)
        } else {
            Err(missing)
        }
    };
    if let Ok(programs) = search() {
        return Ok(programs);
    }
    let _lock = apt::lock();
    let missing = match search() {
        Ok(programs) => return Ok(programs),
        Err(missing) => missing,
    };
    let by_hand = format!(
        "install them (e.g. `apt-get install -y {}`)",
        missing.join(" ")
    );
    let installed = apt::install(
        apt::allowed(),
        &missing,
        &format!(
            "a Patroni cluster needs the packages {}; installing them with apt-get",
            missing.join(", ")
        ),
        &by_hand,
    );
    search().map_err(|still| {
        Error::Unsupported(match installed {
            Ok(()) => format!(
                "packages {} installed, but their programs are still missing",
                still.join(", ")
            ),
            Err(why) => format!("missing packages {}: {why}", still.join(", ")),
        })
    })
}

fn write_private(path: &std::path::Path, text: &str, mode: u32, run_as: &RunAs) -> Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    run_as.chown(path)
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_keep_patronis_rule() {
        PatroniTimings::default().validate().unwrap();
        let bad = PatroniTimings {
            ttl: 5,
            ..PatroniTimings::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("loop_wait + 2 * retry_timeout <= ttl"),
            "{err}"
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(7).unwrap();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 7);
    }
}
