//! The topologies the soak can run against.

/// A topology of the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Topology {
    /// One server behind a fault proxy.
    Single,
    /// A primary and a synchronous standby behind one proxy each, the pool on a
    /// multi-host string with target_session_attrs=read-write: promotion, fencing, the
    /// demoted primary rejoining (pg_rewind).
    Standby,
    /// PgBouncer (transaction pooling) in front of one server, a proxy in front of it.
    Pgbouncer,
    /// The HA drill's Patroni cluster in synchronous mode (etcd, two nodes), a proxy per
    /// node, the pool on a multi-host string with target_session_attrs=read-write.
    Patroni,
}

impl Topology {
    pub(super) fn name(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Standby => "standby",
            Topology::Pgbouncer => "pgbouncer",
            Topology::Patroni => "patroni",
        }
    }
}
