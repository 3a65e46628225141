//! The command line: every subcommand and its arguments, as clap parses them. `main.rs`
//! runs what it names; `help.rs` adds the examples.

use clap::{Parser, Subcommand};

use crate::{check, doctor, drill, generate, migrate, run, serve, slot, wait};

/// What `pgsteady --version` prints after the name: the crate version and the git commit it
/// was built from (`unknown` from a packaged crate or outside a checkout: see `build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PGSTEADY_GIT_COMMIT"),
    ")"
);

/// Keep applications connected to PostgreSQL through start-up, restarts, crashes and
/// silent network drops.
#[derive(Debug, Parser)]
#[command(name = "pgsteady", version = VERSION, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Wait until PostgreSQL is ready for this application (connect, authenticate, query),
    /// then optionally exec a command.
    Wait(wait::WaitArgs),
    /// Check once, within a bound, whether PostgreSQL is ready (for probes and scripts).
    Check(check::CheckArgs),
    /// Walk the layers between this process and the database and name the first broken one.
    Doctor(doctor::DoctorArgs),
    /// Wait for PostgreSQL, then apply a directory of SQL migrations, each in its own
    /// transaction, under a lock that makes concurrent runners take turns.
    Migrate(migrate::MigrateArgs),
    /// Serve /livez, /readyz and /metrics for the database: a health sidecar for
    /// applications in any language.
    Serve(serve::ServeArgs),
    /// Wait for PostgreSQL, optionally migrate, then run a command with SIGTERM/SIGINT/SIGHUP
    /// forwarded, and exit with its exit code.
    Run(run::RunArgs),
    /// Check a replication slot and a consumer's stored offset (CDC): missing, lost, gap,
    /// ahead, at risk, inactive or ok; or list every slot with --all.
    Slot(slot::SlotArgs),
    /// Start a throwaway PostgreSQL cluster, break it on purpose, and show what a client saw:
    /// runs the pgsteady-drill binary (`cargo install pgsteady-drill`) with these arguments.
    Drill(drill::DrillArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(generate::CompletionsArgs),
    /// Print the man page to stdout, or write one page per command into a directory.
    Man(generate::ManArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every duration flag takes humantime's syntax, as the drill's do: a unit is required
    /// (`5` is refused: seconds or milliseconds?), `0` is the one bare number.
    #[test]
    fn durations_are_humantime_with_a_unit() {
        use clap::Parser;
        let timeout = |value: &str| {
            let flag = format!("--timeout={value}");
            Cli::try_parse_from(["pgsteady", "wait", "host=h", flag.as_str()])
        };
        for good in ["60s", "1m30s", "250ms", "0"] {
            assert!(timeout(good).is_ok(), "{good:?} refused");
        }
        for bad in ["5", "2.5", "soon", "-1s", ""] {
            let err = timeout(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
        // Centuries overflow an Instant: refused, not a panic later.
        let err = timeout("18446744073709551615s").unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("too long"), "{err}");
        assert!(timeout("1000000000s").is_ok());
    }
}
