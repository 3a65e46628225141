//! `pgsteady check`: one bounded readiness probe, for Kubernetes exec probes and scripts.

use std::process::ExitCode;
use std::time::Duration;

use pgsteady::{Config, Connector};
use tokio::time::Instant;

use crate::common::{Output, resolve_target};
use crate::exit::{self, EXIT_CODES_HELP};
use crate::probe::probe;
use crate::report::Reporter;

/// Arguments of `pgsteady check`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub(crate) struct CheckArgs {
    /// A postgresql:// URL or a key=value connection string. Default: $DATABASE_URL, then the
    /// PG* variables and ~/.pgpass.
    target: Option<String>,
    /// Bound on the whole check (connect, authenticate, query).
    #[arg(long, default_value = "5s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// The query that must succeed (a single false value counts as not ready).
    #[arg(long, default_value = "SELECT 1", value_name = "SQL")]
    query: String,
    /// Print only a failure.
    #[arg(long, short)]
    quiet: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// What `check` will do, validated before any network I/O.
#[derive(Debug)]
struct Plan {
    config: Config,
    timeout: Duration,
    query: String,
    output: Output,
}

pub(crate) async fn run(args: CheckArgs) -> ExitCode {
    let output = Output::choose(args.quiet, args.json);
    let plan = match resolve_target(args.target.as_deref()) {
        Ok(config) if !args.query.trim().is_empty() => Plan {
            config,
            timeout: args.timeout,
            query: args.query,
            output,
        },
        Ok(_) => {
            let e = crate::common::PlanError::Arg("--query must not be empty".to_owned());
            Reporter::new(output, "pgsteady check", String::new()).failed(
                exit::USAGE,
                None,
                &format!("{e:#}"),
            );
            return exit::code(exit::USAGE);
        }
        Err(e) => {
            Reporter::new(output, "pgsteady check", String::new()).failed(
                exit::USAGE,
                e.reason(),
                &format!("{e:#}"),
            );
            return exit::code(exit::USAGE);
        }
    };
    let mut reporter = Reporter::new(plan.output, "pgsteady check", plan.config.to_string());
    let connector = match Connector::new(plan.config.clone()) {
        Ok(c) => c
            .with_attempt_timeout(plan.config.attempt_timeout(plan.timeout).min(plan.timeout))
            .with_max_message_len(exit::MAX_MESSAGE_LEN)
            .with_ready_check(true),
        Err(e) => {
            let code = exit::for_error(&e);
            reporter.failed(code, e.reason(), &format!("{e:#}"));
            return exit::code(code);
        }
    };
    let start = Instant::now();
    let result =
        tokio::time::timeout(plan.timeout, probe(&connector, &plan.query, plan.timeout)).await;
    match result {
        Ok(Ok(host)) => {
            reporter.ready(1, start.elapsed(), &host);
            exit::code(exit::READY)
        }
        Ok(Err(failure)) => {
            let code = failure.exit_code(false);
            reporter.failed(code, failure.reason(), &failure.message());
            exit::code(code)
        }
        Err(_) => {
            reporter.failed(
                exit::NOT_READY,
                Some(pgsteady::Reason::TimedOut),
                &format!("timed out after {:.1}s", plan.timeout.as_secs_f64()),
            );
            exit::code(exit::NOT_READY)
        }
    }
}
