//! The clients under test, behind one interface.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use pgsteady_testkit::Cluster;
use pgsteady_testkit::workload::Workload;

/// A boxed error for setup failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The statement every client runs: a round trip that does no work on the server.
pub const QUERY: &str = "SELECT 1";

/// Which client to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum ClientKind {
    /// tokio-postgres as most code uses it: one connection per worker, reconnect at once after
    /// any error, no back-off ([`NaiveClient`](pgsteady_testkit::workload::NaiveClient)).
    Naive,
    /// `pgsteady::Pool` with its defaults: plain `get()` + query, `prepare_cached`.
    Pgsteady,
    /// `pgsteady::Pool::run`: the same work, retried on a fresh connection after a
    /// transient error.
    PgsteadyRun,
    /// deadpool-postgres with its defaults (fast recycling), `prepare_cached`.
    Deadpool,
    /// bb8 + bb8-postgres with their defaults (test on checkout), a per-connection prepared
    /// statement.
    Bb8,
    /// sqlx's `PgPool` with its defaults (test before acquire), persistent statements.
    Sqlx,
    /// `pgsteady::Pool::run` with `statement_cache=off`: unnamed statements, safe behind
    /// PgBouncer in transaction pooling.
    PgsteadyRunUnnamed,
    /// sqlx with `statement_cache_capacity(0)`, its setting for transaction poolers.
    SqlxNoCache,
    /// `pgsteady::Pool::run` with no `statement_cache` setting (`auto`): named statements
    /// until a transaction pooler shows, unnamed after (the warm-up sees the switch).
    PgsteadyRunAuto,
    /// PostgreSQL's `pgbench -n -M prepared -c N -j 2`: libpq, one connection per client,
    /// no pool. The reference row, not a peer.
    Pgbench,
    /// `pgsteady::Pool::query_one`: pipelined statements sharing at most 4 connections
    /// (`crate::pipelined::MAX_CONNECTIONS`), whatever `--pool-size` says.
    PgsteadyQuery,
}

impl ClientKind {
    /// Every client, in report order. A new subject goes here, in [`ClientKind::name`] and
    /// in `clients::build`.
    pub const ALL: [ClientKind; 7] = [
        ClientKind::Pgbench,
        ClientKind::Naive,
        ClientKind::Pgsteady,
        ClientKind::PgsteadyRun,
        ClientKind::Deadpool,
        ClientKind::Bb8,
        ClientKind::Sqlx,
    ];

    /// The clients compared behind a transaction pooler (`--via pgbouncer`).
    pub const POOLER: [ClientKind; 6] = [
        ClientKind::PgsteadyRunAuto,
        ClientKind::PgsteadyRunUnnamed,
        ClientKind::PgsteadyRun,
        ClientKind::Deadpool,
        ClientKind::Sqlx,
        ClientKind::SqlxNoCache,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Naive => "naive tokio-postgres",
            ClientKind::Pgsteady => "pgsteady get()",
            ClientKind::PgsteadyRun => "pgsteady run()",
            ClientKind::Deadpool => "deadpool-postgres",
            ClientKind::Bb8 => "bb8",
            ClientKind::Sqlx => "sqlx",
            ClientKind::PgsteadyRunUnnamed => "pgsteady run() unnamed",
            ClientKind::SqlxNoCache => "sqlx no stmt cache",
            ClientKind::PgsteadyRunAuto => "pgsteady run() auto",
            ClientKind::Pgbench => "pgbench -M prepared",
            ClientKind::PgsteadyQuery => "pgsteady query() max 4",
        }
    }

    /// True for the pools pgsteady is compared with (not the naive baseline, not pgsteady).
    pub fn is_peer(self) -> bool {
        matches!(
            self,
            ClientKind::Deadpool | ClientKind::Bb8 | ClientKind::Sqlx | ClientKind::SqlxNoCache
        )
    }

    /// Why this client cannot run in this build, if it cannot.
    pub fn unavailable(self) -> Option<&'static str> {
        match self {
            ClientKind::Naive | ClientKind::Pgbench => None,
            ClientKind::Pgsteady
            | ClientKind::PgsteadyRun
            | ClientKind::PgsteadyRunUnnamed
            | ClientKind::PgsteadyRunAuto
            | ClientKind::PgsteadyQuery => None,
            _ if cfg!(feature = "peers") => None,
            _ => Some("built without the `peers` feature"),
        }
    }

    /// The clients of `wanted` this build can run, in order; says on stderr which it skips
    /// and why.
    pub fn runnable(wanted: &[ClientKind]) -> Vec<ClientKind> {
        wanted
            .iter()
            .copied()
            .filter(|c| match c.unavailable() {
                Some(why) => {
                    eprintln!("skipping {c}: {why}");
                    false
                }
                None => true,
            })
            .collect()
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Where and how big: the server address the clients use (possibly a fault proxy), its
/// credentials, and the pool size.
#[derive(Clone)]
pub struct Target {
    /// Host (always 127.0.0.1 here).
    pub host: String,
    /// Port: the server's, or a proxy's in front of it.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Password (never printed: `Debug` hides it).
    pub password: String,
    /// Database.
    pub dbname: String,
    /// Maximum connections per pool.
    pub pool_size: usize,
}

impl Target {
    /// The cluster's login user through `port` (the server's own port or a proxy's).
    pub fn new(cluster: &Cluster, port: u16, pool_size: usize) -> Target {
        Target {
            host: cluster.host().to_owned(),
            port,
            user: cluster.user().to_owned(),
            password: cluster.password().to_owned(),
            dbname: cluster.dbname().to_owned(),
            pool_size,
        }
    }

    /// The same as a tokio-postgres configuration.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname);
        config
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// A future that closes a client.
pub type Closing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A client under test: starts a workload of N workers that each loop "check out a
/// connection, run [`QUERY`] (its prepared statement cached per connection), return it".
pub trait Subject: Send + Sync {
    /// The client's kind.
    fn kind(&self) -> ClientKind;

    /// Starts `workers` workers against this client.
    fn start(&self, workers: usize) -> Workload;

    /// Closes the client's connections (after its workload stopped).
    fn close(self: Box<Self>) -> Closing;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_never_shows_its_password() {
        let target = Target {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "app".into(),
            password: "s3cret-pw".into(),
            dbname: "app".into(),
            pool_size: 8,
        };
        assert!(!format!("{target:?}").contains("s3cret-pw"));
    }

    #[test]
    fn peers_are_the_three_pools() {
        let peers: Vec<ClientKind> = ClientKind::ALL
            .into_iter()
            .filter(|c| c.is_peer())
            .collect();
        assert_eq!(
            peers,
            [ClientKind::Deadpool, ClientKind::Bb8, ClientKind::Sqlx]
        );
        assert_eq!(ClientKind::Naive.unavailable(), None);
        assert_eq!(ClientKind::PgsteadyRun.unavailable(), None);
    }
}
