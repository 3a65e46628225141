//! Decide whether an error is worth retrying, by SQLSTATE, `io::ErrorKind` and `is_closed()`
//! only: never by message text.
//!
//! There is one function per phase because the same error means different things in each:
//! [`connect`] for establishing a session, [`query`] for work on an established one.
//!
//! The error is inspected by walking its `source()` chain and downcasting each link to
//! [`crate::Error`], [`tokio_postgres::Error`] (`as_db_error()`, `is_closed()`),
//! [`tokio_postgres::error::DbError`], [`std::io::Error`] (its kind, then the error it wraps)
//! and [`rustls::Error`].

use std::error::Error as StdError;
use std::fmt;
use std::io;

use tokio_postgres::error::{DbError, SqlState};

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Transient: try again after a back-off delay.
    Retry,
    /// Permanent for this operation: report it at once.
    FailFast,
}

/// Why an error was classified the way it was. The names returned by [`Reason::as_str`] are
/// stable (used in logs, JSON output and metrics labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// TCP connection refused: nothing listens (yet) on that address.
    Refused,
    /// Connection reset, aborted or cut mid-stream (also unexpected EOF).
    Reset,
    /// A network or handshake timeout.
    TimedOut,
    /// Host or network unreachable, or the local address is not available.
    Unreachable,
    /// The host name could not be resolved. The standard library does not expose whether the
    /// failure is temporary (EAI_AGAIN) or not (EAI_NONAME) other than in its message text, so
    /// every resolution failure is treated as temporary: a compose service name resolves only
    /// once its container exists.
    Dns,
    /// 57P03 cannot_connect_now: starting up, shutting down, in recovery, not yet accepting.
    CannotConnectNow,
    /// 57P01 admin_shutdown: the server is shutting down or the backend was terminated.
    AdminShutdown,
    /// 57P02 crash_shutdown: another backend crashed and the server is restarting.
    CrashShutdown,
    /// 57P05 idle_session_timeout closed the session.
    IdleSessionTimeout,
    /// 25P03 idle_in_transaction_session_timeout closed the session.
    IdleInTransactionTimeout,
    /// Class 08: connection exception.
    ConnectionException,
    /// 53300 too_many_connections.
    TooManyConnections,
    /// Class 53 other than 53300 and 53400: 53000 insufficient_resources, 53100 disk_full,
    /// 53200 out_of_memory. At start-up the server could not set up the session for want of
    /// memory or disk, which frees up as other sessions end: retried while connecting; a
    /// statement that hit it fails fast (running it again needs the same resources).
    InsufficientResources,
    /// The connection is closed (the client saw `is_closed()`).
    Closed,
    /// 28P01 invalid_password: wrong password (or password authentication failed).
    InvalidPassword,
    /// 28000 invalid_authorization_specification: no pg_hba.conf entry, role may not log in...
    InvalidAuthorization,
    /// The server's authentication request, or its skipping of authentication, is one the
    /// client's `require_auth` or `channel_binding=require` does not allow: refused before any
    /// credential was sent. Never retried: the server would ask the same way again.
    AuthRequirement,
    /// 3D000 invalid_catalog_name: the database does not exist.
    MissingDatabase,
    /// 42704 undefined_object, e.g. an unknown setting in `options`.
    UndefinedObject,
    /// TLS handshake or certificate verification failed, or the server does not offer TLS.
    Tls,
    /// The configuration is invalid (bad URL, missing password, unknown option...).
    Config,
    /// The target host did not match `target_session_attrs` (e.g. a standby when a primary is
    /// wanted).
    WrongSessionType,
    /// 40001 serialization_failure (query phase).
    SerializationFailure,
    /// 40P01 deadlock_detected (query phase).
    Deadlock,
    /// 57014 query_canceled (statement_timeout or a cancel request): not a connection problem.
    QueryCanceled,
    /// 25006 read_only_sql_transaction: a write reached a server that is read-only now (a
    /// standby, a demoted or fenced primary). The statement did not run: a "wrong server"
    /// error, retried on a connection to another server by [`crate::Pool::run`] and
    /// [`crate::Pool::transaction`], which evict the connection and every other one to the
    /// same server.
    ReadOnlyTransaction,
    /// PgBouncer (or another pooler speaking its protocol) lost or closed the server
    /// connection serving this client's transaction (`server conn crashed?`, a server
    /// terminated under it, `RECONNECT`, ...) and closed the client connection: retried on a
    /// new connection like a lost session. See [`pooler_error`].
    PoolerServerLost,
    /// PgBouncer cannot log in to the server behind it (`server login has been failing, try
    /// again later (server_login_retry)`, `client_login_timeout (server down)`): the server is
    /// down or refusing logins; transient, retried with back-off.
    PoolerLoginFailing,
    /// PgBouncer's `query_wait_timeout`: the query waited that long for a server connection
    /// (all busy, or the server unreachable) and was never sent to a server; retried within
    /// the caller's deadline.
    PoolerQueryWait,
    /// Any other server error.
    Db,
    /// Any other I/O error.
    Io,
    /// Nothing recognisable in the error chain.
    Other,
}

impl Reason {
    /// A stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::Reset => "reset",
            Reason::TimedOut => "timed_out",
            Reason::Unreachable => "unreachable",
            Reason::Dns => "dns",
            Reason::CannotConnectNow => "cannot_connect_now",
            Reason::AdminShutdown => "admin_shutdown",
            Reason::CrashShutdown => "crash_shutdown",
            Reason::IdleSessionTimeout => "idle_session_timeout",
            Reason::IdleInTransactionTimeout => "idle_in_transaction_timeout",
            Reason::ConnectionException => "connection_exception",
            Reason::TooManyConnections => "too_many_connections",
            Reason::InsufficientResources => "insufficient_resources",
            Reason::Closed => "closed",
            Reason::InvalidPassword => "invalid_password",
            Reason::InvalidAuthorization => "invalid_authorization",
            Reason::AuthRequirement => "auth_requirement",
            Reason::MissingDatabase => "missing_database",
            Reason::UndefinedObject => "undefined_object",
            Reason::Tls => "tls",
            Reason::Config => "config",
            Reason::WrongSessionType => "wrong_session_type",
            Reason::SerializationFailure => "serialization_failure",
            Reason::Deadlock => "deadlock",
            Reason::QueryCanceled => "query_canceled",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::PoolerServerLost => "pooler_server_lost",
            Reason::PoolerLoginFailing => "pooler_login_failing",
            Reason::PoolerQueryWait => "pooler_query_wait_timeout",
            Reason::Db => "db",
            Reason::Io => "io",
            Reason::Other => "other",
        }
    }

    /// Whether this reason means the session is gone, or could not be had (the server or
    /// the network closed it, refused it, or stopped answering), as opposed to a statement
    /// failing on a live session: the next attempt needs a new connection. The one
    /// definition used by the pool, [`crate::Pool::run`] / [`crate::Pool::transaction`] and
    /// `migrate`.
    pub const fn is_connection_lost(self) -> bool {
        matches!(
            self,
            Reason::Closed
                | Reason::Reset
                | Reason::Refused
                | Reason::TimedOut
                | Reason::Unreachable
                | Reason::AdminShutdown
                | Reason::CrashShutdown
                | Reason::CannotConnectNow
                | Reason::IdleSessionTimeout
                | Reason::IdleInTransactionTimeout
                | Reason::ConnectionException
                | Reason::PoolerServerLost
                | Reason::PoolerLoginFailing
                | Reason::PoolerQueryWait
                | Reason::Io
        )
    }

    /// What to do about this reason while establishing a session ([`connect`]): retry when
    /// the session is gone or could not be had ([`is_connection_lost`](Self::is_connection_lost)),
    /// when the name does not resolve yet (DNS), on 53300 (too many connections) and on 53000,
    /// 53100, 53200 (out of disk or memory while setting up the session); fail
    /// fast on everything else.
    pub const fn connect_action(self) -> Action {
        if self.is_connection_lost()
            || matches!(
                self,
                Reason::Dns | Reason::TooManyConnections | Reason::InsufficientResources
            )
        {
            Action::Retry
        } else {
            Action::FailFast
        }
    }

    /// Whether this reason is an error of a connection pooler (PgBouncer) in front of the
    /// server rather than of the server itself.
    pub const fn is_pooler(self) -> bool {
        matches!(
            self,
            Reason::PoolerServerLost | Reason::PoolerLoginFailing | Reason::PoolerQueryWait
        )
    }

    /// Whether a retry after this reason must run on another connection, at once: the
    /// connection is gone ([`Reason::is_connection_lost`]), or its server is the wrong one
    /// now (25006: read-only). The retry's checkout then waits for the pool to reconnect, at
    /// the pool's own bounded pace, instead of sleeping a back-off first.
    pub const fn needs_new_connection(self) -> bool {
        self.is_connection_lost() || matches!(self, Reason::ReadOnlyTransaction)
    }

    /// Whether a session that ended for this reason tells that the server may be going away
    /// (or the network failed), so that every client of it may be reconnecting right now. A
    /// session ended by a per-session timeout (57P05, 25P03) says nothing of the kind. The
    /// pool spreads its next connection attempt after such an incident.
    pub const fn is_incident(self) -> bool {
        !matches!(
            self,
            Reason::IdleSessionTimeout | Reason::IdleInTransactionTimeout
        )
    }

    /// The fail-fast class a user can opt into retrying (`pgsteady wait --retry-on`), if any.
    pub const fn opt_in_class(self) -> Option<FailFastClass> {
        match self {
            Reason::InvalidPassword | Reason::InvalidAuthorization => Some(FailFastClass::Auth),
            Reason::MissingDatabase => Some(FailFastClass::MissingDb),
            Reason::UndefinedObject => Some(FailFastClass::UndefinedObject),
            Reason::Tls => Some(FailFastClass::Tls),
            Reason::WrongSessionType => Some(FailFastClass::SessionType),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classes of connect errors that fail fast by default but that a caller may choose to retry,
/// e.g. a database that an init script creates a few seconds after the server is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailFastClass {
    /// 28P01, 28000: authentication (a role created later by an init script).
    Auth,
    /// 3D000: the database does not exist (yet).
    MissingDb,
    /// 42704: an object named in the startup options does not exist (yet).
    UndefinedObject,
    /// TLS errors (e.g. a certificate that is being rotated).
    Tls,
    /// The server is not the wanted session type (e.g. a standby being promoted).
    SessionType,
}

impl FailFastClass {
    /// Every class, for help texts.
    pub const ALL: [FailFastClass; 5] = [
        FailFastClass::Auth,
        FailFastClass::MissingDb,
        FailFastClass::UndefinedObject,
        FailFastClass::Tls,
        FailFastClass::SessionType,
    ];

    /// The name used on command lines: `auth`, `missing-db`, `undefined-object`, `tls`,
    /// `session-type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailFastClass::Auth => "auth",
            FailFastClass::MissingDb => "missing-db",
            FailFastClass::UndefinedObject => "undefined-object",
            FailFastClass::Tls => "tls",
            FailFastClass::SessionType => "session-type",
        }
    }

    /// Parses a name returned by [`as_str`](Self::as_str).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// The verdict on one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    /// Retry or fail fast.
    pub action: Action,
    /// The evidence.
    pub reason: Reason,
}

impl Classification {
    const fn retry(reason: Reason) -> Self {
        Self {
            action: Action::Retry,
            reason,
        }
    }

    const fn fail(reason: Reason) -> Self {
        Self {
            action: Action::FailFast,
            reason,
        }
    }

    /// Whether the action is [`Action::Retry`].
    pub const fn is_retry(&self) -> bool {
        matches!(self.action, Action::Retry)
    }
}

/// Classifies an error seen while establishing a session.
///
/// Retry: refused, reset, timed out, unreachable, DNS, 57P03, 57P01, 57P02, class 08, 53300,
/// 53000, 53100, 53200, closed. Fail fast: 28P01, 28000, 3D000, 42704, TLS, configuration, anything unrecognised.
///
/// # Examples
///
/// ```
/// use pgsteady::classify::{self, Action, Reason};
/// let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let c = classify::connect(&err);
/// assert_eq!((c.action, c.reason), (Action::Retry, Reason::Refused));
/// ```
pub fn connect(err: &(dyn StdError + 'static)) -> Classification {
    let reason = reason_of(err);
    Classification {
        action: reason.connect_action(),
        reason,
    }
}

/// Classifies an error seen while running a statement on an established session, assuming the
/// work is idempotent (the caller must never retry a write whose outcome is unknown).
///
/// Retry: connection lost (closed, reset, 57P01, 57P02, 57P03, 57P05, 25P03, class 08),
/// 53300, 40001, 40P01, 25006 (a read-only server: the statement did not run). Fail fast: 57014 (a statement timeout is not a connection problem) and
/// every other server error.
pub fn query(err: &(dyn StdError + 'static)) -> Classification {
    let reason = reason_of(err);
    match reason {
        Reason::SerializationFailure | Reason::Deadlock | Reason::ReadOnlyTransaction => {
            Classification::retry(reason)
        }
        Reason::QueryCanceled | Reason::InsufficientResources | Reason::Db | Reason::Other => {
            Classification::fail(reason)
        }
        _ => connect(err),
    }
}

/// The SQLSTATE in an error chain, if any.
pub fn sqlstate<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a SqlState> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>()
            && let Some(code) = pg.code()
        {
            return Some(code);
        }
        if let Some(db) = e.downcast_ref::<DbError>() {
            return Some(db.code());
        }
        if let Some(ours) = e.downcast_ref::<crate::Error>()
            && let Some(code) = ours.code()
        {
            return Some(code);
        }
        cur = next_link(e);
    }
    None
}

/// The next link of a chain. `io::Error::source()` skips the error it wraps (it returns that
/// error's source), so look inside with `get_ref()` first.
fn next_link<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = e.downcast_ref::<io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner as &(dyn StdError + 'static));
    }
    e.source()
}

/// The server error (ErrorResponse) in an error chain, if any.
pub fn db_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a DbError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(db) = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|pg| pg.as_db_error())
        {
            return Some(db);
        }
        if let Some(db) = e.downcast_ref::<DbError>() {
            return Some(db);
        }
        cur = next_link(e);
    }
    None
}

/// Which error of a pooler in front of the server `db` is, if it is one.
///
/// PgBouncer reports its own failures as ErrorResponses with SQLSTATE 08P01 and nothing but
/// a severity, the code and a message (`send_pooler_error` in its `proto.c`), then closes
/// the client connection. PostgreSQL's own 08P01 (a protocol violation) always carries the
/// source file, line and routine that raised it. So a pooler error is told from a server
/// error by the message's fields, not its text.
///
/// Which pooler error it is, though, PgBouncer says only in the text: the one place where
/// pgsteady reads a message. The text picks the [`Reason`]'s name and nothing else: every
/// pooler error is handled alike (the client connection is gone; retried on a new one,
/// within the caller's deadline, after a back-off when connecting), so a reworded message
/// changes a label, never an action. `query_wait_timeout` -> [`Reason::PoolerQueryWait`];
/// `server_login_retry` or `client_login_timeout` -> [`Reason::PoolerLoginFailing`];
/// anything else -> [`Reason::PoolerServerLost`].
pub fn pooler_error(db: &DbError) -> Option<Reason> {
    let from_pooler = *db.code() == SqlState::PROTOCOL_VIOLATION
        && db.file().is_none()
        && db.line().is_none()
        && db.routine().is_none();
    if !from_pooler {
        return None;
    }
    let text = db.message();
    Some(if text.starts_with("query_wait_timeout") {
        Reason::PoolerQueryWait
    } else if text.contains("server_login_retry") || text.starts_with("client_login_timeout") {
        Reason::PoolerLoginFailing
    } else {
        Reason::PoolerServerLost
    })
}

/// The most specific reason found along the chain.
pub fn reason_of(err: &(dyn StdError + 'static)) -> Reason {
    if let Some(reason) = db_error(err).and_then(pooler_error) {
        return reason;
    }
    if let Some(code) = sqlstate(err) {
        return reason_for_code(code);
    }
    let mut io_reason = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ours) = e.downcast_ref::<crate::Error>()
            && let Some(r) = ours.reason()
        {
            return r;
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Reason::Tls;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // An outer `Other` wrapper says less than the kind inside it.
            if matches!(io_reason, None | Some(Reason::Io)) {
                io_reason = Some(reason_for_io(io.kind()));
            }
        }
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>()
            && pg.is_closed()
        {
            return Reason::Closed;
        }
        cur = next_link(e);
    }
    io_reason.unwrap_or(Reason::Other)
}

/// The reason for a SQLSTATE.
pub fn reason_for_code(code: &SqlState) -> Reason {
    match *code {
        SqlState::CANNOT_CONNECT_NOW => Reason::CannotConnectNow,
        SqlState::ADMIN_SHUTDOWN => Reason::AdminShutdown,
        SqlState::CRASH_SHUTDOWN => Reason::CrashShutdown,
        SqlState::IDLE_SESSION_TIMEOUT => Reason::IdleSessionTimeout,
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => Reason::IdleInTransactionTimeout,
        SqlState::TOO_MANY_CONNECTIONS => Reason::TooManyConnections,
        SqlState::INSUFFICIENT_RESOURCES | SqlState::DISK_FULL | SqlState::OUT_OF_MEMORY => {
            Reason::InsufficientResources
        }
        SqlState::INVALID_PASSWORD => Reason::InvalidPassword,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION => Reason::InvalidAuthorization,
        SqlState::INVALID_CATALOG_NAME => Reason::MissingDatabase,
        SqlState::UNDEFINED_OBJECT => Reason::UndefinedObject,
        SqlState::T_R_SERIALIZATION_FAILURE => Reason::SerializationFailure,
        SqlState::T_R_DEADLOCK_DETECTED => Reason::Deadlock,
        SqlState::QUERY_CANCELED => Reason::QueryCanceled,
        SqlState::READ_ONLY_SQL_TRANSACTION => Reason::ReadOnlyTransaction,
        _ if code.code().starts_with("08") => Reason::ConnectionException,
        _ => Reason::Db,
    }
}

/// The reason for an I/O error kind.
pub fn reason_for_io(kind: io::ErrorKind) -> Reason {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => Reason::Refused,
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => Reason::Reset,
        K::TimedOut => Reason::TimedOut,
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown | K::AddrNotAvailable => {
            Reason::Unreachable
        }
        _ => Reason::Io,
    }
}

#[cfg(test)]
mod tests {
    /// One table for the two "the session is gone" predicates: every reason, both answers.
    #[test]
    fn connection_lost_and_incident_table() {
        use Reason as R;
        // (reason, is_connection_lost, is_incident)
        let table = [
            (R::Refused, true, true),
            (R::Reset, true, true),
            (R::TimedOut, true, true),
            (R::Unreachable, true, true),
            (R::Dns, false, true),
            (R::CannotConnectNow, true, true),
            (R::AdminShutdown, true, true),
            (R::CrashShutdown, true, true),
            (R::IdleSessionTimeout, true, false),
            (R::IdleInTransactionTimeout, true, false),
            (R::ConnectionException, true, true),
            (R::TooManyConnections, false, true),
            (R::InsufficientResources, false, true),
            (R::Closed, true, true),
            (R::InvalidPassword, false, true),
            (R::InvalidAuthorization, false, true),
            (R::AuthRequirement, false, true),
            (R::MissingDatabase, false, true),
            (R::UndefinedObject, false, true),
            (R::Tls, false, true),
            (R::Config, false, true),
            (R::WrongSessionType, false, true),
            (R::SerializationFailure, false, true),
            (R::Deadlock, false, true),
            (R::QueryCanceled, false, true),
            (R::ReadOnlyTransaction, false, true),
            (R::PoolerServerLost, true, true),
            (R::PoolerLoginFailing, true, true),
            (R::PoolerQueryWait, true, true),
            (R::Db, false, true),
            (R::Io, true, true),
            (R::Other, false, true),
        ];
        for (reason, lost, incident) in table {
            // Only the lost-connection reasons, DNS and class 53 are retried while connecting.
            let retried = lost
                || matches!(
                    reason,
                    R::Dns | R::TooManyConnections | R::InsufficientResources
                );
            assert_eq!(
                reason.connect_action() == Action::Retry,
                retried,
                "{reason:?} connect action"
            );
            assert_eq!(reason.is_connection_lost(), lost, "{reason:?} lost");
            assert_eq!(reason.is_incident(), incident, "{reason:?} incident");
        }
    }

    use super::*;
    use Action::{FailFast, Retry};

    /// A server error as tokio-postgres reports it, built from wire bytes so the test exercises
    /// the real `as_db_error()` path.
    fn db_error(code: &str) -> tokio_postgres::Error {
        crate::error::test_support::db_error(code)
    }

    /// PgBouncer 1.18's own errors (the texts of its `disconnect_client` calls), told from a
    /// server's 08P01 by the missing source fields; the text names which one. The one
    /// message-text exception of this module (see `pooler_error`).
    #[test]
    fn pgbouncer_errors_by_fields_then_text() {
        use crate::error::test_support::pooler_error;
        let table = [
            ("server conn crashed?", Reason::PoolerServerLost),
            (
                "server closed the connection unexpectedly",
                Reason::PoolerServerLost,
            ),
            (
                "server login has been failing, try again later (server_login_retry)",
                Reason::PoolerLoginFailing,
            ),
            (
                "client_login_timeout (server down)",
                Reason::PoolerLoginFailing,
            ),
            ("query_wait_timeout", Reason::PoolerQueryWait),
        ];
        for (text, want) in table {
            let err = pooler_error(text);
            assert_eq!(reason_of(&err), want, "{text}");
            assert!(want.is_pooler() && want.is_connection_lost(), "{text}");
            assert_eq!(connect(&err).action, Action::Retry, "{text}");
            assert_eq!(query(&err).action, Action::Retry, "{text}");
        }
        // The same code from the server itself (a real protocol violation) is not a pooler's.
        let server = db_error("08P01");
        assert_eq!(reason_of(&server), Reason::ConnectionException);
        assert!(!reason_of(&server).is_pooler());
    }

    /// (SQLSTATE, connect verdict, query verdict, reason): one row per code that has a
    /// meaning of its own.
    const CODES: &[(&str, Action, Action, Reason)] = &[
        ("57P03", Retry, Retry, Reason::CannotConnectNow),
        ("57P01", Retry, Retry, Reason::AdminShutdown),
        ("57P02", Retry, Retry, Reason::CrashShutdown),
        ("57P05", Retry, Retry, Reason::IdleSessionTimeout),
        ("25P03", Retry, Retry, Reason::IdleInTransactionTimeout),
        ("08000", Retry, Retry, Reason::ConnectionException),
        ("08003", Retry, Retry, Reason::ConnectionException),
        ("08006", Retry, Retry, Reason::ConnectionException),
        ("08001", Retry, Retry, Reason::ConnectionException),
        ("08004", Retry, Retry, Reason::ConnectionException),
        ("08P01", Retry, Retry, Reason::ConnectionException),
        ("53300", Retry, Retry, Reason::TooManyConnections),
        ("53000", Retry, FailFast, Reason::InsufficientResources),
        ("53100", Retry, FailFast, Reason::InsufficientResources),
        ("53200", Retry, FailFast, Reason::InsufficientResources),
        ("53400", FailFast, FailFast, Reason::Db),
        ("28P01", FailFast, FailFast, Reason::InvalidPassword),
        ("28000", FailFast, FailFast, Reason::InvalidAuthorization),
        ("3D000", FailFast, FailFast, Reason::MissingDatabase),
        ("42704", FailFast, FailFast, Reason::UndefinedObject),
        ("40001", FailFast, Retry, Reason::SerializationFailure),
        ("40P01", FailFast, Retry, Reason::Deadlock),
        ("57014", FailFast, FailFast, Reason::QueryCanceled),
        ("25006", FailFast, Retry, Reason::ReadOnlyTransaction),
        ("23505", FailFast, FailFast, Reason::Db),
        ("42P01", FailFast, FailFast, Reason::Db),
    ];

    #[test]
    fn every_sqlstate_in_the_table() {
        for &(code, on_connect, on_query, reason) in CODES {
            let err = db_error(code);
            assert_eq!(err.code().map(|c| c.code()), Some(code));
            assert_eq!(
                connect(&err),
                Classification {
                    action: on_connect,
                    reason
                },
                "connect {code}"
            );
            assert_eq!(
                query(&err),
                Classification {
                    action: on_query,
                    reason
                },
                "query {code}"
            );
            // Wrapped in our error, the verdict is the same.
            let ours = crate::Error::from_pg(err, "test");
            assert_eq!(connect(&ours).reason, reason, "wrapped {code}");
            assert_eq!(ours.code().map(|c| c.code()), Some(code));
        }
    }

    #[test]
    fn io_kinds() {
        use io::ErrorKind as K;
        let rows = [
            (K::ConnectionRefused, Retry, Reason::Refused),
            (K::ConnectionReset, Retry, Reason::Reset),
            (K::ConnectionAborted, Retry, Reason::Reset),
            (K::BrokenPipe, Retry, Reason::Reset),
            (K::UnexpectedEof, Retry, Reason::Reset),
            (K::TimedOut, Retry, Reason::TimedOut),
            (K::HostUnreachable, Retry, Reason::Unreachable),
            (K::NetworkUnreachable, Retry, Reason::Unreachable),
            (K::PermissionDenied, Retry, Reason::Io),
        ];
        for (kind, action, reason) in rows {
            let err = io::Error::from(kind);
            assert_eq!(connect(&err), Classification { action, reason }, "{kind:?}");
            // Behind a tokio-postgres error and behind an io::Error wrapper.
            let wrapped = io::Error::other(io::Error::from(kind));
            assert_eq!(connect(&wrapped).reason, reason, "wrapped {kind:?}");
        }
    }

    #[test]
    fn closed_connection_is_retryable_in_both_phases() {
        let err = crate::error::test_support::closed_error();
        assert!(err.is_closed());
        assert_eq!(connect(&err), Classification::retry(Reason::Closed));
        assert_eq!(query(&err), Classification::retry(Reason::Closed));
    }

    #[test]
    fn tls_errors_fail_fast_even_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = io::Error::new(io::ErrorKind::InvalidData, tls);
        assert_eq!(connect(&err), Classification::fail(Reason::Tls));
    }

    #[test]
    fn unknown_errors_fail_fast() {
        let err = fmt::Error;
        assert_eq!(connect(&err), Classification::fail(Reason::Other));
        assert_eq!(query(&err), Classification::fail(Reason::Other));
    }

    #[test]
    fn fail_fast_classes_round_trip() {
        for class in FailFastClass::ALL {
            assert_eq!(FailFastClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(
            Reason::MissingDatabase.opt_in_class(),
            Some(FailFastClass::MissingDb)
        );
        assert_eq!(Reason::Refused.opt_in_class(), None);
    }
}
