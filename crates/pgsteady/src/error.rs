//! The crate's error type: opaque [`Error`] with a [`#[non_exhaustive]`](ErrorKind) kind and
//! query methods.
//!
//! As in tokio-postgres, every constructor is `pub(crate)`: a caller can ask an error what it
//! is but cannot make one whose kind and reason disagree.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::classify::chain::{self, OwnError};
use crate::classify::{Action, Reason};

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration or input is invalid (bad URL, unknown option, nonsense timeout).
    Config,
    /// Could not establish a session (network, server not ready, too many connections...).
    Connect,
    /// An operation or the whole deadline timed out.
    Timeout,
    /// The server rejected the credentials or the role (28P01, 28000).
    Auth,
    /// The database does not exist (3D000).
    MissingDatabase,
    /// TLS negotiation or certificate verification failed.
    Tls,
    /// The connection is closed.
    Closed,
    /// The server returned an error for a statement.
    Db,
    /// The connection was lost while COMMIT was in flight and the outcome could not be
    /// resolved: the transaction may or may not have committed. Never replay it blindly.
    CommitOutcomeUnknown,
    /// The pool is closed.
    PoolClosed,
}

impl ErrorKind {
    /// A stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Auth => "auth",
            ErrorKind::MissingDatabase => "missing_database",
            ErrorKind::Tls => "tls",
            ErrorKind::Closed => "closed",
            ErrorKind::Db => "db",
            ErrorKind::CommitOutcomeUnknown => "commit_outcome_unknown",
            ErrorKind::PoolClosed => "pool_closed",
        }
    }

    /// The kind that best describes a classification reason.
    pub const fn from_reason(reason: Reason) -> Self {
        match reason {
            Reason::TimedOut => ErrorKind::Timeout,
            Reason::InvalidPassword | Reason::InvalidAuthorization | Reason::AuthRequirement => {
                ErrorKind::Auth
            }
            Reason::MissingDatabase => ErrorKind::MissingDatabase,
            Reason::Tls => ErrorKind::Tls,
            Reason::Config | Reason::UndefinedObject => ErrorKind::Config,
            Reason::Closed => ErrorKind::Closed,
            Reason::SerializationFailure
            | Reason::Deadlock
            | Reason::QueryCanceled
            | Reason::Db => ErrorKind::Db,
            _ => ErrorKind::Connect,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host's failure inside a connect error that tried several hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    /// `host:port` or the Unix socket path (never contains credentials).
    pub host: String,
    /// The classification reason.
    pub reason: Reason,
    /// The error's message (never contains a password: see the crate docs).
    pub message: String,
}

impl fmt::Display for HostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.host, self.message)
    }
}

type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

/// The error type of this crate.
///
/// Opaque, and made by this crate only: ask it with [`kind`](Self::kind),
/// [`reason`](Self::reason), [`is_transient`](Self::is_transient),
/// [`is_timeout`](Self::is_timeout), [`is_closed`](Self::is_closed), [`code`](Self::code),
/// [`hosts`](Self::hosts). `{}` is its own message, the causes come through `source()`, and
/// `{:#}` prints both (see the `Display` impl). It never contains a password.
///
/// Cloning is cheap (the cause is shared), so one failure can be reported to every caller
/// that waited on it.
#[derive(Clone)]
pub struct Error(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    reason: Option<Reason>,
    message: String,
    source: Option<SharedError>,
    /// Whether `source()` offers `source`; false when the message already says it all.
    source_shown: bool,
    hosts: Vec<HostFailure>,
    attempts: u32,
    elapsed: Option<Duration>,
}

impl Error {
    /// A new error of `kind` with a lowercase message.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            reason: None,
            message: message.into(),
            source: None,
            source_shown: true,
            hosts: Vec::new(),
            attempts: 0,
            elapsed: None,
        }))
    }

    /// A configuration error naming the bad part.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message).with_reason(Reason::Config)
    }

    /// Wraps a tokio-postgres error seen while `context` (e.g. "connecting"), classified for the
    /// connect phase.
    pub(crate) fn from_pg(err: tokio_postgres::Error, context: &str) -> Self {
        let reason = chain::reason_of::<Error>(&err);
        // The pooler's own error (`classify::pooler_error`): say who answered, so nobody
        // looks for "query_wait_timeout" in the server's log.
        let pooler;
        let context = if reason.is_pooler() {
            pooler = format!("{context}: the connection pooler (PgBouncer) in front of the server");
            &pooler
        } else {
            context
        };
        Self::new(ErrorKind::from_reason(reason), context)
            .with_reason(reason)
            .with_source(err)
    }

    /// Wraps an I/O error seen while `context`.
    pub(crate) fn from_io(err: std::io::Error, context: &str) -> Self {
        let reason = chain::reason_of::<Error>(&err);
        Self::new(ErrorKind::from_reason(reason), context)
            .with_reason(reason)
            .with_source(err)
    }

    /// Sets the classification reason.
    #[must_use]
    pub(crate) fn with_reason(mut self, reason: Reason) -> Self {
        self.0.reason = Some(reason);
        self
    }

    /// Sets the underlying cause.
    #[must_use]
    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.0.source = Some(Arc::new(source));
        self.0.source_shown = true;
        self
    }

    /// [`with_source`](Self::with_source) for a cause already shared.
    #[must_use]
    pub(crate) fn with_shared_source(mut self, source: SharedError) -> Self {
        self.0.source = Some(source);
        self.0.source_shown = true;
        self
    }

    /// Keeps `source` for [`code`](Self::code) and classification without offering it as
    /// the cause, for a message that already includes its text.
    #[must_use]
    pub(crate) fn with_hidden_source(
        mut self,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        self.0.source = Some(Arc::new(source));
        self.0.source_shown = false;
        self
    }

    /// Records the per-host failures of a multi-host attempt.
    #[must_use]
    pub(crate) fn with_hosts(mut self, hosts: Vec<HostFailure>) -> Self {
        self.0.hosts = hosts;
        self
    }

    /// Records how many attempts were made and for how long, once retries ran out.
    #[must_use]
    pub(crate) fn with_attempts(mut self, attempts: u32, elapsed: Duration) -> Self {
        self.0.attempts = attempts;
        self.0.elapsed = Some(elapsed);
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

    /// The message without the cause (nor the attempts).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Whether retrying (later, on a fresh connection) may succeed: the connect-phase
    /// classification says [`Action::Retry`], or the deadline ran out.
    pub fn is_transient(&self) -> bool {
        match self.0.kind {
            ErrorKind::Timeout | ErrorKind::Closed => true,
            ErrorKind::Db => chain::query::<Error>(self).action == Action::Retry,
            ErrorKind::Connect => chain::connect::<Error>(self).action == Action::Retry,
            _ => false,
        }
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::Timeout
    }

    /// Whether the connection is gone (or could not be had): the kind is
    /// [`ErrorKind::Closed`], or the reason is one of
    /// [`Reason::is_connection_lost`]'s (e.g. 57P01 when the server ended the session).
    pub fn is_closed(&self) -> bool {
        self.0.kind == ErrorKind::Closed || self.0.reason.is_some_and(Reason::is_connection_lost)
    }

    /// The SQLSTATE, if the server sent one.
    pub fn code(&self) -> Option<&SqlState> {
        self.0
            .source
            .as_deref()
            .and_then(|s| chain::sqlstate::<Error>(s as &(dyn StdError + 'static)))
    }

    /// Each host tried, in order, with why it failed (empty for single-step errors).
    pub fn hosts(&self) -> &[HostFailure] {
        &self.0.hosts
    }

    /// Attempts made before giving up (0 when not from a retry loop).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// Time spent before giving up, when from a retry loop.
    pub fn elapsed(&self) -> Option<Duration> {
        self.0.elapsed
    }
}

/// What the classification walk asks an `Error` it meets in a chain: the cause may be kept
/// out of `source()`, so the walk asks the error itself.
impl OwnError for Error {
    fn own_code(&self) -> Option<&SqlState> {
        self.code()
    }

    fn own_reason(&self) -> Option<Reason> {
        self.reason()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("reason", &self.0.reason)
            .field("message", &self.0.message)
            .field("source", &self.0.source)
            .field("hosts", &self.0.hosts)
            .field("attempts", &self.0.attempts)
            .field("elapsed", &self.0.elapsed)
            .finish()
    }
}

/// `{}` is this error's own message (and how many attempts it took), never its cause: the
/// causes come through [`source()`](StdError::source), so a report that walks the chain
/// (anyhow's `{:#}`, `tracing`'s error fields) prints each once. `{:#}` prints the message
/// and every cause, `: `-separated, skipping a cause whose text its parent already printed
/// (tokio-postgres puts its cause in its own text).
///
/// Both escape control characters and cap the length: the text may hold a server's error
/// message, which is outside input.
///
/// # Examples
///
/// ```
/// # async fn demo() {
/// let connector = pgsteady::Connector::new(
///     pgsteady::Config::parse("postgresql://u@127.0.0.1:1/db").unwrap(),
/// )
/// .unwrap();
/// if let Err(e) = connector.connect_once().await {
///     println!("{e}"); // could not connect
///     println!("{e:#}"); // could not connect: 127.0.0.1:1: tcp connect failed: ...
/// }
/// # }
/// ```
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = String::new();
        if f.alternate() {
            fmt::write(&mut raw, format_args!("{}", Chain(self)))?;
        } else {
            fmt::write(&mut raw, format_args!("{}{}", Own(self), Attempts(self)))?;
        }
        f.write_str(&crate::text::sanitize_to(&raw, MAX_DISPLAY_CHARS))
    }
}

/// The cap on an error's displayed length: room for a few dozen hosts' failures.
const MAX_DISPLAY_CHARS: usize = 8 * crate::text::MAX_TEXT_CHARS;

/// The message, and every host's failure when there were several and no cause tells them.
struct Own<'a>(&'a Error);

impl fmt::Display for Own<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.0.0;
        f.write_str(&this.message)?;
        let told_by_cause = this.source.is_some() && this.source_shown;
        if this.hosts.len() > 1 && !told_by_cause {
            f.write_str(": ")?;
            for (i, h) in this.hosts.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                // Each capped on its own, so one huge server message cannot crowd out the
                // rest.
                write!(f, "{}", crate::text::sanitize_to(&h.to_string(), 1024))?;
            }
        }
        Ok(())
    }
}

/// " (after N attempts in S s)", when from a retry loop.
struct Attempts<'a>(&'a Error);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.0.0;
        if let Some(elapsed) = this.elapsed {
            write!(
                f,
                " (after {} attempt{} in {:.1}s)",
                this.attempts,
                if this.attempts == 1 { "" } else { "s" },
                elapsed.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// The message, every cause, then the attempts: a cause whose text its parent already
/// printed is skipped, and each is capped on its own.
struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = Own(self.0).to_string();
        f.write_str(&printed)?;
        let mut cur = StdError::source(self.0);
        while let Some(e) = cur {
            // Our own errors in the chain print their own message only (`{}`).
            let text = crate::text::sanitize(&e.to_string()).into_owned();
            if !printed.contains(&text) {
                write!(f, ": {text}")?;
                printed.push_str(&text);
            }
            cur = e.source();
        }
        write!(f, "{}", Attempts(self.0))
    }
}

/// Lets closures given to [`crate::Pool::run`] and [`crate::Pool::transaction`] use `?` on
/// tokio-postgres results; the error keeps its SQLSTATE and classification.
impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        Error::from_pg(err, "query failed")
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_deref()
            .filter(|_| self.0.source_shown)
            .map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Real tokio-postgres errors for unit tests, produced by running `connect_raw` against
    //! wire bytes (an in-memory stream that answers the startup packet), since tokio-postgres
    //! has no public constructor for them.

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn run(reply: Option<Vec<u8>>) -> tokio_postgres::Error {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client_side, mut server_side) = tokio::io::duplex(4096);
            let server = tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = server_side.read(&mut buf).await;
                if let Some(reply) = reply {
                    server_side.write_all(&reply).await.unwrap();
                }
                drop(server_side);
            });
            let mut config = tokio_postgres::Config::new();
            config
                .user("u")
                .ssl_mode(tokio_postgres::config::SslMode::Disable);
            let err = match config.connect_raw(client_side, tokio_postgres::NoTls).await {
                Ok(_) => panic!("fake server accepted"),
                Err(e) => e,
            };
            server.await.unwrap();
            err
        })
    }

    /// An ErrorResponse with SQLSTATE `code` during startup, with the fields PostgreSQL
    /// always sends (severity twice, code, message, source file, line and routine).
    pub(crate) fn db_error(code: &str) -> tokio_postgres::Error {
        error_response(&[
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', code),
            (b'M', "x"),
            (b'F', "postgres.c"),
            (b'L', "1"),
            (b'R', "test"),
        ])
    }

    /// An ErrorResponse as PgBouncer sends its own (`send_pooler_error`): severity, 08P01
    /// and the message only.
    pub(crate) fn pooler_error(message: &str) -> tokio_postgres::Error {
        error_response(&[(b'S', "FATAL"), (b'C', "08P01"), (b'M', message)])
    }

    fn error_response(fields: &[(u8, &str)]) -> tokio_postgres::Error {
        let mut body = Vec::new();
        for &(field, value) in fields {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = vec![b'E'];
        msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        run(Some(msg))
    }

    /// The server hangs up during startup.
    pub(crate) fn closed_error() -> tokio_postgres::Error {
        run(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_with_cause_and_attempts() {
        let err = Error::from_io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            "could not connect to 127.0.0.1:5432",
        )
        .with_attempts(3, Duration::from_millis(1500));
        assert_eq!(err.kind(), ErrorKind::Connect);
        assert_eq!(err.reason(), Some(Reason::Refused));
        assert!(err.is_transient());
        let text = format!("{err:#}");
        assert!(
            text.starts_with("could not connect to 127.0.0.1:5432: "),
            "{text}"
        );
        assert!(text.ends_with("(after 3 attempts in 1.5s)"), "{text}");
        assert!(err.source().is_some());
    }

    #[test]
    fn lists_every_host() {
        let err = Error::new(ErrorKind::Connect, "could not connect to any host").with_hosts(vec![
            HostFailure {
                host: "h1:5432".into(),
                reason: Reason::Refused,
                message: "connection refused".into(),
            },
            HostFailure {
                host: "h2:5433".into(),
                reason: Reason::TimedOut,
                message: "timed out".into(),
            },
        ]);
        assert_eq!(
            err.to_string(),
            "could not connect to any host: h1:5432: connection refused; h2:5433: timed out"
        );
    }

    #[test]
    fn db_errors_keep_their_code_and_kind() {
        let rows = [
            ("28P01", ErrorKind::Auth, false),
            ("3D000", ErrorKind::MissingDatabase, false),
            ("57P03", ErrorKind::Connect, true),
            ("40001", ErrorKind::Db, true),
            ("57014", ErrorKind::Db, false),
        ];
        for (code, kind, transient) in rows {
            let err = Error::from_pg(test_support::db_error(code), "connecting");
            assert_eq!(err.kind(), kind, "{code}");
            assert_eq!(err.code().unwrap().code(), code);
            assert_eq!(err.is_transient(), transient, "{code}");
        }
        let closed = Error::from_pg(test_support::closed_error(), "connecting");
        assert_eq!(closed.kind(), ErrorKind::Closed);
        assert!(closed.is_transient());
    }

    /// Every reason the classifier knows, in one list the compiler keeps whole: a new variant
    /// fails to compile until it is added here too.
    fn every_reason() -> Vec<Reason> {
        use Reason as R;
        let all = vec![
            R::Refused,
            R::Reset,
            R::TimedOut,
            R::Unreachable,
            R::Dns,
            R::CannotConnectNow,
            R::AdminShutdown,
            R::CrashShutdown,
            R::IdleSessionTimeout,
            R::IdleInTransactionTimeout,
            R::ConnectionException,
            R::TooManyConnections,
            R::InsufficientResources,
            R::Closed,
            R::InvalidPassword,
            R::InvalidAuthorization,
            R::AuthRequirement,
            R::MissingDatabase,
            R::UndefinedObject,
            R::Tls,
            R::Config,
            R::WrongSessionType,
            R::SerializationFailure,
            R::Deadlock,
            R::QueryCanceled,
            R::ReadOnlyTransaction,
            R::PoolerServerLost,
            R::PoolerLoginFailing,
            R::PoolerQueryWait,
            R::Db,
            R::Io,
            R::Other,
        ];
        for r in &all {
            match r {
                R::Refused
                | R::Reset
                | R::TimedOut
                | R::Unreachable
                | R::Dns
                | R::CannotConnectNow
                | R::AdminShutdown
                | R::CrashShutdown
                | R::IdleSessionTimeout
                | R::IdleInTransactionTimeout
                | R::ConnectionException
                | R::TooManyConnections
                | R::InsufficientResources
                | R::Closed
                | R::InvalidPassword
                | R::InvalidAuthorization
                | R::AuthRequirement
                | R::MissingDatabase
                | R::UndefinedObject
                | R::Tls
                | R::Config
                | R::WrongSessionType
                | R::SerializationFailure
                | R::Deadlock
                | R::QueryCanceled
                | R::ReadOnlyTransaction
                | R::PoolerServerLost
                | R::PoolerLoginFailing
                | R::PoolerQueryWait
                | R::Db
                | R::Io
                | R::Other => {}
            }
        }
        all
    }

    /// The query methods agree with classification, for every reason: an error made the way
    /// the crate makes them (kind from the reason) says `is_closed()` exactly when the reason
    /// says the connection is lost, and `is_transient()` when the connect-phase verdict is
    /// retry. Before the constructors were closed, a 57P01 error said `is_closed() == false`.
    #[test]
    fn query_methods_agree_with_the_reason_for_every_reason() {
        // (reason, is_closed, is_transient)
        use Reason as R;
        let table = [
            (R::Refused, true, true),
            (R::Reset, true, true),
            (R::TimedOut, true, true),
            (R::Unreachable, true, true),
            (R::Dns, false, true),
            (R::CannotConnectNow, true, true),
            (R::AdminShutdown, true, true),
            (R::CrashShutdown, true, true),
            (R::IdleSessionTimeout, true, true),
            (R::IdleInTransactionTimeout, true, true),
            (R::ConnectionException, true, true),
            (R::TooManyConnections, false, true),
            (R::InsufficientResources, false, true),
            (R::Closed, true, true),
            (R::InvalidPassword, false, false),
            (R::InvalidAuthorization, false, false),
            (R::AuthRequirement, false, false),
            (R::MissingDatabase, false, false),
            (R::UndefinedObject, false, false),
            (R::Tls, false, false),
            (R::Config, false, false),
            (R::WrongSessionType, false, false),
            (R::SerializationFailure, false, true),
            (R::Deadlock, false, true),
            (R::QueryCanceled, false, false),
            (R::ReadOnlyTransaction, false, false),
            (R::PoolerServerLost, true, true),
            (R::PoolerLoginFailing, true, true),
            (R::PoolerQueryWait, true, true),
            (R::Db, false, false),
            (R::Io, true, true),
            (R::Other, false, false),
        ];
        let all = every_reason();
        assert_eq!(table.len(), all.len(), "one row per reason");
        for reason in all {
            let (_, closed, transient) = table
                .iter()
                .copied()
                .find(|row| row.0 == reason)
                .unwrap_or_else(|| panic!("{reason:?} has no row"));
            let err = Error::new(ErrorKind::from_reason(reason), "x").with_reason(reason);
            assert_eq!(err.is_closed(), closed, "{reason:?} is_closed");
            assert_eq!(
                err.is_closed(),
                reason.is_connection_lost(),
                "{reason:?} is_closed vs is_connection_lost"
            );
            assert_eq!(err.is_transient(), transient, "{reason:?} is_transient");
            assert_eq!(
                chain::connect::<Error>(&err).action,
                reason.connect_action(),
                "{reason:?} connect verdict"
            );
        }
    }

    /// A server that ends the session (57P01) gives an error that says it is closed: the
    /// real tokio-postgres error, not a hand-set reason.
    #[test]
    fn admin_shutdown_is_closed() {
        let err = Error::from_pg(test_support::db_error("57P01"), "query failed");
        assert_eq!(err.reason(), Some(Reason::AdminShutdown));
        assert!(err.is_closed(), "{err:?}");
        let syntax = Error::from_pg(test_support::db_error("42601"), "query failed");
        assert!(
            !syntax.is_closed(),
            "a failed statement is not a closed connection"
        );
    }

    /// `Display` is the top message; the causes come through `source()` only, so anyhow's
    /// `{:#}` (which walks `source()`) prints each exactly once.
    #[test]
    fn anyhow_alternate_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused-by-the-test");
        let inner = Error::from_io(io, "tcp-connect-failed");
        let outer = Error::new(ErrorKind::Timeout, "gave-up-connecting")
            .with_reason(Reason::Refused)
            .with_source(inner)
            .with_attempts(2, Duration::from_millis(300));
        assert_eq!(
            outer.to_string(),
            "gave-up-connecting (after 2 attempts in 0.3s)"
        );
        let report = format!("{:#}", anyhow::Error::new(outer.clone()));
        for part in [
            "gave-up-connecting",
            "tcp-connect-failed",
            "refused-by-the-test",
        ] {
            assert_eq!(report.matches(part).count(), 1, "{part} once in: {report}");
        }
        // Negative control: the same walk over an error whose text repeats its cause (as
        // the old `Display` did) counts twice, so the count above can fail.
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl fmt::Display for Repeats {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "wrapper: {}", self.0)
            }
        }
        impl StdError for Repeats {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let twice = format!(
            "{:#}",
            anyhow::Error::new(Repeats(std::io::Error::other("refused-by-the-test")))
        );
        assert_eq!(twice.matches("refused-by-the-test").count(), 2, "{twice}");
        // Our own `{:#}` prints the same chain once, with the attempts at the end.
        assert_eq!(
            format!("{outer:#}"),
            "gave-up-connecting: tcp-connect-failed: refused-by-the-test \
             (after 2 attempts in 0.3s)"
        );
    }
}
