//! The walk along an error's `source()` chain. It stops at this crate's own error to ask it
//! (that error may keep its cause out of `source()`), but does not name the type: the error
//! is built on this walk (its `code()`, its reason and `is_transient()` come from here), so
//! naming it would make each file need the other. The walk is generic over the crate's own
//! error ([`OwnError`]); the public functions of [`crate::classify`] fix it to
//! [`crate::Error`].

use std::error::Error as StdError;
use std::io;

use tokio_postgres::error::{DbError, SqlState};

use super::reason::{Classification, Reason};

/// What the walk asks of the crate's own error when it meets one in a chain.
pub(crate) trait OwnError: StdError + 'static {
    /// The SQLSTATE the error carries, its hidden cause's included.
    fn own_code(&self) -> Option<&SqlState>;
    /// The classification reason the error was made with.
    fn own_reason(&self) -> Option<Reason>;
}

/// [`crate::classify::connect`], generic over the crate's own error.
pub(crate) fn connect<O: OwnError>(err: &(dyn StdError + 'static)) -> Classification {
    let reason = reason_of::<O>(err);
    Classification {
        action: reason.connect_action(),
        reason,
    }
}

/// [`crate::classify::query`], generic over the crate's own error.
pub(crate) fn query<O: OwnError>(err: &(dyn StdError + 'static)) -> Classification {
    let reason = reason_of::<O>(err);
    match reason {
        Reason::SerializationFailure | Reason::Deadlock | Reason::ReadOnlyTransaction => {
            Classification::retry(reason)
        }
        Reason::QueryCanceled | Reason::InsufficientResources | Reason::Db | Reason::Other => {
            Classification::fail(reason)
        }
        _ => connect::<O>(err),
    }
}

/// [`crate::classify::sqlstate`], generic over the crate's own error.
pub(crate) fn sqlstate<'a, O: OwnError>(err: &'a (dyn StdError + 'static)) -> Option<&'a SqlState> {
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
        if let Some(ours) = e.downcast_ref::<O>()
            && let Some(code) = ours.own_code()
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

/// [`crate::classify::reason_of`], generic over the crate's own error.
pub(crate) fn reason_of<O: OwnError>(err: &(dyn StdError + 'static)) -> Reason {
    if let Some(reason) = db_error(err).and_then(pooler_error) {
        return reason;
    }
    if let Some(code) = sqlstate::<O>(err) {
        return reason_for_code(code);
    }
    let mut io_reason = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ours) = e.downcast_ref::<O>()
            && let Some(r) = ours.own_reason()
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
