//! The pools pgsteady is compared with, each with its defaults except the pool size, and
//! each caching its prepared statement per connection (like for like: a client that
//! re-prepares per call would be measuring the wrong thing).

use std::borrow::Cow;

use pgsteady_testkit::workload::{Classify, ErrorClass, Workload};
use tokio_postgres::{Client, NoTls, Statement};

use crate::subject::{BoxError, ClientKind, Closing, QUERY, Subject, Target};

// ---------------------------------------------------------------------------------------
// deadpool-postgres

struct Deadpool(deadpool_postgres::Pool);

/// deadpool-postgres: `Manager::new` (fast recycling: `is_closed()` only), `max_size`,
/// `prepare_cached`.
pub(crate) fn deadpool(target: &Target) -> Result<Box<dyn Subject>, BoxError> {
    let manager = deadpool_postgres::Manager::new(target.pg_config(), NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(target.pool_size)
        .build()?;
    Ok(Box::new(Deadpool(pool)))
}

fn deadpool_class(err: &deadpool_postgres::PoolError) -> ErrorClass {
    match err {
        deadpool_postgres::PoolError::Timeout(_) => ErrorClass::TIMEOUT,
        deadpool_postgres::PoolError::Backend(e) => e.class(),
        deadpool_postgres::PoolError::Closed => ErrorClass::new_static("pool-closed"),
        other => ErrorClass::of(other),
    }
}

impl Subject for Deadpool {
    fn kind(&self) -> ClientKind {
        ClientKind::Deadpool
    }

    fn start(&self, workers: usize) -> Workload {
        Workload::start(workers, |_| {
            let pool = self.0.clone();
            move || {
                let pool = pool.clone();
                async move {
                    let client = pool.get().await.map_err(|e| deadpool_class(&e))?;
                    let statement = client.prepare_cached(QUERY).await.map_err(|e| e.class())?;
                    client
                        .query_one(&statement, &[])
                        .await
                        .map_err(|e| e.class())?;
                    Ok::<(), ErrorClass>(())
                }
            }
        })
    }

    fn close(self: Box<Self>) -> Closing {
        self.0.close();
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------------
// bb8

/// bb8-postgres' manager, with a slot per connection for the prepared statement (its
/// connection type is a bare `Client`, which has nowhere to keep one).
struct CachingManager(bb8_postgres::PostgresConnectionManager<NoTls>);

struct CachedClient {
    client: Client,
    statement: Option<Statement>,
}

impl bb8::ManageConnection for CachingManager {
    type Connection = CachedClient;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<CachedClient, tokio_postgres::Error> {
        let client = self.0.connect().await?;
        Ok(CachedClient {
            client,
            statement: None,
        })
    }

    async fn is_valid(&self, conn: &mut CachedClient) -> Result<(), tokio_postgres::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut CachedClient) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

struct Bb8(bb8::Pool<CachingManager>);

/// bb8: `Pool::builder().max_size(n)` with its defaults (test on checkout, 30 s connection
/// timeout, retrying connection attempts).
pub(crate) async fn bb8(target: &Target) -> Result<Box<dyn Subject>, BoxError> {
    let manager = CachingManager(bb8_postgres::PostgresConnectionManager::new(
        target.pg_config(),
        NoTls,
    ));
    let pool = bb8::Pool::builder()
        .max_size(u32::try_from(target.pool_size)?)
        .build(manager)
        .await?;
    Ok(Box::new(Bb8(pool)))
}

fn bb8_class(err: &bb8::RunError<tokio_postgres::Error>) -> ErrorClass {
    match err {
        bb8::RunError::User(e) => e.class(),
        bb8::RunError::TimedOut => ErrorClass::TIMEOUT,
    }
}

impl Subject for Bb8 {
    fn kind(&self) -> ClientKind {
        ClientKind::Bb8
    }

    fn start(&self, workers: usize) -> Workload {
        Workload::start(workers, |_| {
            let pool = self.0.clone();
            move || {
                let pool = pool.clone();
                async move {
                    let mut conn = pool.get().await.map_err(|e| bb8_class(&e))?;
                    let conn = &mut *conn;
                    if conn.statement.is_none() {
                        let statement = conn.client.prepare(QUERY).await.map_err(|e| e.class())?;
                        conn.statement = Some(statement);
                    }
                    let statement = conn.statement.as_ref().expect("prepared above");
                    conn.client
                        .query_one(statement, &[])
                        .await
                        .map_err(|e| e.class())?;
                    Ok::<(), ErrorClass>(())
                }
            }
        })
    }

    fn close(self: Box<Self>) -> Closing {
        // bb8 closes idle connections when the last handle to the pool is dropped.
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------------
// sqlx

struct Sqlx(sqlx::PgPool, ClientKind);

/// sqlx: `PgPoolOptions::new().max_connections(n)` with its defaults (test before acquire,
/// 30 s acquire timeout, persistent statements cached per connection).
/// With `no_cache`, `statement_cache_capacity(0)`: what sqlx documents for transaction
/// poolers (statements are prepared unnamed for each call).
pub(crate) fn sqlx(target: &Target, no_cache: bool) -> Result<Box<dyn Subject>, BoxError> {
    let mut options = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host(&target.host)
        .port(target.port)
        .username(&target.user)
        .password(&target.password)
        .database(&target.dbname);
    if no_cache {
        options = options.statement_cache_capacity(0);
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(target.pool_size)?)
        .connect_lazy_with(options);
    let kind = if no_cache {
        ClientKind::SqlxNoCache
    } else {
        ClientKind::Sqlx
    };
    Ok(Box::new(Sqlx(pool, kind)))
}

/// sqlx's error as a class: the SQLSTATE of a database error, the kind of an I/O error,
/// its pool timeout; anything else by the error's source chain.
fn sqlx_class(err: &sqlx::Error) -> ErrorClass {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(Cow::Borrowed(code)) => ErrorClass::sqlstate(code),
            Some(Cow::Owned(code)) => ErrorClass::sqlstate(&code),
            None => ErrorClass::OTHER,
        },
        sqlx::Error::Io(io) => ErrorClass::of(io),
        sqlx::Error::PoolTimedOut => ErrorClass::TIMEOUT,
        sqlx::Error::PoolClosed => ErrorClass::new_static("pool-closed"),
        sqlx::Error::Protocol(_) => ErrorClass::new_static("protocol"),
        other => ErrorClass::of(other),
    }
}

impl Subject for Sqlx {
    fn kind(&self) -> ClientKind {
        self.1
    }

    fn start(&self, workers: usize) -> Workload {
        Workload::start(workers, |_| {
            let pool = self.0.clone();
            move || {
                let pool = pool.clone();
                async move {
                    let mut conn = pool.acquire().await.map_err(|e| sqlx_class(&e))?;
                    sqlx::query(QUERY)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| sqlx_class(&e))?;
                    Ok::<(), ErrorClass>(())
                }
            }
        })
    }

    fn close(self: Box<Self>) -> Closing {
        Box::pin(async move { self.0.close().await })
    }
}
