//! The slot for `pgsteady::Pool`, measured like the peers once it is on main.
//!
//! TODO(issue 7): `pgsteady::Pool` is being written. When it lands, replace this module's
//! body with two subjects and set [`UNAVAILABLE`] to `None`:
//!
//! ```text
//! struct Pgsteady { pool: pgsteady::Pool, run: bool }
//! // build: Pool::builder(config for `target`).max_size(target.pool_size).build()?
//! // op (get):  let c = pool.get().await?; let s = c.prepare_cached(QUERY).await?;
//! //            c.query_one(&s, &[]).await?;
//! // op (run):  pool.run(async |c| { let s = c.prepare_cached(QUERY).await?;
//! //            c.query_one(&s, &[]).await?; Ok(()) }).await?;
//! // errors:    ErrorClass::of(&err) (its source chain holds the tokio-postgres / io error),
//! //            ErrorClass::TIMEOUT for an acquire timeout.
//! // close:     pool.close(Duration::from_secs(5)).await
//! ```
//!
//! Both `ClientKind::Pgsteady` (plain `get()` + query) and `ClientKind::PgsteadyRun`
//! (`pool.run`, retried) then appear in every table next to the peers.

use crate::subject::{BoxError, Subject, Target};

/// Why the pgsteady subjects cannot run yet; `None` once they can.
pub(crate) const UNAVAILABLE: Option<&str> = Some("pgsteady::Pool is not on main yet");

/// Builds a pgsteady subject (see the module docs).
pub(crate) async fn build(_target: &Target, _run: bool) -> Result<Box<dyn Subject>, BoxError> {
    Err(UNAVAILABLE.unwrap_or("not implemented").into())
}
