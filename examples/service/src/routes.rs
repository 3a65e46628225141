//! The application's own routes: a read, a write and a deliberately slow request, each going
//! through the pool's retrying `run` / `transaction`.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pgsteady::{Pool, Readiness, TransactionError};
use serde::{Deserialize, Serialize};

/// Shared by every handler: the pool arrives once start-up (wait + migrations) is done.
#[derive(Debug, Clone)]
pub struct AppState {
    pub readiness: Readiness,
}

impl AppState {
    fn pool(&self) -> Result<&Pool, ApiError> {
        self.readiness.pool().ok_or(ApiError::Starting)
    }
}

/// `GET /notes`, `POST /notes` (the body is the note), `GET /slow?ms=N`.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/notes", get(list_notes).post(add_note))
        .route("/slow", get(slow))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Note {
    id: i64,
    body: String,
}

async fn list_notes(State(state): State<AppState>) -> Result<Json<Vec<Note>>, ApiError> {
    // Reads are idempotent: `run` retries them on a fresh connection after a restart.
    let notes = state
        .pool()?
        .run(async |conn| {
            let stmt = conn
                .prepare_cached("SELECT id, body FROM notes ORDER BY id DESC LIMIT 100")
                .await?;
            let rows = conn.query(&stmt, &[]).await?;
            Ok(rows
                .iter()
                .map(|r| Note {
                    id: r.get(0),
                    body: r.get(1),
                })
                .collect())
        })
        .await?;
    Ok(Json(notes))
}

async fn add_note(
    State(state): State<AppState>,
    body: String,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    // Writes: replayed only when they certainly did not commit. `async move`: the closure
    // owns its copy of the text, so the future is `Send`.
    let text = body.clone();
    let id = state
        .pool()?
        .transaction(async move |tx| {
            let row = tx
                .query_one(
                    "INSERT INTO notes (body) VALUES ($1) RETURNING id",
                    &[&text],
                )
                .await?;
            Ok(row.get::<_, i64>(0))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Note { id, body })))
}

#[derive(Debug, Deserialize)]
struct SlowParams {
    ms: u64,
}

/// Holds a connection for `ms` milliseconds (`pg_sleep`): shows the request timeout and the
/// graceful shutdown at work.
async fn slow(
    State(state): State<AppState>,
    Query(SlowParams { ms }): Query<SlowParams>,
) -> Result<&'static str, ApiError> {
    let seconds = Duration::from_millis(ms).as_secs_f64();
    state
        .pool()?
        .run(async move |conn| {
            conn.execute("SELECT pg_sleep($1)", &[&seconds]).await?;
            Ok(())
        })
        .await?;
    Ok("done")
}

/// What a handler can fail with. Logged once here; the response carries only a stable
/// token, never a host name or a connection string.
#[derive(Debug)]
pub enum ApiError {
    Starting,
    Db(pgsteady::Error),
    OutcomeUnknown(i64),
}

impl From<pgsteady::Error> for ApiError {
    fn from(e: pgsteady::Error) -> Self {
        ApiError::Db(e)
    }
}

impl From<TransactionError> for ApiError {
    fn from(e: TransactionError) -> Self {
        match e {
            TransactionError::NotCommitted(e) => ApiError::Db(e),
            TransactionError::OutcomeUnknown(u) => ApiError::OutcomeUnknown(u.xid),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, token) = match &self {
            ApiError::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
            ApiError::Db(e) => {
                // pgsteady's Display never holds a password.
                tracing::warn!(error = %e, transient = e.is_transient(), "request failed");
                let token = e.reason().map_or("database_error", |r| r.as_str());
                if e.is_transient() {
                    (StatusCode::SERVICE_UNAVAILABLE, token)
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, token)
                }
            }
            ApiError::OutcomeUnknown(xid) => {
                tracing::error!(
                    xid,
                    "commit outcome unknown: check txid_status before retrying"
                );
                (StatusCode::INTERNAL_SERVER_ERROR, "commit_outcome_unknown")
            }
        };
        (status, Json(ErrorBody { error: token })).into_response()
    }
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
}
