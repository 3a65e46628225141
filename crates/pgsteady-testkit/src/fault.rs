//! One vocabulary for the server faults that tests, benchmarks and the drill inflict: a
//! [`Fault`] names one, [`Fault::apply`] inflicts it on a [`Cluster`] and returns when it is
//! over (the server running again, the sessions gone, the processes resumed).
//!
//! Faults of the network path (a silent drop, lost replies) belong to a [`crate::FaultProxy`]
//! between client and server and are set with its [`crate::ProxyMode`]; they are not here
//! because they act on a proxy, not on the cluster.

use std::time::Duration;

use crate::{BackendFilter, Cluster, Result, StopMode};

/// A fault inflicted on a cluster's server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Stop with this mode, then start again: `Fast` ends sessions with 57P01, `Immediate`
    /// makes the next start run crash recovery.
    Restart(StopMode),
    /// SIGKILL of the postmaster, then a start with crash recovery.
    KillPostmaster,
    /// `pg_terminate_backend` of the sessions the filter picks (57P01); the server stays up.
    Terminate(BackendFilter),
    /// Every server process SIGSTOPped for this long, then SIGCONTed: connections stay
    /// open, nothing answers.
    Hang(Duration),
    /// The server stopped (fast) for this long, then started.
    Outage(Duration),
    /// Stop with this mode and leave the server down (a primary lost for good, before a
    /// failover).
    Stop(StopMode),
    /// Fence the server read-only ([`Cluster::fence`]): sessions stay open, writes fail
    /// with 25006, the server still says it is a primary.
    Fence,
}

/// What applying a [`Fault`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sessions terminated ([`Fault::Terminate`] only).
    pub terminated: Option<u64>,
}

impl Fault {
    /// Inflicts the fault on `cluster` and returns once it is over: for the faults that stop
    /// the server and start it again, once it was started (its ready time is
    /// [`Cluster::ready_at`]); [`Fault::Stop`] once it is down.
    ///
    /// # Errors
    ///
    /// What the cluster's operation returned: the server would not stop or start, the
    /// administrator's session failed, a signal could not be sent.
    pub async fn apply(&self, cluster: &Cluster) -> Result<Applied> {
        let mut applied = Applied::default();
        match self {
            Fault::Restart(mode) => cluster.restart(*mode).await?,
            Fault::KillPostmaster => {
                cluster.kill_postmaster().await?;
                cluster.start_server().await?;
            }
            Fault::Terminate(filter) => {
                applied.terminated = Some(cluster.terminate_backends(filter.clone()).await?);
            }
            Fault::Hang(hold) => {
                cluster.pause()?;
                tokio::time::sleep(*hold).await;
                cluster.resume()?;
            }
            Fault::Outage(hold) => {
                cluster.stop(StopMode::Fast).await?;
                tokio::time::sleep(*hold).await;
                cluster.start_server().await?;
            }
            Fault::Stop(mode) => cluster.stop(*mode).await?,
            Fault::Fence => cluster.fence().await?,
        }
        Ok(applied)
    }

    /// Whether the fault starts the server again, so that it logs a new ready line: a
    /// workload's "ready to first success" is measured from that line only for these.
    pub fn starts_the_server(&self) -> bool {
        matches!(
            self,
            Fault::Restart(_) | Fault::KillPostmaster | Fault::Outage(_)
        )
    }
}
