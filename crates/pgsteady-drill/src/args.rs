//! The arguments of `pgsteady drill`, shared by the drill, `--ha` and `--herd`.

use std::path::PathBuf;
use std::time::Duration;

use crate::ha::HaPath;

/// Workers per client.
const DEFAULT_WORKERS: u16 = 4;

pub(crate) const AFTER_HELP: &str = "\
Faults (run in this order; --faults picks some, --list shows them):
  late-start, fast-restart, crash, terminate, idle-timeout, slots-exhausted, hung,
  silent-drop, lost-commit
  with --ha (a Patroni cluster): switchover, leader-crash, leader-lost

pgsteady's guarantees (exit 0 when all hold, 9 otherwise):
  - 0 errors surfaced through run / transaction (an unknown commit outcome counts as one)
  - every acknowledged write is in the table
  - no write is in the table twice
  - no write reported not committed is in the table

Exit codes (docs/exit-codes.md):
  0    pgsteady's guarantees held (or --list); --herd: pgsteady's callers saw no error
       and no 53300, and all N were serving again within 30 s
  2    usage error (nothing was started)
  9    a guarantee was broken (each one is named)
  10   the drill could not run (no PostgreSQL binaries, no Patroni, the cluster failed)
  130  interrupted (SIGINT; 143 SIGTERM): the throwaway cluster was stopped and its
       directory removed";

/// Arguments of `pgsteady drill` (a clap `Args` struct for the CLI to embed).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct DrillArgs {
    /// Faults to apply, comma-separated (see --list; with --ha: switchover, leader-crash,
    /// leader-lost). Default: all of them.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "FAULT,...",
        conflicts_with = "herd"
    )]
    pub(crate) faults: Vec<String>,
    /// List the faults and exit.
    #[arg(long)]
    pub(crate) list: bool,
    /// HA mode: a throwaway Patroni cluster (etcd, two PostgreSQL nodes, HAProxy) and the
    /// faults switchover, leader-crash, leader-lost, applied once with the clients on the
    /// multi-host string (target_session_attrs=read-write) and once through HAProxy. Per
    /// fault, Patroni's own leader-change time beside each client's write gap.
    #[arg(long, conflicts_with_all = ["herd", "report"])]
    pub(crate) ha: bool,
    /// With --ha: the connection paths, comma-separated: multi-host, haproxy. Default: both.
    #[arg(long, value_delimiter = ',', value_name = "PATH,...", requires = "ha")]
    pub(crate) paths: Vec<HaPath>,
    /// With --ha: pgsteady's run / transaction deadline (and acquire timeout). A failover
    /// that takes longer surfaces as a typed timeout error after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = humantime::parse_duration, requires = "ha")]
    pub(crate) deadline: Duration,
    /// With --ha: Patroni's primary_start_timeout in seconds. 0 (the default here): a
    /// leader whose postmaster died is failed over at once; Patroni's default 300 restarts
    /// it in place.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, requires = "ha")]
    pub(crate) primary_start_timeout: u32,
    /// With --ha: HAProxy's health-check interval (`inter`; a node is up after one good
    /// check, down after two failed ones). It bounds how late HAProxy follows a new leader.
    /// Patroni's example configuration uses 3s.
    #[arg(long, value_name = "DURATION", default_value = "250ms",
          value_parser = humantime::parse_duration, requires = "ha")]
    pub(crate) haproxy_check_interval: Duration,
    /// Workers per client.
    #[arg(long, default_value_t = DEFAULT_WORKERS, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub(crate) workers: u16,
    /// Write a timeline chart to FILE.svg, or FILE.html (chart, table and verdict).
    #[arg(long, value_name = "FILE", conflicts_with = "herd")]
    pub(crate) report: Option<PathBuf>,
    /// Print the raw figures as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Herd mode: N single-connection clients, each making one call per 100 ms, reconnect
    /// after one fast restart: N pgsteady pools (jittered reconnection), then N loops
    /// retrying every 100 ms; connection attempts per 10 ms at the server, time until all N
    /// serve again, errors and 53300s. The cluster gets max_connections max(N + 50, 250).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) herd: Option<u32>,
    /// Directory holding the PostgreSQL server binaries (initdb, postgres). Default: found
    /// through $PGSTEADY_PG_BIN, `pg_config --bindir`, then /usr/lib/postgresql/*/bin.
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin: Option<PathBuf>,
    /// Run both clients through a connection pooler: `pgbouncer` starts a real PgBouncer
    /// (Debian package `pgbouncer`, installed when missing) in transaction pooling mode in
    /// front of the cluster, between the fault proxies and the server; pgsteady's pool then
    /// runs with `statement_cache=off` (docs/pgbouncer.md). Faults still hit the server or
    /// the proxies.
    #[arg(long, value_enum, value_name = "POOLER", conflicts_with = "herd")]
    pub(crate) via: Option<Via>,
}

/// A pooler the drill's clients can go through (`--via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// PgBouncer in transaction pooling mode.
    Pgbouncer,
}

/// Parses `--faults` names against `all`: an unknown one is named with the possible values.
pub(crate) fn parse_faults<F: Copy + Ord>(
    names: &[String],
    all: &[F],
    name: impl Fn(F) -> &'static str,
) -> Result<Vec<F>, String> {
    let mut faults = Vec::new();
    for given in names {
        match all.iter().find(|f| name(**f) == given.trim()) {
            Some(f) => faults.push(*f),
            None => {
                let possible: Vec<&str> = all.iter().map(|f| name(*f)).collect();
                return Err(format!(
                    "--faults {given}: no such fault (possible values: {})",
                    possible.join(", ")
                ));
            }
        }
    }
    if faults.is_empty() {
        faults = all.to_vec();
    }
    faults.sort();
    faults.dedup();
    Ok(faults)
}
