//! The soak's throwaway topologies and how each fault is applied to them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgsteady_testkit::{
    BackendFilter, Cluster, FaultProxy, PatroniCluster, PatroniTimings, PgBouncer, PoolMode,
    ProxyMode, Role, StopMode,
};
use tokio_postgres::NoTls;

use super::nemesis::Fault;
use super::topology::Topology;

/// The pool's `application_name` (faults that terminate sessions pick it).
pub(crate) const APPLICATION_NAME: &str = "pgsteady-soak";

/// The error of setting a topology up and of applying a fault.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether the process runs in a network namespace of its own (see [`super::isolate`]), or why
/// not.
pub(super) static NETNS: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

pub(super) fn netns() -> Result<(), String> {
    NETNS
        .get()
        .cloned()
        .unwrap_or_else(|| Err("the soak was not started in a network namespace".to_owned()))
}

/// How long a standby may take to become synchronous again, or Patroni to be healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(120);
/// How long to wait for a COMMIT to arm `lost-commit`, and how long replies stay lost.
const LOST_COMMIT_ARM: Duration = Duration::from_secs(3);
const LOST_COMMIT_HOLD: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);
/// How long the replica may take to lead after the leader's node is killed: the leader key's
/// ttl (10 s) and a few HA loops.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(40);

/// A running topology. Dropping it stops everything and removes the directories.
#[derive(Debug)]
pub(crate) enum Env {
    Single {
        cluster: Cluster,
        proxy: FaultProxy,
    },
    Standby {
        nodes: [Cluster; 2],
        /// One proxy in front of each node, in `nodes` order.
        proxies: [FaultProxy; 2],
        /// Which of `nodes` is the primary.
        primary: AtomicUsize,
    },
    Pgbouncer {
        cluster: Cluster,
        bouncer: PgBouncer,
        proxy: FaultProxy,
    },
    Patroni {
        cluster: PatroniCluster,
        proxies: Vec<FaultProxy>,
    },
}

impl Env {
    pub(crate) async fn start(
        topology: Topology,
        pg_bin: Option<&std::path::Path>,
        workers: u32,
        strict: bool,
    ) -> Result<Env, BoxError> {
        let builder = || {
            let mut b = Cluster::builder().max_connections(100);
            if let Some(dir) = pg_bin {
                b = b.pg_bin(dir);
            }
            b
        };
        Ok(match topology {
            Topology::Single => {
                let cluster = builder().start().await?;
                let proxy = FaultProxy::start(cluster.addr()).await?;
                Env::Single { cluster, proxy }
            }
            Topology::Standby => {
                let primary = builder().start().await?;
                let standby = primary.standby().synchronous().start().await?;
                let proxies = [
                    FaultProxy::start(primary.addr()).await?,
                    FaultProxy::start(standby.addr()).await?,
                ];
                Env::Standby {
                    nodes: [primary, standby],
                    proxies,
                    primary: AtomicUsize::new(0),
                }
            }
            Topology::Pgbouncer => {
                let cluster = builder().start().await?;
                let bouncer = PgBouncer::builder()
                    .pool_mode(PoolMode::Transaction)
                    .default_pool_size(workers * 2)
                    .server_login_retry(1)
                    .start(&cluster)
                    .await?;
                let proxy = FaultProxy::start(bouncer.addr()).await?;
                Env::Pgbouncer {
                    cluster,
                    bouncer,
                    proxy,
                }
            }
            Topology::Patroni => {
                let timings = PatroniTimings {
                    // A leader whose postmaster died is failed over at once.
                    primary_start_timeout: 0,
                    ..PatroniTimings::default()
                };
                // Strict: non-strict synchronous mode turns replication off while no replica
                // is synchronous, and a failover may then lose commits PostgreSQL itself
                // acknowledged: Patroni's trade-off, not something a client can undo.
                let mut b = PatroniCluster::builder()
                    .timings(timings)
                    .synchronous_mode(true)
                    .synchronous_mode_strict(strict);
                if let Some(dir) = pg_bin {
                    b = b.pg_bin(dir);
                }
                let cluster = b.start().await?;
                cluster.wait_healthy(HEALTHY_WITHIN).await?;
                let mut proxies = Vec::new();
                for node in cluster.nodes() {
                    proxies.push(FaultProxy::start(([127, 0, 0, 1], node.pg_port()).into()).await?);
                }
                Env::Patroni { cluster, proxies }
            }
        })
    }

    /// Where it lives, for the reader.
    pub(crate) fn describe(&self) -> String {
        match self {
            Env::Single { cluster, .. } => format!("one server in {}", cluster.dir().display()),
            Env::Standby { nodes, .. } => format!(
                "primary in {}, synchronous standby in {}",
                nodes[0].dir().display(),
                nodes[1].dir().display()
            ),
            Env::Pgbouncer {
                cluster, bouncer, ..
            } => format!(
                "one server in {}, PgBouncer (transaction pooling) in {}",
                cluster.dir().display(),
                bouncer.dir().display()
            ),
            Env::Patroni { cluster, .. } => format!(
                "Patroni (synchronous mode, etcd, two nodes) in {}",
                cluster.dir().display()
            ),
        }
    }

    fn proxies(&self) -> Vec<&FaultProxy> {
        match self {
            Env::Single { proxy, .. } | Env::Pgbouncer { proxy, .. } => vec![proxy],
            Env::Standby { proxies, .. } => proxies.iter().collect(),
            Env::Patroni { proxies, .. } => proxies.iter().collect(),
        }
    }

    /// The pool's URL: through the proxies, every node of an HA topology in the string with
    /// `target_session_attrs=read-write`.
    pub(crate) fn url(&self) -> String {
        let ports: Vec<u16> = self.proxies().iter().map(|p| p.port()).collect();
        match self {
            Env::Single { cluster, .. } | Env::Pgbouncer { cluster, .. } => {
                cluster.url_with_port(ports[0])
            }
            Env::Standby { nodes, .. } => format!(
                "{}?target_session_attrs=read-write",
                nodes[0].url_with_ports(&ports)
            ),
            Env::Patroni { cluster, .. } => {
                let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
                format!(
                    "postgresql://{}:{}@{}/{}?target_session_attrs=read-write",
                    cluster.user(),
                    cluster.password(),
                    hosts.join(","),
                    cluster.dbname()
                )
            }
        }
    }

    /// A session of the login user on the primary, directly (no proxy, no pooler).
    pub(crate) async fn primary_session(&self) -> Result<tokio_postgres::Client, BoxError> {
        let config = match self {
            Env::Single { cluster, .. } | Env::Pgbouncer { cluster, .. } => cluster.pg_config(),
            Env::Standby { nodes, primary, .. } => {
                nodes[primary.load(Ordering::Relaxed)].pg_config()
            }
            Env::Patroni { cluster, .. } => {
                let healthy = cluster.wait_healthy(HEALTHY_WITHIN).await?;
                cluster.pg_config_with_port(healthy.leader_port)
            }
        };
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The server the single-server faults act on: the (current) primary.
    fn primary(&self) -> Option<&Cluster> {
        match self {
            Env::Single { cluster, .. } | Env::Pgbouncer { cluster, .. } => Some(cluster),
            Env::Standby { nodes, primary, .. } => Some(&nodes[primary.load(Ordering::Relaxed)]),
            Env::Patroni { .. } => None,
        }
    }

    /// Applies `fault` (holding it for `hold` when it holds) and returns once it is lifted
    /// and the topology is whole again; the text says what happened.
    pub(crate) async fn apply(&self, fault: Fault, hold: Duration) -> Result<String, BoxError> {
        let no = || format!("{} does not apply to this topology", fault.name());
        match fault {
            Fault::Blackhole => {
                self.set_proxies(ProxyMode::Blackhole);
                tokio::time::sleep(hold).await;
                self.set_proxies(ProxyMode::Pass);
                Ok(String::new())
            }
            Fault::NetBlackhole => {
                let Env::Single { proxy, .. } = self else {
                    return Err(no().into());
                };
                if let Err(why) = netns() {
                    // Recorded, not failed: the schedule stays the seed's wherever it runs.
                    return Ok(format!("skipped: {why}"));
                }
                let hole = pgsteady_testkit::netns::Blackhole::install(proxy.port())?;
                tokio::time::sleep(hold).await;
                hole.heal()?;
                Ok(format!("port {} dropped", proxy.port()))
            }
            Fault::Reset => {
                for p in self.proxies() {
                    p.reset_all();
                }
                Ok(String::new())
            }
            Fault::LostCommit => Ok(self.lose_a_commit().await),
            Fault::PoolerRestart | Fault::PoolerPause => {
                let Env::Pgbouncer { bouncer, .. } = self else {
                    return Err(no().into());
                };
                if fault == Fault::PoolerRestart {
                    bouncer.restart().await?;
                    return Ok(String::new());
                }
                // PAUSE waits for every server connection to be released; whatever it
                // answers, RESUME, so that a PAUSE that did not complete is not left in force.
                let paused = bouncer.pause().await;
                if paused.is_ok() {
                    tokio::time::sleep(hold).await;
                }
                bouncer.resume().await?;
                paused?;
                Ok(String::new())
            }
            Fault::Failover | Fault::KillFailover | Fault::Fence | Fault::StandbyRestart => {
                let Env::Standby { nodes, primary, .. } = self else {
                    return Err(no().into());
                };
                let p = primary.load(Ordering::Relaxed);
                let (old, new) = (&nodes[p], &nodes[1 - p]);
                match fault {
                    Fault::Fence => {
                        old.fence().await?;
                        tokio::time::sleep(hold).await;
                        old.unfence().await?;
                        Ok(String::new())
                    }
                    Fault::StandbyRestart => {
                        new.restart(StopMode::Fast).await?;
                        wait_sync(old, new).await?;
                        Ok(String::new())
                    }
                    _ => {
                        if fault == Fault::KillFailover {
                            old.kill_postmaster().await?;
                        } else {
                            old.stop(StopMode::Immediate).await?;
                        }
                        new.promote().await?;
                        primary.store(1 - p, Ordering::Relaxed);
                        let rewind = old.follow(new).await?;
                        wait_sync(new, old).await?;
                        Ok(format!(
                            "port {} promoted; port {} follows it ({rewind:?}), synchronous",
                            new.port(),
                            old.port()
                        ))
                    }
                }
            }
            Fault::Switchover | Fault::LeaderKill | Fault::NodeKill => {
                let Env::Patroni { cluster, .. } = self else {
                    return Err(no().into());
                };
                let before = cluster.wait_healthy(HEALTHY_WITHIN).await?;
                // Streaming is not enough: Patroni promotes (and switches over to) only the
                // replica it marked synchronous, so each fault waits for that mark.
                wait_sync_standby(cluster, &before.replica).await?;
                match fault {
                    Fault::Switchover => cluster.switchover(&before.replica).await?,
                    Fault::LeaderKill => {
                        cluster.kill_postmaster(&before.leader).await?;
                    }
                    _ => {
                        cluster.kill_node(&before.leader).await?;
                        // The replica takes over once the leader key expires (ttl), unless
                        // it may not: in strict synchronous mode a replica that was not
                        // synchronous is never promoted. Either way the node comes back.
                        let took_over = wait_leader_other_than(cluster, &before.leader).await;
                        cluster.start_node(&before.leader).await?;
                        if let Err(why) = took_over {
                            let after = cluster.wait_healthy(HEALTHY_WITHIN).await?;
                            return Ok(format!(
                                "no failover ({why}); {} back, leader {} (timeline {})",
                                before.leader, after.leader, after.timeline
                            ));
                        }
                    }
                }
                let after = cluster.wait_healthy(HEALTHY_WITHIN).await?;
                Ok(format!(
                    "leader {} (timeline {}) -> {} (timeline {})",
                    before.leader, before.timeline, after.leader, after.timeline
                ))
            }
            Fault::Terminate => {
                if let Env::Patroni { cluster, .. } = self {
                    let leader = cluster.wait_healthy(HEALTHY_WITHIN).await?.leader;
                    let n: i64 = cluster
                        .admin(&leader)
                        .await?
                        .query_one(
                            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                             FROM pg_stat_activity WHERE application_name = $1",
                            &[&APPLICATION_NAME],
                        )
                        .await?
                        .get(0);
                    return Ok(format!("{n} sessions terminated on {leader}"));
                }
                let server = self.primary().ok_or_else(no)?;
                let kit = fault.on_one_server(hold).ok_or_else(no)?;
                let n = kit.apply(server).await?.terminated.unwrap_or(0);
                Ok(format!("{n} sessions terminated"))
            }
            Fault::FastRestart | Fault::Crash | Fault::KillBackend | Fault::Hung => {
                let server = self.primary().ok_or_else(no)?;
                match fault {
                    Fault::KillBackend => {
                        let pids = server.backend_pids(BackendFilter::ClientBackends).await?;
                        let Some(&pid) = pids.first() else {
                            return Ok("no client backend to kill".to_owned());
                        };
                        server.kill_backend(pid)?;
                        server.wait_ready().await?;
                        return Ok(format!("backend {pid} killed"));
                    }
                    _ => {
                        fault
                            .on_one_server(hold)
                            .ok_or_else(no)?
                            .apply(server)
                            .await?;
                    }
                }
                if let Env::Standby { nodes, primary, .. } = self {
                    // A restarted primary waits for its standby to reconnect: the next
                    // fault finds the pair whole.
                    let p = primary.load(Ordering::Relaxed);
                    wait_sync(&nodes[p], &nodes[1 - p]).await?;
                }
                Ok(String::new())
            }
        }
    }

    fn set_proxies(&self, mode: ProxyMode) {
        for p in self.proxies() {
            p.set_mode(mode);
        }
    }

    /// Arms every proxy to drop replies from the next COMMIT on, holds that for a while
    /// after one fired, and restores them all.
    async fn lose_a_commit(&self) -> String {
        let proxies = self.proxies();
        for p in &proxies {
            p.set_mode_on_query("COMMIT", ProxyMode::DropReplies);
        }
        let armed = Instant::now();
        let fired = |p: &FaultProxy| p.mode() == ProxyMode::DropReplies;
        while !proxies.iter().any(|p| fired(p)) && armed.elapsed() < LOST_COMMIT_ARM {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let any = proxies.iter().any(|p| fired(p));
        if any {
            tokio::time::sleep(LOST_COMMIT_HOLD).await;
        }
        for p in &proxies {
            // Disarm a trigger that did not fire: a message no client sends replaces it.
            p.set_mode_on_query("-- pgsteady soak: disarmed", ProxyMode::Pass);
            p.set_mode(ProxyMode::Pass);
        }
        if any {
            String::new()
        } else {
            "no COMMIT to lose".to_owned()
        }
    }
}

/// Makes `standby` the synchronous standby of `primary` and waits until it is.
async fn wait_sync(primary: &Cluster, standby: &Cluster) -> Result<(), BoxError> {
    let name = format!("standby_{}", standby.port());
    primary
        .set("synchronous_standby_names", &format!("\"{name}\""))
        .await?;
    let admin = primary.admin().await?;
    let started = Instant::now();
    loop {
        let sync: bool = admin
            .query_one(
                "SELECT coalesce((SELECT sync_state = 'sync' AND state = 'streaming' \
                 FROM pg_stat_replication WHERE application_name = $1), false)",
                &[&name],
            )
            .await?
            .get(0);
        if sync {
            return Ok(());
        }
        if started.elapsed() > HEALTHY_WITHIN {
            return Err(format!(
                "port {} did not become the synchronous standby of port {} within \
                 {HEALTHY_WITHIN:?}",
                standby.port(),
                primary.port()
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until Patroni lists `replica` as the synchronous standby.
async fn wait_sync_standby(cluster: &PatroniCluster, replica: &str) -> Result<(), BoxError> {
    let started = Instant::now();
    loop {
        if let Ok(members) = cluster.members().await
            && members
                .iter()
                .any(|m| m.name == replica && m.role == Role::SyncStandby)
        {
            return Ok(());
        }
        if started.elapsed() > HEALTHY_WITHIN {
            return Err(format!(
                "{replica} was not the synchronous standby within {HEALTHY_WITHIN:?}"
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (up to [`TAKEOVER_WITHIN`]) until Patroni reports a leader other than `old`.
async fn wait_leader_other_than(cluster: &PatroniCluster, old: &str) -> Result<(), BoxError> {
    let started = Instant::now();
    loop {
        if let Ok(leader) = cluster.leader().await
            && leader.name != old
            && leader.is_leader()
        {
            return Ok(());
        }
        if started.elapsed() > TAKEOVER_WITHIN {
            return Err(format!("no leader other than {old} within {TAKEOVER_WITHIN:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}
