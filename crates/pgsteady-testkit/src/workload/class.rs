//! Short names for what went wrong in a call, by SQLSTATE, `io::ErrorKind` and `is_closed()`.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::io;

use tokio_postgres::error::DbError;

/// A short, stable name for the way a call failed: a SQLSTATE (`"57P01"`), or one of the
/// constants below for failures without one (`"closed"`, `"refused"`, `"reset"`,
/// `"timeout"`...).
///
/// Derived from codes only, never from message text: [`ErrorClass::of`] walks an error's
/// `source()` chain looking at `tokio_postgres::Error` (`code()`, `is_closed()`),
/// [`DbError`] and [`io::Error`] (its kind). Clients with their own error types (sqlx...)
/// map them with [`ErrorClass::sqlstate`], [`ErrorClass::io`] or [`ErrorClass::new`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorClass(Cow<'static, str>);

impl ErrorClass {
    /// The connection was already closed when the call used it (`is_closed()`).
    pub const CLOSED: ErrorClass = ErrorClass::new_static("closed");
    /// TCP connection refused: nothing listened.
    pub const REFUSED: ErrorClass = ErrorClass::new_static("refused");
    /// The connection was reset, aborted or the pipe broke.
    pub const RESET: ErrorClass = ErrorClass::new_static("reset");
    /// The peer closed the connection in the middle of a message (unexpected EOF).
    pub const EOF: ErrorClass = ErrorClass::new_static("eof");
    /// A timeout: an I/O timeout, a connect timeout or a pool's wait timeout.
    pub const TIMEOUT: ErrorClass = ErrorClass::new_static("timeout");
    /// The call was still running when the workload was stopped and had to be abandoned.
    pub const UNFINISHED: ErrorClass = ErrorClass::new_static("unfinished");
    /// Nothing in the error says more.
    pub const OTHER: ErrorClass = ErrorClass::new_static("other");

    /// A class with a fixed name.
    pub const fn new_static(name: &'static str) -> ErrorClass {
        ErrorClass(Cow::Borrowed(name))
    }

    /// A class with any name, e.g. a client's own "pool closed".
    pub fn new(name: impl Into<String>) -> ErrorClass {
        ErrorClass(Cow::Owned(name.into()))
    }

    /// The class of a SQLSTATE: the code itself.
    pub fn sqlstate(code: &str) -> ErrorClass {
        ErrorClass::new(code)
    }

    /// The class of an I/O error kind.
    pub fn io(kind: io::ErrorKind) -> ErrorClass {
        use io::ErrorKind::*;
        match kind {
            ConnectionRefused => ErrorClass::REFUSED,
            ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => ErrorClass::RESET,
            UnexpectedEof => ErrorClass::EOF,
            TimedOut => ErrorClass::TIMEOUT,
            other => ErrorClass::new(format!("io:{other:?}")),
        }
    }

    /// Classifies an error by walking its `source()` chain: the first link that carries a
    /// SQLSTATE, says the connection is closed, or is an I/O error decides. Unknown errors
    /// are [`ErrorClass::OTHER`].
    ///
    /// # Examples
    ///
    /// ```
    /// use pgsteady_testkit::workload::ErrorClass;
    ///
    /// let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// assert_eq!(ErrorClass::of(&err), ErrorClass::REFUSED);
    /// ```
    pub fn of(err: &(dyn StdError + 'static)) -> ErrorClass {
        let mut link = Some(err);
        while let Some(e) = link {
            if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
                if let Some(code) = pg.code() {
                    return ErrorClass::sqlstate(code.code());
                }
                if pg.is_closed() {
                    return ErrorClass::CLOSED;
                }
            } else if let Some(db) = e.downcast_ref::<DbError>() {
                return ErrorClass::sqlstate(db.code().code());
            } else if let Some(io) = e.downcast_ref::<io::Error>() {
                // An io::Error may wrap another error (e.g. a TLS or protocol error): prefer
                // what it wraps when that says more than the generic kind.
                if io.kind() == io::ErrorKind::Other
                    && let Some(inner) = io.get_ref()
                {
                    let class = ErrorClass::of(inner);
                    if class != ErrorClass::OTHER {
                        return class;
                    }
                }
                return ErrorClass::io(io.kind());
            }
            link = e.source();
        }
        ErrorClass::OTHER
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the class is a SQLSTATE (five characters, digits and capitals).
    pub fn is_sqlstate(&self) -> bool {
        self.0.len() == 5
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    }
}

impl fmt::Debug for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors a workload operation may return: anything that can name its [`ErrorClass`].
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
}

impl Classify for ErrorClass {
    fn class(&self) -> ErrorClass {
        self.clone()
    }
}

impl Classify for tokio_postgres::Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(self)
    }
}

impl Classify for io::Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(self)
    }
}

impl Classify for Box<dyn StdError + Send + Sync> {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(&**self)
    }
}

impl Classify for crate::Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(self)
    }
}

impl Classify for tokio::time::error::Elapsed {
    fn class(&self) -> ErrorClass {
        ErrorClass::TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn io_kinds_have_short_names() {
        let table = [
            (io::ErrorKind::ConnectionRefused, "refused"),
            (io::ErrorKind::ConnectionReset, "reset"),
            (io::ErrorKind::ConnectionAborted, "reset"),
            (io::ErrorKind::BrokenPipe, "reset"),
            (io::ErrorKind::UnexpectedEof, "eof"),
            (io::ErrorKind::TimedOut, "timeout"),
            (io::ErrorKind::AddrNotAvailable, "io:AddrNotAvailable"),
        ];
        for (kind, name) in table {
            assert_eq!(ErrorClass::io(kind).as_str(), name, "{kind:?}");
        }
    }

    #[test]
    fn the_source_chain_is_walked() {
        let err = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(ErrorClass::of(&err), ErrorClass::RESET);
    }

    #[test]
    fn an_io_error_wrapping_an_error_is_classified_by_what_it_wraps() {
        let inner = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        let err = io::Error::other(inner);
        assert_eq!(ErrorClass::of(&err), ErrorClass::REFUSED);
        // ... but a message is never read.
        let err = io::Error::other("connection refused");
        assert_eq!(ErrorClass::of(&err), ErrorClass::io(io::ErrorKind::Other));
    }

    #[test]
    fn unknown_errors_are_other() {
        let err = std::fmt::Error;
        assert_eq!(ErrorClass::of(&err), ErrorClass::OTHER);
    }

    #[test]
    fn sqlstates_are_recognised() {
        assert!(ErrorClass::sqlstate("57P01").is_sqlstate());
        assert!(!ErrorClass::CLOSED.is_sqlstate());
        assert!(!ErrorClass::RESET.is_sqlstate());
        assert_eq!(ErrorClass::sqlstate("57P01").to_string(), "57P01");
    }
}
