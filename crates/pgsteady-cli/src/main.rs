//! `pgsteady`: wait for, check, diagnose, migrate, serve health for and run behind
//! PostgreSQL; `pgsteady drill` runs the separate `pgsteady-drill` binary.
//!
//! This crate is glue: argument parsing (clap), output and exit codes. The logic lives in
//! the `pgsteady` library.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

use std::process::ExitCode;

use clap::FromArgMatches;

mod check;
mod cli;
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

use cli::{Cli, Command};

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
            Command::Completions(args) => generate::completions(args, help::command()),
            Command::Man(args) => generate::man(args, help::command()),
        }
    })
}
