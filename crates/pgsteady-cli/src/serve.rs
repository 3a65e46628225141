//! `pgsteady serve`: a health sidecar for applications in any language. `/livez`, `/readyz`
//! and `/metrics` from the library's readiness model, backed by a pool that keeps one
//! connection warm; graceful stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use pgsteady::readiness::http::{HttpLimits, router_with_registry, serve_with_limits};
use pgsteady::{Config, Pool, Readiness, ReadyState, ShutdownConfig};
use pgsteady_slot::prometheus::SlotCollector;
use pgsteady_slot::{SlotState, SlotWatch};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::common::resolve_target;
use crate::exit;

const SERVE_HELP: &str = "\
Endpoints:
  GET /livez    200 while the process answers; never touches the database
  GET /readyz   200 (ready, degraded) or 503 (starting, not_ready, draining) with a JSON body;
                reads state kept fresh by the warm connection, no round trip per probe
  GET /metrics  pool and readiness metrics, Prometheus/OpenMetrics text

With --slot NAME (repeatable), /metrics also holds per-slot metrics (pgsteady_slot_state,
_active, _retained_bytes, _lag_bytes, _safe_wal_size_bytes), read every --slot-interval
with one query whatever the scrape rate; --slot-ready makes /readyz answer 503 while a
watched slot is missing or lost (or not read yet). See docs/slot.md.

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
    #[arg(long, default_value = "1s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    grace: Duration,
    /// After SIGTERM, keep answering (/readyz: 503 draining) this long before closing.
    #[arg(long, default_value = "0s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    linger: Duration,
    /// Print only errors (no start line, no readiness changes).
    #[arg(long, short)]
    quiet: bool,
    /// Export metrics for this replication slot on /metrics (repeatable).
    #[arg(long = "slot", value_name = "NAME")]
    slots: Vec<String>,
    /// How often the watched slots are read: one query per interval, not per scrape.
    #[arg(long, default_value = "10s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    slot_interval: Duration,
    /// /readyz answers 503 while a watched slot is missing or lost, or not read yet.
    #[arg(long, requires = "slots")]
    slot_ready: bool,
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
    slots: Vec<String>,
    slot_interval: Duration,
    slot_ready: bool,
    max_connections: usize,
}

impl Plan {
    fn new(args: ServeArgs) -> Result<Self, crate::common::PlanError> {
        Ok(Plan {
            config: resolve_target(args.target.as_deref())?,
            listen: args.listen,
            grace: args.grace,
            linger: args.linger,
            quiet: args.quiet,
            slots: validate_slots(args.slots)?,
            slot_interval: args.slot_interval,
            slot_ready: args.slot_ready,
            max_connections: args.max_connections,
        })
    }
}

fn validate_slots(mut slots: Vec<String>) -> Result<Vec<String>, crate::common::PlanError> {
    for name in &slots {
        pgsteady_slot::validate_name(name)
            .map_err(|e| crate::common::PlanError::Arg(format!("--slot: {e}")))?;
    }
    let mut seen = std::collections::HashSet::new();
    slots.retain(|name| seen.insert(name.clone()));
    Ok(slots)
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("pgsteady serve: {e:#}");
            return exit::code(exit::USAGE);
        }
    };
    // Before the "listening" line, so no SIGHUP after it can find the default action.
    // SIGHUP's default action ends the process: a terminal closing, or an operator's habit
    // of "reload", must not take the health endpoints down. serve has nothing to reload (its
    // configuration is its arguments), so it says so and stays up.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let quiet = plan.quiet;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if !quiet {
                        eprintln!("pgsteady serve: SIGHUP ignored (nothing to reload)");
                    }
                }
            });
        }
        Err(e) => eprintln!("pgsteady serve: cannot handle SIGHUP: {e}"),
    }
    if plan.max_connections == 0 {
        eprintln!("pgsteady serve: --max-connections must be at least 1");
        return exit::code(exit::USAGE);
    }
    let listener = match TcpListener::bind(plan.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pgsteady serve: cannot listen on {}: {e:#}", plan.listen);
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
            eprintln!("pgsteady serve: {e:#}");
            return exit::code(exit::USAGE);
        }
    };
    let readiness = Readiness::builder().grace(plan.grace).pool(&pool).build();
    let mut registry = Registry::default();
    let watch = if plan.slots.is_empty() {
        None
    } else {
        match SlotWatch::spawn(&pool, plan.slots.clone(), plan.slot_interval) {
            Ok(watch) => {
                registry.register_collector(Box::new(SlotCollector::new(&watch)));
                Some(watch)
            }
            Err(e) => {
                eprintln!("pgsteady serve: {e:#}");
                return exit::code(exit::USAGE);
            }
        }
    };
    let mut app = router_with_registry(&readiness, registry);
    if plan.slot_ready
        && let Some(watch) = watch.clone()
    {
        let readiness = readiness.clone();
        app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
            slot_gate(readiness.clone(), watch.clone(), req, next)
        }));
    }
    if !plan.quiet
        && let Some(watch) = watch.clone()
    {
        tokio::spawn(log_slot_changes(watch));
    }
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
    match serve_with_limits(listener, app, &readiness, shutdown, limits).await {
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
            eprintln!("pgsteady serve: {e:#}");
            exit::code(exit::USAGE)
        }
    }
}

/// With `--slot-ready`: `/readyz` answers 503 while a watched slot is missing or lost (or
/// was never read), reading the watch's snapshot (no round trip per probe). When the
/// database readiness itself says no (down, draining), or the slots are fine, it answers.
async fn slot_gate(readiness: Readiness, watch: SlotWatch, req: Request, next: Next) -> Response {
    if req.uri().path() != "/readyz" || !readiness.check().is_ready() {
        return next.run(req).await;
    }
    let snapshot = watch.snapshot();
    let first = watch.names().first().cloned().unwrap_or_default();
    let blocked = if snapshot.verdicts.is_empty() && snapshot.failures > 0 {
        // Every read so far failed (`error` says why): not "not read yet", which reads as
        // "wait a moment".
        Some((first, "slot_read_failed"))
    } else if snapshot.verdicts.is_empty() {
        Some((first, "slot_not_read_yet"))
    } else {
        snapshot.verdicts.iter().find_map(|v| {
            if v.has(SlotState::Missing) {
                Some((v.slot.clone(), "slot_missing"))
            } else if v.has(SlotState::Lost) {
                Some((v.slot.clone(), "slot_lost"))
            } else {
                None
            }
        })
    };
    let Some((slot, reason)) = blocked else {
        return next.run(req).await;
    };
    let body = serde_json::json!({
        "state": "not_ready",
        "ready": false,
        "reason": reason,
        "slot": slot,
        "error": snapshot.last_error,
    })
    .to_string();
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// One line on stderr per change of a watched slot's states (names and states only).
async fn log_slot_changes(watch: SlotWatch) {
    let mut last: Vec<(String, Vec<SlotState>)> = Vec::new();
    loop {
        let now: Vec<(String, Vec<SlotState>)> = watch
            .snapshot()
            .verdicts
            .iter()
            .map(|v| (v.slot.clone(), v.states.clone()))
            .collect();
        for (slot, states) in &now {
            if !last.iter().any(|(s, st)| s == slot && st == states) {
                let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
                eprintln!("pgsteady: slot {slot} {}", names.join(","));
            }
        }
        if !now.is_empty() {
            last = now;
        }
        tokio::time::sleep(watch.interval()).await;
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
        assert!(a.slots.is_empty());
        let a = Cli::try_parse_from([
            "serve",
            "--slot",
            "a",
            "--slot",
            "b",
            "--slot-ready",
            "--slot-interval",
            "2s",
        ])
        .unwrap()
        .args;
        assert_eq!(a.slots, ["a", "b"]);
        assert_eq!(
            validate_slots(vec!["a".into(), "b".into(), "a".into()]).unwrap(),
            ["a", "b"]
        );
        assert_eq!(a.slot_interval, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["serve", "--slot-ready"]).is_err());
        let bad = validate_slots(vec!["Bad".into()]).unwrap_err().to_string();
        assert!(
            bad.contains("--slot: `Bad` is not a replication slot name"),
            "{bad}"
        );
        let err = Cli::try_parse_from(["serve", "--listen", "localhost"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("localhost"), "{err}");
    }
}
