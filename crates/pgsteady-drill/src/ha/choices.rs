//! What `drill --ha` can be asked for: its faults and its connection paths.

use serde::Serialize;

/// A fault on the Patroni cluster, in the order the drill applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum HaFault {
    /// `patronictl switchover --force` to the replica.
    Switchover,
    /// SIGKILL of the leader's postmaster; Patroni stays alive.
    LeaderCrash,
    /// SIGKILL of the leader's whole node (Patroni and PostgreSQL), restarted afterwards.
    LeaderLost,
}

impl HaFault {
    pub(crate) const ALL: [HaFault; 3] = [
        HaFault::Switchover,
        HaFault::LeaderCrash,
        HaFault::LeaderLost,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            HaFault::Switchover => "switchover",
            HaFault::LeaderCrash => "leader-crash",
            HaFault::LeaderLost => "leader-lost",
        }
    }

    pub(crate) fn summary(self) -> &'static str {
        match self {
            HaFault::Switchover => "patronictl switchover --force to the replica",
            HaFault::LeaderCrash => {
                "SIGKILL of the leader's postmaster, Patroni alive (fails over with primary_start_timeout 0, else restarts it)"
            }
            HaFault::LeaderLost => {
                "SIGKILL of the leader's node (Patroni and PostgreSQL): failover after the ttl; the node is restarted and rejoins"
            }
        }
    }
}

/// How the clients reach the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum HaPath {
    /// Both nodes in one connection string, `target_session_attrs=read-write`.
    MultiHost,
    /// HAProxy with Patroni's `GET /primary` check.
    Haproxy,
}

impl HaPath {
    pub(crate) fn name(self) -> &'static str {
        match self {
            HaPath::MultiHost => "multi-host",
            HaPath::Haproxy => "haproxy",
        }
    }
}
