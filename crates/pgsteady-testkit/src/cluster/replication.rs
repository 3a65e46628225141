//! Streaming replication: a standby of a cluster ([`Cluster::standby`]), promotion, an old
//! primary rejoining as a standby of the new one ([`Cluster::follow`], with `pg_rewind`), a
//! fenced (read-only) primary, and the WAL positions tests wait on.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::types::PgLsn;

use super::{Cluster, POLL, StopMode};
use crate::log;
use crate::{Error, Result};

/// How long a standby may take to start streaming (or a promotion to complete).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of `postgresql.auto.conf` that describe one server's role, not the data: they are
/// dropped from a copy made by `pg_basebackup`, so that a standby of a primary that has a
/// synchronous standby, or that is fenced, does not inherit that.
const ROLE_SETTINGS: [&str; 4] = [
    "primary_conninfo",
    "primary_slot_name",
    "synchronous_standby_names",
    "default_transaction_read_only",
];

/// Builds a streaming standby of a running cluster: [`Cluster::standby`].
///
/// # Default
///
/// - asynchronous (the primary does not wait for the standby to confirm commits);
/// - `application_name` `standby_<port>` in its `primary_conninfo`.
#[derive(Debug)]
#[must_use]
pub struct StandbyBuilder<'a> {
    primary: &'a Cluster,
    synchronous: bool,
    application_name: Option<String>,
}

impl StandbyBuilder<'_> {
    /// Makes the standby synchronous: the primary's `synchronous_standby_names` is set to its
    /// `application_name` (replacing any earlier value: one synchronous standby per primary),
    /// so every commit on the primary waits until the standby has flushed it.
    pub fn synchronous(mut self) -> Self {
        self.synchronous = true;
        self
    }

    /// The `application_name` the standby connects to its primary with (letters, digits and
    /// `_` only). Default: `standby_<its port>`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Takes a base backup of the primary (`pg_basebackup -X stream`, fast checkpoint) into a
    /// new temporary directory, starts it as a hot standby on a free port, and returns once
    /// the primary's `pg_stat_replication` shows it streaming (and, when synchronous, with
    /// `sync_state = 'sync'`).
    ///
    /// The standby has the primary's login user, password and database. Dropping it stops it
    /// and removes its directory, as for any [`Cluster`].
    pub async fn start(self) -> Result<Cluster> {
        let primary = self.primary;
        if let Some(name) = &self.application_name {
            check_name(name)?;
        }
        let mut standby = Cluster::blank(
            primary.bin.clone(),
            primary.user.clone(),
            primary.password.clone(),
            primary.dbname.clone(),
            primary.nice,
        )?;
        let data = standby.data_dir();
        let mut cmd = standby.run_as.command(&standby.bin.tool("pg_basebackup"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-h")
            .arg(primary.socket_dir())
            .args(["-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-X", "stream", "-c", "fast", "--no-sync"]);
        run_tool(cmd, "pg_basebackup").await?;
        // The default name is known once the port is: the conninfo is written after the pick.
        let mut last_err = None;
        for _ in 0..5 {
            standby.port = super::free_port()?;
            let name = self
                .application_name
                .clone()
                .unwrap_or_else(|| format!("standby_{}", standby.port));
            standby.write_local_conf()?;
            standby.make_standby_of(primary, &name)?;
            match standby.start_server().await {
                Ok(()) => {
                    last_err = None;
                    if self.synchronous {
                        primary
                            .set("synchronous_standby_names", &format!("\"{name}\""))
                            .await?;
                    }
                    primary.wait_streaming(&name, self.synchronous).await?;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            Some(e) => Err(e),
            None => Ok(standby),
        }
    }
}

/// What [`Cluster::follow`] had to do to the old primary's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rewind {
    /// Nothing: its WAL ended before the new primary's timeline forked (e.g. it was stopped
    /// cleanly and the standby had received everything before being promoted).
    NotNeeded,
    /// `pg_rewind` rolled back changes the new primary never received.
    Rewound,
}

impl Cluster {
    /// A builder for a streaming standby of this (running) cluster.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> pgsteady_testkit::Result<()> {
    /// use pgsteady_testkit::{Cluster, StopMode};
    ///
    /// let primary = Cluster::start().await?;
    /// let standby = primary.standby().synchronous().start().await?;
    /// primary.stop(StopMode::Immediate).await?;
    /// standby.promote().await?;
    /// let rewound = primary.follow(&standby).await?; // the old primary streams from the new one
    /// # Ok(()) }
    /// ```
    pub fn standby(&self) -> StandbyBuilder<'_> {
        StandbyBuilder {
            primary: self,
            synchronous: false,
            application_name: None,
        }
    }

    /// Promotes this standby (`pg_promote()`), returning once a new session is read-write and
    /// the promotion's completion is in the server log ([`Cluster::promoted_at`]).
    pub async fn promote(&self) -> Result<()> {
        let before = self.promoted_times().len();
        let admin = self.admin().await?;
        let promoted: bool = admin
            .query_one("SELECT pg_promote(true, 60)", &[])
            .await?
            .get(0);
        if !promoted {
            return Err(Error::State(
                "pg_promote() did not complete within 60 s".to_owned(),
            ));
        }
        let started = Instant::now();
        loop {
            let session = self.admin().await?;
            let row = session
                .query_one(
                    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')",
                    &[],
                )
                .await?;
            let writable = !row.get::<_, bool>(0) && row.get::<_, String>(1) == "off";
            if writable && self.promoted_times().len() > before {
                return Ok(());
            }
            if started.elapsed() > REPLICATION_TIMEOUT {
                return Err(Error::State(format!(
                    "promoted but not writable (or not logged) after {REPLICATION_TIMEOUT:?}:\n{}",
                    log::tail(&self.log_path(), 20)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// When the last promotion completed, from the server log with millisecond precision:
    /// the "ready to accept connections" line that follows "received promote request".
    pub fn promoted_at(&self) -> Option<SystemTime> {
        self.promoted_times().pop()
    }

    /// Every completed promotion of this server, oldest first.
    pub fn promoted_times(&self) -> Vec<SystemTime> {
        log::promoted_times(&self.log())
    }

    /// Turns this server (an old primary, running or not) into a streaming standby of
    /// `primary`: stops it (fast) if it runs, runs `pg_rewind` against `primary` (after a
    /// `CHECKPOINT` there, so its control file names its new timeline), writes
    /// `standby.signal` and a `primary_conninfo` (`application_name` `standby_<port>`), starts
    /// it and returns once `primary` shows it streaming.
    ///
    /// `pg_rewind` copies the configuration files of `primary`: this server keeps its own port
    /// and socket directory, and takes its other settings from `primary`, as a new base backup
    /// would. It needs `wal_log_hints` (on by default in every [`Cluster`]) or data checksums.
    pub async fn follow(&self, primary: &Cluster) -> Result<Rewind> {
        if self.is_running() {
            self.stop(StopMode::Fast).await?;
        }
        primary.admin().await?.batch_execute("CHECKPOINT").await?;
        let mut cmd = self.run_as.command(&self.bin.tool("pg_rewind"));
        cmd.arg("--target-pgdata")
            .arg(self.data_dir())
            .arg(format!(
                "--source-server=host={} port={} user=postgres dbname=postgres",
                primary.socket_dir().display(),
                primary.port
            ))
            .arg("--no-sync");
        let output = run_tool(cmd, "pg_rewind").await?;
        let rewind = if output.contains("no rewind required") {
            Rewind::NotNeeded
        } else {
            Rewind::Rewound
        };
        self.drop_role_settings()?;
        self.write_local_conf()?;
        let name = format!("standby_{}", self.port);
        self.make_standby_of(primary, &name)?;
        self.start_server().await?;
        primary.wait_streaming(&name, false).await?;
        Ok(rewind)
    }

    /// Fences this server: `ALTER SYSTEM SET default_transaction_read_only = on` and a reload,
    /// returning once a new session is read-only. Sessions already open keep running and turn
    /// read-only at their next statement (writes fail with 25006); the server still reports
    /// itself as a primary (`pg_is_in_recovery()` false).
    pub async fn fence(&self) -> Result<()> {
        self.set("default_transaction_read_only", "on").await
    }

    /// Undoes [`Cluster::fence`] (`ALTER SYSTEM RESET`, reload), returning once a new session
    /// is read-write.
    pub async fn unfence(&self) -> Result<()> {
        let admin = self.admin().await?;
        admin
            .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
            .await?;
        admin.batch_execute("SELECT pg_reload_conf()").await?;
        let started = Instant::now();
        loop {
            let value: String = self
                .admin()
                .await?
                .query_one(
                    "SELECT current_setting('default_transaction_read_only')",
                    &[],
                )
                .await?
                .get(0);
            if value == "off" {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(5) {
                return Err(Error::State(
                    "default_transaction_read_only still on 5 s after the reload".to_owned(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `pg_is_in_recovery()`: true on a standby.
    pub async fn is_in_recovery(&self) -> Result<bool> {
        Ok(self
            .admin()
            .await?
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0))
    }

    /// The primary's current WAL write position (`pg_current_wal_lsn()`); an error on a
    /// standby.
    pub async fn current_wal_lsn(&self) -> Result<PgLsn> {
        Ok(self
            .admin()
            .await?
            .query_one("SELECT pg_current_wal_lsn()", &[])
            .await?
            .get(0))
    }

    /// How far a standby has replayed (`pg_last_wal_replay_lsn()`); `None` on a server that
    /// was never in recovery since it started.
    pub async fn replay_lsn(&self) -> Result<Option<PgLsn>> {
        Ok(self
            .admin()
            .await?
            .query_one("SELECT pg_last_wal_replay_lsn()", &[])
            .await?
            .get(0))
    }

    /// How many bytes of `primary`'s WAL this standby has not replayed yet (0 when it is
    /// caught up). Reads the primary's position first, so the figure is an upper bound.
    pub async fn lag_bytes(&self, primary: &Cluster) -> Result<u64> {
        let current = u64::from(primary.current_wal_lsn().await?);
        let replayed = self.replay_lsn().await?.map_or(0, u64::from);
        Ok(current.saturating_sub(replayed))
    }

    /// Polls every 5 ms until this standby has replayed up to `lsn`, for at most `within`;
    /// returns how long it took, or an error naming both positions at the deadline.
    pub async fn wait_replayed(&self, lsn: PgLsn, within: Duration) -> Result<Duration> {
        let started = Instant::now();
        let admin = self.admin().await?;
        loop {
            let replayed: Option<PgLsn> = admin
                .query_one("SELECT pg_last_wal_replay_lsn()", &[])
                .await?
                .get(0);
            if replayed.is_some_and(|r| r >= lsn) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= within {
                return Err(Error::State(format!(
                    "replayed up to {} only, {within:?} after waiting for {lsn}",
                    replayed.map_or_else(|| "nothing".to_owned(), |r| r.to_string())
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until this standby has replayed everything `primary` has written so far (bounded
    /// by `within`).
    pub async fn catch_up(&self, primary: &Cluster, within: Duration) -> Result<Duration> {
        let lsn = primary.current_wal_lsn().await?;
        self.wait_replayed(lsn, within).await
    }

    /// The timeline this server writes (a primary: the one of its current WAL file) or
    /// replays (a standby: the one its WAL receiver receives, else its last checkpoint's).
    /// 1 after initdb; a promotion increments it.
    pub async fn timeline_id(&self) -> Result<u32> {
        let tli: i64 = self
            .admin()
            .await?
            .query_one(
                "SELECT CASE WHEN pg_is_in_recovery() THEN \
                   coalesce((SELECT received_tli FROM pg_stat_wal_receiver)::int8, \
                            (SELECT timeline_id FROM pg_control_checkpoint())::int8) \
                 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 \
                 END",
                &[],
            )
            .await?
            .get(0);
        Ok(tli as u32)
    }

    /// The system identifier from `pg_control`: set by initdb, shared by every standby made
    /// from it (and kept across promotion and rewind).
    pub async fn system_identifier(&self) -> Result<u64> {
        let id: i64 = self
            .admin()
            .await?
            .query_one("SELECT system_identifier FROM pg_control_system()", &[])
            .await?
            .get(0);
        Ok(id as u64)
    }

    /// Removes [`ROLE_SETTINGS`] lines from `postgresql.auto.conf`.
    fn drop_role_settings(&self) -> Result<()> {
        let path = self.data_dir().join("postgresql.auto.conf");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|line| {
                let name = line.split('=').next().unwrap_or("").trim();
                !ROLE_SETTINGS.contains(&name)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        fs::write(&path, kept)?;
        self.run_as.chown(&path)
    }

    /// Writes `standby.signal` and this server's `primary_conninfo` (after dropping any
    /// earlier one) into its data directory.
    fn make_standby_of(&self, primary: &Cluster, application_name: &str) -> Result<()> {
        self.drop_role_settings()?;
        let data = self.data_dir();
        let auto = data.join("postgresql.auto.conf");
        let mut text = fs::read_to_string(&auto).unwrap_or_default();
        // Temporary directories and names have no spaces or quotes: nothing to escape.
        let mut conninfo = format!(
            "host={} port={} user=postgres",
            primary.socket_dir().display(),
            primary.port
        );
        if !application_name.is_empty() {
            conninfo.push_str(&format!(" application_name={application_name}"));
        }
        text.push_str(&format!("primary_conninfo = '{conninfo}'\n"));
        fs::write(&auto, text)?;
        self.run_as.chown(&auto)?;
        let signal = data.join("standby.signal");
        fs::write(&signal, "")?;
        self.run_as.chown(&signal)
    }

    /// Polls `pg_stat_replication` until the standby named `application_name` streams (and
    /// is the synchronous one, when asked).
    async fn wait_streaming(&self, application_name: &str, synchronous: bool) -> Result<()> {
        let started = Instant::now();
        let admin = self.admin().await?;
        loop {
            let row = admin
                .query_opt(
                    "SELECT state, sync_state FROM pg_stat_replication \
                     WHERE application_name = $1",
                    &[&application_name],
                )
                .await?;
            let (state, sync_state) = row
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .unwrap_or_default();
            if state == "streaming" && (!synchronous || sync_state == "sync") {
                return Ok(());
            }
            if started.elapsed() > REPLICATION_TIMEOUT {
                return Err(Error::State(format!(
                    "standby {application_name} not streaming after {REPLICATION_TIMEOUT:?} \
                     (state {state:?}, sync_state {sync_state:?})"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::State(format!(
            "application_name {name:?}: letters, digits and _ only"
        )));
    }
    Ok(())
}

/// Runs a server tool, bounded; returns its combined output, or an error with it.
async fn run_tool(mut cmd: std::process::Command, program: &str) -> Result<String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(REPLICATION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| Error::Command {
            program: program.to_owned(),
            detail: format!("did not finish within {REPLICATION_TIMEOUT:?}"),
        })??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(Error::Command {
            program: program.to_owned(),
            detail: format!("{}: {}", out.status, text.trim()),
        });
    }
    Ok(text)
}
