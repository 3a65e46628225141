//! `pgsteady::Pool`, measured like the peers: with its defaults except the pool size, its
//! statement cached per connection (`prepare_cached`), and two ways to call it.

use std::time::Duration;

use pgsteady::{Error, ErrorKind, Pool, Reason, StatementCache};
use pgsteady_testkit::workload::{ErrorClass, Workload};

use crate::subject::{BoxError, ClientKind, Closing, QUERY, Subject, Target};

struct Pgsteady {
    pool: Pool,
    /// `pool.run` (retried) instead of `get()` + query.
    run: bool,
    /// The `statement_cache` setting.
    mode: StatementCache,
}

/// Builds the pool for `target`; `run` picks `pool.run` over plain `get()` + query; `mode`
/// is the `statement_cache` setting.
pub(crate) fn build(
    target: &Target,
    run: bool,
    mode: StatementCache,
) -> Result<Box<dyn Subject>, BoxError> {
    // The test kit's passwords are alphanumeric: the URL needs no escaping.
    let url = format!(
        "postgresql://{}:{}@{}:{}/{}",
        target.user, target.password, target.host, target.port, target.dbname
    );
    let pool = Pool::builder(pgsteady::Config::parse(&url)?)
        .max_size(target.pool_size)
        .statement_cache(mode)
        .build()?;
    Ok(Box::new(Pgsteady { pool, run, mode }))
}

/// pgsteady's error as a class: its SQLSTATE, else its kind and reason (a timeout is a
/// timeout even when it carries the last connection error as its source).
pub(crate) fn class(err: &Error) -> ErrorClass {
    if let Some(code) = err.code() {
        return ErrorClass::sqlstate(code.code());
    }
    match (err.kind(), err.reason()) {
        (ErrorKind::Timeout, _) | (_, Some(Reason::TimedOut)) => ErrorClass::TIMEOUT,
        (ErrorKind::PoolClosed, _) => ErrorClass::new_static("pool-closed"),
        (ErrorKind::Closed, _) | (_, Some(Reason::Closed)) => ErrorClass::CLOSED,
        (_, Some(Reason::Refused)) => ErrorClass::REFUSED,
        (_, Some(Reason::Reset)) => ErrorClass::RESET,
        (_, Some(reason)) => match ErrorClass::of(err) {
            c if c == ErrorClass::OTHER => ErrorClass::new(reason.as_str()),
            c => c,
        },
        (_, None) => ErrorClass::of(err),
    }
}

impl Subject for Pgsteady {
    fn kind(&self) -> ClientKind {
        if self.mode == StatementCache::Off {
            ClientKind::PgsteadyRunUnnamed
        } else if self.mode == StatementCache::Auto {
            ClientKind::PgsteadyRunAuto
        } else if self.run {
            ClientKind::PgsteadyRun
        } else {
            ClientKind::Pgsteady
        }
    }

    fn start(&self, workers: usize) -> Workload {
        let run = self.run;
        Workload::start(workers, |_| {
            let pool = self.pool.clone();
            move || {
                let pool = pool.clone();
                async move {
                    let result = if run {
                        pool.run(async move |conn| {
                            let statement = conn.prepare_cached(QUERY).await?;
                            conn.query_one(&statement, &[]).await?;
                            Ok(())
                        })
                        .await
                    } else {
                        async {
                            let conn = pool.get().await?;
                            let statement = conn.prepare_cached(QUERY).await?;
                            conn.query_one(&statement, &[]).await?;
                            Ok::<(), Error>(())
                        }
                        .await
                    };
                    result.map_err(|e| class(&e))
                }
            }
        })
    }

    fn close(self: Box<Self>) -> Closing {
        Box::pin(async move {
            self.pool.close(Duration::from_secs(5)).await;
        })
    }
}
