//! Faults and waits on a [`PatroniCluster`]: switchover, killing the leader's postmaster or
//! whole node, restarting a node, and waiting for a healthy cluster or a leader change.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{POLL, PatroniCluster, kill_all_under};
use crate::process;
use crate::{Error, Result, log};

/// A healthy cluster, as [`PatroniCluster::wait_healthy`] found it: a leader whose server is
/// writable and a replica streaming from it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Healthy {
    /// The leader's member name.
    pub leader: String,
    /// The leader's PostgreSQL port.
    pub leader_port: u16,
    /// The replica's member name.
    pub replica: String,
    /// The replica's PostgreSQL port.
    pub replica_port: u16,
    /// The leader's timeline as its server reports it (the timeline of its current WAL
    /// file): 1 after bootstrap, one more per promotion.
    pub timeline: u64,
}

impl PatroniCluster {
    /// Waits until Patroni reports a running leader, its server is out of recovery, and
    /// the other node streams from it (`pg_stat_replication.state = 'streaming'` on the
    /// leader, `application_name` = the replica's member name). Gives up after `timeout`
    /// with an [`Error::NotReady`] holding what was last seen and the Patroni logs' tails.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<Healthy> {
        self.wait_healthy_until(Instant::now() + timeout).await
    }

    pub(super) async fn wait_healthy_until(&self, deadline: Instant) -> Result<Healthy> {
        let started = Instant::now();
        loop {
            let last = match self.healthy_now().await {
                Ok(healthy) => return Ok(healthy),
                Err(why) => why,
            };
            if Instant::now() > deadline {
                let mut tails = format!("last seen: {last}");
                for node in &self.nodes {
                    tails.push_str(&format!(
                        "\n--- {} patroni.log:\n{}",
                        node.name,
                        log::tail(&node.patroni_log_path(), 8)
                    ));
                }
                return Err(Error::NotReady {
                    waited: started.elapsed(),
                    log_tail: tails,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look: `Ok` when healthy, else what is missing.
    async fn healthy_now(&self) -> std::result::Result<Healthy, String> {
        let members = self.members().await.map_err(|e| e.to_string())?;
        let describe = || {
            members
                .iter()
                .map(|m| format!("{} {:?} {}", m.name, m.role, m.state))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let leader = members
            .iter()
            .find(|m| m.is_leader() && m.state == "running")
            .ok_or_else(|| format!("no running leader ({})", describe()))?;
        let replica = members
            .iter()
            .find(|m| m.name != leader.name)
            .ok_or_else(|| format!("no replica ({})", describe()))?;
        let admin = self
            .admin(&leader.name)
            .await
            .map_err(|e| format!("leader {}: {e}", leader.name))?;
        let row = admin
            .query_one(
                "SELECT pg_is_in_recovery(), \
                 (SELECT count(*) FROM pg_stat_replication \
                  WHERE application_name = $1 AND state = 'streaming'), \
                 ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8",
                &[&replica.name],
            )
            .await
            .map_err(|e| format!("leader {}: {e}", leader.name))?;
        let in_recovery: bool = row.get(0);
        if in_recovery {
            return Err(format!("leader {} is still in recovery", leader.name));
        }
        let (streaming, timeline): (i64, i64) = (row.get(1), row.get(2));
        if streaming == 0 {
            return Err(format!(
                "{} does not stream from leader {} ({})",
                replica.name,
                leader.name,
                describe()
            ));
        }
        Ok(Healthy {
            leader: leader.name.clone(),
            leader_port: self.node(&leader.name).map_err(|e| e.to_string())?.pg_port,
            replica: replica.name.clone(),
            replica_port: self.node(&replica.name).map_err(|e| e.to_string())?.pg_port,
            timeline: timeline as u64,
        })
    }

    /// Waits until Patroni's `/history` holds a leader change to a timeline after
    /// `after_timeline` (e.g. [`Healthy::timeline`] before the fault) and returns the first
    /// one. Patroni writes it on the new leader's first HA loop after the promotion, so it
    /// shows up about `loop_wait` after the promotion; its [`super::LeaderChange::at`] is
    /// the promotion's own time.
    pub async fn wait_leader_change(
        &self,
        after_timeline: u64,
        timeout: Duration,
    ) -> Result<super::LeaderChange> {
        let started = Instant::now();
        loop {
            if let Ok(history) = self.history().await
                && let Some(change) = history.into_iter().find(|c| c.timeline > after_timeline)
            {
                return Ok(change);
            }
            if started.elapsed() > timeout {
                return Err(Error::NotReady {
                    waited: started.elapsed(),
                    log_tail: format!(
                        "no leader change after timeline {after_timeline} in Patroni's /history"
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A planned switchover to `candidate`: `patronictl -c CONF switchover --leader LEADER
    /// --candidate CANDIDATE --force`, then a wait (bounded by 60 s) until Patroni reports
    /// `candidate` as the leader. Patroni shuts the old leader's server down (sessions end
    /// with 57P01), promotes the candidate once it has replayed everything, and restarts the
    /// old leader as its replica.
    pub async fn switchover(&self, candidate: &str) -> Result<()> {
        let candidate_node = self.node(candidate)?;
        let leader = self.leader().await?;
        if leader.name == candidate {
            return Err(Error::State(format!("{candidate} is already the leader")));
        }
        let mut cmd = self.run_as.command(&self.programs.patronictl);
        cmd.arg("-c")
            .arg(candidate_node.config_path())
            .args([
                "switchover",
                "--leader",
                &leader.name,
                "--candidate",
                candidate,
            ])
            .arg("--force")
            .env("HOME", candidate_node.dir())
            .env("TZ", "UTC");
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .map_err(|_| Error::State("patronictl switchover ran over 60 s".to_owned()))??;
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(Error::Command {
                program: "patronictl switchover".to_owned(),
                detail: format!("{}: {}", out.status, output.trim()),
            });
        }
        // patronictl exits 0 also when Patroni refused: the members' view decides.
        let started = Instant::now();
        loop {
            if self.leader().await.is_ok_and(|l| l.name == candidate) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(Error::Command {
                    program: "patronictl switchover".to_owned(),
                    detail: format!(
                        "{candidate} is not the leader 60 s later; patronictl said: {}",
                        output.trim()
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILLs one node's postmaster only, leaving Patroni running and the backends to
    /// notice their postmaster is gone. Patroni sees it on its next loop and restarts the
    /// server in place (crash recovery), or, on the leader with
    /// [`super::PatroniTimings::primary_start_timeout`] 0, fails over to the replica.
    /// Returns the killed pid.
    pub async fn kill_postmaster(&self, node: &str) -> Result<i32> {
        let node = self.node(node)?;
        let pid = node.postmaster_pid().ok_or_else(|| {
            Error::State(format!("no PostgreSQL server is running on {}", node.name))
        })?;
        process::signal_pid(pid, Signal::SIGKILL)?;
        // Returns once the postmaster is gone, so the caller's clock starts at the fault.
        let started = Instant::now();
        while process::pid_exists(pid) && !is_zombie_or_gone(pid) {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(Error::State(format!("postmaster {pid} survived SIGKILL")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(pid)
    }

    /// SIGKILLs a whole node at once, as if its machine died: Patroni (its process group)
    /// and every process of its PostgreSQL server. Nothing is released: the leader key
    /// stays in etcd until its `ttl` runs out, then the replica takes over. Bring the node
    /// back with [`PatroniCluster::start_node`].
    pub async fn kill_node(&self, node: &str) -> Result<()> {
        let node = self.node(node)?;
        let Some(patroni) = node.patroni_pid() else {
            return Err(Error::State(format!(
                "Patroni is not running on {}",
                node.name
            )));
        };
        // Every pid first, then the signals back to back.
        let servers = process::processes_under(&node.dir);
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(patroni), Signal::SIGKILL);
        for pid in servers {
            let _ = process::signal_pid(pid, Signal::SIGKILL);
        }
        // Whatever Patroni was forking at that moment.
        kill_all_under(&node.dir, Duration::from_secs(5));
        if let Some(mut child) = node.patroni.lock().expect("patroni state").take() {
            let _ = child.wait();
        }
        if !process::processes_under(&node.dir).is_empty() {
            return Err(Error::State(format!(
                "processes of {} survived SIGKILL",
                node.name
            )));
        }
        Ok(())
    }

    /// Starts Patroni again on a node whose Patroni was killed ([`PatroniCluster::kill_node`]).
    /// It restarts the server and rejoins as a replica (rewinding, or copying the leader
    /// afresh, if its timeline diverged); wait for that with
    /// [`PatroniCluster::wait_healthy`].
    pub async fn start_node(&self, node: &str) -> Result<()> {
        let node = self.node(node)?;
        self.spawn_patroni(node)
    }
}

fn is_zombie_or_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| matches!(state, "Z" | "X"))
    })
}
