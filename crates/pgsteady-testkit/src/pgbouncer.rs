//! [`PgBouncer`]: a real PgBouncer in front of a [`Cluster`], on a free loopback port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_postgres::{Config, NoTls, SimpleQueryMessage};

use crate::cluster::Cluster;
use crate::process::{self, RunAs};
use crate::{Error, Result, sweep};

/// How long PgBouncer may take to listen before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one admin-console round trip (PAUSE waits for the server connections, so longer).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);
/// The admin console's user (a PgBouncer-only user in `auth_file`, not a server role).
const ADMIN_USER: &str = "pgbouncer";

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction: between transactions a client's next statement
    /// may run on another server connection (session state does not follow it).
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// Builds a [`PgBouncer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PgBouncerBuilder {
    pool_mode: PoolMode,
    default_pool_size: u32,
    server_login_retry: u32,
    query_wait_timeout: u32,
    settings: Vec<(String, String)>,
}

impl Default for PgBouncerBuilder {
    fn default() -> Self {
        PgBouncerBuilder {
            pool_mode: PoolMode::Transaction,
            default_pool_size: 4,
            server_login_retry: 1,
            query_wait_timeout: 120,
            settings: Vec::new(),
        }
    }
}

impl PgBouncerBuilder {
    /// `pool_mode`. Default: [`PoolMode::Transaction`].
    pub fn pool_mode(mut self, mode: PoolMode) -> Self {
        self.pool_mode = mode;
        self
    }

    /// `default_pool_size`: server connections per user and database. Default: 4.
    pub fn default_pool_size(mut self, n: u32) -> Self {
        self.default_pool_size = n;
        self
    }

    /// `server_login_retry`, seconds: after a failed server login, how long PgBouncer waits
    /// before the next attempt (and fails new clients fast meanwhile). Default: 1 (PgBouncer's
    /// own default is 15).
    pub fn server_login_retry(mut self, seconds: u32) -> Self {
        self.server_login_retry = seconds;
        self
    }

    /// `query_wait_timeout`, seconds: how long a query may wait for a server connection
    /// before PgBouncer closes the client with an error; 0 waits forever. Default: 120
    /// (PgBouncer's default).
    pub fn query_wait_timeout(mut self, seconds: u32) -> Self {
        self.query_wait_timeout = seconds;
        self
    }

    /// Any other `[pgbouncer]` setting, written to the configuration file as given.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Whether PgBouncer can run here (its program found, or installed now): the reason
    /// when not, for a test to print as it skips.
    pub fn check_available(&self) -> std::result::Result<(), String> {
        find_program().map(drop).map_err(|e| e.to_string())
    }

    /// Writes the configuration and starts PgBouncer in front of `cluster`, which must be
    /// running (its login user's SCRAM secret is read from `pg_authid`).
    ///
    /// Fails with [`Error::Unsupported`] when there is no `pgbouncer` program and it could
    /// not be installed: tests skip on that error, printing it.
    pub async fn start(self, cluster: &Cluster) -> Result<PgBouncer> {
        let program = find_program()?;
        let run_as = RunAs::detect()?;
        sweep::sweep_stale_clusters();
        let dir = tempfile::Builder::new()
            .prefix(sweep::DIR_PREFIX)
            .tempdir_in(sweep::base_dir())?;
        fs::write(
            dir.path().join(sweep::OWNER_FILE),
            std::process::id().to_string(),
        )?;
        run_as.chown(dir.path())?;
        // PgBouncer runs in `data`, as a server does: the sweep of a killed test process's
        // leftovers finds processes by that working directory.
        let work = dir.path().join("data");
        fs::create_dir(&work)?;
        run_as.chown(&work)?;

        // The login user's SCRAM secret, so no plain-text password is written anywhere.
        let admin = cluster.admin().await?;
        let row = admin
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&cluster.user()],
            )
            .await?;
        let secret: String = row.get(0);
        let admin_password = random_token();
        let auth_file = work.join("userlist.txt");
        fs::write(
            &auth_file,
            format!(
                "\"{}\" \"{secret}\"\n\"{ADMIN_USER}\" \"{admin_password}\"\n",
                cluster.user()
            ),
        )?;
        run_as.chown(&auth_file)?;

        let mut bouncer = PgBouncer {
            dir: Some(dir),
            program,
            run_as,
            port: 0,
            server_port: cluster.port(),
            user: cluster.user().to_owned(),
            password: cluster.password().to_owned(),
            dbname: cluster.dbname().to_owned(),
            admin_password,
            builder: self,
            child: Mutex::new(None),
        };
        let mut last = None;
        for _ in 0..5 {
            bouncer.port = free_port()?;
            bouncer.write_config()?;
            match bouncer.spawn_and_wait().await {
                Ok(()) => return Ok(bouncer),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("five attempts"))
    }
}

/// A real PgBouncer (the `pgbouncer` program, installed with apt-get when missing) in front of
/// a [`Cluster`], listening on a free port of 127.0.0.1, its files in a temporary directory.
///
/// Clients log in as the cluster's login user with its password (SCRAM-SHA-256: PgBouncer's
/// `auth_file` holds the server's SCRAM secret, and PgBouncer logs in to the server with the
/// keys from the client's exchange). The admin console (database `pgbouncer`) is reached with
/// [`PgBouncer::admin_command`] / [`PgBouncer::show`].
///
/// As root it runs as the `postgres` user (or `$PGSTEADY_PG_USER`), as the server does.
/// Dropping it kills it and removes the directory, also while a test panics; a killed test
/// process's PgBouncer dies with it (parent-death signal) and the next cluster or PgBouncer
/// created on the machine removes the directory.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> pgsteady_testkit::Result<()> {
/// use pgsteady_testkit::{Cluster, PgBouncer, PoolMode};
///
/// let cluster = Cluster::start().await?;
/// let bouncer = PgBouncer::builder()
///     .pool_mode(PoolMode::Transaction)
///     .query_wait_timeout(5)
///     .start(&cluster)
///     .await?;
/// let (client, conn) = bouncer.pg_config().connect(tokio_postgres::NoTls).await?;
/// tokio::spawn(conn);
/// client.simple_query("SELECT 1").await?;
/// let pools = bouncer.show("POOLS").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgBouncer {
    dir: Option<tempfile::TempDir>,
    program: PathBuf,
    run_as: RunAs,
    port: u16,
    server_port: u16,
    user: String,
    password: String,
    dbname: String,
    admin_password: String,
    builder: PgBouncerBuilder,
    child: Mutex<Option<Child>>,
}

impl PgBouncer {
    /// A builder: transaction pooling, `default_pool_size = 4`, `server_login_retry = 1`.
    pub fn builder() -> PgBouncerBuilder {
        PgBouncerBuilder::default()
    }

    /// Starts PgBouncer in front of `cluster` with the builder's defaults.
    pub async fn start(cluster: &Cluster) -> Result<PgBouncer> {
        PgBouncerBuilder::default().start(cluster).await
    }

    /// The port PgBouncer listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The pool mode it was started with.
    pub fn pool_mode(&self) -> PoolMode {
        self.builder.pool_mode
    }

    /// A `postgresql://` URL for the cluster's login user through PgBouncer.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            self.user, self.password, self.port, self.dbname
        )
    }

    /// A tokio-postgres configuration for the login user through PgBouncer.
    pub fn pg_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// The temporary directory (configuration, `auth_file`, log in its `data` directory).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("directory kept until drop").path()
    }

    /// PgBouncer's log file.
    pub fn log_path(&self) -> PathBuf {
        self.work_dir().join("pgbouncer.log")
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The pid of the running PgBouncer, if any.
    pub fn pid(&self) -> Option<i32> {
        self.child
            .lock()
            .expect("child state")
            .as_ref()
            .map(|c| c.id() as i32)
    }

    /// Runs one admin-console command (`PAUSE`, `RESUME`, `RECONNECT`, `KILL app`, ...) and
    /// returns its rows, each as column name -> value (an empty list for commands without
    /// rows). Bounded by 30 s.
    pub async fn admin_command(&self, command: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(ADMIN_USER)
            .password(&self.admin_password)
            .dbname("pgbouncer")
            .connect_timeout(Duration::from_secs(5));
        let run = async {
            let (client, connection) = config.connect(NoTls).await?;
            let driver = tokio::spawn(connection);
            let messages = client.simple_query(command).await;
            drop(client);
            let _ = driver.await;
            Ok::<_, Error>(messages?)
        };
        let messages = tokio::time::timeout(ADMIN_TIMEOUT, run)
            .await
            .map_err(|_| {
                Error::State(format!(
                    "PgBouncer's admin console did not answer {command:?} within {ADMIN_TIMEOUT:?}"
                ))
            })??;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_owned(), row.get(i).unwrap_or("").to_owned()))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// `SHOW <what>` on the admin console (`POOLS`, `SERVERS`, `CLIENTS`, `STATS`, ...).
    pub async fn show(&self, what: &str) -> Result<Vec<BTreeMap<String, String>>> {
        if what.is_empty() || !what.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::State(format!("not a SHOW subject: {what:?}")));
        }
        self.admin_command(&format!("SHOW {what}")).await
    }

    /// `SHOW POOLS` for the login user's database: the one pool's row.
    pub async fn pool(&self) -> Result<BTreeMap<String, String>> {
        self.show("POOLS")
            .await?
            .into_iter()
            .find(|row| row.get("database").map(String::as_str) == Some(self.dbname.as_str()))
            .ok_or_else(|| Error::State(format!("no pool for database {}", self.dbname)))
    }

    /// `PAUSE`: waits until every server connection is released, then holds new queries
    /// until [`PgBouncer::resume`].
    pub async fn pause(&self) -> Result<()> {
        self.admin_command("PAUSE").await.map(drop)
    }

    /// `RESUME` after [`PgBouncer::pause`].
    pub async fn resume(&self) -> Result<()> {
        self.admin_command("RESUME").await.map(drop)
    }

    /// Stops PgBouncer (SIGTERM: immediate shutdown, every client connection closed) and
    /// waits for it to exit.
    pub async fn stop(&self) -> Result<()> {
        let child = self.child.lock().expect("child state").take();
        if let Some(child) = child {
            let _ = tokio::task::spawn_blocking(move || stop_child(child)).await;
        }
        Ok(())
    }

    /// Starts it again on the same port after [`PgBouncer::stop`].
    pub async fn start_again(&self) -> Result<()> {
        self.spawn_and_wait().await
    }

    /// Stops and starts it again on the same port (clients are disconnected).
    pub async fn restart(&self) -> Result<()> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    fn work_dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("directory kept until drop")
            .path()
            .join("data")
    }

    fn write_config(&self) -> Result<()> {
        let work = self.work_dir();
        let b = &self.builder;
        let mut ini = String::new();
        let _ = writeln!(ini, "[databases]");
        let _ = writeln!(ini, "* = host=127.0.0.1 port={}", self.server_port);
        let _ = writeln!(ini, "[pgbouncer]");
        let _ = writeln!(ini, "listen_addr = 127.0.0.1");
        let _ = writeln!(ini, "listen_port = {}", self.port);
        // No Unix socket: the distribution's default directory is not ours.
        let _ = writeln!(ini, "unix_socket_dir =");
        let _ = writeln!(ini, "auth_type = scram-sha-256");
        let _ = writeln!(ini, "auth_file = {}", work.join("userlist.txt").display());
        let _ = writeln!(ini, "admin_users = {ADMIN_USER}");
        let _ = writeln!(ini, "stats_users = {ADMIN_USER}");
        let _ = writeln!(ini, "pool_mode = {}", b.pool_mode.as_str());
        let _ = writeln!(ini, "default_pool_size = {}", b.default_pool_size);
        let _ = writeln!(ini, "max_client_conn = 1000");
        let _ = writeln!(ini, "server_login_retry = {}", b.server_login_retry);
        let _ = writeln!(ini, "query_wait_timeout = {}", b.query_wait_timeout);
        let _ = writeln!(ini, "logfile = {}", work.join("pgbouncer.log").display());
        let _ = writeln!(ini, "pidfile = {}", work.join("pgbouncer.pid").display());
        // JDBC and some drivers send it; PgBouncer 1.18 refuses unknown startup parameters.
        let _ = writeln!(ini, "ignore_startup_parameters = extra_float_digits");
        for (name, value) in &b.settings {
            let _ = writeln!(ini, "{name} = {value}");
        }
        let path = work.join("pgbouncer.ini");
        fs::write(&path, ini)?;
        self.run_as.chown(&path)
    }

    async fn spawn_and_wait(&self) -> Result<()> {
        {
            let mut child = self.child.lock().expect("child state");
            if child.is_some() {
                return Err(Error::State("PgBouncer is already running".to_owned()));
            }
            let work = self.work_dir();
            // Its own process group, SIGQUIT (which it does not handle: it dies) if this
            // thread dies.
            let mut cmd = self.run_as.postmaster_command(&self.program, 0);
            cmd.arg(work.join("pgbouncer.ini"))
                .current_dir(&work)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            *child = Some(cmd.spawn()?);
        }
        let started = Instant::now();
        loop {
            let exited = {
                let mut guard = self.child.lock().expect("child state");
                match guard.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => {
                        guard.take();
                        Some(status)
                    }
                    _ => None,
                }
            };
            if let Some(status) = exited {
                return Err(Error::Command {
                    program: "pgbouncer".to_owned(),
                    detail: format!("exited with {status}:\n{}", tail(&self.log(), 10)),
                });
            }
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok()
                && self.admin_command("SHOW VERSION").await.is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                self.stop().await?;
                return Err(Error::NotReady {
                    waited: started.elapsed(),
                    log_tail: tail(&self.log(), 10),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(child) = self
            .child
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            stop_child(child);
        }
        if let Some(dir) = self.dir.take() {
            let work = dir.path().join("data");
            let _ = process::signal_server(&work, Signal::SIGKILL);
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                eprintln!("pgsteady-testkit: could not remove {}: {e}", path.display());
            }
        }
    }
}

/// SIGTERM (PgBouncer's immediate shutdown), then SIGKILL after [`STOP_TIMEOUT`].
fn stop_child(mut child: Child) {
    let pid = child.id() as i32;
    let _ = process::signal_pid(pid, Signal::SIGCONT);
    let _ = process::signal_pid(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let _ = process::signal_pid(pid, Signal::SIGKILL);
    let _ = child.wait();
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn random_token() -> String {
    let mut bytes = [0u8; 18];
    if let Ok(mut urandom) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const BY_HAND: &str = "install PgBouncer (e.g. `apt-get install -y pgbouncer`) or set \
                       PGSTEADY_PGBOUNCER to the program";

/// The `pgbouncer` program: `$PGSTEADY_PGBOUNCER`, then `pgbouncer` on `PATH`, then
/// `/usr/sbin/pgbouncer`; installs the Debian package `pgbouncer` once when none is found
/// (the same rules as the server packages: one installer per machine, a message on stderr,
/// `PGSTEADY_NO_INSTALL=1` to prevent it). [`Error::Unsupported`] when there is none.
pub(crate) fn find_program() -> Result<PathBuf> {
    if let Ok(found) = search() {
        return Ok(found);
    }
    let _lock = crate::apt::lock();
    if let Ok(found) = search() {
        return Ok(found);
    }
    let installed = crate::apt::install(
        crate::apt::allowed(),
        &["pgbouncer"],
        "no pgbouncer program found; installing the `pgbouncer` package with apt-get",
        BY_HAND,
    );
    search().map_err(|searched| {
        Error::Unsupported(match installed {
            Ok(()) => format!("no pgbouncer program after apt-get install pgbouncer ({searched})"),
            Err(why) => format!("no pgbouncer program ({searched}); {why}"),
        })
    })
}

fn search() -> std::result::Result<PathBuf, String> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os("PGSTEADY_PGBOUNCER") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("$PGSTEADY_PGBOUNCER={}", path.display()));
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pgbouncer"))
                .collect()
        })
        .unwrap_or_default();
    for candidate in on_path
        .into_iter()
        .chain([Path::new("/usr/sbin/pgbouncer").to_owned()])
    {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    searched.push("PATH, /usr/sbin/pgbouncer".to_owned());
    Err(searched.join(", "))
}
