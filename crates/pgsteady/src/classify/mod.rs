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

pub(crate) mod chain;
mod reason;

pub use chain::{db_error, pooler_error, reason_for_code, reason_for_io};
pub use reason::{Action, Classification, FailFastClass, Reason};

use std::error::Error as StdError;

use tokio_postgres::error::SqlState;

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
    chain::connect::<crate::Error>(err)
}

/// Classifies an error seen while running a statement on an established session, assuming the
/// work is idempotent (the caller must never retry a write whose outcome is unknown).
///
/// Retry: connection lost (closed, reset, 57P01, 57P02, 57P03, 57P05, 25P03, class 08),
/// 53300, 40001, 40P01, 25006 (a read-only server: the statement did not run). Fail fast: 57014 (a statement timeout is not a connection problem) and
/// every other server error.
pub fn query(err: &(dyn StdError + 'static)) -> Classification {
    chain::query::<crate::Error>(err)
}

/// The SQLSTATE in an error chain, if any.
pub fn sqlstate<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a SqlState> {
    chain::sqlstate::<crate::Error>(err)
}

/// The most specific reason found along the chain.
pub fn reason_of(err: &(dyn StdError + 'static)) -> Reason {
    chain::reason_of::<crate::Error>(err)
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

    use std::{fmt, io};

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
