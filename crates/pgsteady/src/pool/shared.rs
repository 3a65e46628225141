//! [`Pool::query`], [`Pool::query_one`], [`Pool::query_opt`], [`Pool::execute`]: one-shot
//! idempotent statements that share connections (see `lanes`), retried as [`Pool::run`]
//! retries its work.

use std::time::Instant;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::lanes::Lease;
use super::run::{CallAttempts, attempt_timed_out};
use super::{Pool, PooledConnection, deadline};
use crate::Error;
use crate::classify;

/// What a pipelined call asks of its statement.
#[derive(Clone, Copy)]
enum Kind {
    Query,
    One,
    Opt,
    Execute,
}

enum Out {
    Rows(Vec<Row>),
    Row(Row),
    Opt(Option<Row>),
    Count(u64),
}

/// One attempt: the statement prepared once per connection (named statements) or its
/// parameter types once per pool (`statement_cache=off`), then run.
async fn once(
    conn: &PooledConnection,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    kind: Kind,
) -> Result<Out, Error> {
    let stmt = conn.prepare_cached(sql).await?;
    Ok(match kind {
        Kind::Query => Out::Rows(conn.query(&stmt, params).await?),
        Kind::One => Out::Row(conn.query_one(&stmt, params).await?),
        Kind::Opt => Out::Opt(conn.query_opt(&stmt, params).await?),
        Kind::Execute => Out::Count(conn.execute(&stmt, params).await?),
    })
}

/// The retry loop of [`super::run::run`] over a place on a shared connection instead of an
/// exclusive checkout.
async fn pipelined(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    kind: Kind,
) -> Result<Out, Error> {
    let mut attempts = CallAttempts::new(pool);
    let lanes = &pool.inner.lanes;
    loop {
        let wait = attempts.next_wait().map_err(|e| attempts.finish(e))?;
        let lease: Lease<'_> = match lanes.acquire(wait, |left| pool.get_timeout(left)).await {
            Some(Ok(lease)) => lease,
            Some(Err(e)) => return Err(attempts.finish(e)),
            None => {
                pool.inner.metrics.checkout_failed();
                return Err(attempts.finish(pool.acquire_timed_out(wait)));
            }
        };
        let now = Instant::now();
        let at = attempts.attempt_deadline(now);
        let limit = pool.inner.deadlines.sleep_until(now, at);
        let err = match deadline::timeout(limit, once(lease.conn(), sql, params, kind)).await {
            Some(Ok(out)) => {
                pool.record_ok();
                return Ok(out);
            }
            Some(Err(err)) => err,
            None => {
                // The statement's state on the connection is unknown and everything queued
                // behind it waits for it: the connection is closed, which fails the other
                // statements in flight on it (idempotent, so they are retried like this one).
                lease.conn().obj.monitor.close();
                attempt_timed_out(at.saturating_duration_since(now))
            }
        };
        drop(lease);
        if attempts.replay_after_switch(&err) {
            continue;
        }
        let class = classify::query(&err);
        if !class.is_retry() || !attempts.retry_after(class.reason).await {
            return Err(attempts.finish(err));
        }
    }
}

impl Pool {
    /// Runs an idempotent statement outside a transaction on a connection shared with other
    /// callers, and returns its rows: up to [`PoolConfig::pipeline_depth`] statements are in
    /// flight on one connection at once, pipelined by its client, so many callers need few
    /// server connections. The statement is prepared once per connection (with
    /// `statement_cache=off`, its parameter types once per pool).
    ///
    /// Retried as [`Pool::run`] retries its work, within the same [`RetryPolicy`]: when the
    /// connection is lost (every statement in flight on it fails and is retried on another)
    /// or the server asks for a retry. The statement may therefore run more than once: use
    /// these methods for reads and idempotent writes only; for other writes use
    /// [`Pool::transaction`]. Session state (`SET`, temporary tables, advisory locks) does
    /// not belong here either: the connection is shared; use [`Pool::get`].
    ///
    /// A shared connection is checked out of the pool for as long as statements are in
    /// flight on it (it is never handed out exclusively meanwhile) and returns to it when
    /// the last one ends. When every shared connection is at its depth, another is checked
    /// out while fewer than `max_size` are shared; else the call waits for room, within its
    /// retry deadline.
    ///
    /// [`PoolConfig::pipeline_depth`]: super::PoolConfig::pipeline_depth
    /// [`RetryPolicy`]: crate::RetryPolicy
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady::Error> {
    /// let rows = pool.query("SELECT id FROM users WHERE team = $1", &[&7i64]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        match pipelined(self, sql, params, Kind::Query).await? {
            Out::Rows(rows) => Ok(rows),
            _ => unreachable!("a query returns rows"),
        }
    }

    /// [`Pool::query`] for exactly one row (an error otherwise).
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        match pipelined(self, sql, params, Kind::One).await? {
            Out::Row(row) => Ok(row),
            _ => unreachable!("query_one returns a row"),
        }
    }

    /// [`Pool::query`] for at most one row (an error if more).
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        match pipelined(self, sql, params, Kind::Opt).await? {
            Out::Opt(row) => Ok(row),
            _ => unreachable!("query_opt returns an optional row"),
        }
    }

    /// [`Pool::query`] for a statement's count of affected rows. It is retried like any
    /// pipelined statement, possibly after it reached the server: call it only for
    /// idempotent writes (`UPDATE ... SET x = $1 WHERE id = $2`, `INSERT ... ON CONFLICT DO
    /// NOTHING`), never for one that must run once; use [`Pool::transaction`] for those.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        match pipelined(self, sql, params, Kind::Execute).await? {
            Out::Count(n) => Ok(n),
            _ => unreachable!("execute returns a count"),
        }
    }
}
