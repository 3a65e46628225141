//! `pgsteady-drill`: with no subcommand, today's drill (a throwaway cluster, real faults, what
//! a naive client and pgsteady saw); `pgsteady drill ...` runs this binary with the same
//! arguments.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Start a throwaway PostgreSQL cluster, break it on purpose, and show what a naive
/// tokio-postgres client and a pgsteady pool saw.
#[derive(Debug, Parser)]
#[command(
    name = "pgsteady-drill",
    version,
    long_about = None,
    // The drill's flags belong to the drill alone: `pgsteady-drill --ha SUBCOMMAND` is an
    // error rather than a subcommand silently ignoring `--ha`.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The drill run when no subcommand is given.
    #[command(flatten)]
    drill: pgsteady_drill::DrillArgs,
}

/// Modes other than the default drill, each a module of the library with a clap `Args`
/// struct and an async `run` returning the exit code.
#[derive(Debug, Subcommand)]
enum Command {
    /// A fault soak: a seeded nemesis, a workload whose every call is recorded in a
    /// history, and a checker over the history and the database's final state.
    Soak(pgsteady_drill::soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Soak(args)) = &cli.command {
        pgsteady_drill::soak::isolate(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgsteady drill: cannot start the async runtime: {e}");
            return ExitCode::from(pgsteady_drill::exit::COULD_NOT_RUN);
        }
    };
    runtime.block_on(async {
        match cli.command {
            None => pgsteady_drill::run(cli.drill).await,
            Some(Command::Soak(args)) => pgsteady_drill::soak::run(args).await,
        }
    })
}
