//! Is a connection pooler (PgBouncer) in front of the server? Noticed two ways: the pooler's
//! own errors (SQLSTATE 08P01 without a server's source fields, see
//! `pgsteady::classify::pooler_error`), and the backend pid changing between transactions of
//! one client connection, which only a transaction pooler does.

use std::time::Duration;

use pgsteady::Connector;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::layers::Layer;

/// What doctor says when the pooler answers but cannot reach the server.
pub(crate) const SERVER_BEHIND_DOWN: &str = "PgBouncer answers; the server behind it does not";

/// The layer for an error from the pooler itself (`None` when `e` is not one).
pub(crate) fn pooler_failure(e: &(dyn std::error::Error + 'static)) -> Option<Layer> {
    let reason = pgsteady::classify::reason_of(e);
    reason.is_pooler().then(|| {
        let mut layer = Layer::fail("pooler", format!("{SERVER_BEHIND_DOWN}: {e:#}"), reason);
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
            match tokio::time::timeout(waited, second.client.simple_query("SELECT 1")).await {
                Ok(Err(e)) => pooler_failure(&e),
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
            let before = pid(a).await?;
            b.batch_execute("BEGIN").await.ok()?;
            let _ = pid(b).await?;
            let after = pid(a).await;
            b.batch_execute("COMMIT").await.ok()?;
            seen.push((before, after?));
        }
        Some(seen)
    };
    let seen = match tokio::time::timeout(timeout, check).await {
        Ok(Some(seen)) => seen,
        // A pooler with a single server connection makes the first session wait for the
        // second's transaction: a timeout here says as much as a changed pid.
        Err(_) => {
            return Some(Layer::warn(
                "pooler",
                format!(
                    "a statement waited {:.1}s for another session's open transaction: a \
                     transaction pooler with one server connection is likely in front",
                    timeout.as_secs_f64()
                ),
            ));
        }
        Ok(None) => return None,
    };
    seen.iter().any(|(before, after)| before != after).then(|| {
        let mut layer = Layer::warn(
            "pooler",
            "a transaction pooler (PgBouncer in transaction mode?) is in front: the backend \
             pid changed between transactions of one connection",
        );
        layer.fix = Some(
            "add statement_cache=off to the connection string: no named prepared statement \
             then outlives a transaction, and `pgsteady migrate` uses transaction-level locks \
             (docs/pgbouncer.md)"
                .to_owned(),
        );
        layer
    })
}

async fn pid(client: &Client) -> Option<String> {
    let messages = client.simple_query("SELECT pg_backend_pid()").await.ok()?;
    messages.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sentence_the_issue_asks_for() {
        assert_eq!(
            super::SERVER_BEHIND_DOWN,
            "PgBouncer answers; the server behind it does not"
        );
    }

    #[test]
    fn a_server_error_is_not_the_pooler() {
        // The library's errors can no longer be made by hand: an error that is no pooler's.
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(super::pooler_failure(&e).is_none());
    }
}
