//! `pgsteady`: wait for, check, diagnose, migrate, serve health for and run behind
//! PostgreSQL; `pgsteady drill` runs the separate `pgsteady-drill` binary.
//!
//! This crate is glue: argument parsing (clap), output and exit codes. The logic lives in
//! the `pgsteady` library.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::process::ExitCode;

use clap::{FromArgMatches, Parser, Subcommand};

mod check;
mod common;
mod doctor;
mod drill;
mod exit;
mod generate;
mod help;
mod migrate;
mod probe;
mod report;
mod run;
mod serve;
mod slot;
mod slot_text;
mod wait;

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    // The clap definitions with every command's examples added (`help.rs`).
    let cli = Cli::from_arg_matches(&help::command().get_matches()).unwrap_or_else(|e| e.exit());
    // Before the runtime starts: the drill replaces this process, no threads to leave behind.
    let command = match cli.command {
        Command::Drill(args) => return drill::run(args),
        command => command,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgsteady: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async {
        match command {
            Command::Wait(args) => wait::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Slot(args) => slot::run(args).await,
            // Not reached (the drill ran above); replacing the process from here is as right.
            Command::Drill(args) => drill::run(args),
            Command::Completions(args) => generate::completions(args),
            Command::Man(args) => generate::man(args),
        }
    })
}
