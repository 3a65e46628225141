//! An axum service built on pgsteady, the code to copy:
//!
//! - it listens at once: `/livez` answers 200 while the database is still starting, and
//!   `/readyz` answers 503 `starting` until the service can serve;
//! - start-up waits for the database (jittered back-off, no crash, every attempt logged) and
//!   applies `migrations/` under an advisory lock, so replicas starting together take turns;
//! - requests use a pool that heals through restarts; a timeout middleware bounds each one;
//! - logs are JSON lines (tracing) and show the connection string redacted;
//! - SIGTERM: `/readyz` turns 503 `draining` at once, requests in flight finish within the
//!   deadline, the pool closes, the process exits 0.
//!
//! Configuration: see [`settings::Settings`] (environment variables).
#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

mod routes;
mod settings;

use std::process::ExitCode;
use std::time::Duration;

use axum::http::StatusCode;
use pgsteady::connect::{AttemptOutcome, ConnectEvent};
use pgsteady::readiness::http::{router, serve};
use pgsteady::{Backoff, Connector, Pool, Readiness, ReadyState};
use pgsteady_migrate::{ErrorKind, Migrator};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tracing::{error, info, warn};

use routes::{AppState, routes};
use settings::Settings;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stdout)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = format!("{e:#}"), "cannot start the async runtime");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(problem) => {
            error!(error = %problem, "bad configuration");
            return ExitCode::from(2);
        }
    };
    // `Config`'s Display shows `postgresql://user:***@host:port/db`: never the password.
    info!(database = %settings.database, listen = %settings.listen, "starting");
    let migrator = match Migrator::from_dir(&settings.migrations) {
        Ok(m) => m,
        Err(e) => {
            error!(error = format!("{e:#}"), "bad migrations directory");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = format!("{e:#}"), listen = %settings.listen, "cannot listen");
            return ExitCode::from(2);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "listening");
    }

    let readiness = Readiness::builder().grace(settings.readiness_grace).build();
    readiness.starting("waiting_for_database");
    let app = routes(AppState {
        readiness: readiness.clone(),
    })
    .layer(TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        settings.request_timeout,
    ))
    .merge(router(&readiness));

    tokio::spawn(log_readiness(readiness.clone()));
    let startup = tokio::spawn(start_up(
        settings.database.clone(),
        migrator,
        settings.pool_max_size,
        readiness.clone(),
    ));
    // Serves until SIGTERM/SIGINT, then drains (see `ShutdownConfig`).
    let result = serve(listener, app, &readiness, settings.shutdown).await;
    startup.abort();
    match result {
        Ok(report) => {
            info!(
                signal = report.signal.map(|s| s.as_str()),
                requests_cut = report.requests_cut,
                pool_closed = report.pool_closed,
                took_ms = report.took.as_millis() as u64,
                "stopped"
            );
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            error!(error = format!("{e:#}"), "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Waits for the database, applies the migrations, then hands the pool to readiness (and so
/// to the handlers). Connection failures never end the process: transient ones are retried
/// with back-off, permanent ones (wrong password, missing database) every 5 s while
/// `/readyz` says why. A failing migration does end it (exit 1): that is a bug to fix, not
/// an outage to wait out.
async fn start_up(
    database: pgsteady::Config,
    migrator: Migrator,
    pool_max_size: usize,
    readiness: Readiness,
) {
    let connector = {
        let readiness = readiness.clone();
        Connector::new(database.clone()).map(|c| {
            c.with_backoff(
                Backoff::new()
                    .with_cap(Duration::from_secs(2))
                    .without_max_elapsed(),
            )
            .with_observer(move |event: &ConnectEvent<'_>| match &event.outcome {
                AttemptOutcome::Failed { error, class, .. } => warn!(
                    attempt = event.attempt,
                    reason = class.reason.as_str(),
                    error = %error,
                    "database not ready"
                ),
                AttemptOutcome::Connected { .. } => readiness.starting("migrations"),
                _ => {}
            })
        })
    };
    let connector = match connector {
        Ok(c) => c,
        Err(e) => {
            error!(
                error = format!("{e:#}"),
                "cannot connect with this configuration"
            );
            readiness.record_error(&e);
            return;
        }
    };
    loop {
        readiness.starting("waiting_for_database");
        match migrator.run(&connector).await {
            Ok(report) => {
                info!(
                    applied = report.applied.len(),
                    already_applied = report.already_applied,
                    "database ready, migrations done"
                );
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::Migration | ErrorKind::HistoryMismatch) => {
                error!(error = format!("{e:#}"), "migration failed");
                std::process::exit(1);
            }
            Err(e) => {
                error!(
                    error = format!("{e:#}"),
                    "database unavailable; retrying in 5 s"
                );
                readiness.record_failure(e.reason(), e.is_transient());
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
    let pool = Pool::builder(database)
        .max_size(pool_max_size)
        .min_idle(1)
        .build();
    match pool {
        Ok(pool) => {
            readiness.record_ok();
            readiness.attach(&pool);
            readiness.started();
        }
        Err(e) => error!(error = format!("{e:#}"), "cannot build the pool"),
    }
}

/// One log line per readiness change.
async fn log_readiness(readiness: Readiness) {
    let mut last = None;
    loop {
        let report = readiness.check();
        let now = (report.state, report.reason, report.error);
        if last != Some(now) {
            info!(
                state = report.state.as_str(),
                reason = report.reason,
                error = report.error.map(|e| e.as_str()),
                "readiness"
            );
            last = Some(now);
        }
        if report.state == ReadyState::Draining {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
