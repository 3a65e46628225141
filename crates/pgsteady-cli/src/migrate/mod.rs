//! `pgsteady migrate`: wait for the database, then apply a directory of SQL migrations under
//! an advisory lock, each file in its own transaction with its history row. `status` shows
//! each version's state, `repair` records the files as they are now.

mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgsteady::connect::{AttemptOutcome, ConnectEvent};
use pgsteady::{Backoff, Config, Connector, FailFastClass};
use pgsteady_migrate::{ErrorKind, HistoryTable, Migrator};

use crate::common::{Output, resolve_target};
use crate::exit::{self, HISTORY_MISMATCH, MIGRATION_FAILED};
use crate::wait::parse_class;

use output::Printer;

const MIGRATE_HELP: &str = "\
Files: <version>_<name>.sql, e.g. 0001_create_users.sql (version: digits, compared as numbers;
name: letters, digits, _ or -). Dotfiles and *.md are ignored; any other entry is an error.
Each file runs in its own transaction together with its history row. A file whose first lines
contain `-- pgsteady:no-transaction` runs outside a transaction (CREATE INDEX CONCURRENTLY);
keep such a file to one statement and make it re-runnable.

Exit codes:
  0  done (or, for status, the history matches the files)
  1  the database was not ready before the timeout (or --lock-timeout ran out)
  2  usage or configuration error: bad target, missing directory, bad file name or header
  3  permanent error: authentication failed, database missing, permission denied
  4  a migration failed: it was rolled back; the ones before it stay applied
  5  the history does not match the files (changed or missing applied file, file out of
     order): nothing was applied; see `pgsteady migrate repair` and --out-of-order
  130, 143  stopped by SIGINT or SIGTERM: the running statement was cancelled on the server
     and rolled back, the lock released; the migrations before it stay applied";

/// Arguments of `pgsteady migrate`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, after_help = MIGRATE_HELP)]
pub(crate) struct MigrateArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    common: Common,
    /// List the migrations that would run, in order, and apply nothing.
    #[arg(long)]
    dry_run: bool,
    /// Apply files whose version is older than the latest applied one instead of refusing.
    #[arg(long)]
    out_of_order: bool,
    /// Give up waiting for another runner's migration lock after this long. Default: wait as
    /// long as it holds it (the lock dies with its session).
    #[arg(long, value_parser = crate::common::parse_duration, value_name = "DURATION")]
    lock_timeout: Option<Duration>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Show each version: applied, pending, out_of_order, modified, missing or future.
    Status(StatusArgs),
    /// Record the files as they are now: rewrite the checksum (and name) of changed applied
    /// files, forget applied versions whose file was removed. Runs no SQL from the files.
    Repair(RepairArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = MIGRATE_HELP)]
struct StatusArgs {
    #[command(flatten)]
    common: Common,
    /// Do not count out-of-order files as a problem (exit code 5).
    #[arg(long)]
    out_of_order: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = MIGRATE_HELP)]
struct RepairArgs {
    #[command(flatten)]
    common: Common,
    /// Show what would change and write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Arguments every migrate action takes.
#[derive(Debug, clap::Args)]
struct Common {
    /// A postgresql:// URL or a key=value connection string. Default: $DATABASE_URL, then the
    /// PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...) and ~/.pgpass.
    target: Option<String>,
    /// The migrations directory.
    #[arg(long, default_value = "migrations", value_name = "DIR")]
    dir: PathBuf,
    /// The history table, `name` or `schema.name`.
    #[arg(long, default_value = HistoryTable::DEFAULT_NAME, value_name = "TABLE")]
    table: String,
    /// Give up waiting for the database after this long (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Bound on one connection attempt. Default: the target's connect_timeout, else 5s.
    #[arg(long, value_parser = crate::common::parse_duration, value_name = "DURATION")]
    attempt_timeout: Option<Duration>,
    /// Also retry these normally permanent connect failures while waiting, comma-separated:
    /// auth, missing-db, undefined-object, tls, session-type.
    #[arg(long, value_delimiter = ',', value_parser = parse_class, value_name = "CLASSES")]
    retry_on: Vec<FailFastClass>,
    /// Print only errors (and, for status and dry runs, the result).
    #[arg(long, short)]
    quiet: bool,
    /// Print JSON objects, one per line, on stdout.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// What to do, validated before any network I/O.
#[derive(Debug)]
enum Job {
    Apply { dry_run: bool },
    Status { out_of_order: bool },
    Repair { dry_run: bool },
}

#[derive(Debug)]
struct Plan {
    config: Config,
    migrator: Migrator,
    timeout: Duration,
    attempt_timeout: Duration,
    retry_on: Vec<FailFastClass>,
    output: Output,
    job: Job,
}

impl Plan {
    fn new(args: MigrateArgs) -> Result<Self, crate::common::PlanError> {
        let (common, job, out_of_order, lock_timeout) = match args.action {
            None => (
                args.common,
                Job::Apply {
                    dry_run: args.dry_run,
                },
                args.out_of_order,
                args.lock_timeout,
            ),
            Some(Action::Status(s)) => (
                s.common,
                Job::Status {
                    out_of_order: s.out_of_order,
                },
                s.out_of_order,
                None,
            ),
            Some(Action::Repair(r)) => (
                r.common,
                Job::Repair { dry_run: r.dry_run },
                false,
                args.lock_timeout,
            ),
        };
        let config = resolve_target(common.target.as_deref())?;
        let table = HistoryTable::parse(&common.table)?;
        let migrator = Migrator::from_dir(&common.dir)?
            .with_table(table)
            .with_out_of_order(out_of_order)
            .with_lock_timeout(lock_timeout);
        let attempt_timeout = common
            .attempt_timeout
            .unwrap_or_else(|| config.attempt_timeout(Duration::from_secs(5)));
        // pgsteady's own history statements: bounded, generously.
        let migrator =
            migrator.with_own_query_timeout(attempt_timeout.max(Duration::from_secs(10)));
        Ok(Plan {
            config,
            migrator,
            timeout: common.timeout,
            attempt_timeout,
            retry_on: common.retry_on,
            output: Output::choose(common.quiet, common.json),
            job,
        })
    }
}

/// The exit code for an error of a migrate action.
pub(crate) fn exit_code(err: &pgsteady_migrate::Error) -> u8 {
    if let Some(code) = code_for_kind(err.kind()) {
        return code;
    }
    if let Some(e) = err.connection() {
        return exit::for_error(e);
    }
    match err.kind() {
        // Only the files and settings: 42704 from the server is permanent.
        ErrorKind::Config if matches!(err.reason(), None | Some(pgsteady::Reason::Config)) => {
            exit::USAGE
        }
        _ if err.is_transient() => exit::NOT_READY,
        _ => exit::PERMANENT,
    }
}

/// The codes of migrate's own, by kind alone; `None`: the shared table decides.
fn code_for_kind(kind: ErrorKind) -> Option<u8> {
    match kind {
        ErrorKind::Migration | ErrorKind::CommitOutcomeUnknown => Some(MIGRATION_FAILED),
        ErrorKind::HistoryMismatch => Some(HISTORY_MISMATCH),
        // A lock wait bounded by --lock-timeout: "not ready in time".
        ErrorKind::Timeout => Some(exit::NOT_READY),
        _ => None,
    }
}

pub(crate) async fn run(args: MigrateArgs) -> ExitCode {
    let output = Output::choose(args.common.quiet, args.common.json);
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(e) => {
            Printer::new(output, String::new()).plan_failed(&e);
            return exit::code(exit::USAGE);
        }
    };
    exit::code(execute(plan).await)
}

/// Applies `migrator`'s pending files as `pgsteady migrate --dir DIR` does, waiting for the
/// database within `wait`'s bounds (for `pgsteady run --migrate`). Returns the exit code.
pub(crate) async fn apply(wait: &crate::wait::Plan, migrator: Migrator) -> u8 {
    execute(Plan {
        config: wait.config.clone(),
        migrator,
        timeout: wait.timeout,
        attempt_timeout: wait.attempt_timeout,
        retry_on: wait.retry_on.clone(),
        output: wait.output(),
        job: Job::Apply { dry_run: false },
    })
    .await
}

async fn execute(plan: Plan) -> u8 {
    let printer = Arc::new(Mutex::new(Printer::new(
        plan.output,
        plan.config.to_string(),
    )));
    let connector = match connector(&plan, &printer) {
        Ok(c) => c,
        Err(e) => return fail(&printer, &e.into(), &plan.migrator),
    };
    let migrator = {
        let printer = printer.clone();
        plan.migrator
            .clone()
            .on_event(move |e| printer.lock().unwrap().event(e))
    };
    // SIGINT/SIGTERM cancel the running statement on the server and release the lock before
    // exiting; the exit code is then 128 + the signal, as a shell reports.
    let signalled = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let stop = {
        let signalled = signalled.clone();
        async move {
            let n = stop_signal().await;
            signalled.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let result = match plan.job {
        Job::Apply { dry_run: false } => migrator
            .run_until(&connector, stop)
            .await
            .map(|report| printer.lock().unwrap().report(&report)),
        Job::Apply { dry_run: true } => migrator
            .dry_run(&connector)
            .await
            .map(|pending| printer.lock().unwrap().pending(&pending)),
        Job::Status { out_of_order } => migrator
            .status(&connector)
            .await
            .map(|status| printer.lock().unwrap().status(&status, out_of_order)),
        Job::Repair { dry_run } => migrator
            .repair(&connector, dry_run)
            .await
            .map(|repair| printer.lock().unwrap().repair(&repair)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = fail(&printer, &e, &plan.migrator);
            match signalled.load(std::sync::atomic::Ordering::Relaxed) {
                0 => code,
                signal => 128 + signal,
            }
        }
    }
}

/// Resolves with the signal number on SIGINT, SIGTERM, SIGQUIT or SIGHUP (every signal whose
/// default action ends the process, but SIGKILL: unhandled, SIGQUIT and SIGHUP left the
/// statement running and the advisory lock held); never if the handlers cannot be installed
/// (the default action then still ends the process).
async fn stop_signal() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut quit), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::quit()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => 2,
        _ = term.recv() => 15,
        _ = quit.recv() => 3,
        _ = hup.recv() => 1,
    }
}

fn fail(printer: &Mutex<Printer>, err: &pgsteady_migrate::Error, migrator: &Migrator) -> u8 {
    let code = exit_code(err);
    printer.lock().unwrap().failed(code, err, Some(migrator));
    code
}

/// The same waiting as `pgsteady wait`: attempts every 20-40 ms up to the timeout, each
/// bounded, progress through the shared reporter.
fn connector(plan: &Plan, printer: &Arc<Mutex<Printer>>) -> Result<Connector, pgsteady::Error> {
    let printer = printer.clone();
    let mut connector = Connector::new(plan.config.clone())?
        .with_attempt_timeout(plan.attempt_timeout)
        .with_max_message_len(exit::MAX_MESSAGE_LEN)
        .with_ready_check(true)
        .with_backoff(Backoff::polling().with_max_elapsed(plan.timeout))
        .with_observer(move |event: &ConnectEvent<'_>| {
            let mut printer = printer.lock().unwrap();
            match event.outcome {
                AttemptOutcome::Failed {
                    error,
                    class,
                    next_delay: Some(delay),
                } => printer.waiting(event, class.reason, error, delay),
                AttemptOutcome::Connected { host } => printer.connected(event, host),
                _ => {}
            }
        });
    for class in &plan.retry_on {
        connector = connector.with_retry_on(*class);
    }
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: MigrateArgs,
    }

    fn parse(args: &[&str]) -> Result<MigrateArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("migrate").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn target_and_subcommands() {
        let a = parse(&["postgresql://h/db", "--dir", "m", "--dry-run"]).unwrap();
        assert_eq!(a.common.target.as_deref(), Some("postgresql://h/db"));
        assert!(a.dry_run && a.action.is_none());
        let a = parse(&["status", "host=h", "--dir", "m", "--json"]).unwrap();
        match a.action {
            Some(Action::Status(s)) => {
                assert_eq!(s.common.target.as_deref(), Some("host=h"));
                assert!(s.common.json);
            }
            other => panic!("{other:?}"),
        }
        let a = parse(&["repair", "--dry-run"]).unwrap();
        assert!(matches!(
            a.action,
            Some(Action::Repair(RepairArgs { dry_run: true, .. }))
        ));
        // A target before the subcommand is ambiguous: refused by clap (exit 2).
        let err = parse(&["postgresql://h/db", "status"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["--timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("'soon'"), "{err}");
    }

    #[test]
    fn exit_codes_by_kind() {
        let code = |kind| code_for_kind(kind).unwrap_or(u8::MAX);
        assert_eq!(code(ErrorKind::Migration), MIGRATION_FAILED);
        assert_eq!(code(ErrorKind::CommitOutcomeUnknown), MIGRATION_FAILED);
        assert_eq!(code(ErrorKind::HistoryMismatch), HISTORY_MISMATCH);
        assert_eq!(code(ErrorKind::Timeout), exit::NOT_READY);
        // Errors can no longer be made here: real ones, from the files and the configuration.
        let config = pgsteady::Config::parse("postgresql://h/db?no_such_option=1").unwrap_err();
        assert_eq!(exit_code(&config.into()), exit::USAGE);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not-a-migration.txt"), "x").unwrap();
        let files = Migrator::from_dir(dir.path()).unwrap_err();
        assert_eq!(exit_code(&files), exit::USAGE);
        assert_eq!(
            code_for_kind(ErrorKind::Auth),
            None,
            "the shared table decides"
        );
    }
}
