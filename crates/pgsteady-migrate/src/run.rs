//! Running: waiting for the database, the lock, the plan, applying, resuming.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{Applied, Event, Failure, Migration, Migrator, Report, Status, apply, history, plan};
use crate::{Error, ErrorKind};
use pgsteady::Connector;
use pgsteady::StatementCache;

impl Migrator {
    /// Waits for the database, then applies the pending migrations.
    ///
    /// Connects with `connector` (its back-off, deadline, retried classes and observer: the
    /// same waiting as `pgsteady wait`), then does what [`Migrator::run_on`] does on that
    /// dedicated session. If the connection is lost (server restarted or crashed, network
    /// cut), it waits for the server again and resumes, up to
    /// [`with_max_resumes`](Self::with_max_resumes) times: the lock is taken again and the
    /// history re-read, so nothing is applied twice and nothing is half-applied. A migration
    /// that runs outside a transaction is not resumed when interrupted (its outcome is
    /// unknown): that fails with [`ErrorKind::Migration`].
    ///
    /// With no setting, the first session finds out whether a transaction pooler is in front
    /// (see `docs/migrate.md`) before it takes any lock, and runs as
    /// [`with_transaction_locks`](Self::with_transaction_locks) does if so.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pgsteady_migrate::Error> {
    /// use std::time::Duration;
    /// use pgsteady::{Backoff, Config, Connector};
    /// use pgsteady_migrate::Migrator;
    ///
    /// let connector = Connector::new(Config::resolve(None)?)? // DATABASE_URL / PG* variables
    ///     .with_backoff(Backoff::new().with_max_elapsed(Duration::from_secs(60)));
    /// let report = Migrator::from_dir("migrations")?.run(&connector).await?;
    /// println!("applied {} migrations", report.applied.len());
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, connector: &Connector) -> Result<Report, Error> {
        self.run_until(connector, std::future::pending()).await
    }

    /// [`Migrator::run`] until `stop` resolves (e.g. on SIGINT): then the statement running on
    /// the server is cancelled (a CancelRequest, as psql sends on Ctrl-C), its transaction
    /// rolls back, the lock is released on the way out, and this returns an error of kind
    /// [`ErrorKind::Migration`] saying it was interrupted, whose [`failure`](Error::failure)
    /// is the file when one was running. Without the cancel, the server would run the
    /// statement (and hold the lock) until it next wrote to the closed socket.
    pub async fn run_until(
        &self,
        connector: &Connector,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Report, Error> {
        let start = Instant::now();
        let mut report = Report::default();
        let mut in_doubt = None;
        tokio::pin!(stop);
        // Known before connecting: told so, or `statement_cache=off` says a transaction
        // pooler is in front. Otherwise the first session finds out (`behind_pooler`).
        let mut pooled = (self.xact_locks
            || connector.config().statement_cache == StatementCache::Off)
            .then_some(true);
        loop {
            let mut connected = tokio::select! {
                c = connector.connect() => c?,
                () = &mut stop => {
                    return Err(Error::new(
                        ErrorKind::Migration,
                        "interrupted before connecting: nothing was applied",
                    ));
                }
            };
            let token = connected.client.cancel_token();
            let host = connected.host.clone();
            let (result, stopped) = {
                let work = async {
                    let xact = match pooled {
                        Some(known) => known,
                        None => {
                            let found = self.behind_pooler(&connected.client, connector).await?;
                            pooled = Some(found);
                            found
                        }
                    };
                    self.run_session(&mut connected.client, &mut report, &mut in_doubt, xact)
                        .await
                };
                tokio::pin!(work);
                tokio::select! {
                    r = &mut work => (r, None),
                    () = &mut stop => {
                        let cancelled = connector.cancel(&token, &host).await.is_ok();
                        // Let the session roll back and release the lock.
                        let finished =
                            tokio::time::timeout(connector.attempt_timeout(), &mut work).await;
                        let confirmed = finished.is_ok();
                        let r = finished.unwrap_or(Ok(()));
                        (r, Some((cancelled, confirmed)))
                    }
                }
            };
            if let Some((cancelled, confirmed)) = stopped {
                let what = match (cancelled, confirmed) {
                    (true, true) => {
                        "the running statement was cancelled on the server, its \
                         migration rolled back and the lock released"
                    }
                    (true, false) => {
                        "the running statement was cancelled on the server; the \
                         session was closed before it confirmed the rollback"
                    }
                    (false, _) => {
                        "the cancel request failed; the session was closed (the \
                         server ends the statement when it notices)"
                    }
                };
                let err = Error::new(
                    ErrorKind::Migration,
                    format!(
                        "interrupted: {what}; the {} migration(s) applied before it stay applied",
                        report.applied.len()
                    ),
                );
                return Err(match result {
                    Err(e) if e.failure().is_some() => err.caused_by(e),
                    _ => err,
                });
            }
            match result {
                Ok(()) => break,
                Err(e) if resumable(&e) && report.resumes < self.max_resumes => {
                    report.resumes += 1;
                    if e.kind() == ErrorKind::CommitOutcomeUnknown {
                        in_doubt = e.failure().map(Failure::version);
                    }
                    // The server's reason: the statement's own error code (57P01 for a
                    // backend ended mid-query), else what the monitor saw (57P02 from a
                    // crash notice) when the client only saw a closed connection.
                    let reason = match e.code() {
                        Some(_) => e.reason(),
                        None => tokio::time::timeout(
                            Duration::from_millis(100),
                            connected.monitor.closed(),
                        )
                        .await
                        .ok()
                        .and_then(|c| c.reason())
                        .or(e.reason()),
                    };
                    tracing::warn!(
                        error = format!("{e:#}"),
                        ?reason,
                        "migration connection lost; resuming"
                    );
                    self.emit(Event::Resuming {
                        attempt: report.resumes,
                        reason,
                        error: format!("{e:#}"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// Whether `client` talks to the server through a transaction pooler (PgBouncer in
    /// transaction mode), found out before any lock is taken, so that a run with no setting
    /// uses transaction-level locks there instead of a session lock that would stay on a
    /// server connection other clients then get.
    ///
    /// The probe: `client` reads its backend's pid (autocommit); another session opens a
    /// transaction and reads its own; `client` reads its pid again; up to
    /// [`POOLER_PROBE_ROUNDS`] times, one other session at a time.
    /// Through a direct connection or a session pooler, `client` keeps its backend for the
    /// whole session, so it sees one pid, and the other sessions, each holding a backend of
    /// its own, never see that pid. A transaction pooler gives the server connection back
    /// after each statement: another session's transaction may get it (PgBouncer hands out
    /// the last released one first), and `client`'s next statement then needs another one.
    /// Either sign (another session saw one of `client`'s pids, or `client` saw two pids) is
    /// proof; neither can happen without a pooler. A round can miss (another client released
    /// a server connection in between), so a miss in every round is possible under load:
    /// then the run takes the session lock. Costs up to that many extra connections per run,
    /// one at a time.
    async fn behind_pooler(&self, client: &Client, connector: &Connector) -> Result<bool, Error> {
        let probe = async {
            // Several rounds: with other clients releasing server connections too, one round
            // may hand the other session another idle server connection and `client` its own
            // back. One other session at a time, so the probe never holds more than two
            // server connections (a session pooler's pool may be small).
            let mut seen = vec![backend_pid(client).await?];
            for _ in 0..POOLER_PROBE_ROUNDS {
                let other = connector.connect().await?;
                other
                    .client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| Error::from_pg(e, "probing for a transaction pooler"))?;
                let theirs = backend_pid(&other.client).await?;
                seen.push(backend_pid(client).await?);
                // Ends its transaction and gives its server connection back at once.
                drop(other);
                if seen.contains(&theirs) || seen.iter().any(|p| *p != seen[0]) {
                    return Ok::<_, Error>(true);
                }
            }
            Ok(false)
        };
        let found = self.own("transaction pooler probe", probe).await?;
        if found {
            tracing::info!("transaction pooler detected: migrating under transaction-level locks");
        }
        self.emit(Event::SessionMode {
            transaction_pooler: found,
        });
        Ok(found)
    }

    /// [`Migrator::status_on`] on a session from `connector` (waiting for the database).
    pub async fn status(&self, connector: &Connector) -> Result<Status, Error> {
        let connected = connector.connect().await?;
        self.status_on(&connected.client).await
    }

    /// [`Migrator::dry_run_on`] on a session from `connector` (waiting for the database).
    pub async fn dry_run(&self, connector: &Connector) -> Result<Vec<Migration>, Error> {
        let connected = connector.connect().await?;
        self.dry_run_on(&connected.client).await
    }

    /// Applies the pending migrations on an established session: takes the advisory lock,
    /// creates the history table if needed, reads the history, checks it against the files,
    /// applies what is pending (each file in its own transaction with its history row),
    /// releases the lock.
    ///
    /// The lock is taken on `client`'s session and released before this returns. If the
    /// future is dropped half-way, the lock stays until the session ends: give this a
    /// connection of its own, not one borrowed from a pool.
    ///
    /// On a failed migration the error has kind [`ErrorKind::Migration`] and carries a
    /// [`Failure`] (file, line, column); the migrations before it stay applied, it and those
    /// after it are not.
    pub async fn run_on(&self, client: &mut Client) -> Result<Report, Error> {
        let start = Instant::now();
        let mut report = Report::default();
        let result = if self.xact_locks {
            self.run_xact_locked(client, &mut report, &mut None).await
        } else {
            self.run_locked(client, &mut report, &mut None).await
        };
        report.elapsed = start.elapsed();
        result.map(|()| report)
    }

    /// One session's work, under the lock. `in_doubt`: a version whose COMMIT was lost on the
    /// previous session, resolved from the history once it is read.
    async fn run_locked(
        &self,
        client: &mut Client,
        report: &mut Report,
        in_doubt: &mut Option<i64>,
    ) -> Result<(), Error> {
        let key = self
            .own(
                "lock key query",
                history::session_lock_key(client, &self.table),
            )
            .await?;
        let waited = history::lock(client, key, self.lock_timeout, |holder_pid| {
            self.emit(Event::LockWait { holder_pid })
        })
        .await?;
        report.lock_wait += waited;
        self.emit(Event::Locked { waited });
        let result = self.apply_pending(client, report, in_doubt).await;
        let _ = self
            .own("unlock", async {
                history::unlock(client, key).await;
                Ok(())
            })
            .await;
        result
    }

    /// One session's work: under the session lock, or, behind a transaction pooler
    /// (`pooled`), under transaction-level locks.
    async fn run_session(
        &self,
        client: &mut Client,
        report: &mut Report,
        in_doubt: &mut Option<i64>,
        pooled: bool,
    ) -> Result<(), Error> {
        if pooled {
            self.run_xact_locked(client, report, in_doubt).await
        } else {
            self.run_locked(client, report, in_doubt).await
        }
    }

    /// One session's work without session state, for a transaction pooler (PgBouncer in
    /// transaction mode), where consecutive transactions may run on different server
    /// connections: the plan is made in one transaction under the transaction-level lock
    /// (history created if missing, read, checked against the files); then each file runs in
    /// its own transaction that takes the lock again first and re-reads whether another
    /// runner applied it meanwhile. Every lock ends with its transaction, so none is left
    /// behind, whatever happens to the client. A pending `-- pgsteady:no-transaction` file
    /// cannot be covered by a lock that way: the run refuses before applying anything.
    async fn run_xact_locked(
        &self,
        client: &mut Client,
        report: &mut Report,
        in_doubt: &mut Option<i64>,
    ) -> Result<(), Error> {
        let began = client.batch_execute("BEGIN").await;
        began.map_err(|e| Error::from_pg(e, "starting the migration plan"))?;
        let planned = async {
            let key = history::session_lock_key(client, &self.table).await?;
            let waited = history::xact_lock(&*client, key, self.lock_timeout).await?;
            if !history::exists(client, &self.table).await? {
                history::create(client, &self.table).await?;
            }
            let rows = history::read(client, &self.table).await?;
            Ok::<_, Error>((key, waited, rows))
        }
        .await;
        let (key, waited, rows) = match planned {
            Ok(planned) => {
                let committed = client.batch_execute("COMMIT").await;
                committed.map_err(|e| Error::from_pg(e, "committing the migration plan"))?;
                planned
            }
            Err(e) => {
                if !client.is_closed() {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                return Err(e);
            }
        };
        report.lock_wait += waited;
        self.emit(Event::Locked { waited });
        if let Some(version) = in_doubt.take() {
            self.resolve(version, &rows, report);
        }
        let status = plan::compare(&self.migrations, &rows, true);
        let todo = plan::pending(&self.migrations, &status, self.out_of_order)?;
        if let Some(m) = todo.iter().find(|m| !m.is_transactional()) {
            return Err(Error::config(format!(
                "{} is marked `-- {}` and cannot run through a transaction pooler (the \
                 migration lock would not cover it); nothing was applied: run the migrations \
                 on a direct connection to the server, not through PgBouncer",
                m.display_path(),
                super::source::NO_TRANSACTION
            )));
        }
        report.already_applied = rows
            .iter()
            .filter(|r| !report.applied.iter().any(|a| a.version == r.version))
            .count();
        self.emit(Event::Planned {
            applied: report.already_applied,
            pending: todo.len(),
        });
        let lock = apply::XactLock {
            key,
            timeout: self.lock_timeout,
        };
        for m in todo {
            self.emit(Event::Applying {
                version: m.version(),
                file: m.display_path(),
                transactional: true,
            });
            let Some(execution) = apply::apply_xact_locked(client, &self.table, m, lock).await?
            else {
                // Another runner applied it between our plan and this transaction.
                report.already_applied += 1;
                continue;
            };
            let applied = Applied {
                version: m.version(),
                name: m.name().to_owned(),
                file: m.display_path(),
                execution,
                transactional: true,
            };
            report.applied.push(applied.clone());
            self.emit(Event::Applied(applied));
        }
        Ok(())
    }

    async fn apply_pending(
        &self,
        client: &mut Client,
        report: &mut Report,
        in_doubt: &mut Option<i64>,
    ) -> Result<(), Error> {
        if !self
            .own("history check", history::exists(client, &self.table))
            .await?
        {
            self.own("history creation", history::create(client, &self.table))
                .await?;
        }
        let rows = self
            .own("history read", history::read(client, &self.table))
            .await?;
        if let Some(version) = in_doubt.take() {
            self.resolve(version, &rows, report);
        }
        let status = plan::compare(&self.migrations, &rows, true);
        let todo = plan::pending(&self.migrations, &status, self.out_of_order)?;
        // Rows this run applied on an earlier session (before a resume) are not "already".
        report.already_applied = rows
            .iter()
            .filter(|r| !report.applied.iter().any(|a| a.version == r.version))
            .count();
        self.emit(Event::Planned {
            applied: report.already_applied,
            pending: todo.len(),
        });
        for m in todo {
            self.emit(Event::Applying {
                version: m.version(),
                file: m.display_path(),
                transactional: m.is_transactional(),
            });
            let execution = apply::apply(client, &self.table, m).await?;
            let applied = Applied {
                version: m.version(),
                name: m.name().to_owned(),
                file: m.display_path(),
                execution,
                transactional: m.is_transactional(),
            };
            report.applied.push(applied.clone());
            self.emit(Event::Applied(applied));
        }
        Ok(())
    }

    /// Settles a lost COMMIT from the history read under the lock.
    fn resolve(&self, version: i64, rows: &[plan::Row], report: &mut Report) {
        let row = rows.iter().find(|r| r.version == version);
        let migration = self.migrations.iter().find(|m| m.version() == version);
        let committed = row.is_some();
        tracing::info!(version, committed, "lost COMMIT resolved from the history");
        self.emit(Event::CommitResolved { version, committed });
        if let (Some(row), Some(m)) = (row, migration) {
            let applied = Applied {
                version,
                name: m.name().to_owned(),
                file: m.display_path(),
                execution: Duration::from_millis(row.execution_ms.unwrap_or(0).max(0) as u64),
                transactional: m.is_transactional(),
            };
            report.applied.push(applied.clone());
            self.emit(Event::Applied(applied));
        }
    }

    /// The state of every version, read without the lock and without writing anything (a
    /// missing history table reads as empty).
    pub async fn status_on(&self, client: &Client) -> Result<Status, Error> {
        let exists = self
            .own("history check", history::exists(client, &self.table))
            .await?;
        let rows = if exists {
            self.own("history read", history::read(client, &self.table))
                .await?
        } else {
            Vec::new()
        };
        Ok(plan::compare(&self.migrations, &rows, exists))
    }

    /// What a run would apply now, in order, without applying anything; fails as the run
    /// would if the history does not match the files.
    pub async fn dry_run_on(&self, client: &Client) -> Result<Vec<Migration>, Error> {
        let status = self.status_on(client).await?;
        Ok(plan::pending(&self.migrations, &status, self.out_of_order)?
            .into_iter()
            .cloned()
            .collect())
    }
}

/// How many rounds [`Migrator::behind_pooler`] runs at most (a direct connection or a
/// session pooler always runs them all).
const POOLER_PROBE_ROUNDS: usize = 3;

/// The session's backend pid, by the simple protocol: a prepared statement could not cross
/// a pooler's server connections, which is what [`Migrator::behind_pooler`] asks about.
async fn backend_pid(client: &Client) -> Result<i32, Error> {
    let messages = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .map_err(|e| Error::from_pg(e, "probing for a transaction pooler"))?;
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let pid = match row {
        Some(row) => crate::error::text_column(row, 0, "probing for a transaction pooler")?,
        None => None,
    };
    pid.and_then(|pid| pid.parse::<i32>().ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::Db,
            "probing for a transaction pooler: the server sent no backend pid",
        )
    })
}

/// Whether a run that failed with `err` may resume on a new connection: the connection was
/// lost outside a non-transactional migration (those fail with [`ErrorKind::Migration`]).
fn resumable(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Connect | ErrorKind::Closed | ErrorKind::CommitOutcomeUnknown
    )
}
