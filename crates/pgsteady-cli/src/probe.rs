//! One readiness probe: connect (all hosts, one bounded pass), authenticate, run the query.
//! Shared by `wait` (in a retry loop) and `check` (once).

// Code a server reaches: a row it shapes must never index out of bounds or unwrap into a
// panic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use std::time::Duration;

use pgsteady::backoff::Decision;
use pgsteady::{Action, Connector, Reason, SqlState};
use tokio_postgres::SimpleQueryMessage;

use crate::exit;

/// Why a probe failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Could not establish a session.
    Connect(pgsteady::Error),
    /// The session works but the query failed.
    Query(pgsteady::Error),
    /// The query's answer was `false`.
    NotTrue,
    /// The session works but its answer cannot be used (a library reader's own error, e.g.
    /// `pgsteady_slot`'s): `transient` says whether asking again may help.
    Answer { message: String, transient: bool },
}

impl Failure {
    pub(crate) fn reason(&self) -> Option<Reason> {
        match self {
            Failure::Connect(e) | Failure::Query(e) => e.reason(),
            Failure::NotTrue => None,
            Failure::Answer {
                transient: true, ..
            } => Some(Reason::CannotConnectNow),
            Failure::Answer {
                transient: false, ..
            } => Some(Reason::Other),
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Connect(e) => format!("{e:#}"),
            // The library's message already says "query failed".
            Failure::Query(e) => format!("{e:#}"),
            Failure::NotTrue => "the query returned false".to_owned(),
            Failure::Answer { message, .. } => message.clone(),
        }
    }

    /// `wait` retries a failing query until the deadline (the condition it checks, a table or
    /// a replica, may appear), except a syntax or permission error.
    pub(crate) fn decision(&self, connector: &Connector) -> Decision {
        match self {
            Failure::Connect(e) => match connector.classify(e).action {
                Action::Retry => Decision::Retry,
                Action::FailFast => Decision::Stop,
            },
            Failure::Query(e) if is_usage(e) || is_violation(e) => Decision::Stop,
            Failure::Answer {
                transient: false, ..
            } => Decision::Stop,
            Failure::Query(_) | Failure::NotTrue | Failure::Answer { .. } => Decision::Retry,
        }
    }

    /// The exit code once retrying stopped (`timed_out`: the deadline ran out).
    pub(crate) fn exit_code(&self, timed_out: bool) -> u8 {
        match self {
            Failure::Query(e) if is_usage(e) => exit::USAGE,
            Failure::Query(e) if is_violation(e) => exit::PERMANENT,
            Failure::Answer {
                transient: false, ..
            } => exit::PERMANENT,
            _ if timed_out => exit::NOT_READY,
            Failure::Connect(e) => exit::for_error(e),
            Failure::Query(_) | Failure::NotTrue | Failure::Answer { .. } => exit::NOT_READY,
        }
    }
}

fn is_usage(e: &pgsteady::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::SYNTAX_ERROR || *c == SqlState::INSUFFICIENT_PRIVILEGE
    )
}

/// The server broke the protocol answering the query (a value that is not UTF-8, or more
/// than pgsteady reads): as permanent as a framing violation at startup.
fn is_violation(e: &pgsteady::Error) -> bool {
    e.kind() == pgsteady::ErrorKind::Connect && !e.is_transient()
}

/// Connects within `budget` and runs `query`. Returns the host that answered.
pub(crate) async fn probe(
    connector: &Connector,
    query: &str,
    budget: Duration,
) -> Result<String, Failure> {
    let connected = connector
        .connect_within(budget)
        .await
        .map_err(Failure::Connect)?;
    // At most MAX_OWN_ROWS rows and MAX_OWN_BYTES are read: a server streaming rows forever
    // must not fill memory until the deadline.
    let messages = pgsteady_doctor::probe::bounded_simple_query(
        &connected.client,
        query,
        pgsteady_doctor::probe::MAX_OWN_ROWS,
    )
    .await;
    let messages = match messages {
        Ok(m) => m,
        // The client only sees "connection closed"; the connection task saw why (e.g. a
        // protocol violation): say that.
        Err(e) if e.is_closed() => {
            let closed =
                tokio::time::timeout(Duration::from_millis(200), connected.monitor.closed()).await;
            return Err(Failure::Query(match closed {
                Ok(c) if c.error().is_some() => c.to_error("query failed: the connection closed"),
                _ => e,
            }));
        }
        Err(e) => {
            // Do not let the connection read the rest of an endless or oversized answer in
            // the background while the next attempt starts.
            connected.monitor.close();
            return Err(Failure::Query(e));
        }
    };
    // A single false value means "not ready yet" (e.g. `SELECT count(*) > 0 FROM ...`).
    let last_row = messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    if let Some(row) = last_row
        && row.len() == 1
        && matches!(row.try_get(0), Ok(Some("f" | "false")))
    {
        return Err(Failure::NotTrue);
    }
    Ok(connected.host.to_string())
}
