//! [`ClusterBuilder`]: the settings a cluster is created with, and its creation (initdb,
//! configuration, a free port, the login user and its database).

use std::path::PathBuf;

use super::{Cluster, StopMode, random_password};
use crate::Result;
use crate::bin::PgBin;

/// Builds a [`Cluster`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterBuilder {
    bin: Option<PathBuf>,
    max_connections: u32,
    settings: Vec<(String, String)>,
    user: String,
    dbname: String,
    nice: i32,
    initdb_args: Vec<String>,
    tls: Option<(String, String)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            bin: None,
            max_connections: 100,
            settings: Vec::new(),
            user: "app".to_owned(),
            dbname: "app".to_owned(),
            nice: 0,
            initdb_args: Vec::new(),
            tls: None,
        }
    }
}

// The cluster's two entry points live with the builder they hand out: the builder names the
// cluster it starts, so these in the cluster's file would make each file need the other.
impl Cluster {
    /// Creates and starts a cluster with default settings.
    pub async fn start() -> Result<Cluster> {
        ClusterBuilder::default().start().await
    }

    /// A builder for a cluster with other settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }
}

impl ClusterBuilder {
    /// Uses the server binaries in `dir` instead of searching ([`PgBin::find`]).
    pub fn pg_bin(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin = Some(dir.into());
        self
    }

    /// `max_connections`. Default: 100.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Any other server setting, written to `postgresql.conf`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// An extra `initdb` argument, e.g. `--wal-segsize=1` (1 MB WAL segments: a test that
    /// fills, switches and removes WAL segments does so 16 times faster). Repeatable.
    pub fn initdb_arg(mut self, arg: impl Into<String>) -> Self {
        self.initdb_args.push(arg.into());
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

    /// Runs the server's processes at this nice value (`setpriority`, inherited by every
    /// backend). Default: 0. A client measured on the same machine as its server competes
    /// with the server's processes for the cores; with hundreds of backends busy (a herd
    /// reconnecting, a shutdown ending 200 sessions) the scheduler leaves the client's few
    /// threads waiting for tens of milliseconds, and what is measured is the scheduler, not
    /// the client. A positive value (e.g. 10) gives the client the cores whenever it wants
    /// them, as if the server ran on another machine, while the server still gets all the
    /// time the client leaves.
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = nice;
        self
    }

    /// Serves TLS with this certificate chain and private key (PEM): `ssl = on`, the files
    /// written into the data directory as `server.crt` / `server.key` (mode 0600, owned by the
    /// server's user). Default: no TLS (`ssl = off`: the server answers the SSLRequest with
    /// `N`). rcgen makes such certificates in a test.
    pub fn tls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Creates the cluster and returns once an authenticated query over TCP succeeds.
    pub async fn start(self) -> Result<Cluster> {
        self.create().await
    }

    /// Creates the cluster (users and database included) and leaves the server stopped, so
    /// a test can start it later on a port it already knows ("the database comes up late").
    pub async fn init(self) -> Result<Cluster> {
        let cluster = self.create().await?;
        cluster.stop(StopMode::Fast).await?;
        Ok(cluster)
    }

    async fn create(self) -> Result<Cluster> {
        let bin = match self.bin {
            Some(dir) => PgBin::from_dir(dir)?,
            None => PgBin::find()?,
        };
        let mut cluster =
            Cluster::blank(bin, self.user, random_password(), self.dbname, self.nice)?;
        cluster.initdb(&self.initdb_args).await?;
        let mut settings = self.settings;
        if let Some((cert, key)) = &self.tls {
            cluster.write_tls_files(cert, key)?;
            settings.push(("ssl".to_owned(), "on".to_owned()));
        }
        cluster.write_config(self.max_connections, &settings)?;

        cluster.start_on_free_port().await?;
        cluster.bootstrap().await?;
        Ok(cluster)
    }
}
