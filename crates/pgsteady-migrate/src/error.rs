//! The migrator's error: opaque [`Error`] with a [`#[non_exhaustive]`](ErrorKind) kind, its
//! own (the connection layer's [`pgsteady::Error`] knows nothing of files and histories).
//!
//! The failed file and position are a field ([`Error::failure`]), not something to downcast
//! out of the cause chain. Constructors are `pub(crate)`, as in tokio-postgres: a caller can
//! ask an error what it is, not forge one.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use pgsteady::classify::{self, Action};
use pgsteady::{Reason, SqlState};

use crate::position::Position;

/// What kind of failure a migration [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The files or a setting are invalid (bad name, duplicate version, unknown directive,
    /// a history table name that is not an identifier...): nothing ran.
    Config,
    /// Connecting failed, or the connection was lost (see [`Error::connection`] for the
    /// connection layer's own error, when it made this one).
    Connect,
    /// The connection is closed.
    Closed,
    /// A bounded wait ran out: the lock (`with_lock_timeout`), one of pgsteady's own
    /// statements, or connecting.
    Timeout,
    /// The server rejected the credentials or the role.
    Auth,
    /// The database does not exist.
    MissingDatabase,
    /// TLS negotiation or certificate verification failed.
    Tls,
    /// One of the migrator's own statements failed on the server.
    Db,
    /// A migration failed: its SQL returned an error (its transaction was rolled back), or a
    /// migration that runs outside a transaction was interrupted, or the run was
    /// interrupted. [`Error::failure`] names the file and position.
    Migration,
    /// The connection was lost while a migration's COMMIT was in flight: whether it
    /// committed is unknown until the history is read again ([`Migrator::run`] does so when
    /// it resumes).
    ///
    /// [`Migrator::run`]: crate::Migrator::run
    CommitOutcomeUnknown,
    /// The migration history does not match the migration files (an applied file was changed
    /// or removed, or a file is older than the latest applied version). Nothing was applied.
    HistoryMismatch,
}

impl ErrorKind {
    /// A stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::Closed => "closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Auth => "auth",
            ErrorKind::MissingDatabase => "missing_database",
            ErrorKind::Tls => "tls",
            ErrorKind::Db => "db",
            ErrorKind::Migration => "migration",
            ErrorKind::CommitOutcomeUnknown => "commit_outcome_unknown",
            ErrorKind::HistoryMismatch => "history_mismatch",
        }
    }

    /// The kind that best describes a classification reason.
    pub(crate) const fn from_reason(reason: Reason) -> Self {
        Self::from_core(pgsteady::ErrorKind::from_reason(reason))
    }

    /// The kind for a connection-layer kind.
    const fn from_core(kind: pgsteady::ErrorKind) -> Self {
        match kind {
            pgsteady::ErrorKind::Config => ErrorKind::Config,
            pgsteady::ErrorKind::Timeout => ErrorKind::Timeout,
            pgsteady::ErrorKind::Auth => ErrorKind::Auth,
            pgsteady::ErrorKind::MissingDatabase => ErrorKind::MissingDatabase,
            pgsteady::ErrorKind::Tls => ErrorKind::Tls,
            pgsteady::ErrorKind::Closed => ErrorKind::Closed,
            pgsteady::ErrorKind::Db => ErrorKind::Db,
            pgsteady::ErrorKind::CommitOutcomeUnknown => ErrorKind::CommitOutcomeUnknown,
            _ => ErrorKind::Connect,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Checked access to the server's answers to the migrator's own statements. A column that is
// missing or of another type than asked for (a history table made by hand with
// `version integer`, a proxy or a server that only speaks the protocol) is an error naming
// the statement and the column (exit 3 in the CLI: retrying will not change the answer),
// never a panic in tokio-postgres' `Row::get`. Here rather than in a file of their own: they
// make this module's errors, and a new file would join the import circle this one is in.

/// Column `idx` of `row` (named `column` in the message), answering what `context` says.
pub(crate) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
    column: &str,
    context: &str,
) -> Result<T, Error> {
    row.try_get(idx).map_err(|e| {
        Error::new(
            ErrorKind::Db,
            format!("{context}: the server's answer has no usable column {idx} ({column})"),
        )
        .with_source(e)
    })
}

/// Column `idx` of a simple-protocol row (`None`: SQL NULL), answering what `context` says.
pub(crate) fn text_column<'a>(
    row: &'a tokio_postgres::SimpleQueryRow,
    idx: usize,
    context: &str,
) -> Result<Option<&'a str>, Error> {
    row.try_get(idx).map_err(|e| {
        Error::new(
            ErrorKind::Db,
            format!("{context}: the server's answer has no usable column {idx}"),
        )
        .with_source(e)
    })
}

type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

/// The error of a migration run, status, dry run or repair.
///
/// Ask it with [`kind`](Self::kind), [`reason`](Self::reason), [`code`](Self::code),
/// [`failure`](Self::failure), [`connection`](Self::connection). `{}` is its own message;
/// the causes come through `source()` (anyhow's `{:#}` prints each once); `{:#}` prints the
/// message and every cause. Control characters from the server are escaped in both.
#[derive(Clone)]
pub struct Error(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    reason: Option<Reason>,
    message: String,
    source: Option<SharedError>,
    failure: Option<Arc<Failure>>,
    connection: Option<pgsteady::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            reason: None,
            message: message.into(),
            source: None,
            failure: None,
            connection: None,
        }))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message).with_reason(Reason::Config)
    }

    /// A server error while `context`, classified as the connection layer classifies it.
    pub(crate) fn from_pg(err: tokio_postgres::Error, context: &str) -> Self {
        let reason = classify::reason_of(&err);
        Self::new(
            ErrorKind::from_core(pgsteady::ErrorKind::from_reason(reason)),
            context,
        )
        .with_reason(reason)
        .with_source(err)
    }

    /// A timeout of one of the migrator's own bounded waits.
    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message).with_reason(Reason::TimedOut)
    }

    #[must_use]
    pub(crate) fn with_reason(mut self, reason: Reason) -> Self {
        self.0.reason = Some(reason);
        self
    }

    #[must_use]
    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.0.source = Some(Arc::new(source));
        self
    }

    /// Changes the kind (a lost COMMIT: the outcome is unknown).
    #[must_use]
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// Makes `failure` the cause.
    #[must_use]
    pub(crate) fn with_failure(mut self, failure: Failure) -> Self {
        let failure = Arc::new(failure);
        self.0.source = Some(failure.clone());
        self.0.failure = Some(failure);
        self
    }

    /// Makes another of our errors the cause, keeping its failure.
    #[must_use]
    pub(crate) fn caused_by(mut self, cause: Error) -> Self {
        self.0.failure = cause.0.failure.clone();
        self.0.reason = self.0.reason.or(cause.0.reason);
        self.0.source = Some(Arc::new(cause));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The classification reason, when known.
    pub fn reason(&self) -> Option<Reason> {
        self.0.reason
    }

    /// The message without the cause.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The SQLSTATE, if the server sent one.
    pub fn code(&self) -> Option<&SqlState> {
        if let Some(e) = &self.0.connection {
            return e.code();
        }
        classify::sqlstate(self.0.source.as_deref()?)
    }

    /// The file (and position) that failed, for [`ErrorKind::Migration`] and
    /// [`ErrorKind::CommitOutcomeUnknown`].
    pub fn failure(&self) -> Option<&Failure> {
        self.0.failure.as_deref()
    }

    /// The connection layer's error, when connecting failed (its kind, reason, hosts and
    /// attempts).
    pub fn connection(&self) -> Option<&pgsteady::Error> {
        self.0.connection.as_ref()
    }

    /// Whether the connection is gone: what a resume needs a new connection for.
    pub fn is_closed(&self) -> bool {
        self.0.kind == ErrorKind::Closed || self.0.reason.is_some_and(Reason::is_connection_lost)
    }

    /// Whether retrying later may succeed (a lost connection, a timeout, a transient server
    /// error); never for a failed migration or a history mismatch.
    pub fn is_transient(&self) -> bool {
        if let Some(e) = &self.0.connection {
            return e.is_transient();
        }
        match self.0.kind {
            ErrorKind::Timeout | ErrorKind::Closed => true,
            ErrorKind::Db | ErrorKind::Connect => {
                classify::query(self).action == Action::Retry
                    || self.0.reason.is_some_and(Reason::needs_new_connection)
            }
            _ => false,
        }
    }
}

impl From<pgsteady::Error> for Error {
    fn from(err: pgsteady::Error) -> Self {
        // Its message is ours and its causes are ours (see `source`), so nothing prints
        // twice.
        let mut this = Error::new(ErrorKind::from_core(err.kind()), err.to_string());
        this.0.reason = err.reason();
        this.0.connection = Some(err);
        this
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("reason", &self.0.reason)
            .field("message", &self.0.message)
            .field("failure", &self.0.failure)
            .field("source", &self.0.source)
            .finish()
    }
}

/// `{}`: the message; `{:#}`: the message and every cause, `: `-separated, skipping a cause
/// whose text its parent already printed.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&pgsteady::text::sanitize(&self.0.message))?;
        if !f.alternate() {
            return Ok(());
        }
        let mut printed = self.0.message.clone();
        let mut cur = self.source();
        while let Some(e) = cur {
            let text = match e.downcast_ref::<pgsteady::Error>() {
                Some(ours) => format!("{ours}"),
                None => e.to_string(),
            };
            if !printed.contains(&text) {
                write!(f, ": {}", pgsteady::text::sanitize(&text))?;
                printed.push_str(&text);
            }
            cur = e.source();
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        if let Some(e) = &self.0.connection {
            return StdError::source(e);
        }
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// Where and how a migration failed: [`Error::failure`] of an error returned by a run (or
/// [`Failure::of`]), also its `source()`.
///
/// `Display` is the file, with `:line:column` when the server reported a position.
#[derive(Debug)]
pub struct Failure {
    pub(crate) version: i64,
    pub(crate) file: String,
    pub(crate) position: Option<Position>,
    pub(crate) source: Option<tokio_postgres::Error>,
}

impl Failure {
    /// The failure inside `err`, if `err` comes from applying a migration.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: &mut tokio_postgres::Client) {
    /// use pgsteady_migrate::{Failure, Migrator};
    /// let migrator = Migrator::from_dir("migrations").unwrap();
    /// if let Err(err) = migrator.run_on(client).await {
    ///     if let Some(f) = Failure::of(&err) {
    ///         eprintln!("{} failed at {:?}", f.file(), f.position());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn of(err: &Error) -> Option<&Failure> {
        err.failure()
    }

    #[cfg(test)]
    pub(crate) fn for_test(version: i64, file: &str) -> Self {
        Failure {
            version,
            file: file.to_owned(),
            position: None,
            source: None,
        }
    }

    /// The migration's version.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The migration's path (or file name).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Line and column in the file, when the server reported a position.
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// The server's error, when there is one.
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.source.as_ref()?.as_db_error()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(p) = &self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        Ok(())
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file is a field, and a report walking `source()` prints each cause once.
    #[test]
    fn failure_is_a_field_and_causes_print_once() {
        let failure = Failure::for_test(2, "0002_bad.sql");
        let err = Error::new(ErrorKind::Migration, "migration failed").with_failure(failure);
        assert_eq!(err.failure().map(Failure::version), Some(2));
        let interrupted = Error::new(ErrorKind::Migration, "interrupted").caused_by(err);
        assert_eq!(
            interrupted.failure().map(Failure::file),
            Some("0002_bad.sql"),
            "the failure survives wrapping"
        );
        assert_eq!(interrupted.to_string(), "interrupted");
        let report = format!("{:#}", anyhow::Error::new(interrupted.clone()));
        for part in ["interrupted", "migration failed", "0002_bad.sql"] {
            assert_eq!(report.matches(part).count(), 1, "{part} in {report}");
        }
        assert_eq!(
            format!("{interrupted:#}"),
            "interrupted: migration failed: 0002_bad.sql"
        );
    }
}
