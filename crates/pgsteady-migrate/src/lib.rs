#![doc = include_str!("../README.md")]
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
//! Through a transaction pooler (PgBouncer in transaction mode) there is no session to hold a
//! lock: each transaction takes a transaction-level lock (`pg_advisory_xact_lock`) on the
//! same key and re-reads the history under it, each file still atomic with its history row.
//! [`Migrator::run`] does so when told ([`Migrator::with_transaction_locks`],
//! `statement_cache=off` in the connection string) and, with no setting, when its first
//! session finds a transaction pooler before taking any lock: the session reads its backend
//! pid twice in autocommit while a second session holds a transaction open (up to three
//! rounds); a session that sees two pids, or a second session that sees the first one's
//! pid, can only be behind a transaction pooler ([`Event::SessionMode`]). A busy pooler can
//! hide itself from every round: `statement_cache=off` is the certain way.
//!
//! Otherwise a run takes a session-level advisory lock (`pg_advisory_lock`) whose key hashes a constant
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
//! # async fn demo() -> Result<(), pgsteady_migrate::Error> {
//! use pgsteady_migrate::Migrator;
//! use pgsteady::{Config, Connector};
//!
//! let migrator = Migrator::from_dir("migrations")?; // every file checked before connecting
//! let connector = Connector::new(Config::resolve(None)?)?; // DATABASE_URL / PG* variables
//! let report = migrator.run(&connector).await?; // waits for the database, then migrates
//! for m in &report.applied {
//!     println!("applied {} in {:?}", m.file, m.execution);
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod apply;
mod error;
mod history;
mod plan;
mod position;
mod repair;
mod run;
mod source;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use apply::Failure;
pub use error::{Error, ErrorKind};
pub use history::HistoryTable;
pub use plan::{Entry, State, Status};
pub use position::Position;
pub use repair::{Repair, Rewritten};
pub use source::{Checksum, Migration, NO_TRANSACTION};

use pgsteady::Reason;

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
    /// Total time, from the start of the run (waiting for the database included) to the end.
    pub elapsed: Duration,
    /// How many times the run lost its connection and resumed on a new one
    /// ([`Migrator::run`] only).
    pub resumes: u32,
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
    /// After a resume: whether the migration whose COMMIT was in flight when the connection
    /// was lost did commit, as the re-read history shows. If it did, it is in the report; if
    /// not, it is applied again.
    CommitResolved {
        /// The version.
        version: i64,
        /// Whether it was committed.
        committed: bool,
    },
    /// The first session found out whether a transaction pooler (PgBouncer in
    /// transaction mode) is in front, before taking any lock; behind one, the run uses
    /// transaction-level locks. Sent only when neither
    /// [`Migrator::with_transaction_locks`] nor `statement_cache=off` said so already.
    SessionMode {
        /// Whether a transaction pooler was detected.
        transaction_pooler: bool,
    },
    /// The connection was lost; [`Migrator::run`] reconnects (waiting for the server again),
    /// takes the lock again, re-reads the history and carries on. What was in flight was
    /// rolled back, or, if the loss hit its COMMIT, the re-read history tells whether it
    /// committed.
    Resuming {
        /// 1 for the first resume.
        attempt: u32,
        /// Why the connection was lost (the server's reason when it sent one).
        reason: Option<Reason>,
        /// The error, as text.
        error: String,
    },
}

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// How many times [`Migrator::run`] resumes after a lost connection by default.
pub const DEFAULT_MAX_RESUMES: u32 = 3;

/// Applies a directory of SQL migrations; see the [module docs](self) for the file format and
/// the guarantees.
///
/// # Default
///
/// - history table: `pgsteady_migrations` ([`HistoryTable::default`])
/// - out-of-order files: refused
/// - lock wait: unbounded (the lock is released as soon as the holder's session ends)
/// - resumes after a lost connection ([`Migrator::run`]): 3
/// - no event callback
#[derive(Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
    dir: Option<PathBuf>,
    table: HistoryTable,
    out_of_order: bool,
    lock_timeout: Option<Duration>,
    max_resumes: u32,
    own_query_timeout: Duration,
    on_event: Option<Callback>,
    xact_locks: bool,
}

/// The default bound on each of pgsteady's own history statements.
pub const DEFAULT_OWN_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator")
            .field("dir", &self.dir)
            .field("migrations", &self.migrations.len())
            .field("table", &self.table)
            .field("out_of_order", &self.out_of_order)
            .field("lock_timeout", &self.lock_timeout)
            .field("max_resumes", &self.max_resumes)
            .field("xact_locks", &self.xact_locks)
            .field("own_query_timeout", &self.own_query_timeout)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl Migrator {
    /// Reads and validates every migration file in `dir`. Fails with
    /// [`ErrorKind::Config`] naming each bad file (bad name,
    /// duplicate version, unreadable, not UTF-8, unknown `pgsteady:` directive), or when `dir`
    /// is missing or not a directory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let migrator = pgsteady_migrate::Migrator::from_dir("migrations")?;
    /// for m in migrator.migrations() {
    ///     println!("{} {}", m.version(), m.name());
    /// }
    /// # Ok::<(), pgsteady_migrate::Error>(())
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
            max_resumes: DEFAULT_MAX_RESUMES,
            xact_locks: false,
            own_query_timeout: DEFAULT_OWN_QUERY_TIMEOUT,
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

    /// Runs without session state, for a transaction pooler (PgBouncer in transaction
    /// mode): a transaction-level advisory lock per transaction instead of one session lock
    /// for the run, the history re-read under it before each file. [`Migrator::run`] does so
    /// by itself when the connection configuration has `statement_cache=off`. Pending
    /// `-- pgsteady:no-transaction` files are then refused before anything is applied
    /// ([`ErrorKind::Config`]). See `docs/pgbouncer.md`.
    #[must_use]
    pub fn with_transaction_locks(mut self, on: bool) -> Self {
        self.xact_locks = on;
        self
    }

    /// Bounds the wait for another runner's lock (`None`: unbounded). Running out fails with
    /// [`ErrorKind::Timeout`].
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How many times [`Migrator::run`] may reconnect and resume after losing its connection
    /// (0: fail on the first loss). A migration running outside a transaction is never
    /// resumed: its outcome is unknown.
    #[must_use]
    pub fn with_max_resumes(mut self, max: u32) -> Self {
        self.max_resumes = max;
        self
    }

    /// Bounds each of pgsteady's own history statements (the lock key, the history table's
    /// existence, creation and contents, the unlock); the lock wait is bounded by
    /// [`with_lock_timeout`](Self::with_lock_timeout) and the files' SQL is not bounded.
    /// Running out fails with [`ErrorKind::Timeout`]: a server that
    /// stops answering must not hold a run forever. Default:
    /// [`DEFAULT_OWN_QUERY_TIMEOUT`] (30 s).
    #[must_use]
    pub fn with_own_query_timeout(mut self, timeout: Duration) -> Self {
        self.own_query_timeout = timeout;
        self
    }

    /// Runs one of pgsteady's own statements within the bound.
    pub(crate) async fn own<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.own_query_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout(format!(
                "the server did not answer pgsteady's {what} within {:.1}s",
                self.own_query_timeout.as_secs_f64()
            ))),
        }
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
}
