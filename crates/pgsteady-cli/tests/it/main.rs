//! `pgsteady wait`, `check`, `doctor`, `migrate` and `drill` (handing over to
//! `pgsteady-drill`) against real PostgreSQL servers: one module per command or failure mode.
//! Every test also checks that the password never appears in output.

mod check;
mod doctor;
mod doctor_fixes;
mod doctor_hostile;
mod doctor_patroni;
mod drill;
mod exec;
mod generate;
mod hostile;
mod hostile_input;
mod installed;
mod libpq_parity;
mod migrate;
mod pgbouncer;
mod run;
mod secrets;
mod serve;
mod slot;
mod standby;
mod version;
mod wait;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pgsteady_testkit::Cluster;

/// Runs the `pgsteady` binary with a clean connection environment: no `DATABASE_URL`, no `PG*`
/// variables, `HOME` pointing at an empty directory (so no ~/.pgpass).
pub struct TestCommand {
    cmd: tokio::process::Command,
    _home: tempfile::TempDir,
}

/// What a finished command did.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl TestCommand {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::program(Path::new(env!("CARGO_BIN_EXE_pgsteady")), args)
    }

    /// The same for another copy of the binary (`drill.rs` runs one from its own directory).
    pub fn program<I, S>(program: &Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("HOME", home.path())
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        TestCommand { cmd, _home: home }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Sets a variable to raw bytes (e.g. not UTF-8).
    pub fn env_bytes(mut self, k: &str, v: &[u8]) -> Self {
        use std::os::unix::ffi::OsStrExt;
        self.cmd.env(k, OsStr::from_bytes(v));
        self
    }

    /// Runs as another user (the test process must be root).
    pub fn uid(mut self, uid: u32, gid: u32) -> Self {
        self.cmd.uid(uid).gid(gid);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Starts the command without waiting.
    pub fn spawn(mut self) -> Running {
        let child = self.cmd.spawn().expect("spawn pgsteady");
        Running {
            child,
            started: Instant::now(),
            _home: self._home,
        }
    }

    /// Runs to completion (at most 60 s).
    pub async fn run(self) -> Finished {
        self.spawn().finish().await
    }
}

/// A started command.
pub struct Running {
    pub child: tokio::process::Child,
    pub started: Instant,
    _home: tempfile::TempDir,
}

impl Running {
    pub async fn finish(self) -> Finished {
        self.finish_within(Duration::from_secs(60)).await
    }

    /// Waits at most `limit` for the command to finish (the HA drill takes minutes).
    pub async fn finish_within(self, limit: Duration) -> Finished {
        let started = self.started;
        let out = tokio::time::timeout(limit, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("pgsteady finishes within {limit:?}"))
            .unwrap();
        Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }
}

impl Finished {
    #[track_caller]
    pub fn assert_exit_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// Neither stream contains `secret`.
    #[track_caller]
    pub fn assert_no_secret(&self, secret: &str) -> &Self {
        assert!(!self.stdout.contains(secret), "secret in stdout: {self:#?}");
        assert!(!self.stderr.contains(secret), "secret in stderr: {self:#?}");
        self
    }

    /// The JSON lines on stdout.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// The cluster's URL with another database, user or password.
pub fn url(cluster: &Cluster, user: &str, password: &str, db: &str) -> String {
    format!(
        "postgresql://{user}:{password}@127.0.0.1:{}/{db}",
        cluster.port()
    )
}
