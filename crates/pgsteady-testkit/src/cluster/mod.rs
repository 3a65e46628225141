//! Throwaway PostgreSQL clusters that tests can stop, crash, hang and restart.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio_postgres::{Client, Config, NoTls};

use crate::bin::PgBin;
use crate::log::{self, LOG_LINE_PREFIX};
use crate::process::{self, RunAs};
use crate::{Error, Result, sweep};

mod builder;
mod faults;
mod replication;

pub use builder::ClusterBuilder;
pub use faults::{BackendFilter, StopMode};
pub use replication::{Rewind, StandbyBuilder};

/// How long a start may take (initdb excluded) before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop may take before we give up.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often we look again while waiting for the server.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
struct Server {
    postmaster: Option<Child>,
    paused: bool,
}

/// A throwaway PostgreSQL cluster in a temporary directory, listening on a free port of
/// 127.0.0.1 (and a Unix socket in its directory).
///
/// It has a superuser `postgres` reachable over the Unix socket without a password
/// ([`Cluster::admin`]), and a login user (default `app`, SCRAM password) owning a database of
/// the same name, reachable over TCP ([`Cluster::url`], [`Cluster::pg_config`]).
///
/// Dropping it stops the server (immediate shutdown, then SIGKILL of anything left) and removes
/// the directory, also while a test panics. If the test process itself is killed, the server
/// gets SIGQUIT from the kernel (parent-death signal) and the next cluster created on this
/// machine removes the directory.
///
/// The server is started from the calling thread and is tied to it: start clusters from async
/// code running on a runtime thread (as `#[tokio::test]` does), not from `spawn_blocking`.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> pgsteady_testkit::Result<()> {
/// use pgsteady_testkit::{Cluster, StopMode};
///
/// let cluster = Cluster::start().await?;
/// let (client, conn) = cluster.pg_config().connect(tokio_postgres::NoTls).await?;
/// tokio::spawn(conn);
/// cluster.restart(StopMode::Fast).await?;
/// assert!(client.simple_query("SELECT 1").await.is_err()); // 57P01: terminated by the restart
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PgBin,
    run_as: RunAs,
    port: u16,
    user: String,
    password: String,
    dbname: String,
    server: Mutex<Server>,
    /// Serialises start/stop/kill so two of them never interleave.
    control: tokio::sync::Mutex<()>,
    /// The server processes' nice value ([`ClusterBuilder::nice`]).
    nice: i32,
}

impl Cluster {
    /// A tokio-postgres configuration for the login user through another port of 127.0.0.1,
    /// e.g. a [`crate::FaultProxy`] in front of the server. (`Config::port` appends a port
    /// rather than replacing it, so [`Cluster::pg_config`] cannot simply be changed.)
    pub fn pg_config_with_port(&self, port: u16) -> Config {
        let mut config = Config::new();
        config
            .host(self.host())
            .port(port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname);
        config
    }

    /// The TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The server's TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The login user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The login user's password (random per cluster).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The login user's database.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// A `postgresql://` URL for the login user, with its password.
    pub fn url(&self) -> String {
        self.url_with_port(self.port)
    }

    /// Like [`Cluster::url`] but for another port of 127.0.0.1, e.g. a [`crate::FaultProxy`]
    /// in front of the server.
    pub fn url_with_port(&self, port: u16) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{port}/{}",
            self.user, self.password, self.dbname
        )
    }

    /// A multi-host `postgresql://` URL for the login user: `127.0.0.1` on each of `ports`, in
    /// that order (e.g. a standby's and its primary's), no query string: append
    /// `?target_session_attrs=...` as needed. The login user is the same on a standby.
    ///
    /// ```no_run
    /// # async fn demo() -> pgsteady_testkit::Result<()> {
    /// let primary = pgsteady_testkit::Cluster::start().await?;
    /// let standby = primary.standby().start().await?;
    /// let url = primary.url_with_ports(&[standby.port(), primary.port()]);
    /// let url = format!("{url}?target_session_attrs=read-write");
    /// # Ok(()) }
    /// ```
    pub fn url_with_ports(&self, ports: &[u16]) -> String {
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!(
            "postgresql://{}:{}@{}/{}",
            self.user,
            self.password,
            hosts.join(","),
            self.dbname
        )
    }

    /// A tokio-postgres configuration for the login user over TCP.
    pub fn pg_config(&self) -> Config {
        self.pg_config_with_port(self.port)
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("directory kept until drop").path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir().join("sock")
    }

    /// The server log (stderr of the postmaster and its children).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("server.log")
    }

    /// The server binaries in use.
    pub fn bin(&self) -> &PgBin {
        &self.bin
    }

    /// The process id of the running postmaster, if any.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let server = self.server.lock().expect("server state");
        server.postmaster.as_ref().map(|child| child.id() as i32)
    }

    /// True while a postmaster started by us is running (paused or not).
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some()
    }

    /// A superuser session over the Unix socket, its connection driven by a spawned task.
    pub async fn admin(&self) -> Result<Client> {
        let mut config = Config::new();
        config
            .host_path(self.socket_dir())
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .application_name("pgsteady-testkit")
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Sets a server parameter with `ALTER SYSTEM` and reloads the configuration, returning
    /// once new sessions see the value. Parameters that need a restart (`max_connections`...)
    /// are written but take effect only after [`Cluster::restart`].
    pub async fn set(&self, name: &str, value: &str) -> Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(Error::State(format!("not a parameter name: {name:?}")));
        }
        let admin = self.admin().await?;
        let literal = value.replace('\'', "''");
        admin
            .batch_execute(&format!("ALTER SYSTEM SET {name} = '{literal}'"))
            .await?;
        admin.batch_execute("SELECT pg_reload_conf()").await?;
        // The reload is asynchronous. Learn how the server spells the value (units
        // normalised) in a throwaway transaction, then wait until a new session shows it.
        admin.batch_execute("BEGIN").await?;
        let expected = admin
            .query_one("SELECT set_config($1, $2, true)", &[&name, &value])
            .await;
        admin.batch_execute("ROLLBACK").await?;
        let Ok(expected) = expected.map(|row| row.get::<_, String>(0)) else {
            // Not settable in a session (postmaster or sighup context): nothing to compare.
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let session = self.admin().await?;
            let row = session
                .query_one("SELECT current_setting($1)", &[&name])
                .await?;
            if row.get::<_, String>(0) == expected || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Replaces the client authentication rules (`pg_hba.conf`) with `lines` and reloads,
    /// returning once new sessions are checked against them. The lines `local all postgres
    /// trust` and `local replication all trust` are always kept first, so [`Cluster::admin`]
    /// and standbys still work. The default rules are `local all all trust`, `local
    /// replication all trust` and `host all all 127.0.0.1/32 scram-sha-256`.
    ///
    /// ```no_run
    /// # async fn demo(cluster: &pgsteady_testkit::Cluster) -> pgsteady_testkit::Result<()> {
    /// // Encrypted TCP only (needs a cluster built with `ClusterBuilder::tls`).
    /// cluster.set_hba(&["hostssl all all 127.0.0.1/32 scram-sha-256"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_hba(&self, lines: &[&str]) -> Result<()> {
        let mut text = String::from("local all postgres trust\nlocal replication all trust\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        let admin = self.admin().await?;
        let before: String = admin
            .query_one("SELECT pg_conf_load_time()::text", &[])
            .await?
            .get(0);
        fs::write(self.data_dir().join("pg_hba.conf"), text)?;
        admin.batch_execute("SELECT pg_reload_conf()").await?;
        // The postmaster reloads pg_hba.conf in the same step as the settings, before it
        // forks another session: a new session showing a new load time sees the new rules.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let session = self.admin().await?;
            let now: String = session
                .query_one("SELECT pg_conf_load_time()::text", &[])
                .await?
                .get(0);
            if now != before {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::State(
                    "the server did not reload pg_hba.conf within 5 s".to_owned(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last time the server logged "database system is ready to accept connections",
    /// with millisecond precision.
    pub fn ready_at(&self) -> Option<SystemTime> {
        self.ready_times().pop()
    }

    /// Every time the server logged that it was ready, oldest first (one per start, and one
    /// per automatic restart after a backend crash).
    pub fn ready_times(&self) -> Vec<SystemTime> {
        log::ready_times(&fs::read_to_string(self.log_path()).unwrap_or_default())
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the running server accepts connections (e.g. after [`Cluster::kill_backend`]
    /// while it recovers by itself).
    pub async fn wait_ready(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.postmaster_exited()? {
                return Err(Error::Command {
                    program: "postgres".to_owned(),
                    detail: format!("exited with {status}:\n{}", log::tail(&self.log_path(), 20)),
                });
            }
            if self.admin().await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::NotReady {
                    waited: started.elapsed(),
                    log_tail: log::tail(&self.log_path(), 20),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A cluster value with its temporary directory (owner file, socket directory) and no data
    /// directory yet; dropping it removes the directory.
    fn blank(
        bin: PgBin,
        user: String,
        password: String,
        dbname: String,
        nice: i32,
    ) -> Result<Cluster> {
        sweep::sweep_stale_clusters();
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix(sweep::DIR_PREFIX)
            .tempdir_in(sweep::base_dir())?;
        fs::write(
            dir.path().join(sweep::OWNER_FILE),
            std::process::id().to_string(),
        )?;
        run_as.chown(dir.path())?;
        let sock = dir.path().join("sock");
        fs::create_dir(&sock)?;
        run_as.chown(&sock)?;
        Ok(Cluster {
            dir: Some(dir),
            bin,
            run_as,
            port: 0,
            user,
            password,
            dbname,
            server: Mutex::new(Server::default()),
            control: tokio::sync::Mutex::new(()),
            nice,
        })
    }

    async fn initdb(&self, extra: &[String]) -> Result<()> {
        let mut cmd = self.run_as.command(&self.bin.tool("initdb"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = tokio::process::Command::from(cmd).output().await?;
        if !out.status.success() {
            return Err(Error::Command {
                program: "initdb".to_owned(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    fn write_config(&self, max_connections: u32, settings: &[(String, String)]) -> Result<()> {
        let data = self.data_dir();
        let mut conf = OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        let sock = self.socket_dir();
        writeln!(conf, "\n# pgsteady-testkit")?;
        writeln!(conf, "listen_addresses = '127.0.0.1'")?;
        writeln!(conf, "unix_socket_directories = '{}'", sock.display())?;
        writeln!(conf, "max_connections = {max_connections}")?;
        writeln!(conf, "shared_buffers = '32MB'")?;
        // Durability against an OS crash is not under test; against a process crash it is
        // kept: committed WAL is written to the kernel before the commit is acknowledged.
        writeln!(conf, "fsync = off")?;
        writeln!(conf, "log_line_prefix = '{LOG_LINE_PREFIX}'")?;
        writeln!(conf, "log_timezone = 'UTC'")?;
        writeln!(conf, "logging_collector = off")?;
        // pg_rewind needs hint-bit changes in the WAL (or data checksums). Any cluster may
        // become an old primary that is rewound onto a promoted standby; the cost is a few
        // more full-page images after each checkpoint.
        writeln!(conf, "wal_log_hints = on")?;
        // ... and the target's WAL back to the last checkpoint the two servers share, which a
        // checkpoint on the old primary would otherwise recycle.
        writeln!(conf, "wal_keep_size = '64MB'")?;
        for (name, value) in settings {
            writeln!(conf, "{name} = '{}'", value.replace('\'', "''"))?;
        }
        writeln!(conf, "include_if_exists = 'pgsteady_port.conf'")?;
        // `all` does not match replication connections: standbys, pg_basebackup and pg_rewind
        // (which uses a normal connection) come over the Unix socket as the superuser.
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nlocal replication all trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )?;
        Ok(())
    }

    /// Writes the settings that belong to this copy of the data and not to the data itself
    /// (port, socket directory): included last by `postgresql.conf`, rewritten after
    /// `pg_basebackup` or `pg_rewind` copied another server's version of the file.
    fn write_local_conf(&self) -> Result<()> {
        let path = self.data_dir().join("pgsteady_port.conf");
        fs::write(
            &path,
            format!(
                "port = {}\nunix_socket_directories = '{}'\n",
                self.port,
                self.socket_dir().display()
            ),
        )?;
        self.run_as.chown(&path)
    }

    /// Picks a free port, writes it and starts the server; picks again when another process
    /// took the port between the pick and the postmaster binding it.
    async fn start_on_free_port(&mut self) -> Result<()> {
        let mut last_err = None;
        for _ in 0..5 {
            self.port = free_port()?;
            self.write_local_conf()?;
            match self.start_server().await {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("five attempts"))
    }

    /// `server.crt` / `server.key` in the data directory, as the server's user, key 0600
    /// (the server refuses a key with group or world access).
    fn write_tls_files(&self, cert: &str, key: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data_dir();
        for (name, text) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            fs::write(&path, text)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            self.run_as.chown(&path)?;
        }
        Ok(())
    }

    fn spawn_postmaster(&self) -> Result<()> {
        let mut server = self.server.lock().expect("server state");
        if server.postmaster.is_some() {
            return Err(Error::State("the server is already running".to_owned()));
        }
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = self
            .run_as
            .postmaster_command(&self.bin.tool("postgres"), self.nice);
        cmd.arg("-D")
            .arg(self.data_dir())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = cmd.spawn()?;
        server.postmaster = Some(child);
        server.paused = false;
        Ok(())
    }

    async fn bootstrap(&self) -> Result<()> {
        let admin = self.admin().await?;
        // Two calls: CREATE DATABASE cannot run inside the implicit transaction of a batch.
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{}\" LOGIN PASSWORD '{}'",
                self.user, self.password
            ))
            .await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\" OWNER \"{}\"",
                self.dbname, self.user
            ))
            .await?;
        drop(admin);
        // With a tiny max_connections the administrator's session, still leaving, may hold
        // the user's only slot (53300) for a moment.
        let started = Instant::now();
        loop {
            match self.pg_config().connect(NoTls).await {
                Ok((client, connection)) => {
                    let driver = tokio::spawn(connection);
                    client.simple_query("SELECT 1").await?;
                    drop(client);
                    let _ = driver.await;
                    // A backend leaves after its client does: until it has exited it holds a
                    // slot, and a test with a tiny max_connections that takes the last slots
                    // at once would get 53300 by chance.
                    self.wait_for_no_client_backends(START_TIMEOUT).await;
                    return Ok(());
                }
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS)
                        && started.elapsed() < START_TIMEOUT =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits (at most `bound`) until no child of the postmaster is a backend of the login
    /// user or the administrator, as the process table shows them: `postgres: [CLUSTER: ]USER
    /// DB ...` (the auxiliary processes' titles name their role instead).
    async fn wait_for_no_client_backends(&self, bound: Duration) {
        let Some(postmaster) = self.postmaster_pid() else {
            return;
        };
        let users = [format!("{} ", self.user), "postgres ".to_owned()];
        let is_session = |title: &str| {
            let Some(rest) = title.strip_prefix("postgres: ") else {
                return false;
            };
            // With cluster_name set the title names the cluster first (no spaces in ours).
            let rest = match rest.split_once(": ") {
                Some((name, after)) if !name.contains(' ') => after,
                _ => rest,
            };
            users.iter().any(|u| rest.starts_with(u.as_str()))
        };
        let child_of_postmaster = |dir: &Path| {
            fs::read_to_string(dir.join("stat")).ok().and_then(|stat| {
                // `pid (comm) state ppid ...`: comm may hold spaces, so split after `)`.
                let after = stat.rsplit_once(')')?.1.to_owned();
                after.split_whitespace().nth(1)?.parse::<i32>().ok()
            }) == Some(postmaster)
        };
        let started = Instant::now();
        while started.elapsed() < bound {
            let busy = fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .any(|dir| {
                    child_of_postmaster(&dir)
                        && fs::read(dir.join("cmdline"))
                            .is_ok_and(|c| is_session(&String::from_utf8_lossy(&c)))
                });
            if !busy {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn running_postmaster(&self) -> Result<i32> {
        self.postmaster_pid()
            .ok_or_else(|| Error::State("the server is not running".to_owned()))
    }

    fn take_paused(&self) -> bool {
        std::mem::take(&mut self.server.lock().expect("server state").paused)
    }

    /// `Some(status)` (and forgets the postmaster) when it has exited on its own.
    fn postmaster_exited(&self) -> Result<Option<std::process::ExitStatus>> {
        let mut server = self.server.lock().expect("server state");
        let Some(child) = server.postmaster.as_mut() else {
            return Err(Error::State("the server is not running".to_owned()));
        };
        let status = child.try_wait()?;
        if status.is_some() {
            server.postmaster = None;
        }
        Ok(status)
    }

    async fn reap_postmaster(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if self.postmaster_exited()?.is_some() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(Error::State(format!(
                    "the postmaster did not exit within {timeout:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_server_gone(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        while !process::server_processes(&self.data_dir()).is_empty() {
            if started.elapsed() > timeout {
                return Err(Error::State(format!(
                    "server processes still alive after {timeout:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let data_dir = dir.path().join("data");
        let server = self.server.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = server.postmaster.take() {
            let _ = process::signal_server(&data_dir, Signal::SIGCONT);
            let _ = process::signal_pid(child.id() as i32, Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = process::signal_pid(child.id() as i32, Signal::SIGKILL);
            let _ = child.wait();
        }
        // Stragglers: backends of a killed postmaster, or an immediate shutdown cut short.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process::server_processes(&data_dir).is_empty() && Instant::now() < deadline {
            let _ = process::signal_server(&data_dir, Signal::SIGKILL);
            std::thread::sleep(POLL);
        }
        let path = dir.path().to_owned();
        if let Err(e) = dir.close() {
            eprintln!("pgsteady-testkit: could not remove {}: {e}", path.display());
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A random alphanumeric password, so URLs need no escaping.
pub(crate) fn random_password() -> String {
    let mut bytes = [0u8; 18];
    if let Ok(mut urandom) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
