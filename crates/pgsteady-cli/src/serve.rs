//! `pgsteady serve`: a health sidecar for applications in any language. `/livez`, `/readyz`
//! and `/metrics` from the library's readiness model, backed by a pool that keeps one
//! connection warm; graceful stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use pgsteady::readiness::http::{HttpLimits, router, serve_with_limits};
use pgsteady::{Config, Pool, Readiness, ReadyState, ShutdownConfig};
use tokio::net::TcpListener;

use crate::common::{parse_duration, resolve_target};
use crate::exit;

const SERVE_HELP: &str = "\
Endpoints:
  GET /livez    200 while the process answers; never touches the database
  GET /readyz   200 (ready, degraded) or 503 (starting, not_ready, draining) with a JSON body;
                reads state kept fresh by the warm connection, no round trip per probe
  GET /metrics  pool and readiness metrics, Prometheus/OpenMetrics text

Readiness turns not_ready once the database has been unreachable for --grace (default 1s),
at once on a permanent error (wrong password, missing database), and ready again as soon as
one connection succeeds.

Connections: at most --max-connections open (one more is closed at once: keep it under
`ulimit -n`); request headers within 5s of connecting or of a request's first byte; a
kept-alive connection idle at most 30s.

Exit codes:
  0  stopped by SIGTERM/SIGINT, cleanly
  1  stopped, but the warm connection did not close in time
  2  usage or configuration error, or the address cannot be listened on";

/// Arguments of `pgsteady serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = SERVE_HELP)]
pub(crate) struct ServeArgs {
    /// A postgresql:// URL or a key=value connection string. Default: $DATABASE_URL, then the
    /// PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...) and ~/.pgpass.
    target: Option<String>,
    /// The address to serve the endpoints on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// How long the database may be unreachable before /readyz answers 503.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    grace: Duration,
    /// After SIGTERM, keep answering (/readyz: 503 draining) this long before closing.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    linger: Duration,
    /// Print only errors (no start line, no readiness changes).
    #[arg(long, short)]
    quiet: bool,
    /// The most HTTP connections open at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_connections: usize,
}

/// What `serve` will do, validated before any I/O.
#[derive(Debug)]
struct Plan {
    config: Config,
    listen: SocketAddr,
    grace: Duration,
    linger: Duration,
    quiet: bool,
    max_connections: usize,
}

impl Plan {
    fn new(args: ServeArgs) -> Result<Self, pgsteady::Error> {
        Ok(Plan {
            config: resolve_target(args.target.as_deref())?,
            listen: args.listen,
            grace: args.grace,
            linger: args.linger,
            quiet: args.quiet,
            max_connections: args.max_connections,
        })
    }
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("pgsteady serve: {e}");
            return exit::code(exit::USAGE);
        }
    };
    if plan.max_connections == 0 {
        eprintln!("pgsteady serve: --max-connections must be at least 1");
        return exit::code(exit::USAGE);
    }
    let listener = match TcpListener::bind(plan.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pgsteady serve: cannot listen on {}: {e}", plan.listen);
            return exit::code(exit::USAGE);
        }
    };
    // One warm connection: enough to notice an outage within milliseconds and to answer the
    // idle ping; probes never use it.
    let pool = match Pool::builder(plan.config.clone())
        .max_size(1)
        .min_idle(1)
        .max_message_len(exit::MAX_MESSAGE_LEN)
        .ready_check(true)
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("pgsteady serve: {e}");
            return exit::code(exit::USAGE);
        }
    };
    let readiness = Readiness::builder().grace(plan.grace).pool(&pool).build();
    if !plan.quiet {
        let addr = listener.local_addr().unwrap_or(plan.listen);
        eprintln!(
            "pgsteady serve: listening on http://{addr} (/livez /readyz /metrics) for {}",
            plan.config
        );
        tokio::spawn(log_changes(readiness.clone()));
    }
    let shutdown = ShutdownConfig::default()
        .with_linger(plan.linger)
        .with_deadline(Duration::from_secs(5))
        .with_pool_close(Duration::from_secs(2));
    let limits = HttpLimits::default().with_max_connections(plan.max_connections);
    match serve_with_limits(listener, router(&readiness), &readiness, shutdown, limits).await {
        Ok(report) => {
            if !plan.quiet {
                let by = report.signal.map_or("drain", |s| s.as_str());
                eprintln!(
                    "pgsteady serve: stopped on {by} in {:.0?}",
                    report.took.max(Duration::from_millis(1))
                );
            }
            if report.pool_closed {
                exit::code(exit::READY)
            } else {
                eprintln!("pgsteady serve: the warm connection did not close in time");
                exit::code(exit::NOT_READY)
            }
        }
        Err(e) => {
            eprintln!("pgsteady serve: {e}");
            exit::code(exit::USAGE)
        }
    }
}

/// One line on stderr per readiness change (state and reason tokens only: no host, no
/// password).
pub(crate) async fn log_changes(readiness: Readiness) {
    let mut last: Option<(ReadyState, Option<&'static str>)> = None;
    loop {
        let report = readiness.check();
        let now = (report.state, report.reason);
        if last != Some(now) {
            match report.reason {
                Some(reason) => eprintln!("pgsteady: readiness {} ({reason})", report.state),
                None => eprintln!("pgsteady: readiness {}", report.state),
            }
            last = Some(now);
        }
        if report.state == ReadyState::Draining {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn arguments() {
        let a = Cli::try_parse_from(["serve", "postgresql://h/db", "--listen", "0.0.0.0:9000"])
            .unwrap()
            .args;
        assert_eq!(a.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(a.grace, Duration::from_secs(1));
        assert_eq!(a.linger, Duration::ZERO);
        let err = Cli::try_parse_from(["serve", "--listen", "localhost"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("localhost"), "{err}");
    }
}
