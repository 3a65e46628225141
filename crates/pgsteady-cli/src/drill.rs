//! `pgsteady drill`: runs the `pgsteady-drill` binary with the arguments given, as git and
//! cargo run their external subcommands. The drill lives in its own binary so that this one
//! carries neither the test kit (which starts PostgreSQL servers and can install Patroni) nor
//! a chart library.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit;

/// The drill's binary, from the `pgsteady-drill` crate.
const BIN: &str = "pgsteady-drill";

/// `pgsteady drill [ARGS]...`: everything after `drill` goes to `pgsteady-drill` unread,
/// `--help` included.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct DrillArgs {
    /// The drill's arguments (`pgsteady drill --help` shows them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

/// Replaces this process with `pgsteady-drill`: the one next to this executable first (a
/// `cargo build` or `cargo install` puts both in one directory), else the first on PATH.
/// Replacing rather than spawning leaves signals, the terminal and the exit code to the drill
/// alone. Returns only when the drill cannot be started: 127 when it is not installed, 126
/// when it is there but cannot be executed (docs/exit-codes.md).
pub(crate) fn run(args: DrillArgs) -> ExitCode {
    let beside = beside_this_executable();
    let program: &OsStr = beside.as_deref().map_or(OsStr::new(BIN), |p| p.as_os_str());
    // `exec` looks a name without a slash up on PATH, as execvp does.
    let err = std::process::Command::new(program).args(&args.args).exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "pgsteady: `pgsteady drill` runs the {BIN} binary, found neither next to pgsteady \
             nor on PATH; install it with `cargo install {BIN}` (from a checkout: \
             `cargo install --locked --path crates/{BIN}`)"
        );
        exit::code(exit::NOT_FOUND)
    } else {
        eprintln!(
            "pgsteady: cannot execute {}: {err}",
            PathBuf::from(program).display()
        );
        exit::code(exit::CANNOT_EXECUTE)
    }
}

/// `pgsteady-drill` in the directory of the running executable, if there is a file of that
/// name.
fn beside_this_executable() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(BIN);
    candidate.is_file().then_some(candidate)
}
