//! Throwaway PostgreSQL clusters and a fault proxy, for tests, benchmarks and `pgsteady drill`.
//!
//! Everything pgsteady claims is about surviving real database faults, so this crate produces
//! them on demand, on one machine:
//!
//! - [`Cluster`]: `initdb` into a temporary directory, a server on a free 127.0.0.1 port,
//!   then stop / start / restart / crash (SIGKILL) / kill one backend / terminate sessions /
//!   hang (SIGSTOP) it, change settings, and read from its log when it became ready; make a
//!   streaming standby of it, promote it, rewind an old primary into a standby, fence it.
//!   [`Fault`] names the server faults and applies one ([`Fault::apply`]): the one
//!   vocabulary of tests, benchmarks and the drill.
//! - [`FaultProxy`]: a TCP proxy in front of it that refuses, resets, delays, blackholes or
//!   swallows replies on command, and counts connections and bytes.
//! - [`PgBouncer`]: a real PgBouncer (session or transaction pooling) in front of a cluster,
//!   with its admin console (`PAUSE`, `RESUME`, `SHOW POOLS`, ...) and restarts.
//! - `PatroniCluster` (feature `patroni`): a high-availability cluster managed by Patroni
//!   (etcd, two nodes, optionally HAProxy), with switchover, leader postmaster kill,
//!   whole-node kill, node restart, and Patroni's own time of each leader change.
//! - [`netns`]: real packet loss in a private network namespace (root and nftables), for
//!   TCP keepalive and `tcp_user_timeout`.
//! - [`fake`]: fake servers on loopback that misbehave as no real server can be made to:
//!   authenticate then hang, stream rows forever, announce a 2 GB message, send control
//!   characters, ask for a password, speak HTTP.
//! - [`workload`]: N workers looping an operation against any client while faults happen,
//!   every call recorded; per fault: errors surfaced, time from ready to first success, time
//!   without success, longest call; a histogram for charts.
//!
//! Server binaries are found through `$PGSTEADY_PG_BIN`, `pg_config --bindir`, then the
//! newest `/usr/lib/postgresql/*/bin`. As root, `initdb` and `postgres` run as the `postgres`
//! user (or `$PGSTEADY_PG_USER`), since PostgreSQL refuses to run as root.
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod apt;
mod bin;
mod cluster;
mod error;
pub mod fake;
mod fault;
#[cfg(feature = "http")]
pub mod http;
mod log;
pub mod netns;
#[cfg(feature = "patroni")]
mod patroni;
mod pgbouncer;
mod process;
mod proxy;
mod sweep;
pub mod workload;

pub use bin::PgBin;
pub use cluster::{BackendFilter, Cluster, ClusterBuilder, Rewind, StandbyBuilder, StopMode};
pub use error::{Error, Result};
pub use fault::{Applied, Fault};
#[cfg(feature = "patroni")]
pub use patroni::{
    Healthy, LeaderChange, Member, PatroniBuilder, PatroniCluster, PatroniNode, PatroniTimings,
    Role,
};
pub use pgbouncer::{PgBouncer, PgBouncerBuilder, PoolMode};
pub use proxy::{FaultProxy, ProxyMode, ProxyStats};
