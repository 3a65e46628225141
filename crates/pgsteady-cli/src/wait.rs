//! `pgsteady wait`: block until the database is ready for this application (a real connection,
//! authentication and a query from this process's network vantage point), then optionally
//! exec a command.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use pgsteady::backoff::{self, Attempt, Backoff, Retryable, TokioSleeper};
use pgsteady::{Config, Connector, FailFastClass, TargetSessionAttrs};
use tokio::time::Instant;

use crate::common::{Output, resolve_target};
use crate::exit::{self, EXIT_CODES_HELP};
use crate::probe::{Failure, probe};
use crate::report::Reporter;

/// Arguments of `pgsteady wait`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub(crate) struct WaitArgs {
    #[command(flatten)]
    options: WaitOptions,
    /// Command to exec once ready; it replaces pgsteady, so its exit code and signals are its
    /// own.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// How to wait: shared by `wait` and `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct WaitOptions {
    /// A postgresql:// URL or a key=value connection string. Default: $DATABASE_URL, then the
    /// PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...) and ~/.pgpass.
    pub(crate) target: Option<String>,
    /// Give up after this long (e.g. 60s, 2m, 500ms).
    #[arg(long, default_value = "60s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Bound on one connection attempt (TCP, TLS, startup, authentication, query). Default:
    /// the target's connect_timeout, else 5s.
    #[arg(long, value_parser = crate::common::parse_duration, value_name = "DURATION")]
    attempt_timeout: Option<Duration>,
    /// The query that must succeed. If it returns a single false value, keep waiting.
    #[arg(long, default_value = "SELECT 1", value_name = "SQL")]
    query: String,
    /// Also retry these normally permanent failures, comma-separated: auth, missing-db,
    /// undefined-object, tls, session-type (e.g. a database an init script creates later).
    /// session-type is retried anyway when the target sets target_session_attrs: waiting for
    /// a primary (or a standby) to exist is what that asks for.
    #[arg(long, value_delimiter = ',', value_parser = parse_class, value_name = "CLASSES")]
    retry_on: Vec<FailFastClass>,
    /// Print only the final error.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Print one JSON object per event on stdout.
    #[arg(long, conflicts_with = "quiet")]
    pub(crate) json: bool,
}

pub(crate) fn parse_class(s: &str) -> Result<FailFastClass, String> {
    FailFastClass::parse(s).ok_or_else(|| {
        let all: Vec<_> = FailFastClass::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown class `{s}` (expected: {})", all.join(", "))
    })
}

/// What a command asks of a wait, by name ([`Plan::for_config`] turns it into a plan).
#[derive(Debug)]
pub(crate) struct Wanted {
    /// The resolved target.
    pub(crate) config: Config,
    /// The whole wait's bound.
    pub(crate) timeout: Duration,
    /// One attempt's bound. `None`: the target's connect_timeout, else
    /// [`backoff::DEFAULT_ATTEMPT_TIMEOUT`].
    pub(crate) attempt_timeout: Option<Duration>,
    /// Normally permanent failures to retry anyway.
    pub(crate) retry_on: Vec<FailFastClass>,
    /// The query that must succeed; empty: none.
    pub(crate) query: String,
    /// How progress is printed.
    pub(crate) output: Output,
    /// The name in messages: `pgsteady wait`, `pgsteady run`, `pgsteady slot`.
    pub(crate) name: &'static str,
}

/// What `wait` will do, validated before any network I/O.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) config: Config,
    pub(crate) timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) retry_on: Vec<FailFastClass>,
    query: String,
    output: Output,
    /// The name in messages: `pgsteady wait`, `pgsteady run`.
    pub(crate) name: &'static str,
}

impl Plan {
    pub(crate) fn new(
        options: WaitOptions,
        name: &'static str,
    ) -> Result<Self, crate::common::PlanError> {
        let config = resolve_target(options.target.as_deref())?;
        if options.query.trim().is_empty() {
            return Err(crate::common::PlanError::Arg(
                "--query must not be empty".to_owned(),
            ));
        }
        Ok(Plan::for_config(Wanted {
            config,
            timeout: options.timeout,
            attempt_timeout: options.attempt_timeout,
            retry_on: options.retry_on,
            query: options.query,
            output: Output::choose(options.quiet, options.json),
            name,
        }))
    }

    /// A plan for a resolved target: how `wait`, `run` and `slot` wait.
    pub(crate) fn for_config(wanted: Wanted) -> Self {
        let Wanted {
            config,
            timeout,
            attempt_timeout,
            mut retry_on,
            query,
            output,
            name,
        } = wanted;
        let attempt_timeout = attempt_timeout
            .unwrap_or_else(|| config.attempt_timeout(backoff::DEFAULT_ATTEMPT_TIMEOUT));
        // No host of the wanted type yet (a standby being promoted, a failover between two
        // servers both in recovery) is a state to wait out, not a wrong configuration.
        if config.target_session_attrs != TargetSessionAttrs::Any
            && !retry_on.contains(&FailFastClass::SessionType)
        {
            retry_on.push(FailFastClass::SessionType);
        }
        Plan {
            config,
            timeout,
            attempt_timeout,
            query,
            retry_on,
            output,
            name,
        }
    }

    pub(crate) fn output(&self) -> Output {
        self.output
    }
}

pub(crate) async fn run(args: WaitArgs) -> ExitCode {
    let output = Output::choose(args.options.quiet, args.options.json);
    let plan = match Plan::new(args.options, "pgsteady wait") {
        Ok(plan) => plan,
        Err(e) => {
            Reporter::new(output, "pgsteady wait", String::new()).failed(
                exit::USAGE,
                e.reason(),
                &format!("{e:#}"),
            );
            return exit::code(exit::USAGE);
        }
    };
    let code = wait(&plan).await;
    if code != exit::READY {
        return exit::code(code);
    }
    let mut command = args.command.into_iter();
    match command.next() {
        Some(program) => exec(program, command.collect()),
        // Nothing to clean up: the probe's connection is closed, the runtime holds no task
        // of ours.
        None => exit::now(exit::READY),
    }
}

/// Waits as `pgsteady wait` does and reports progress; returns the exit code.
pub(crate) async fn wait(plan: &Plan) -> u8 {
    let mut reporter = Reporter::new(plan.output, plan.name, plan.config.to_string());
    let result = match connector(plan) {
        Ok(connector) => {
            until_ready(plan, &connector, &mut reporter, |budget| {
                probe(&connector, &plan.query, budget)
            })
            .await
        }
        Err(stopped) => Err(stopped),
    };
    match result {
        Ok((host, attempts, elapsed)) => {
            reporter.ready(attempts, elapsed, &host);
            exit::READY
        }
        Err(stopped) => {
            reporter.failed(stopped.code, stopped.reason, &stopped.message);
            stopped.code
        }
    }
}

/// Why waiting stopped: the exit code, the reason and the message to print.
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) code: u8,
    pub(crate) reason: Option<pgsteady::Reason>,
    pub(crate) message: String,
}

/// The connector for `plan`: its attempt timeout and the failures it retries.
pub(crate) fn connector(plan: &Plan) -> Result<Connector, Stopped> {
    let mut connector = match Connector::new(plan.config.clone()) {
        Ok(c) => c
            .with_attempt_timeout(plan.attempt_timeout)
            .with_max_message_len(exit::MAX_MESSAGE_LEN)
            .with_ready_check(true),
        Err(e) => {
            return Err(Stopped {
                code: exit::for_error(&e),
                reason: e.reason(),
                message: format!("{e:#}"),
            });
        }
    };
    for class in &plan.retry_on {
        connector = connector.with_retry_on(*class);
    }
    Ok(connector)
}

/// Runs `op` (one probe through `connector`, given its time budget) until it succeeds, the
/// failure is not worth retrying, or `plan.timeout` runs out; reports failed attempts to
/// `reporter`. Returns the probe's value, the number of attempts and the time taken.
pub(crate) async fn until_ready<T, Fut>(
    plan: &Plan,
    connector: &Connector,
    reporter: &mut Reporter,
    mut op: impl FnMut(Duration) -> Fut,
) -> Result<(T, u32, Duration), Stopped>
where
    Fut: Future<Output = Result<T, Failure>>,
{
    // One attempt every 33.4-34.4 ms, start to start: at most 30 in any second against a
    // starting server, and the first attempt after the server is ready starts within 34.4 ms
    // (see Backoff::polling).
    let policy = Backoff::polling().with_max_elapsed(plan.timeout);
    let hosts = plan.config.hosts.len().max(1) as u32;
    let full = plan.attempt_timeout.saturating_mul(hosts);
    let start = Instant::now();
    let attempts = std::cell::Cell::new(0u32);
    let last_budget = std::cell::Cell::new(full);
    // A timeout of an attempt the deadline cut short says only that time ran out ("timed out
    // after 0.0s"): the last failure that says more is the one reported.
    let cut_short = |budget: Duration, f: Option<&Failure>| {
        budget < full && f.is_none_or(|f| f.reason() == Some(pgsteady::Reason::TimedOut))
    };
    let informative: std::cell::RefCell<Option<(Option<pgsteady::Reason>, String)>> =
        std::cell::RefCell::new(None);
    let result = (|attempt: Attempt| {
        attempts.set(attempt.number);
        last_budget.set(attempt.timeout);
        op(attempt.timeout)
    })
    .retry(&policy)
    .sleep(&TokioSleeper)
    .attempt_timeout(full)
    .when(|f: &Failure| f.decision(connector))
    .notify(|attempt, failure, delay| {
        if let Some(f) = failure
            && !cut_short(attempt.timeout, Some(f))
        {
            *informative.borrow_mut() = Some((f.reason(), f.message()));
        }
        let (reason, message) = match failure {
            Some(f) => (f.reason().unwrap_or(pgsteady::Reason::Other), f.message()),
            None => (
                pgsteady::Reason::TimedOut,
                format!(
                    "attempt timed out after {:.1}s",
                    attempt.timeout.as_secs_f64()
                ),
            ),
        };
        reporter.attempt_failed(attempt.number, start.elapsed(), reason, &message, delay);
    })
    .run()
    .await;
    match result {
        Ok(value) => Ok((value, attempts.get(), start.elapsed())),
        Err(e) => {
            let timed_out = !e.stopped;
            let earlier = informative.take();
            let (code, reason, message) = match (&e.last, earlier) {
                (last, Some((reason, message)))
                    if timed_out && cut_short(last_budget.get(), last.as_ref()) =>
                {
                    (exit::NOT_READY, reason, message)
                }
                (Some(f), _) => (f.exit_code(timed_out), f.reason(), f.message()),
                (None, _) => (
                    exit::NOT_READY,
                    Some(pgsteady::Reason::TimedOut),
                    "the last attempt timed out".to_owned(),
                ),
            };
            let message = if timed_out {
                format!(
                    "not ready after {:.1}s ({} attempt{}); last error: {message}",
                    e.elapsed.as_secs_f64(),
                    e.attempts,
                    if e.attempts == 1 { "" } else { "s" }
                )
            } else {
                message
            };
            Err(Stopped {
                code,
                reason,
                message,
            })
        }
    }
}

/// Replaces this process with the command (never returns on success). On failure, exits like a
/// shell: 127 when the command is not found, 126 when it cannot be executed.
fn exec(program: OsString, args: Vec<OsString>) -> ExitCode {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let err = std::process::Command::new(&program).args(&args).exec();
    eprintln!(
        "pgsteady wait: cannot run `{}`: {err:#}",
        program.to_string_lossy()
    );
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    ExitCode::from(code)
}
