//! The test kit's error type.

use std::io;
use std::time::Duration;

/// Everything that can go wrong while setting up or driving a throwaway cluster or proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error("no PostgreSQL server binaries (initdb, postgres) found; searched: {searched}")]
    NoBinaries {
        /// Every place that was looked at, in order.
        searched: String,
    },
    /// A helper program (initdb, nft, ip...) failed.
    #[error("{program} failed: {detail}")]
    Command {
        /// The program that failed.
        program: String,
        /// Its exit status and the tail of its output.
        detail: String,
    },
    /// The server did not become ready in time.
    #[error("server not ready after {waited:?}; log tail:\n{log_tail}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// The server is not in the state the operation needs (e.g. stopping a stopped server).
    #[error("{0}")]
    State(String),
    /// The operation cannot run on this machine (not root, no nftables...).
    #[error("unsupported here: {0}")]
    Unsupported(String),
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An error from the PostgreSQL client used to administer the cluster.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// The test kit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
