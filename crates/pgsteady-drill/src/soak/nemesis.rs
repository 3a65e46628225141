//! The nemesis: a schedule of faults that follows from a seed, in two lanes that overlap.
//! The server lane acts on servers and poolers (restarts, crashes, failovers, fencing...),
//! the network lane on the fault proxies in front of them (blackholes, lost replies,
//! resets); each lane runs its steps one after another with random gaps, so a network fault
//! may fall in the middle of a failover.

use std::fmt;
use std::time::Duration;

use super::topology::Topology;

/// A small seeded generator (SplitMix64). Hand-written rather than `rand::StdRng`, whose
/// stream may change between rand versions: a schedule printed today must replay the same
/// after a dependency update.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`hi >= lo`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next_u64() as usize % items.len()]
    }
}

/// A fault of the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Fault {
    /// Fast shutdown of the primary (57P01), start again.
    FastRestart,
    /// SIGKILL of the primary's postmaster, start with crash recovery.
    Crash,
    /// pg_terminate_backend of every client session on the primary.
    Terminate,
    /// SIGKILL of one client backend: the postmaster resets every session and recovers.
    KillBackend,
    /// SIGSTOP of every process of the primary for a while.
    Hung,
    /// The proxies drop everything silently for a while.
    Blackhole,
    /// single: the kernel drops every packet to and from the proxy's port for a while
    /// (nftables in the soak's own network namespace): no ACK, no keepalive answer, new
    /// connections hang in SYN retransmission.
    NetBlackhole,
    /// A COMMIT reaches the server, its reply and every reply for 1 s are lost.
    LostCommit,
    /// The proxies reset every connection.
    Reset,
    /// standby: the primary is stopped immediately, the synchronous standby promoted, the
    /// old primary rewound (pg_rewind) to follow it and made the synchronous standby.
    Failover,
    /// standby: the primary's postmaster is SIGKILLed, then the same as `failover`.
    KillFailover,
    /// standby: the primary is fenced read-only for a while, then unfenced.
    Fence,
    /// standby: the synchronous standby restarts: commits wait for it meanwhile.
    StandbyRestart,
    /// pgbouncer: PgBouncer restarts.
    PoolerRestart,
    /// pgbouncer: PgBouncer PAUSE for a while, then RESUME.
    PoolerPause,
    /// patroni: `patronictl switchover` to the replica.
    Switchover,
    /// patroni: SIGKILL of the leader's postmaster (Patroni alive, fails over).
    LeaderKill,
    /// patroni: the leader's node (Patroni and PostgreSQL) killed, started again later.
    NodeKill,
}

/// Which lane a fault runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Server,
    Network,
}

impl Fault {
    #[cfg(test)]
    pub(crate) const ALL: [Fault; 18] = [
        Fault::FastRestart,
        Fault::Crash,
        Fault::Terminate,
        Fault::KillBackend,
        Fault::Hung,
        Fault::Blackhole,
        Fault::NetBlackhole,
        Fault::LostCommit,
        Fault::Reset,
        Fault::Failover,
        Fault::KillFailover,
        Fault::Fence,
        Fault::StandbyRestart,
        Fault::PoolerRestart,
        Fault::PoolerPause,
        Fault::Switchover,
        Fault::LeaderKill,
        Fault::NodeKill,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::FastRestart => "fast-restart",
            Fault::Crash => "crash",
            Fault::Terminate => "terminate",
            Fault::KillBackend => "kill-backend",
            Fault::Hung => "hung",
            Fault::Blackhole => "blackhole",
            Fault::NetBlackhole => "net-blackhole",
            Fault::LostCommit => "lost-commit",
            Fault::Reset => "reset",
            Fault::Failover => "failover",
            Fault::KillFailover => "kill-failover",
            Fault::Fence => "fence",
            Fault::StandbyRestart => "standby-restart",
            Fault::PoolerRestart => "pooler-restart",
            Fault::PoolerPause => "pooler-pause",
            Fault::Switchover => "switchover",
            Fault::LeaderKill => "leader-kill",
            Fault::NodeKill => "node-kill",
        }
    }

    pub(crate) fn lane(self) -> Lane {
        match self {
            Fault::Blackhole | Fault::NetBlackhole | Fault::LostCommit | Fault::Reset => {
                Lane::Network
            }
            _ => Lane::Server,
        }
    }

    /// The test kit's fault this one is on a single server, held for `hold` where it holds:
    /// one vocabulary, one `apply`, for the soak, the drill, the benchmarks and the tests.
    /// `None` for the faults of a topology (failover, poolers, Patroni, the network) and for
    /// a killed backend, which the kit does not name.
    pub(crate) fn on_one_server(self, hold: Duration) -> Option<pgsteady_testkit::Fault> {
        use pgsteady_testkit::{BackendFilter, Fault as Kit, StopMode};
        Some(match self {
            Fault::FastRestart => Kit::Restart(StopMode::Fast),
            Fault::Crash => Kit::KillPostmaster,
            Fault::Terminate => Kit::Terminate(BackendFilter::ClientBackends),
            Fault::Hung => Kit::Hang(hold),
            _ => return None,
        })
    }

    /// Whether the fault holds for a while (its step carries how long).
    fn holds(self) -> bool {
        matches!(
            self,
            Fault::Hung
                | Fault::Blackhole
                | Fault::NetBlackhole
                | Fault::Fence
                | Fault::PoolerPause
        )
    }

    /// The faults of a topology.
    pub(crate) fn of(topology: Topology) -> Vec<Fault> {
        use Fault::*;
        let network: &[Fault] = match topology {
            // The namespace holds the whole soak: one server and its proxy on loopback.
            Topology::Single => &[Blackhole, LostCommit, Reset, NetBlackhole],
            _ => &[Blackhole, LostCommit, Reset],
        };
        let server: &[Fault] = match topology {
            Topology::Single => &[FastRestart, Crash, Terminate, KillBackend, Hung],
            Topology::Standby => &[
                FastRestart,
                Crash,
                Terminate,
                Hung,
                Failover,
                KillFailover,
                Fence,
                StandbyRestart,
            ],
            Topology::Pgbouncer => &[
                FastRestart,
                Crash,
                Terminate,
                Hung,
                PoolerRestart,
                PoolerPause,
            ],
            Topology::Patroni => &[Switchover, LeaderKill, NodeKill, Terminate],
        };
        server.iter().chain(network).copied().collect()
    }
}

/// One step of a lane: wait `gap`, apply `fault` (holding it `hold` when it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) gap: Duration,
    pub(crate) fault: Fault,
    pub(crate) hold: Duration,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}ms {}", self.gap.as_millis(), self.fault.name())?;
        if self.fault.holds() {
            write!(f, " {}ms", self.hold.as_millis())?;
        }
        Ok(())
    }
}

/// A lane's steps, more than a run can use: a lane stops when the soak's time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub(crate) server: Vec<Step>,
    pub(crate) network: Vec<Step>,
}

impl Schedule {
    /// The schedule of `seed` for `topology` and a run of `duration`, restricted to `only`
    /// when not empty. The same arguments give the same schedule.
    pub(crate) fn new(seed: u64, topology: Topology, duration: Duration, only: &[Fault]) -> Self {
        let faults: Vec<Fault> = Fault::of(topology)
            .into_iter()
            .filter(|f| only.is_empty() || only.contains(f))
            .collect();
        let mut rng = Rng::new(seed);
        // A step takes at least its gap's minimum: this many are enough for the run.
        let steps = (duration.as_millis() / 500 + 2) as usize;
        let lane = |rng: &mut Rng, lane: Lane, gaps: (u64, u64)| -> Vec<Step> {
            let choices: Vec<Fault> = faults
                .iter()
                .copied()
                .filter(|f| f.lane() == lane)
                .collect();
            if choices.is_empty() {
                return Vec::new();
            }
            (0..steps)
                .map(|_| {
                    let fault = rng.pick(&choices);
                    Step {
                        gap: Duration::from_millis(rng.range(gaps.0, gaps.1)),
                        fault,
                        hold: Duration::from_millis(if fault.holds() {
                            rng.range(300, 3000)
                        } else {
                            0
                        }),
                    }
                })
                .collect()
        };
        // The patroni lane waits for a healthy cluster after each step on its own; its gaps
        // are short so that faults come back to back.
        let server_gaps = if topology == Topology::Patroni {
            (500, 4000)
        } else {
            (500, 5000)
        };
        let server = lane(&mut rng, Lane::Server, server_gaps);
        let network = lane(&mut rng, Lane::Network, (1000, 8000));
        Schedule { server, network }
    }

    /// Each lane's steps as text (one entry per step, lane first).
    pub(crate) fn lines(&self) -> Vec<String> {
        let lane = |name: &str, steps: &[Step]| -> Vec<String> {
            steps.iter().map(|s| format!("{name}: {s}")).collect()
        };
        let mut lines = lane("server", &self.server);
        lines.extend(lane("network", &self.network));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let d = Duration::from_secs(60);
        let a = Schedule::new(7, Topology::Standby, d, &[]);
        assert_eq!(a, Schedule::new(7, Topology::Standby, d, &[]));
        assert_ne!(a, Schedule::new(8, Topology::Standby, d, &[]));
        assert!(a.server.len() >= 60 && !a.network.is_empty());
        // Every fault of the topology shows up in a long enough schedule, only those.
        for fault in Fault::of(Topology::Standby) {
            let steps = if fault.lane() == Lane::Server {
                &a.server
            } else {
                &a.network
            };
            assert!(steps.iter().any(|s| s.fault == fault), "{fault:?} missing");
        }
        assert!(a.server.iter().all(|s| s.fault != Fault::Switchover));
    }

    #[test]
    fn the_kernel_blackhole_is_for_the_single_topology_and_its_network_lane() {
        assert_eq!(Fault::NetBlackhole.lane(), Lane::Network);
        assert!(Fault::of(Topology::Single).contains(&Fault::NetBlackhole));
        for t in [Topology::Standby, Topology::Pgbouncer, Topology::Patroni] {
            assert!(!Fault::of(t).contains(&Fault::NetBlackhole), "{t:?}");
        }
        let s = Schedule::new(3, Topology::Single, Duration::from_secs(60), &[]);
        assert!(s.network.iter().any(|s| s.fault == Fault::NetBlackhole));
    }

    #[test]
    fn the_generator_is_pinned() {
        // The stream must never change: printed seeds replay.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn only_restricts_the_faults() {
        let s = Schedule::new(
            1,
            Topology::Single,
            Duration::from_secs(10),
            &[Fault::Crash],
        );
        assert!(s.server.iter().all(|s| s.fault == Fault::Crash));
        assert!(s.network.is_empty());
        assert_eq!(s.lines()[0].split(' ').nth(2), Some("crash"));
    }
}
