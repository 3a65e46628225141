//! Applying one migration, and what a failure says.

use std::time::{Duration, Instant};

use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, Transaction};

use super::history::HistoryTable;
use super::position::{Position, position_in};
use super::source::{Migration, NO_TRANSACTION};
use crate::{Error, ErrorKind, Failure};
use pgsteady::classify;

/// Builds the error for `m` failing with `err`, with the kind chosen by what is known about
/// the outcome.
fn failure(m: &Migration, err: tokio_postgres::Error, kind: ErrorKind, message: String) -> Error {
    let position = match err.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(p)) => position_in(m.sql(), *p),
        _ => None,
    };
    failure_at(m, err, kind, message, position)
}

/// A failure of one of pgsteady's own statements (the history row, the transaction id) while
/// applying `m`: the server's position points into pgsteady's SQL, not the file, so none is
/// given (a file dropping the history table would be blamed at `0002.sql:1:8`).
fn own_failure(m: &Migration, err: tokio_postgres::Error, what: &str) -> Error {
    let reason = classify::reason_of(&err);
    if reason.is_connection_lost() {
        return failure_at(
            m,
            err,
            ErrorKind::from_reason(reason),
            "connection lost while applying a migration; it was rolled back".into(),
            None,
        );
    }
    failure_at(
        m,
        err,
        ErrorKind::Migration,
        format!(
            "migration failed: pgsteady's own {what} failed after the file ran (did the file \
             drop, rename or alter the history table?); it was rolled back"
        ),
        None,
    )
}

fn failure_at(
    m: &Migration,
    err: tokio_postgres::Error,
    kind: ErrorKind,
    message: String,
    position: Option<Position>,
) -> Error {
    let reason = classify::reason_of(&err);
    Error::new(kind, message)
        .with_reason(reason)
        .with_failure(Failure {
            version: m.version(),
            file: m.display_path(),
            position,
            source: Some(err),
        })
}

fn failure_without_source(m: &Migration, kind: ErrorKind, message: String) -> Error {
    Error::new(kind, message).with_failure(Failure {
        version: m.version(),
        file: m.display_path(),
        position: None,
        source: None,
    })
}

/// Applies one migration and records it. Returns how long its SQL took.
pub(crate) async fn apply(
    client: &mut Client,
    table: &HistoryTable,
    m: &Migration,
) -> Result<Duration, Error> {
    if m.is_transactional() {
        apply_in_transaction(client, table, m, None)
            .await
            .map(|took| took.unwrap_or_default())
    } else {
        apply_alone(client, table, m).await
    }
}

/// The lock a transaction takes for itself (transaction pooling: no session lock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct XactLock {
    pub(crate) key: i64,
    pub(crate) timeout: Option<Duration>,
}

/// Applies one transactional migration under a transaction-level lock taken first in its
/// own transaction, with the history re-read under it: `None` when another runner applied
/// it meanwhile (nothing is done).
pub(crate) async fn apply_xact_locked(
    client: &mut Client,
    table: &HistoryTable,
    m: &Migration,
    lock: XactLock,
) -> Result<Option<Duration>, Error> {
    apply_in_transaction(client, table, m, Some(lock)).await
}

/// In one transaction: with `lock`, the transaction-level lock and a look at the history
/// (another runner may have applied the file); the history row first (so two runners that
/// somehow bypassed the lock collide on its primary key before either runs the file), the
/// file, the timing, COMMIT. `None`: already applied, nothing done.
async fn apply_in_transaction(
    client: &mut Client,
    table: &HistoryTable,
    m: &Migration,
    lock: Option<XactLock>,
) -> Result<Option<Duration>, Error> {
    let lost = |e: tokio_postgres::Error| {
        let reason = classify::reason_of(&e);
        if reason.is_connection_lost() {
            failure(
                m,
                e,
                ErrorKind::from_reason(reason),
                "connection lost while applying a migration; it was rolled back".into(),
            )
        } else {
            failure(m, e, ErrorKind::Migration, "migration failed".into())
        }
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| own_failure(m, e, "BEGIN"))?;
    if let Some(lock) = lock {
        super::history::xact_lock(&tx, lock.key, lock.timeout).await?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE version = $1)",
                    table.sql()
                ),
                &[&m.version()],
            )
            .await
            .map_err(lost)?;
        let applied: bool =
            match crate::error::column(&row, 0, "exists", "reading the migration history") {
                Ok(applied) => applied,
                Err(e) => {
                    rollback(tx).await;
                    return Err(e);
                }
            };
        if applied {
            rollback(tx).await;
            return Ok(None);
        }
    }
    let row = tx
        .query_one("SELECT txid_current()", &[])
        .await
        .map_err(|e| own_failure(m, e, "transaction id query"))?;
    let xid: i64 = match crate::error::column(&row, 0, "txid_current", "the transaction id query") {
        Ok(xid) => xid,
        Err(e) => {
            rollback(tx).await;
            return Err(e);
        }
    };
    tx.execute(
        &format!(
            "INSERT INTO {} (version, name, checksum) VALUES ($1, $2, $3)",
            table.sql()
        ),
        &[&m.version(), &m.name(), &m.checksum().to_string()],
    )
    .await
    .map_err(|e| own_failure(m, e, "history insert"))?;
    let start = Instant::now();
    if let Err(e) = tx.batch_execute(m.sql()).await {
        let err = if e.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION) {
            let hint = format!(
                "migration failed: a statement in it cannot run inside a transaction; put it \
                 alone in its own file whose first line is `-- {NO_TRANSACTION}`"
            );
            failure(m, e, ErrorKind::Migration, hint)
        } else {
            lost(e)
        };
        rollback(tx).await;
        return Err(err);
    }
    let took = start.elapsed();
    // A COMMIT, ROLLBACK or END in the file ends our transaction; what follows then runs in
    // autocommit. The transaction id tells, whatever the file's SQL looked like.
    let xid_after = match tx.query_one("SELECT txid_current()", &[]).await {
        Ok(row) => crate::error::column::<i64>(&row, 0, "txid_current", "the transaction id query"),
        Err(e) => Err(own_failure(m, e, "transaction id query")),
    };
    let xid_after = match xid_after {
        Ok(xid) => xid,
        Err(err) => {
            rollback(tx).await;
            return Err(err);
        }
    };
    if xid_after != xid {
        rollback(tx).await;
        return Err(failure_without_source(
            m,
            ErrorKind::Migration,
            format!(
                "migration ended its own transaction (COMMIT, ROLLBACK or END in the file), so it \
                 may be partly applied; remove those statements, or mark the file \
                 `-- {NO_TRANSACTION}`"
            ),
        ));
    }
    tx.execute(
        &format!(
            "UPDATE {} SET execution_ms = $2, applied_at = clock_timestamp() WHERE version = $1",
            table.sql()
        ),
        &[&m.version(), &(took.as_millis() as i64)],
    )
    .await
    .map_err(|e| own_failure(m, e, "history update"))?;
    tx.commit().await.map_err(|e| {
        let reason = classify::reason_of(&e);
        if reason.is_connection_lost() {
            failure(
                m,
                e,
                ErrorKind::CommitOutcomeUnknown,
                "connection lost while committing a migration: it may or may not be applied \
                 (the history table tells; the next run reads it)"
                    .into(),
            )
        } else {
            // e.g. a deferred constraint failing at COMMIT: rolled back.
            failure(
                m,
                e,
                ErrorKind::Migration,
                "migration failed at COMMIT".into(),
            )
        }
    })?;
    Ok(Some(took))
}

/// Outside a transaction: the file as one simple query, then the history row. Several
/// statements in one simple query run as one implicit transaction, so a multi-statement file
/// is still all-or-nothing, and statements that refuse transaction blocks (CREATE INDEX
/// CONCURRENTLY) must be alone in their file.
async fn apply_alone(
    client: &mut Client,
    table: &HistoryTable,
    m: &Migration,
) -> Result<Duration, Error> {
    let start = Instant::now();
    if let Err(e) = client.batch_execute(m.sql()).await {
        let reason = classify::reason_of(&e);
        let message = if reason.is_connection_lost() {
            "connection lost while running a migration outside a transaction: it may be \
             partly applied (e.g. an INVALID index); check, then run again"
        } else {
            "migration failed"
        };
        return Err(failure(m, e, ErrorKind::Migration, message.into()));
    }
    let took = start.elapsed();
    client
        .execute(
            &format!(
                "INSERT INTO {} (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)",
                table.sql()
            ),
            &[
                &m.version(),
                &m.name(),
                &m.checksum().to_string(),
                &(took.as_millis() as i64),
            ],
        )
        .await
        .map_err(|e| {
            failure(
                m,
                e,
                ErrorKind::Migration,
                "migration ran outside a transaction but could not be recorded: the next run \
                 runs it again"
                    .into(),
            )
        })?;
    Ok(took)
}

async fn rollback(tx: Transaction<'_>) {
    let _ = tx.rollback().await;
}
