//! `statement_cache=off` (issue 17) against a direct server: the query methods and
//! `prepare_cached` work with unnamed statements, no named statement is left on the
//! session, a caller's transaction is untouched by the type look-up, and a wrong parameter
//! count is a client-side error, not a "lost connection".

use pgsteady::StatementCache;
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
