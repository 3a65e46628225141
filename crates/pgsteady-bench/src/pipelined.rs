//! `pgsteady::Pool::query_one`: the pipelined path, many workers sharing at most
//! [`MAX_CONNECTIONS`] server connections whatever the pool size asked for.

use std::time::Duration;

use pgsteady::Pool;
use pgsteady_testkit::workload::Workload;

use crate::subject::{BoxError, ClientKind, Closing, QUERY, Subject, Target};

/// The connection budget the pipelined path is measured with.
pub(crate) const MAX_CONNECTIONS: usize = 4;

struct Pipelined {
    pool: Pool,
}

/// Builds the pool for `target`, capped at [`MAX_CONNECTIONS`].
pub(crate) fn build(target: &Target) -> Result<Box<dyn Subject>, BoxError> {
    // The test kit's passwords are alphanumeric: the URL needs no escaping.
    let url = format!(
        "postgresql://{}:{}@{}:{}/{}",
        target.user, target.password, target.host, target.port, target.dbname
    );
    let pool = Pool::builder(pgsteady::Config::parse(&url)?)
        .max_size(MAX_CONNECTIONS.min(target.pool_size))
        .build()?;
    Ok(Box::new(Pipelined { pool }))
}

impl Subject for Pipelined {
    fn kind(&self) -> ClientKind {
        ClientKind::PgsteadyQuery
    }

    fn start(&self, workers: usize) -> Workload {
        Workload::start(workers, |_| {
            let pool = self.pool.clone();
            move || {
                let pool = pool.clone();
                async move {
                    pool.query_one(QUERY, &[])
                        .await
                        .map(drop)
                        .map_err(|e| crate::ours::class(&e))
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
