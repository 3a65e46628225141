//! Exit codes of `pgsteady drill`, from the project's one-meaning-per-code table
//! (docs/exit-codes.md): 1 and 3 mean "not ready in time" and "permanent" there, so a
//! broken guarantee and a drill that could not run have codes of their own.

/// pgsteady's guarantees held (or `--list`).
pub const HELD: u8 = 0;
/// Usage error: nothing was started.
pub const USAGE: u8 = 2;
/// A guarantee was broken (each one is named).
pub const BROKEN: u8 = 9;
/// The drill could not run: no PostgreSQL binaries, no Patroni, the cluster failed.
pub const COULD_NOT_RUN: u8 = 10;
/// Stopped by SIGINT (128 + 2): the cluster was stopped and its directory removed.
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (128 + 15), with the same clean-up.
pub const TERMINATED: u8 = 143;
