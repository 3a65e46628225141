//! `pgsteady`: wait for, check, diagnose, migrate, serve health for, run behind and drill
//! PostgreSQL.
//!
//! This crate is glue: argument parsing (clap), output and exit codes. The logic lives in
//! the `pgsteady` library and, for `drill` (the default-on `drill` feature), in `pgsteady-drill`.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod common;
mod doctor;
mod exit;
mod migrate;
mod probe;
mod report;
mod run;
mod serve;
mod slot;
mod wait;

/// Keep applications connected to PostgreSQL through start-up, restarts, crashes and
/// silent network drops.
#[derive(Debug, Parser)]
#[command(name = "pgsteady", version, about, long_about = None)]
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
    /// Start a throwaway PostgreSQL cluster, break it on purpose, and show what a client saw.
    #[cfg(feature = "drill")]
    Drill(pgsteady_drill::DrillArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        match cli.command {
            Command::Wait(args) => wait::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Slot(args) => slot::run(args).await,
            #[cfg(feature = "drill")]
            Command::Drill(args) => pgsteady_drill::run(args).await,
        }
    })
}
