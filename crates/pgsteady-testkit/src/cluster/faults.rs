//! The faults a test inflicts on a running cluster: stop, start and restart the server,
//! crash it (SIGKILL), kill one backend, terminate sessions, hang it (SIGSTOP).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Cluster, STOP_TIMEOUT};
use crate::process;
use crate::{Error, Result};

/// How to stop the server: the three shutdown modes of `pg_ctl stop -m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for every client to disconnect.
    Smart,
    /// SIGINT: roll back open transactions, disconnect clients (57P01), shut down cleanly.
    Fast,
    /// SIGQUIT: every process exits at once; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        }
    }
}

/// Which server processes [`Cluster::backend_pids`] and [`Cluster::terminate_backends`] pick.
/// The administrator's own session is never included.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendFilter {
    /// Every client backend.
    ClientBackends,
    /// Client backends logged in as this user.
    User(String),
    /// Client backends whose `application_name` is this.
    ApplicationName(String),
    /// These backend process ids.
    Pids(Vec<i32>),
}

impl BackendFilter {
    fn sql(&self) -> (&'static str, Option<String>, Vec<i32>) {
        match self {
            BackendFilter::ClientBackends => ("true", None, Vec::new()),
            BackendFilter::User(user) => ("usename = $1", Some(user.clone()), Vec::new()),
            BackendFilter::ApplicationName(name) => {
                ("application_name = $1", Some(name.clone()), Vec::new())
            }
            BackendFilter::Pids(pids) => ("pid = ANY($1)", None, pids.clone()),
        }
    }
}

impl Cluster {
    /// Starts the stopped server on the same port and returns once it accepts connections,
    /// after crash recovery if the last stop was a crash.
    pub async fn start_server(&self) -> Result<()> {
        let _control = self.control.lock().await;
        self.spawn_postmaster()?;
        self.wait_ready().await
    }

    /// Stops the server in the given mode and waits until every server process is gone.
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        let _control = self.control.lock().await;
        let postmaster = self.running_postmaster()?;
        if self.take_paused() {
            process::signal_server(&self.data_dir(), Signal::SIGCONT)?;
        }
        process::signal_pid(postmaster, mode.signal())?;
        self.reap_postmaster(STOP_TIMEOUT).await?;
        self.wait_server_gone(STOP_TIMEOUT).await
    }

    /// Stops the server in the given mode and starts it again.
    pub async fn restart(&self, mode: StopMode) -> Result<()> {
        self.stop(mode).await?;
        self.start_server().await
    }

    /// SIGKILLs the postmaster, the way an OOM killer or `kill -9` does. The backends notice
    /// that their postmaster died and exit (clients see 57P01 or a closed connection);
    /// whatever is still alive after a second is SIGKILLed too. The server stays down:
    /// [`Cluster::start_server`] then runs crash recovery.
    pub async fn kill_postmaster(&self) -> Result<()> {
        let _control = self.control.lock().await;
        let postmaster = self.running_postmaster()?;
        process::signal_pid(postmaster, Signal::SIGKILL)?;
        self.reap_postmaster(STOP_TIMEOUT).await?;
        if self.take_paused() {
            process::signal_server(&self.data_dir(), Signal::SIGCONT)?;
        }
        if self.wait_server_gone(Duration::from_secs(1)).await.is_err() {
            process::signal_server(&self.data_dir(), Signal::SIGKILL)?;
            self.wait_server_gone(STOP_TIMEOUT).await?;
        }
        Ok(())
    }

    /// SIGKILLs every server process at once (a container or machine dying). The server stays
    /// down; [`Cluster::start_server`] then runs crash recovery.
    pub async fn kill_all(&self) -> Result<()> {
        let _control = self.control.lock().await;
        self.running_postmaster()?;
        self.take_paused();
        process::signal_server(&self.data_dir(), Signal::SIGKILL)?;
        self.reap_postmaster(STOP_TIMEOUT).await?;
        self.wait_server_gone(STOP_TIMEOUT).await
    }

    /// SIGKILLs one server process. When it is a backend, the postmaster treats it as a
    /// crash: it terminates every other session (57P02), runs crash recovery and accepts
    /// connections again by itself; [`Cluster::wait_ready`] waits for that.
    pub fn kill_backend(&self, pid: i32) -> Result<()> {
        let postmaster = self.running_postmaster()?;
        if pid == postmaster {
            return Err(Error::State(
                "kill_backend got the postmaster's pid; use kill_postmaster".to_owned(),
            ));
        }
        if !process::server_processes(&self.data_dir()).contains(&pid) {
            return Err(Error::State(format!(
                "{pid} is not a process of this cluster"
            )));
        }
        process::signal_pid(pid, Signal::SIGKILL)
    }

    /// Ends matching sessions with `pg_terminate_backend` (clients see 57P01) and returns how
    /// many were signalled.
    pub async fn terminate_backends(&self, filter: BackendFilter) -> Result<u64> {
        let pids = self.backend_pids(filter).await?;
        let admin = self.admin().await?;
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                 FROM unnest($1::int4[]) AS pid",
                &[&pids],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Process ids of matching client sessions (the administrator's own excluded).
    pub async fn backend_pids(&self, filter: BackendFilter) -> Result<Vec<i32>> {
        let admin = self.admin().await?;
        let (condition, text, pids) = filter.sql();
        let sql = format!(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND pid <> pg_backend_pid() AND application_name <> 'pgsteady-testkit' \
             AND {condition} ORDER BY pid"
        );
        let rows = match (text, condition.contains("$1")) {
            (Some(text), _) => admin.query(&sql, &[&text]).await?,
            (None, true) => admin.query(&sql, &[&pids]).await?,
            (None, false) => admin.query(&sql, &[]).await?,
        };
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Polls every 10 ms until no session matches `filter`, for at most `within`; returns the
    /// sessions still there at the deadline (empty: all gone). A client that closes its
    /// connection does not wait for the server's backend to exit, hence the polling.
    pub async fn sessions_left_after(
        &self,
        filter: BackendFilter,
        within: Duration,
    ) -> Result<Vec<i32>> {
        let deadline = Instant::now() + within;
        loop {
            let pids = self.backend_pids(filter.clone()).await?;
            if pids.is_empty() || Instant::now() >= deadline {
                return Ok(pids);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asserts that the server holds no client session within `within` (polling every 10 ms):
    /// what a test checks after closing a pool or stopping a process that held connections.
    ///
    /// # Panics
    ///
    /// When sessions are left at the deadline (their pids are named), or the server cannot
    /// be asked.
    pub async fn assert_no_client_sessions_within(&self, within: Duration) {
        let left = self
            .sessions_left_after(BackendFilter::ClientBackends, within)
            .await
            .expect("the server answers pg_stat_activity");
        assert!(left.is_empty(), "sessions left on the server: {left:?}");
    }

    /// SIGSTOPs every server process: the server hangs, TCP connections stay open, nothing
    /// answers (the kernel still completes new TCP handshakes).
    pub fn pause(&self) -> Result<()> {
        // The postmaster first, so that it forks nothing while the rest is being stopped.
        process::signal_pid(self.running_postmaster()?, Signal::SIGSTOP)?;
        process::signal_server(&self.data_dir(), Signal::SIGSTOP)?;
        self.server.lock().expect("server state").paused = true;
        Ok(())
    }

    /// SIGCONTs every server process after [`Cluster::pause`].
    pub fn resume(&self) -> Result<()> {
        self.running_postmaster()?;
        process::signal_server(&self.data_dir(), Signal::SIGCONT)?;
        self.server.lock().expect("server state").paused = false;
        Ok(())
    }
}
