//! The writing clients: one transaction `BEGIN; INSERT (key); COMMIT` per call, each given
//! the same multi-host URL (`target_session_attrs=read-write`).

use pgsteady::{Pool, TransactionError};
use pgsteady_testkit::workload::{Classify, ErrorClass};
use tokio_postgres::{Client, NoTls};

use crate::subject::BoxError;

/// The statement every write runs, inside a transaction.
pub const INSERT: &str = "INSERT INTO writes (key) VALUES ($1)";

/// Which client writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum WriteClient {
    /// `pgsteady::Pool::transaction`: retried while it provably did not commit, an in-doubt
    /// COMMIT settled on the server reached next.
    PgsteadyTransaction,
    /// `pgsteady::Pool::get()` + `BEGIN` / `INSERT` / `COMMIT` on the pooled connection
    /// (`ROLLBACK` after a failed `INSERT`): nothing retried.
    PgsteadyGet,
    /// deadpool-postgres with its defaults, a `tokio_postgres::Transaction` per write.
    Deadpool,
    /// bb8 + bb8-postgres with their defaults, a `tokio_postgres::Transaction` per write.
    Bb8,
    /// One tokio-postgres connection per worker, reconnected (no back-off) after any error.
    Naive,
}

impl WriteClient {
    /// Every client, in report order.
    pub const ALL: [WriteClient; 5] = [
        WriteClient::PgsteadyTransaction,
        WriteClient::PgsteadyGet,
        WriteClient::Deadpool,
        WriteClient::Bb8,
        WriteClient::Naive,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            WriteClient::PgsteadyTransaction => "pgsteady transaction()",
            WriteClient::PgsteadyGet => "pgsteady get() + tx",
            WriteClient::Deadpool => "deadpool-postgres",
            WriteClient::Bb8 => "bb8-postgres",
            WriteClient::Naive => "naive tokio-postgres",
        }
    }

    /// Why this client cannot run in this build, if it cannot.
    pub fn unavailable(self) -> Option<&'static str> {
        match self {
            WriteClient::Deadpool | WriteClient::Bb8 if !cfg!(feature = "peers") => {
                Some("built without the `peers` feature")
            }
            _ => None,
        }
    }

    /// Builds the client for `url` with at most `pool_size` connections (pools connect on
    /// first use, bb8 included: no `min_idle`).
    pub(crate) async fn build(self, url: &str, pool_size: usize) -> Result<Writer, BoxError> {
        if let Some(why) = self.unavailable() {
            return Err(format!("{}: {why}", self.name()).into());
        }
        let pg_config = || url.parse::<tokio_postgres::Config>();
        Ok(match self {
            WriteClient::PgsteadyTransaction | WriteClient::PgsteadyGet => {
                let pool = Pool::builder(pgsteady::Config::parse(url)?)
                    .max_size(pool_size)
                    .build()?;
                Writer::Pgsteady {
                    pool,
                    transaction: self == WriteClient::PgsteadyTransaction,
                }
            }
            #[cfg(feature = "peers")]
            WriteClient::Deadpool => {
                let manager = deadpool_postgres::Manager::new(pg_config()?, NoTls);
                Writer::Deadpool(
                    deadpool_postgres::Pool::builder(manager)
                        .max_size(pool_size)
                        .build()?,
                )
            }
            #[cfg(feature = "peers")]
            WriteClient::Bb8 => {
                let manager = bb8_postgres::PostgresConnectionManager::new(pg_config()?, NoTls);
                Writer::Bb8(
                    bb8::Pool::builder()
                        .max_size(u32::try_from(pool_size)?)
                        .build(manager)
                        .await?,
                )
            }
            WriteClient::Naive => Writer::Naive(Box::new(pg_config()?)),
            #[cfg(not(feature = "peers"))]
            _ => unreachable!("checked by unavailable()"),
        })
    }
}

impl std::fmt::Display for WriteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// What the caller was told about a write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// It did not commit: pgsteady's `NotCommitted`, or for a plain client an error before
    /// `COMMIT` was sent.
    NotCommitted,
    /// It may have committed: pgsteady's `OutcomeUnknown`, or for a plain client an error
    /// while `COMMIT` was in flight (including one the server answered: a backend terminated
    /// while waiting for its synchronous standby has already committed locally), or the call
    /// outlived the benchmark's bound.
    Unknown,
}

/// A failed write as its caller saw it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// By SQLSTATE, I/O kind or the client's own kind.
    pub class: ErrorClass,
    /// What the caller can conclude.
    pub told: Told,
}

impl Failure {
    fn not_committed(class: ErrorClass) -> Failure {
        Failure {
            class,
            told: Told::NotCommitted,
        }
    }

    fn unknown(class: ErrorClass) -> Failure {
        Failure {
            class,
            told: Told::Unknown,
        }
    }
}

/// A built client, shared by the workers.
pub(crate) enum Writer {
    Pgsteady {
        pool: Pool,
        transaction: bool,
    },
    #[cfg(feature = "peers")]
    Deadpool(deadpool_postgres::Pool),
    #[cfg(feature = "peers")]
    Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>),
    // Boxed: a Config is ten times the size of the other variants.
    Naive(Box<tokio_postgres::Config>),
}

/// `BEGIN; INSERT; COMMIT` through a tokio-postgres transaction (rolled back on drop).
async fn plain_transaction(client: &mut Client, key: &str) -> Result<(), Failure> {
    let nc = |e: tokio_postgres::Error| Failure::not_committed(e.class());
    let tx = client.transaction().await.map_err(nc)?;
    tx.execute(INSERT, &[&key]).await.map_err(nc)?;
    tx.commit().await.map_err(|e| Failure::unknown(e.class()))
}

impl Writer {
    /// One write of `key`. `naive` is the worker's own connection for [`Writer::Naive`]
    /// (dropped after an error, so the next call reconnects).
    pub(crate) async fn write(&self, naive: &mut Option<Client>, key: &str) -> Result<(), Failure> {
        match self {
            Writer::Pgsteady {
                pool,
                transaction: true,
            } => {
                let k = key.to_owned();
                pool.transaction(async move |tx| {
                    tx.execute(INSERT, &[&k]).await?;
                    Ok(())
                })
                .await
                .map_err(|e| match e {
                    TransactionError::NotCommitted(e) => {
                        Failure::not_committed(crate::ours::class(&e))
                    }
                    TransactionError::OutcomeUnknown(u) => {
                        Failure::unknown(crate::ours::class(&u.error))
                    }
                })
            }
            Writer::Pgsteady { pool, .. } => {
                let conn = pool
                    .get()
                    .await
                    .map_err(|e| Failure::not_committed(crate::ours::class(&e)))?;
                let nc = |e: tokio_postgres::Error| Failure::not_committed(e.class());
                conn.batch_execute("BEGIN").await.map_err(nc)?;
                if let Err(e) = conn.execute(INSERT, &[&key]).await {
                    // What a careful caller does; if the session is gone this fails at once.
                    let _ = conn.batch_execute("ROLLBACK").await;
                    return Err(nc(e));
                }
                conn.batch_execute("COMMIT")
                    .await
                    .map_err(|e| Failure::unknown(e.class()))
            }
            #[cfg(feature = "peers")]
            Writer::Deadpool(pool) => {
                let mut conn = pool.get().await.map_err(|e| {
                    Failure::not_committed(match &e {
                        deadpool_postgres::PoolError::Timeout(_) => ErrorClass::TIMEOUT,
                        deadpool_postgres::PoolError::Backend(e) => e.class(),
                        other => ErrorClass::of(other),
                    })
                })?;
                plain_transaction(&mut conn, key).await
            }
            #[cfg(feature = "peers")]
            Writer::Bb8(pool) => {
                let mut conn = pool.get().await.map_err(|e| {
                    Failure::not_committed(match &e {
                        bb8::RunError::User(e) => e.class(),
                        bb8::RunError::TimedOut => ErrorClass::TIMEOUT,
                    })
                })?;
                plain_transaction(&mut conn, key).await
            }
            Writer::Naive(config) => {
                if naive.as_ref().is_none_or(Client::is_closed) {
                    let (client, connection) = config
                        .connect(NoTls)
                        .await
                        .map_err(|e| Failure::not_committed(e.class()))?;
                    tokio::spawn(connection);
                    *naive = Some(client);
                }
                let client = naive.as_mut().expect("connected above");
                let result = plain_transaction(client, key).await;
                if result.is_err() {
                    *naive = None;
                }
                result
            }
        }
    }

    /// Closes the pool's connections (the naive workers' close when they stop).
    pub(crate) async fn close(self) {
        match self {
            Writer::Pgsteady { pool, .. } => {
                pool.close(std::time::Duration::from_secs(5)).await;
            }
            #[cfg(feature = "peers")]
            Writer::Deadpool(pool) => pool.close(),
            // bb8 closes idle connections when the last handle to the pool is dropped.
            #[cfg(feature = "peers")]
            Writer::Bb8(_) => {}
            Writer::Naive(_) => {}
        }
    }
}
