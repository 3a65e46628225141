//! `pgsteady run`: wait for the database (as `pgsteady wait`), optionally apply migrations
//! (as `pgsteady migrate`), then run a command as a child: SIGTERM, SIGINT and SIGHUP are
//! forwarded to it, the health endpoints are served meanwhile if asked, and pgsteady exits
//! with the child's exit code.
//!
//! Unlike `wait -- CMD` (which execs), pgsteady stays as the parent so it can keep serving
//! `/livez` `/readyz` `/metrics` and report the child's end.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgsteady::readiness::http::router;
use pgsteady::{Pool, Readiness};
use pgsteady_migrate::{HistoryTable, Migrator};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::exit;
use crate::migrate;
use crate::report::Reporter;
use crate::wait::{self, WaitOptions};

const RUN_HELP: &str = "\
Signals: SIGTERM, SIGINT, SIGQUIT and SIGHUP sent to pgsteady are forwarded to the command
(once it runs; before that they stop pgsteady), and pgsteady exits with it (a command killed
by the signal: 128+N). With --health-listen, /readyz answers 503 `draining` from the first
forwarded SIGTERM, SIGINT or SIGQUIT. SIGKILL cannot be forwarded: if pgsteady is
killed, the command keeps running (orchestrators kill the whole container or cgroup). Ctrl-C
on a terminal reaches the command twice (the terminal signals the whole foreground group).

Exit codes:
  the command's own exit code once it ran; 128+N when it was killed by signal N (as a shell
  reports it: 137 for SIGKILL, 143 for SIGTERM)
  before the command ran:
  1  the database was not ready before --timeout
  2  usage or configuration error (bad target, missing migrations directory, bad address)
  3  permanent error: authentication failed, database missing, TLS refused
  4  a migration failed (rolled back; the ones before it stay applied)
  5  the migration history does not match the files
  126  the command cannot be executed; 127  the command was not found";

/// Arguments of `pgsteady run`.
#[derive(Debug, clap::Args)]
#[command(after_help = RUN_HELP)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    wait: WaitOptions,
    /// Apply the migrations in DIR (as `pgsteady migrate --dir DIR`) before starting the
    /// command.
    #[arg(long, value_name = "DIR")]
    migrate: Option<PathBuf>,
    /// The migration history table, `name` or `schema.name`.
    #[arg(long, default_value = HistoryTable::DEFAULT_NAME, value_name = "TABLE", requires = "migrate")]
    migrations_table: String,
    /// Serve /livez, /readyz and /metrics on ADDR from the start until the command exits
    /// (/readyz: 503 `starting` while waiting and migrating).
    #[arg(long, value_name = "ADDR")]
    health_listen: Option<SocketAddr>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// What `run` will do, validated before any I/O.
#[derive(Debug)]
struct Plan {
    wait: wait::Plan,
    migrator: Option<Migrator>,
    health_listen: Option<SocketAddr>,
    program: OsString,
    args: Vec<OsString>,
}

impl Plan {
    fn new(args: RunArgs) -> Result<Self, crate::common::PlanError> {
        let wait = wait::Plan::new(args.wait, NAME)?;
        let migrator = match &args.migrate {
            Some(dir) => Some(
                Migrator::from_dir(dir)?.with_table(HistoryTable::parse(&args.migrations_table)?),
            ),
            None => None,
        };
        let mut command = args.command.into_iter();
        let program = command.next().ok_or_else(|| {
            crate::common::PlanError::Arg("no command given after `--`".to_owned())
        })?;
        Ok(Plan {
            wait,
            migrator,
            health_listen: args.health_listen,
            program,
            args: command.collect(),
        })
    }
}

const NAME: &str = "pgsteady run";

pub(crate) async fn run(args: RunArgs) -> ExitCode {
    let output = crate::common::Output::choose(args.wait.quiet, args.wait.json);
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(e) => {
            Reporter::new(output, NAME, String::new()).failed(
                exit::USAGE,
                e.reason(),
                &format!("{e:#}"),
            );
            return exit::code(exit::USAGE);
        }
    };
    let health = match plan.health_listen {
        Some(addr) => match Health::start(addr, &plan.wait.config).await {
            Ok(health) => Some(health),
            Err(message) => {
                Reporter::new(output, NAME, String::new()).failed(exit::USAGE, None, &message);
                return exit::code(exit::USAGE);
            }
        },
        None => None,
    };
    let readiness = health.as_ref().map(|h| h.readiness.clone());
    let step = |name: &'static str| {
        if let Some(r) = &readiness {
            r.starting(name);
        }
    };

    step("waiting");
    let code = wait::wait(&plan.wait).await;
    if code != exit::READY {
        return exit::code(code);
    }
    if let Some(migrator) = plan.migrator {
        step("migrations");
        let code = migrate::apply(&plan.wait, migrator).await;
        if code != exit::READY {
            return exit::code(code);
        }
    }
    if let Some(r) = &readiness {
        r.started();
    }

    let code = supervise(&plan.program, &plan.args, readiness.as_ref()).await;
    if let Some(health) = health {
        health.pool.close(Duration::from_secs(1)).await;
    }
    ExitCode::from(code)
}

/// Runs the command with the four signals forwarded; returns the exit code to pass on.
async fn supervise(program: &OsString, args: &[OsString], readiness: Option<&Readiness>) -> u8 {
    // Installed before the spawn: a signal arriving in between is held and forwarded.
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    );
    let (mut term, mut int, mut hup, mut quit) = match streams {
        (Ok(t), Ok(i), Ok(h), Ok(q)) => (t, i, h, q),
        _ => {
            eprintln!("{NAME}: cannot install the signal handlers");
            return 70;
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // std resets SIGPIPE (ignored by the Rust runtime) to the default in the child, and a
    // handled signal reverts to the default across exec: the command starts like any other.
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!(
                "{NAME}: cannot run `{}`: {err:#}",
                program.to_string_lossy()
            );
            return if err.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status,
            _ = term.recv() => Signal::SIGTERM,
            _ = int.recv() => Signal::SIGINT,
            _ = hup.recv() => Signal::SIGHUP,
            // Not handled, SIGQUIT killed pgsteady (131) and left the command orphaned.
            _ = quit.recv() => Signal::SIGQUIT,
        };
        if forward != Signal::SIGHUP
            && let Some(r) = readiness
        {
            r.drain();
        }
        if let Some(pid) = pid {
            // The child may have exited just now: ESRCH is fine, wait() reports it.
            let _ = kill(pid, forward);
        }
    };
    match status {
        Ok(status) => exit_code(status),
        Err(err) => {
            eprintln!("{NAME}: cannot wait for the command: {err:#}");
            70
        }
    }
}

/// The child's exit code, or 128+N when signal N killed it (the shell convention).
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 70,
    }
}

/// The health endpoints while `run` runs.
struct Health {
    readiness: Readiness,
    pool: Pool,
}

impl Health {
    async fn start(addr: SocketAddr, config: &pgsteady::Config) -> Result<Health, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e:#}"))?;
        let pool = Pool::builder(config.clone())
            .max_size(1)
            .min_idle(1)
            .build()
            .map_err(|e| format!("{e:#}"))?;
        let readiness = Readiness::for_pool(&pool);
        let app = router(&readiness);
        let local = listener.local_addr().unwrap_or(addr);
        eprintln!("{NAME}: health endpoints on http://{local} (/livez /readyz /metrics)");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Health { readiness, pool })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn arguments() {
        let a = parse(&["postgresql://h/db", "--migrate", "m", "--", "app", "-x"]).unwrap();
        assert_eq!(a.migrate, Some(PathBuf::from("m")));
        assert_eq!(a.command, ["app", "-x"]);
        assert!(
            parse(&["postgresql://h/db"]).is_err(),
            "a command is required"
        );
        let err = parse(&["--migrations-table", "t", "--", "app"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "--migrations-table needs --migrate");
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(42 << 8)), 42);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137, "SIGKILL");
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143, "SIGTERM");
    }
}
