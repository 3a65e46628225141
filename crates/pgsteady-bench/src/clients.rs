//! Builds each client under test: the naive loop here, pgsteady's in `ours`, the peers'
//! in `peers`. Apart from `subject` (the interface) so that the clients' modules import the
//! interface and this one imports them, never the other way round.

use pgsteady::StatementCache;
use pgsteady_testkit::workload::{NaiveClient, Workload};

use crate::subject::{BoxError, ClientKind, Closing, QUERY, Subject, Target};

/// Builds the client (a pool, not yet connected: pools connect on first use) for `target`.
pub async fn build(kind: ClientKind, target: &Target) -> Result<Box<dyn Subject>, BoxError> {
    if let Some(why) = kind.unavailable() {
        return Err(format!("{}: {why}", kind.name()).into());
    }
    match kind {
        ClientKind::Naive => Ok(Box::new(Naive(target.clone()))),
        ClientKind::Pgbench => {
            Err("pgbench is a process, not a subject: `throughput::measure_once` runs it".into())
        }
        ClientKind::Pgsteady => crate::ours::build(target, false, StatementCache::On),
        ClientKind::PgsteadyRun => crate::ours::build(target, true, StatementCache::On),
        ClientKind::PgsteadyRunUnnamed => crate::ours::build(target, true, StatementCache::Off),
        ClientKind::PgsteadyRunAuto => crate::ours::build(target, true, StatementCache::Auto),
        ClientKind::PgsteadyQuery => crate::pipelined::build(target),
        #[cfg(feature = "peers")]
        ClientKind::Deadpool => crate::peers::deadpool(target),
        #[cfg(feature = "peers")]
        ClientKind::Bb8 => crate::peers::bb8(target).await,
        #[cfg(feature = "peers")]
        ClientKind::Sqlx => crate::peers::sqlx(target, false),
        #[cfg(feature = "peers")]
        ClientKind::SqlxNoCache => crate::peers::sqlx(target, true),
        #[cfg(not(feature = "peers"))]
        _ => Err(format!("{}: built without the `peers` feature", kind.name()).into()),
    }
}

/// [`NaiveClient`] per worker; the pool size does not apply (one connection per worker).
struct Naive(Target);

impl Subject for Naive {
    fn kind(&self) -> ClientKind {
        ClientKind::Naive
    }

    fn start(&self, workers: usize) -> Workload {
        let config = self.0.pg_config();
        Workload::start(workers, |_| NaiveClient::with_query(config.clone(), QUERY))
    }

    fn close(self: Box<Self>) -> Closing {
        // Each worker owned its connection; they closed when the workload stopped.
        Box::pin(async {})
    }
}
