//! [`Pool::transaction`]: writes replayed only when they certainly did not commit, and a
//! COMMIT lost in flight resolved with `txid_status()` instead of guessed.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use tokio_postgres::error::Severity;
use tokio_postgres::types::{BorrowToSql, ToSql, Type};
use tokio_postgres::{Row, SimpleQueryMessage};

use super::client::{CachedStatement, GenericClient, Query, RowStream};
use super::resolve::{self, ORIGIN_SQL, Origin, Verdict, column};
use super::run::{CallAttempts, attempt_timed_out};
use super::{Pool, PooledConnection};
use crate::classify::{self, Reason};
use crate::{Error, ErrorKind};

/// Why [`Pool::transaction`] failed, telling apart "nothing happened" from "it may have
/// happened": match on it rather than retrying a write yourself.
#[derive(Debug)]
pub enum TransactionError {
    /// The transaction did not commit: nothing it did is in the database. The error is the
    /// last one seen (the closure's own, a permanent server error, or running out of
    /// attempts or time).
    NotCommitted(Error),
    /// The connection was lost while COMMIT was in flight, and whether it committed could not
    /// be learned before the deadline. Do not replay it blindly: check its effects, or its
    /// transaction id with `txid_status()`.
    OutcomeUnknown(CommitOutcomeUnknown),
}

/// The transaction whose COMMIT outcome is unknown.
#[derive(Debug, Clone)]
pub struct CommitOutcomeUnknown {
    /// Its transaction id (as `txid_current()` returns it).
    pub xid: i64,
    /// Why it could not be resolved.
    pub error: Error,
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The error itself is the source, so a report walking the chain prints it once;
            // `{:#}` prints it here too.
            TransactionError::NotCommitted(e) if f.alternate() => {
                write!(f, "transaction not committed: {e:#}")
            }
            TransactionError::NotCommitted(_) => f.write_str("transaction not committed"),
            TransactionError::OutcomeUnknown(u) if f.alternate() => write!(
                f,
                "commit outcome unknown for transaction {}: {:#}",
                u.xid, u.error
            ),
            TransactionError::OutcomeUnknown(u) => {
                write!(f, "commit outcome unknown for transaction {}", u.xid)
            }
        }
    }
}

impl std::error::Error for TransactionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransactionError::NotCommitted(e) => Some(e),
            TransactionError::OutcomeUnknown(u) => Some(&u.error),
        }
    }
}

impl From<TransactionError> for Error {
    fn from(err: TransactionError) -> Self {
        match err {
            TransactionError::NotCommitted(e) => e,
            TransactionError::OutcomeUnknown(u) => Error::new(
                ErrorKind::CommitOutcomeUnknown,
                format!("commit outcome unknown for transaction {}", u.xid),
            )
            .with_source(u.error),
        }
    }
}

/// What resolving a transaction id found.
enum Resolution {
    Committed,
    Aborted,
    Unknown(Error),
}

/// [`Pool::transaction`].
pub(super) async fn run<T, F>(pool: &Pool, mut work: F) -> Result<T, TransactionError>
where
    F: AsyncFnMut(&Transaction) -> Result<T, Error>,
{
    let mut attempts = CallAttempts::new(pool);
    loop {
        let conn = attempts
            .checkout()
            .await
            .map_err(|e| TransactionError::NotCommitted(attempts.finish(e)))?;
        let limit = attempts.attempt_limit();
        let commit_timeout = pool.inner.config.retry.commit_timeout;
        let tx = Transaction { conn };
        let outcome = {
            let before_commit = async {
                tx.conn.batch_execute("BEGIN").await?;
                let value = work(&tx).await?;
                let row = tx.conn.query_one(ORIGIN_SQL, &[]).await?;
                let origin = Origin::from_row(&row)?;
                Ok::<_, Error>((value, origin, column::<Option<i64>>(&row, 1)?))
            };
            match tokio::time::timeout(limit, before_commit).await {
                Ok(Ok((value, origin, xid))) => {
                    commit(&tx, value, origin, xid, commit_timeout).await
                }
                Ok(Err(e)) => {
                    rollback(&tx, limit).await;
                    Attempt::NotCommitted(e)
                }
                Err(_) => Attempt::NotCommitted(attempt_timed_out(limit)),
            }
        };
        let conn = tx.conn;
        let err = match outcome {
            Attempt::Committed(value) => {
                pool.record_ok();
                return Ok(value);
            }
            Attempt::NotCommitted(err) => {
                if conn.is_closed() || err.is_timeout() {
                    conn.discard();
                }
                err
            }
            Attempt::InDoubt {
                value,
                xid,
                origin,
                err,
            } => {
                conn.discard();
                match resolve_outcome(pool, xid, &origin, &attempts).await {
                    Resolution::Committed => {
                        pool.record_ok();
                        return Ok(value);
                    }
                    Resolution::Aborted => err,
                    Resolution::Unknown(why) => {
                        return Err(TransactionError::OutcomeUnknown(CommitOutcomeUnknown {
                            xid,
                            error: attempts.finish(why),
                        }));
                    }
                }
            }
        };
        // The sign of a transaction pooler (statement_cache=auto) failed a statement of the
        // transaction, which was then rolled back: it certainly did not commit.
        if attempts.replay_after_switch(&err) {
            continue;
        }
        let class = classify::query(&err);
        if !class.is_retry() || !attempts.retry_after(class.reason).await {
            return Err(TransactionError::NotCommitted(attempts.finish(err)));
        }
    }
}

/// Learns whether transaction `xid` (run at `origin`) committed, on a new connection,
/// and counts (and tells the observer) how it was settled.
async fn resolve_outcome(
    pool: &Pool,
    xid: i64,
    origin: &Origin,
    attempts: &CallAttempts<'_>,
) -> Resolution {
    let metrics = &pool.inner.metrics;
    let mut last = None;
    loop {
        let remaining = attempts.remaining();
        if remaining.is_zero() {
            let err = attempts.out_of_time(last);
            metrics.resolved(origin.unanswered(xid, Some(format!("{err:#}"))));
            return Resolution::Unknown(err);
        }
        // Checkouts wait through the outage; keep asking until the deadline.
        let conn = match pool.get_timeout(remaining).await {
            Ok(conn) => conn,
            Err(e) if !e.is_transient() => {
                metrics.resolved(origin.unanswered(xid, Some(format!("{e:#}"))));
                return Resolution::Unknown(e);
            }
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let found = tokio::time::timeout(
            remaining.min(pool.inner.config.validation_timeout),
            resolve::verdict(&conn, xid, origin, &pool.inner.restarts),
        )
        .await;
        let found = match found {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                last = Some(e);
                conn.discard();
                continue;
            }
            Err(_) => {
                last = Some(attempt_timed_out(pool.inner.config.validation_timeout));
                conn.discard();
                continue;
            }
        };
        if found.verdict == Verdict::Committed {
            // Committed on this server is not yet what PostgreSQL acknowledges: with
            // synchronous replication a COMMIT returns only once the synchronous
            // standbys have it, and a commit settled here (its backend still waiting,
            // or replayed by crash recovery) may have skipped that wait; a failover
            // would then lose it. A commit of our own after it waits for the same
            // confirmation, and WAL is confirmed in order.
            match tokio::time::timeout(attempts.remaining(), confirm_durable(&conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    last = Some(e);
                    conn.discard();
                    continue;
                }
                Err(_) => {
                    last = Some(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "transaction {xid} committed on the server, but its synchronous \
                             standbys did not confirm it within the deadline"
                        ),
                    ));
                    conn.discard();
                    continue;
                }
            }
        }
        if let Some(resolution) = found.resolution(xid, origin) {
            metrics.resolved(resolution);
        }
        match found.verdict {
            Verdict::Committed => return Resolution::Committed,
            Verdict::Aborted => return Resolution::Aborted,
            Verdict::InProgress => {
                // Same server, still open: its backend never got (or never finished) the
                // COMMIT. End it, so the answer becomes final.
                let _ = conn
                    .query_one("SELECT pg_terminate_backend($1)", &[&origin.pid])
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Verdict::Unknown(why) => return Resolution::Unknown(resolve::unknown(why)),
        }
    }
}

/// Returns once everything the server has written so far is as durable as its settings
/// promise for a COMMIT: a transaction of our own commits, and its COMMIT waits for the
/// synchronous standbys (if any) as every COMMIT does. It must write WAL: PostgreSQL skips
/// that wait for a transaction that only took an id (`txid_current()` alone commits
/// without waiting). A temporary table's catalog rows are WAL-logged, need no table of the
/// application's, and are gone at its COMMIT.
async fn confirm_durable(conn: &PooledConnection) -> Result<(), Error> {
    conn.batch_execute(
        "BEGIN; CREATE TEMPORARY TABLE pgsteady_commit_confirmed () ON COMMIT DROP; COMMIT",
    )
    .await
    .map_err(Error::from)
}

/// The result of one transaction attempt.
enum Attempt<T> {
    Committed(T),
    /// Certainly not committed (rolled back, or never reached COMMIT).
    NotCommitted(Error),
    /// COMMIT was sent and its outcome is unknown.
    InDoubt {
        value: T,
        xid: i64,
        origin: Origin,
        err: Error,
    },
}

/// A transaction run by [`Pool::transaction`]: derefs to its [`PooledConnection`] (and so to
/// a tokio-postgres client, with [`PooledConnection::prepare_cached`]). The pool sends
/// `BEGIN` before the closure and `COMMIT` after it; do not send them yourself. Set the
/// isolation level with `SET TRANSACTION ISOLATION LEVEL ...` as the first statement.
pub struct Transaction {
    conn: PooledConnection,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("conn", &self.conn)
            .finish()
    }
}

impl Deref for Transaction {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        &self.conn
    }
}

/// Rolls back after an error, leaving the connection clean for the pool; a failing
/// ROLLBACK means it is dead, and the pool will see that.
async fn rollback(tx: &Transaction, limit: Duration) {
    if !tx.conn.is_closed() {
        let _ = tokio::time::timeout(limit, tx.conn.batch_execute("ROLLBACK")).await;
    }
}

/// Sends COMMIT, bounded by `commit_timeout`, after which the outcome is in doubt.
async fn commit<T>(
    tx: &Transaction,
    value: T,
    origin: Origin,
    xid: Option<i64>,
    commit_timeout: Duration,
) -> Attempt<T> {
    let err: Error =
        match tokio::time::timeout(commit_timeout, tx.conn.batch_execute("COMMIT")).await {
            Ok(Ok(())) => return Attempt::Committed(value),
            Ok(Err(e)) if rejected_commit(&e) && !tx.conn.is_closed() => {
                return Attempt::NotCommitted(e.into());
            }
            Ok(Err(e)) => e.into(),
            Err(_) => Error::new(
                ErrorKind::Timeout,
                format!("no reply to COMMIT within {commit_timeout:?}"),
            )
            .with_reason(Reason::TimedOut),
        };
    match xid {
        // No transaction id: it wrote nothing, so losing its COMMIT lost nothing.
        None => Attempt::Committed(value),
        Some(xid) => Attempt::InDoubt {
            value,
            xid,
            origin,
            err,
        },
    }
}

/// A COMMIT the server answered with an ordinary error (serialization failure, deferred
/// constraint...): the session is alive and the transaction was rolled back. A FATAL error
/// or a lost connection says nothing about whether the commit happened.
fn rejected_commit(err: &tokio_postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(Severity::Error))
}

impl super::client::sealed::Sealed for Transaction {}

impl GenericClient for Transaction {
    async fn prepare_cached(&self, sql: &str) -> Result<CachedStatement, Error> {
        self.conn.prepare_cached(sql).await
    }

    async fn prepare(&self, sql: &str) -> Result<CachedStatement, tokio_postgres::Error> {
        self.conn.prepare(sql).await
    }

    async fn prepare_typed(
        &self,
        sql: &str,
        parameter_types: &[Type],
    ) -> Result<CachedStatement, tokio_postgres::Error> {
        self.conn.prepare_typed(sql, parameter_types).await
    }

    async fn query<Q>(
        &self,
        statement: &Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        Q: ?Sized + Query,
    {
        self.conn.query(statement, params).await
    }

    async fn query_one<Q>(
        &self,
        statement: &Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        Q: ?Sized + Query,
    {
        self.conn.query_one(statement, params).await
    }

    async fn query_opt<Q>(
        &self,
        statement: &Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        Q: ?Sized + Query,
    {
        self.conn.query_opt(statement, params).await
    }

    async fn query_raw<Q, P, I>(
        &self,
        statement: &Q,
        params: I,
    ) -> Result<RowStream<'_>, tokio_postgres::Error>
    where
        Q: ?Sized + Query,
        P: BorrowToSql + Send,
        I: IntoIterator<Item = P> + Send,
        I::IntoIter: ExactSizeIterator + Send,
    {
        self.conn.query_raw(statement, params).await
    }

    async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.conn.query_typed(sql, params).await
    }

    async fn execute<Q>(
        &self,
        statement: &Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        Q: ?Sized + Query,
    {
        self.conn.execute(statement, params).await
    }

    async fn simple_query(
        &self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        self.conn.simple_query(query).await
    }

    async fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
        self.conn.batch_execute(query).await
    }

    fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
}
