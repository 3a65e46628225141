//! The health endpoints as an axum router, and serving with graceful shutdown (feature
//! `axum`).
//!
//! - `GET /livez`: 200 while the process can answer HTTP. Never touches the database: a
//!   liveness probe that fails because the database is down makes the orchestrator restart
//!   every replica at once, which helps nobody.
//! - `GET /readyz`: 200 (`ready`, `degraded`) or 503 (`starting`, `not_ready`, `draining`)
//!   with [`ReadinessReport::to_json`] as the body. Reads [`Readiness::check`]: no database
//!   round trip per probe.
//! - `GET /metrics`: the pool's and readiness' metrics in the Prometheus / OpenMetrics text
//!   format (see [`super::prometheus`]).
//!
//! Bodies hold state names, reason tokens and durations only: never a host, user or password.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use super::limits::HttpLimits;
use super::limits::LimitedListener;
use super::prometheus::{ReadinessCollector, encode};
use super::{Readiness, ReadinessReport, ShutdownConfig, ShutdownSignal, shutdown_signal};

/// The OpenMetrics text content type that `prometheus-client` encodes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Endpoints {
    readiness: Readiness,
    registry: Arc<Registry>,
}

/// `/livez`, `/readyz` and `/metrics` for `readiness` (and its pool). Merge it into the
/// application's router.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use pgsteady::{Config, Pool, Readiness, ShutdownConfig};
///
/// let pool = Pool::builder(Config::resolve(None)?).min_idle(1).build()?;
/// let readiness = Readiness::for_pool(&pool);
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .merge(pgsteady::readiness::http::router(&readiness));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// // Until SIGTERM/SIGINT, then: draining, in-flight requests finish, the pool closes.
/// let report = pgsteady::readiness::http::serve(listener, app, &readiness, ShutdownConfig::default()).await?;
/// std::process::exit(if report.is_clean() { 0 } else { 1 });
/// # }
/// ```
pub fn router(readiness: &Readiness) -> Router {
    router_with_registry(readiness, Registry::default())
}

/// Like [`router`], with the application's own metrics: pgsteady's collector is added to
/// `registry` and `/metrics` serves all of it.
pub fn router_with_registry(readiness: &Readiness, mut registry: Registry) -> Router {
    registry.register_collector(Box::new(ReadinessCollector::new(readiness)));
    let endpoints = Endpoints {
        readiness: readiness.clone(),
        registry: Arc::new(registry),
    };
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoints)
}

async fn livez() -> Response {
    json_response(StatusCode::OK, r#"{"state":"alive"}"#.to_owned())
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    readiness_response(&endpoints.readiness.check())
}

/// The `/readyz` response for a report: 200 or 503, JSON body, not cacheable.
pub fn readiness_response(report: &ReadinessReport) -> Response {
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, report.to_json())
}

async fn metrics(State(endpoints): State<Endpoints>) -> Response {
    match encode(&endpoints.registry) {
        Ok(text) => {
            let mut response = Response::new(Body::from(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How a graceful shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The signal that started it; `None` when [`Readiness::drain`] did.
    pub signal: Option<ShutdownSignal>,
    /// Requests still in flight when the deadline ran out (0: every one finished).
    pub requests_cut: usize,
    /// Whether the pool closed every connection within its bound (`true` without a pool).
    pub pool_closed: bool,
    /// From the signal to the end.
    pub took: Duration,
}

impl ShutdownReport {
    /// Every request finished and the pool closed.
    pub fn is_clean(&self) -> bool {
        self.requests_cut == 0 && self.pool_closed
    }
}

/// Serves `app` until SIGTERM or SIGINT (or [`Readiness::drain`]), then shuts down
/// gracefully within `config`'s bounds: readiness flips to `draining` at once, the listener
/// keeps accepting for `config.linger` and then closes (new connections are refused),
/// requests in flight finish within `config.deadline` (idle keep-alive connections are
/// closed), and the readiness model's pool is closed within `config.pool_close`.
///
/// Installs the SIGTERM/SIGINT handlers when called. After the deadline, requests still in
/// flight are counted in [`ShutdownReport::requests_cut`] and left to the process' exit.
/// Fails only if the signal handlers cannot be installed or accepting fails.
///
/// Connections are bounded by [`HttpLimits::default`]; see [`serve_with_limits`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    readiness: &Readiness,
    config: ShutdownConfig,
) -> io::Result<ShutdownReport> {
    serve_with_limits(listener, app, readiness, config, HttpLimits::default()).await
}

/// [`serve`] with explicit connection bounds: at most `limits.max_connections` open (one
/// more is closed at once), request headers within `limits.header_read_timeout` (also from
/// the moment a connection is accepted), a kept-alive connection idle at most
/// `limits.idle_timeout`.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    readiness: &Readiness,
    config: ShutdownConfig,
    limits: HttpLimits,
) -> io::Result<ShutdownReport> {
    let listener = LimitedListener::new(listener, limits);
    let signal = shutdown_signal()?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let app = {
        let in_flight = in_flight.clone();
        app.layer(middleware::from_fn(move |req: Request, next: Next| {
            let guard = InFlight::enter(&in_flight);
            async move {
                let response = next.run(req).await;
                drop(guard);
                response
            }
        }))
    };
    let started: Arc<Mutex<Option<Started>>> = Arc::default();
    let (stopped_accepting, mut accept_stopped) = watch::channel(false);
    let graceful = {
        let readiness = readiness.clone();
        let started = started.clone();
        async move {
            let which = tokio::select! {
                s = signal => Some(s),
                _ = readiness.draining() => None,
            };
            readiness.drain();
            *started.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), which));
            tokio::time::sleep(config.linger).await;
            let _ = stopped_accepting.send(true);
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let deadline = async {
        let _ = accept_stopped.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(config.deadline).await;
    };
    let requests_cut = tokio::select! {
        result = server.into_future() => {
            result?;
            0
        }
        _ = deadline => in_flight.load(Ordering::Relaxed).max(1),
    };
    let pool_closed = match readiness.pool() {
        Some(pool) => pool.close(config.pool_close).await,
        None => true,
    };
    let (since, signal) = started
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or((Instant::now(), None));
    Ok(ShutdownReport {
        signal,
        requests_cut,
        pool_closed,
        took: since.elapsed(),
    })
}

/// When the shutdown started, and on which signal (`None`: [`Readiness::drain`]).
type Started = (Instant, Option<ShutdownSignal>);

/// Counts a request in flight until dropped (also when the request future is dropped).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
