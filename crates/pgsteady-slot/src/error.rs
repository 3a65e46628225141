//! The slot reader's error: what went wrong reading a slot, in its own terms (the
//! connection layer's [`pgsteady::Error`] knows nothing of slots).

use std::error::Error as StdError;
use std::fmt;

/// Why reading or watching slots failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A name PostgreSQL would reject (see [`validate_name`](crate::validate_name)), or no
    /// name to watch: nothing was sent. The message never echoes something that looks like a
    /// connection string.
    InvalidName(String),
    /// The statement (or the connection under it) failed: the connection layer's error, with
    /// its SQLSTATE and classification.
    Query(pgsteady::Error),
    /// The server is a standby that has replayed no WAL yet: its position is unknown. Asking
    /// again later will do.
    NoPosition,
    /// An answer no PostgreSQL gives (another column count, a value that is not UTF-8, no
    /// row, over 10,000 rows or 16 MiB): the server, or a proxy, is not one this can read, and
    /// asking again will not change that.
    Unexpected(String),
}

impl Error {
    /// Whether asking again may succeed: a transient connection-layer failure, or a standby
    /// with no position yet.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Query(e) => e.is_transient(),
            Error::NoPosition => true,
            Error::InvalidName(_) | Error::Unexpected(_) => false,
        }
    }

    /// The connection layer's error, when it made this one.
    pub fn connection(&self) -> Option<&pgsteady::Error> {
        match self {
            Error::Query(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(message) => f.write_str(message),
            // `{:#}` prints the causes too, as `pgsteady::Error` does; `{}` (what error
            // reporters walking `source()` use) only this one.
            Error::Query(e) if f.alternate() => {
                write!(f, "reading pg_replication_slots failed: {e:#}")
            }
            Error::Query(_) => f.write_str("reading pg_replication_slots failed"),
            Error::NoPosition => {
                f.write_str("the standby has not replayed any WAL yet: its position is unknown")
            }
            Error::Unexpected(what) => {
                write!(f, "unexpected answer reading replication slots: {what}")
            }
        }
    }
}

/// Causes come through `source()`, so anyhow's `{:#}` prints each once.
impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Query(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pgsteady::Error> for Error {
    fn from(e: pgsteady::Error) -> Self {
        Error::Query(e)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Query(e.into())
    }
}
