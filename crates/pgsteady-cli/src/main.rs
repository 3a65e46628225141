//! `pgsteady`: wait for, check, diagnose, migrate and drill PostgreSQL.
//!
//! This crate is glue: argument parsing (clap), output and exit codes. The logic lives in
//! the `pgsteady` library and, for `drill`, in `pgsteady-testkit`.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod drill;

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
    /// Start a throwaway PostgreSQL cluster, break it on purpose, and show what a client saw.
    Drill(drill::DrillArgs),
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
            Command::Drill(args) => drill::run(args).await,
        }
    })
}
