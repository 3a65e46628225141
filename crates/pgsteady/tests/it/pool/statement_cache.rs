//! `statement_cache` against a direct server: with `off` the query methods and
//! `prepare_cached` work with unnamed statements, no named statement is left on the
//! session, a caller's transaction is untouched by the type look-up, and a wrong parameter
//! count is a client-side error, not a "lost connection"; with `auto` a statement of ours
//! that vanished from the session switches the pool once and the call is replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use pgsteady::{StatementCache, StatementMode};
use pgsteady_testkit::Cluster;

use super::pool;

#[tokio::test]
async fn unnamed_statements_leave_nothing_on_the_session() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        b.max_size(1).statement_cache(StatementCache::Off)
    });
    let conn = pool.get().await.unwrap();
    assert!(conn.is_pooler_safe());
    let stmt = conn.prepare_cached("SELECT $1::int8 * 2").await.unwrap();
    assert_eq!(stmt.statement().map(|_| ()), None, "no named statement");
    for i in 0..3i64 {
        let doubled: i64 = conn.query_one(&stmt, &[&i]).await.unwrap().get(0);
        assert_eq!(doubled, 2 * i);
        let plus: i64 = conn
            .query_one("SELECT $1::int8 + 1", &[&i])
            .await
            .unwrap()
            .get(0);
        assert_eq!(plus, i + 1);
        assert_eq!(conn.execute("SELECT $1::text", &[&"x"]).await.unwrap(), 1);
    }
    let named: i64 = conn
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 0, "a named statement outlived its transaction");

    // The negative control: the default mode keeps one per cached statement.
    drop(conn);
    let named_pool = pool_named(&cluster);
    let conn = named_pool.get().await.unwrap();
    let stmt = conn.prepare_cached("SELECT $1::int8 * 2").await.unwrap();
    conn.query_one(&stmt, &[&1i64]).await.unwrap();
    let named: i64 = conn
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(named >= 1, "the control kept no named statement");
}

fn pool_named(cluster: &Cluster) -> pgsteady::Pool {
    pool(cluster, None, |b| b.max_size(1))
}

#[tokio::test]
async fn the_type_look_up_inside_a_transaction_leaves_it_intact() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        b.max_size(1).statement_cache(StatementCache::Off)
    });
    pool.run(async |c| {
        c.batch_execute("CREATE TABLE t (id int8)").await?;
        Ok(())
    })
    .await
    .unwrap();
    // A statement never seen before, first run inside a transaction that then rolls back.
    let result: Result<(), pgsteady::TransactionError> = pool
        .transaction(async |tx| {
            tx.execute("INSERT INTO t VALUES ($1)", &[&7i64]).await?;
            let n: i64 = tx
                .query_one("SELECT count(*) FROM t WHERE id = $1", &[&7i64])
                .await?
                .get(0);
            assert_eq!(n, 1, "the insert is visible inside its transaction");
            // A statement that fails makes the closure give up, so the transaction rolls
            // back (callers cannot make a `pgsteady::Error` of their own).
            tx.batch_execute("SELECT 1/0").await?;
            Ok(())
        })
        .await;
    assert!(result.is_err());
    let n: i64 = pool
        .run(async |c| Ok(c.query_one("SELECT count(*) FROM t", &[]).await?.get(0)))
        .await
        .unwrap();
    assert_eq!(n, 0, "the type look-up committed the caller's transaction");
}

#[tokio::test]
async fn a_wrong_parameter_count_is_a_client_error_not_a_lost_connection() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        b.max_size(1).statement_cache(StatementCache::Off)
    });
    let conn = pool.get().await.unwrap();
    let err = conn
        .query_one("SELECT $1::int4 + $2::int4", &[&1i32])
        .await
        .unwrap_err();
    let why = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        why.as_deref(),
        Some("expected 2 parameters but got 1"),
        "{err}"
    );
    assert!(
        !pgsteady::classify::reason_of(&err).is_connection_lost(),
        "{err}"
    );
    assert!(!conn.is_closed());
    let ok: i32 = conn
        .query_one("SELECT $1::int4 + $2::int4", &[&1i32, &2i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ok, 3);
}

/// Our statements vanish from the session (`DEALLOCATE ALL`, as a pooler's reset or a
/// transaction pooler's other server connection would have it): with `auto` (no setting) the
/// 26000 switches the pool to unnamed statements for good and `run` / `transaction` replay
/// the call once, with no error; with `on` (the negative control) the 26000 is the caller's.
#[tokio::test]
async fn auto_switches_once_when_our_statement_vanishes_and_replays_the_call() {
    const SQL: &str = "SELECT $1::int8 + 1";
    let cluster = Cluster::start().await.unwrap();
    for mode in [StatementCache::Auto, StatementCache::On] {
        let pool = pool(&cluster, None, |b| b.max_size(1).statement_cache(mode));
        let warm: i64 = pool
            .run(async move |conn| {
                Ok(conn
                    .query_one(&conn.prepare_cached(SQL).await?, &[&1i64])
                    .await?
                    .get(0))
            })
            .await
            .unwrap();
        assert_eq!(warm, 2);
        assert_eq!(pool.health().statement_mode, StatementMode::Named);

        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let run = pool
            .run(async move |conn| {
                if counted.fetch_add(1, Ordering::Relaxed) == 0 {
                    conn.batch_execute("DEALLOCATE ALL").await?;
                }
                let stmt = conn.prepare_cached(SQL).await?;
                Ok(conn.query_one(&stmt, &[&41i64]).await?.get::<_, i64>(0))
            })
            .await;

        let tx_calls = Arc::new(AtomicU32::new(0));
        let counted = tx_calls.clone();
        let tx = pool
            .transaction(async move |tx| {
                if counted.fetch_add(1, Ordering::Relaxed) == 0 {
                    tx.batch_execute("DEALLOCATE ALL").await?;
                }
                let stmt = tx.prepare_cached(SQL).await?;
                Ok(tx.query_one(&stmt, &[&1i64]).await?.get::<_, i64>(0))
            })
            .await;

        if mode == StatementCache::Auto {
            assert_eq!(run.unwrap(), 42);
            assert_eq!(calls.load(Ordering::Relaxed), 2, "replayed once");
            assert_eq!(
                pool.health().statement_mode,
                StatementMode::UnnamedAfterPoolerDetected
            );
            assert_eq!(
                pool.metrics().statement_mode,
                StatementMode::UnnamedAfterPoolerDetected
            );
            // After the switch nothing is named: the transaction's DEALLOCATE takes nothing
            // from it, and it runs once.
            assert_eq!(tx.unwrap(), 2);
            assert_eq!(tx_calls.load(Ordering::Relaxed), 1);
            let conn = pool.get().await.unwrap();
            assert!(conn.is_pooler_safe());
        } else {
            let err = run.unwrap_err();
            assert_eq!(
                err.code(),
                Some(&pgsteady::SqlState::INVALID_SQL_STATEMENT_NAME),
                "{err}"
            );
            assert_eq!(calls.load(Ordering::Relaxed), 1, "on never replays it");
            assert!(tx.is_err(), "the control's transaction met the same 26000");
            assert_eq!(
                pool.health().statement_mode,
                StatementMode::Named,
                "on never switches"
            );
        }
        pool.close(std::time::Duration::from_secs(5)).await;
    }
}

/// A column of a type that is not built in, met while learning a statement's parameter types
/// (`off`): tokio-postgres looks the type up with a named statement of its own, kept in its
/// client. Nothing named is left on the session, and the connection is retired.
#[tokio::test]
async fn a_type_look_up_while_learning_leaves_nothing_named_and_retires_the_connection() {
    let cluster = Cluster::start().await.unwrap();
    let pool = pool(&cluster, None, |b| {
        b.max_size(1).statement_cache(StatementCache::Off)
    });
    let conn = pool.get().await.unwrap();
    conn.batch_execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
        .await
        .unwrap();
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let rows = conn
        .query("SELECT $1::int8 AS n, 'ok'::mood AS m", &[&7i64])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 7);
    assert_eq!(
        rows[0].columns()[1].type_().name(),
        "mood",
        "the look-up happened"
    );
    let named: i64 = conn
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        named, 0,
        "tokio-postgres' type look-up statement outlived the transaction"
    );
    drop(conn);
    let conn = pool.get().await.unwrap();
    let next: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        next, pid,
        "the connection whose client lost its look-up statement was reused"
    );
}
