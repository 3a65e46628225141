//! A migration runner that cannot race or half-apply.
//!
//! # Files
//!
//! A directory of plain SQL files named `<version>_<name>.sql`: the version is digits (leading
//! zeros allowed, compared as numbers, at most `i64::MAX`), the name letters, digits, `_` and
//! `-`; e.g. `0001_create_users.sql`, `20250101120000_add_email.sql`. Files are applied in
//! version order. Dotfiles (`.gitkeep`) and `*.md` files are ignored; anything else (another
//! name format, `.SQL`, up/down pairs, subdirectories, duplicate versions, a file that is not
//! UTF-8) is rejected before anything runs, with one message naming every bad file.
//!
//! # Transactions
//!
//! Each file runs in its own transaction together with the insert of its history row: it is
//! applied and recorded entirely, or not at all, whatever happens to the server or the
//! network. A file whose leading comment lines contain
//!
//! ```sql
//! -- pgsteady:no-transaction
//! ```
//!
//! runs outside a transaction, for statements that refuse one (`CREATE INDEX CONCURRENTLY`,
//! `ALTER TYPE ... ADD VALUE` before PostgreSQL 12, `VACUUM`). It is sent as one simple query:
//! with a single statement, that statement runs on its own; with several, PostgreSQL runs them
//! as one implicit transaction (so they are still all-or-nothing, and the statements that
//! refuse transactions fail with SQLSTATE 25001). Its history row is written after it
//! succeeds, so if the connection is lost in between it runs again next time: write such
//! files to be re-runnable (`IF NOT EXISTS`). A failed `CREATE INDEX CONCURRENTLY` leaves an
//! INVALID index behind, which PostgreSQL does not remove: drop it before running again.
//!
//! Do not put `BEGIN`/`COMMIT`/`ROLLBACK` in a transactional file: the runner detects that the
//! file ended its transaction (the transaction id changed) and fails, naming the file.
//!
//! # Concurrency
//!
//! A run takes a session-level advisory lock (`pg_advisory_lock`) whose key hashes a constant
//! with the database name and the history table, holds it on its own session for the whole
//! run, and reads the history only after getting it. Concurrent runners therefore serialise:
//! the first applies, the others find nothing left to do. The lock belongs to the session, so
//! a runner that crashes or loses its connection never leaves a stuck lock.
//!
//! # History
//!
//! The table `pgsteady_migrations` (see [`HistoryTable`]) has one row per applied version:
//! `version bigint primary key, name text, checksum text, applied_at timestamptz, execution_ms
//! bigint`. `checksum` is the SHA-256 of the file's bytes as hex (the output of `sha256sum`).
//! Before applying anything, a run compares the files with the history ([`State`]): a changed
//! applied file ([`State::Modified`]), an applied version with no file while later files exist
//! ([`State::Missing`]), or a new file older than the latest applied version
//! ([`State::OutOfOrder`]) stops the run with [`ErrorKind::HistoryMismatch`] and nothing is
//! applied. Applied versions newer than every file ([`State::Future`], applied by a newer
//! release during a rolling deployment) are fine.
//!
//! The escape hatches are explicit: [`Migrator::repair_on`] (`pgsteady migrate repair`)
//! records the files as they are now (rewrites the checksum and name of changed files, forgets
//! applied versions whose file is gone) without running any SQL from them;
//! [`Migrator::with_out_of_order`] (`--out-of-order`) applies files older than the latest
//! applied one.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pgsteady::migrate::Migrator;
//!
//! let migrator = Migrator::from_dir("migrations")?;
//! let (mut client, connection) =
//!     tokio_postgres::connect("host=localhost user=app dbname=app", tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let report = migrator.run_on(&mut client).await?;
//! for m in &report.applied {
//!     println!("applied {} in {:?}", m.file, m.execution);
//! }
//! # Ok(()) }
//! ```

mod apply;
mod history;
mod plan;
mod position;
mod source;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

pub use apply::Failure;
pub use history::HistoryTable;
pub use plan::{Entry, State, Status};
pub use position::Position;
pub use source::{Checksum, Migration, NO_TRANSACTION};

use crate::{Error, ErrorKind};

/// One migration applied by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// The version.
    pub version: i64,
    /// The name.
    pub name: String,
    /// The file's path (or name).
    pub file: String,
    /// How long its SQL took (without the history bookkeeping).
    pub execution: Duration,
    /// Whether it ran in a transaction.
    pub transactional: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Report {
    /// The migrations this run applied, in order.
    pub applied: Vec<Applied>,
    /// How many versions were already applied when this run got the lock.
    pub already_applied: usize,
    /// How long this run waited for another runner's lock.
    pub lock_wait: Duration,
    /// Total time, from the start of the run (connecting included) to the end.
    pub elapsed: Duration,
}

/// What a run is doing, for logging. Delivered to the callback of [`Migrator::on_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Another session holds the migration lock; waiting for it.
    LockWait {
        /// The backend holding it, if it could be found.
        holder_pid: Option<i32>,
    },
    /// Got the lock.
    Locked {
        /// How long it took.
        waited: Duration,
    },
    /// The history was read: how many migrations will run.
    Planned {
        /// Already applied.
        applied: usize,
        /// To apply now.
        pending: usize,
    },
    /// Starting a migration.
    Applying {
        /// The version.
        version: i64,
        /// The file.
        file: String,
        /// Whether it runs in a transaction.
        transactional: bool,
    },
    /// A migration was applied and recorded.
    Applied(Applied),
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Applies a directory of SQL migrations; see the [module docs](self) for the file format and
/// the guarantees.
///
/// # Default
///
/// - history table: `pgsteady_migrations` ([`HistoryTable::default`])
/// - out-of-order files: refused
/// - lock wait: unbounded (the lock is released as soon as the holder's session ends)
/// - no event callback
#[derive(Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
    dir: Option<PathBuf>,
    table: HistoryTable,
    out_of_order: bool,
    lock_timeout: Option<Duration>,
    on_event: Option<Callback>,
}

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator")
            .field("dir", &self.dir)
            .field("migrations", &self.migrations.len())
            .field("table", &self.table)
            .field("out_of_order", &self.out_of_order)
            .field("lock_timeout", &self.lock_timeout)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl Migrator {
    /// Reads and validates every migration file in `dir`. Fails with [`ErrorKind::Config`]
    /// naming each bad file (bad name, duplicate version, unreadable, not UTF-8, unknown
    /// `pgsteady:` directive), or when `dir` is missing or not a directory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let migrator = pgsteady::migrate::Migrator::from_dir("migrations")?;
    /// for m in migrator.migrations() {
    ///     println!("{} {}", m.version(), m.name());
    /// }
    /// # Ok::<(), pgsteady::Error>(())
    /// ```
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let migrations = source::read_dir(dir)?;
        Ok(Migrator {
            dir: Some(dir.to_owned()),
            ..Self::empty(migrations)
        })
    }

    /// A migrator for migrations built in code (e.g. embedded with `include_bytes!`). Fails if
    /// two have the same version.
    pub fn new(migrations: impl IntoIterator<Item = Migration>) -> Result<Self, Error> {
        let mut migrations: Vec<Migration> = migrations.into_iter().collect();
        source::sort_and_check(&mut migrations).map_err(|dups| Error::config(dups.join("; ")))?;
        Ok(Self::empty(migrations))
    }

    fn empty(migrations: Vec<Migration>) -> Self {
        Migrator {
            migrations,
            dir: None,
            table: HistoryTable::default(),
            out_of_order: false,
            lock_timeout: None,
            on_event: None,
        }
    }

    /// The migrations, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The directory they were read from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The history table.
    pub fn table(&self) -> &HistoryTable {
        &self.table
    }

    /// Uses another history table.
    #[must_use]
    pub fn with_table(mut self, table: HistoryTable) -> Self {
        self.table = table;
        self
    }

    /// Applies files whose version is older than the latest applied one instead of refusing
    /// them.
    #[must_use]
    pub fn with_out_of_order(mut self, allow: bool) -> Self {
        self.out_of_order = allow;
        self
    }

    /// Bounds the wait for another runner's lock (`None`: unbounded). Running out fails with
    /// [`ErrorKind::Timeout`].
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Calls `callback` with each [`Event`] of a run.
    #[must_use]
    pub fn on_event(mut self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(callback));
        self
    }

    fn emit(&self, event: Event) {
        tracing::debug!(?event, "migrate");
        if let Some(cb) = &self.on_event {
            cb(&event);
        }
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
        let result = self.run_locked(client, &mut report).await;
        report.elapsed = start.elapsed();
        result.map(|()| report)
    }

    async fn run_locked(&self, client: &mut Client, report: &mut Report) -> Result<(), Error> {
        let key = history::session_lock_key(client, &self.table).await?;
        let waited = history::lock(client, key, self.lock_timeout, |holder_pid| {
            self.emit(Event::LockWait { holder_pid })
        })
        .await?;
        report.lock_wait += waited;
        self.emit(Event::Locked { waited });
        let result = self.apply_pending(client, report).await;
        history::unlock(client, key).await;
        result
    }

    async fn apply_pending(&self, client: &mut Client, report: &mut Report) -> Result<(), Error> {
        if !history::exists(client, &self.table).await? {
            history::create(client, &self.table).await?;
        }
        let rows = history::read(client, &self.table).await?;
        let status = plan::compare(&self.migrations, &rows, true);
        let todo = plan::pending(&self.migrations, &status, self.out_of_order)?;
        report.already_applied = rows.len();
        self.emit(Event::Planned {
            applied: rows.len(),
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

    /// The state of every version, read without the lock and without writing anything (a
    /// missing history table reads as empty).
    pub async fn status_on(&self, client: &Client) -> Result<Status, Error> {
        let exists = history::exists(client, &self.table).await?;
        let rows = if exists {
            history::read(client, &self.table).await?
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

    /// Makes the history match the files, under the lock and in one transaction, without
    /// running any SQL from the files: changed (or renamed) applied files get their new
    /// checksum and name recorded; applied versions with no file any more are forgotten
    /// (their rows deleted). With `dry_run`, only reports what it would change.
    ///
    /// This is the explicit escape hatch for a deliberate edit of an applied file (a comment,
    /// a fix already made by hand) or a deliberate removal; review the report.
    pub async fn repair_on(&self, client: &mut Client, dry_run: bool) -> Result<Repair, Error> {
        let key = history::session_lock_key(client, &self.table).await?;
        history::lock(client, key, self.lock_timeout, |holder_pid| {
            self.emit(Event::LockWait { holder_pid })
        })
        .await?;
        let result = self.repair_locked(client, dry_run).await;
        history::unlock(client, key).await;
        result
    }

    async fn repair_locked(&self, client: &mut Client, dry_run: bool) -> Result<Repair, Error> {
        if !history::exists(client, &self.table).await? {
            return Ok(Repair::default());
        }
        let rows = history::read(client, &self.table).await?;
        let plan = plan::repair_plan(&self.migrations, &rows);
        let repair = Repair {
            rewritten: plan
                .rewrite
                .iter()
                .map(|m| {
                    let old = rows.iter().find(|r| r.version == m.version());
                    Rewritten {
                        version: m.version(),
                        file: m.display_path(),
                        old_name: old.map(|r| r.name.clone()).unwrap_or_default(),
                        old_checksum: old.map(|r| r.checksum.clone()).unwrap_or_default(),
                        new_checksum: m.checksum(),
                    }
                })
                .collect(),
            forgotten: plan.forget.clone(),
            dry_run,
        };
        if dry_run || (plan.rewrite.is_empty() && plan.forget.is_empty()) {
            return Ok(repair);
        }
        let pg = |e| Error::from_pg(e, "repairing the migration history");
        let tx = client.transaction().await.map_err(pg)?;
        let t = self.table.sql();
        for m in &plan.rewrite {
            tx.execute(
                &format!("UPDATE {t} SET checksum = $2, name = $3 WHERE version = $1"),
                &[&m.version(), &m.checksum().to_string(), &m.name()],
            )
            .await
            .map_err(pg)?;
        }
        for (version, _) in &plan.forget {
            tx.execute(&format!("DELETE FROM {t} WHERE version = $1"), &[version])
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(|e| {
            let err = Error::from_pg(e, "committing the repaired migration history");
            match err.reason() {
                Some(r) if apply::connection_lost(r) => {
                    err.with_kind(ErrorKind::CommitOutcomeUnknown)
                }
                _ => err,
            }
        })?;
        Ok(repair)
    }
}

/// What [`Migrator::repair_on`] changed (or would change, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Repair {
    /// Applied versions whose checksum and name were rewritten to match the file.
    pub rewritten: Vec<Rewritten>,
    /// Applied versions with no file any more, whose history rows were deleted: `(version,
    /// name)`.
    pub forgotten: Vec<(i64, String)>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl Repair {
    /// Whether there was nothing to repair.
    pub fn is_empty(&self) -> bool {
        self.rewritten.is_empty() && self.forgotten.is_empty()
    }
}

/// One history row rewritten by a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rewritten {
    /// The version.
    pub version: i64,
    /// The file now.
    pub file: String,
    /// The name recorded before.
    pub old_name: String,
    /// The checksum recorded before (hex).
    pub old_checksum: String,
    /// The file's checksum, now recorded.
    pub new_checksum: Checksum,
}
