//! Exit codes shared by every command (documented in `--help` and docs/exit-codes.md): one
//! meaning, one code, whichever command saw it.

use std::process::ExitCode;

use pgsteady::{ErrorKind, Reason};

/// Ready / healthy.
pub(crate) const READY: u8 = 0;
/// Not ready before the deadline (or, for `check` and `doctor`, a transient failure).
pub(crate) const NOT_READY: u8 = 1;
/// Usage or configuration error: nothing was tried.
pub(crate) const USAGE: u8 = 2;
/// Permanent error (wrong password or none found, missing database, TLS, an option the server
/// rejects, not a PostgreSQL server): retrying will not help.
pub(crate) const PERMANENT: u8 = 3;
/// A program to run was found but cannot be executed (the shell's 126).
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// A program to run was not found (the shell's 127): `pgsteady drill` without `pgsteady-drill`.
pub(crate) const NOT_FOUND: u8 = 127;

/// `migrate`: a migration failed (its transaction was rolled back, or a no-transaction file
/// was interrupted); the ones before it stay applied.
pub(crate) const MIGRATION_FAILED: u8 = 4;
/// `migrate`: the history does not match the files (an applied file was changed or removed, or
/// a new file is older than the latest applied one); nothing was applied.
pub(crate) const HISTORY_MISMATCH: u8 = 5;

/// The longest data-carrying message the CLI accepts from a server: its own queries read a
/// row or two, and a migration's notices are small. A longer one is a protocol violation
/// (a server announcing 2 GB would otherwise make `check` reserve it).
pub(crate) const MAX_MESSAGE_LEN: usize = 16 << 20;

/// The help text's exit-code table.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ready
  1  not ready before the timeout (the last reason is printed)
  2  usage or configuration error (nothing was tried)
  3  permanent error: authentication failed or no password found, database missing, TLS
     refused, an option the server rejects, not a PostgreSQL server (no retry storm)";

/// The exit code for a library error after retries stopped.
pub(crate) fn for_error(err: &pgsteady::Error) -> u8 {
    match err.kind() {
        // No host is of the wanted type (target_session_attrs) right now: not ready yet.
        _ if err.reason() == Some(Reason::WrongSessionType) => NOT_READY,
        // Only our own validation is a usage error: 42704 (`options=-c bogus=1`) is a
        // configuration the server rejected after connecting, permanent.
        ErrorKind::Config if matches!(err.reason(), None | Some(Reason::Config)) => USAGE,
        ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Closed => {
            if err.is_transient() {
                NOT_READY
            } else {
                PERMANENT
            }
        }
        ErrorKind::Db if err.is_transient() => NOT_READY,
        _ => PERMANENT,
    }
}

/// The code for a connect-phase reason alone (doctor's layers): transient 1, else 3.
pub(crate) fn for_reason(reason: Reason) -> u8 {
    if reason.connect_action() == pgsteady::Action::Retry {
        NOT_READY
    } else {
        PERMANENT
    }
}

pub(crate) fn code(n: u8) -> ExitCode {
    ExitCode::from(n)
}

/// Exits at once with `n`, after flushing stdout and stderr, skipping the async runtime's
/// shutdown: it joins the runtime's worker threads, which took 1-5 ms per run under strace,
/// and a script waiting on `pgsteady wait` should not pay that. Only for paths where nothing
/// is left to clean up.
pub(crate) fn now(n: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(i32::from(n))
}
