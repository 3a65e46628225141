//! The `pgsteady-drill` binary against real throwaway clusters (the test kit's): one module
//! per mode. `pgsteady drill ...` runs this binary with the same arguments; the CLI's own
//! tests check that hand-over.

mod drill;
mod drill_ha;
mod pgbouncer;
mod soak;

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs the `pgsteady-drill` binary with a clean connection environment: no `DATABASE_URL`,
/// no `PG*` variables, `HOME` pointing at an empty directory (so no ~/.pgpass).
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
}

impl TestCommand {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsteady-drill"));
        cmd.args(args)
            .env("HOME", home.path())
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            // PGSTEADY_PG_BIN picks the server binaries: keep it.
            if k.starts_with("PG") && !k.starts_with("PGSTEADY_") {
                cmd.env_remove(k);
            }
        }
        TestCommand { cmd, _home: home }
    }

    /// Starts the command without waiting.
    pub fn spawn(mut self) -> Running {
        let child = self.cmd.spawn().expect("spawn pgsteady-drill");
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
        let out = tokio::time::timeout(limit, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("pgsteady-drill finishes within {limit:?}"))
            .unwrap();
        Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
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
}
