//! Is a connection pooler (PgBouncer) in front of the server? Noticed two ways: the pooler's
//! own errors (SQLSTATE 08P01 without a server's source fields, see
//! `pgsteady::classify::pooler_error`), and the backend pid changing between transactions of
//! one client connection, which only a transaction pooler does.

use std::time::Duration;

use pgsteady::Connector;
use tokio_postgres::Client;

use crate::finding::Layer;
use crate::query::{self, MAX_QUERY_BYTES, QueryError};

/// What doctor says when the pooler answers but cannot reach the server.
pub(crate) const SERVER_BEHIND_DOWN: &str = "PgBouncer answers; the server behind it does not";

/// The layer for an error from the pooler itself (`None` when `e` is not one).
pub(crate) fn pooler_failure(e: &(dyn std::error::Error + 'static)) -> Option<Layer> {
    let reason = pgsteady::classify::reason_of(e);
    reason.is_pooler().then(|| {
        let mut layer = Layer::fail(
            "pooler",
            format!(
                "{SERVER_BEHIND_DOWN}: {}",
                pgsteady::text::sanitize(&format!("{e:#}"))
            ),
            reason,
        );
        layer.fix = Some(
            "start the server PgBouncer points at (its [databases] entry), or fix that entry; \
             PgBouncer's log says why its logins fail"
                .to_owned(),
        );
        layer
    })
}

/// After a query got no answer: the pooler's layer when it is a pooler holding the query
/// while it cannot reach its server (`None`: nothing says so; a hung server, say).
/// A second session tells them apart: PgBouncer fails its query at once with its own error
/// (`server login has been failing`) once a server login has failed.
pub(crate) async fn unanswered(connector: &Connector, waited: Duration) -> Option<Layer> {
    match connector.connect_once().await {
        Err(e) => pooler_failure(&e),
        Ok(second) => {
            match query::rows(&second.client, "SELECT 1", 1, MAX_QUERY_BYTES, waited).await {
                Err(QueryError::Server(e)) => pooler_failure(&e),
                _ => None,
            }
        }
    }
}

/// Looks for a transaction pooler: a second session holds a transaction open while the first
/// asks again for its backend pid. Directly, or through a session pooler, a session keeps
/// its backend; through a transaction pooler its next transaction may get another one.
/// `None` when nothing suggests a pooler.
pub(crate) async fn transaction_pooling(
    connector: &Connector,
    first: &Client,
    timeout: Duration,
) -> Option<Layer> {
    let check = async {
        let second = connector.connect_once().await.ok()?;
        let mut seen = Vec::new();
        for (a, b) in [(first, &second.client), (&second.client, first)] {
            let before = pid(a, timeout).await?;
            b.batch_execute("BEGIN").await.ok()?;
            let _ = pid(b, timeout).await?;
            let after = pid(a, timeout).await;
            b.batch_execute("COMMIT").await.ok()?;
            seen.push((before, after?));
        }
        Some(seen)
    };
    let seen = match tokio::time::timeout(timeout, check).await {
        Ok(Some(seen)) => Pooling::Pids(seen),
        Err(_) => Pooling::Waited(timeout),
        Ok(None) => Pooling::Unknown,
    };
    pooling_layer(seen)
}

/// What the two-session check saw.
#[derive(Debug)]
pub(crate) enum Pooling {
    /// Each session's backend pid before and after the other's transaction.
    Pids(Vec<(String, String)>),
    /// A statement waited this long for the other session's open transaction.
    Waited(Duration),
    /// The check could not run (a second session refused, a query failed).
    Unknown,
}

/// The rule of the `pooler` layer (`None`: nothing suggests a pooler).
pub(crate) fn pooling_layer(seen: Pooling) -> Option<Layer> {
    let seen = match seen {
        Pooling::Pids(seen) => seen,
        // A pooler with a single server connection makes the first session wait for the
        // second's transaction: a timeout here says as much as a changed pid.
        Pooling::Waited(d) => {
            return Some(Layer::warn(
                "pooler",
                format!(
                    "a statement waited {:.1}s for another session's open transaction: a \
                     transaction pooler with one server connection is likely in front",
                    d.as_secs_f64()
                ),
            ));
        }
        Pooling::Unknown => return None,
    };
    seen.iter().any(|(before, after)| before != after).then(|| {
        Layer::warn(
            "pooler",
            "a transaction pooler (PgBouncer in transaction mode?) is in front: the backend \
             pid changed between transactions of one connection",
        )
        .with_fix(
            "add statement_cache=off to the connection string: no named prepared statement \
             then outlives a transaction, and `pgsteady migrate` uses transaction-level locks \
             (docs/pgbouncer.md)",
        )
    })
}

async fn pid(client: &Client, timeout: Duration) -> Option<String> {
    let sql = "SELECT pg_backend_pid()::text AS pid";
    let rows = query::rows(client, sql, 1, MAX_QUERY_BYTES, timeout)
        .await
        .ok()?;
    query::column(rows.first()?, "pid")
        .ok()
        .flatten()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sentence_users_see() {
        assert_eq!(
            super::SERVER_BEHIND_DOWN,
            "PgBouncer answers; the server behind it does not"
        );
    }

    #[test]
    fn a_changed_pid_or_a_wait_means_a_transaction_pooler() {
        use super::{Pooling, pooling_layer};
        let same = vec![("7".to_owned(), "7".to_owned()); 2];
        assert!(pooling_layer(Pooling::Pids(same)).is_none());
        let moved = vec![
            ("7".to_owned(), "7".to_owned()),
            ("8".to_owned(), "9".to_owned()),
        ];
        let l = pooling_layer(Pooling::Pids(moved)).unwrap();
        assert!(l.fix.unwrap().starts_with("add statement_cache=off"));
        let l = pooling_layer(Pooling::Waited(std::time::Duration::from_secs(3))).unwrap();
        assert!(
            l.detail.starts_with("a statement waited 3.0s"),
            "{}",
            l.detail
        );
        assert!(pooling_layer(Pooling::Unknown).is_none());
    }

    #[test]
    fn a_server_error_is_not_the_pooler() {
        let e = std::io::Error::other("x");
        assert!(super::pooler_failure(&e).is_none());
    }
}
