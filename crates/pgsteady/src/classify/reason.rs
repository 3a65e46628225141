//! The verdict's vocabulary: what to do ([`Action`]), why ([`Reason`]), which fail-fast
//! errors a caller may opt into retrying ([`FailFastClass`]), and the two together
//! ([`Classification`]).

use std::fmt;

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
    /// new connection like a lost session. See [`pooler_error`](super::pooler_error).
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

    /// What to do about this reason while establishing a session ([`connect`](super::connect)): retry when
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
    pub(crate) const fn retry(reason: Reason) -> Self {
        Self {
            action: Action::Retry,
            reason,
        }
    }

    pub(crate) const fn fail(reason: Reason) -> Self {
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
