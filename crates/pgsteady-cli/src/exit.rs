//! Exit codes shared by `wait`, `check` and `doctor` (documented in `--help` and the README).

use std::process::ExitCode;

use pgsteady::{ErrorKind, Reason};

/// Ready / healthy.
pub(crate) const READY: u8 = 0;
/// Not ready before the deadline (or, for `check` and `doctor`, a transient failure).
pub(crate) const NOT_READY: u8 = 1;
/// Usage or configuration error: nothing was tried.
pub(crate) const USAGE: u8 = 2;
/// Permanent error (wrong password, missing database, TLS): retrying will not help.
pub(crate) const PERMANENT: u8 = 3;

/// The help text's exit-code table.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ready
  1  not ready before the timeout (the last reason is printed)
  2  usage or configuration error (nothing was tried)
  3  permanent error: authentication failed, database missing, TLS refused (no retry storm)";

/// The exit code for a library error after retries stopped.
pub(crate) fn for_error(err: &pgsteady::Error) -> u8 {
    match err.kind() {
        // No host is of the wanted type (target_session_attrs) right now: not ready yet.
        _ if err.reason() == Some(Reason::WrongSessionType) => NOT_READY,
        ErrorKind::Config if err.reason() != Some(Reason::Tls) => USAGE,
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
