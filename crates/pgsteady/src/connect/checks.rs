//! Pieces of one connection pass: the `target_session_attrs` check, the error that lists
//! every host, and the handshake phases named in time-out messages.

// Code a server reaches: a message or row it shapes must never index out of bounds or
// unwrap into a panic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use tokio_postgres::{Client, SimpleQueryMessage};

use super::session::{SessionState, describe};
use crate::classify::{self, Action, Reason};
use crate::config::TargetSessionAttrs;
use crate::error::HostFailure;
use crate::{Error, ErrorKind};

/// At most this many messages of a query pgsteady runs for itself are read; more is an error
/// (a server streaming endless rows must not fill memory).
#[cfg_attr(not(feature = "probe"), allow(dead_code, unreachable_pub))]
pub const MAX_OWN_ROWS: usize = 10_000;

/// At most this many bytes of values, all rows together, of a query pgsteady runs for itself:
/// a row count alone times the largest message allowed was 160 GB.
#[cfg_attr(not(feature = "probe"), allow(dead_code, unreachable_pub))]
pub const MAX_OWN_BYTES: usize = 4 << 20;

/// Runs `sql` with the simple protocol and collects at most `max_rows` rows (and their
/// command-complete messages) holding at most [`MAX_OWN_BYTES`] of values; more is an error
/// and the rest is not read. A value that is not UTF-8 is an error too (tokio-postgres asks
/// for `client_encoding=UTF8`, so only a broken server sends one), so that every value of a
/// returned row reads with `try_get` as text. For the queries a tool runs for itself, where
/// tokio-postgres' `simple_query` would collect whatever the server streams.
#[cfg_attr(not(feature = "probe"), allow(unreachable_pub))]
pub async fn bounded_simple_query(
    client: &Client,
    sql: &str,
    max_rows: usize,
) -> Result<Vec<SimpleQueryMessage>, Error> {
    use futures_util::TryStreamExt;
    let stream = client
        .simple_query_raw(sql)
        .await
        .map_err(|e| Error::from_pg(e, "query failed"))?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    while let Some(m) = stream
        .try_next()
        .await
        .map_err(|e| Error::from_pg(e, "query failed"))?
    {
        if let SimpleQueryMessage::Row(row) = &m {
            rows += 1;
            if rows > max_rows {
                return Err(Error::new(
                    ErrorKind::Db,
                    format!("the query returned more than {max_rows} rows; pgsteady reads at most that many"),
                )
                .with_reason(Reason::Other));
            }
            bytes += row_bytes(row)?;
            if bytes > MAX_OWN_BYTES {
                return Err(Error::new(
                    ErrorKind::Db,
                    format!(
                        "the query returned more than {MAX_OWN_BYTES} bytes; pgsteady reads at \
                         most that many"
                    ),
                )
                .with_reason(Reason::Other));
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// The bytes of a row's values; an error for a value that is not UTF-8.
fn row_bytes(row: &tokio_postgres::SimpleQueryRow) -> Result<usize, Error> {
    let mut sum = 0;
    for i in 0..row.len() {
        match row.try_get(i) {
            Ok(v) => sum += v.map_or(0, str::len),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Connect,
                    format!(
                        "protocol violation: the server sent a value that is not UTF-8 (column \
                         {}), though the session's client_encoding is UTF8",
                        i + 1
                    ),
                )
                .with_reason(Reason::Other));
            }
        }
    }
    Ok(sum)
}

/// Checks `target_session_attrs` as libpq does: from the `in_hot_standby` and
/// `default_transaction_read_only` values the server reported at startup (PostgreSQL 14+, no
/// round trip), else with one query. With `ready`, a session for `any` must still answer an
/// empty query: authenticating is not being able to run one.
pub(super) async fn check_session(
    client: &Client,
    want: TargetSessionAttrs,
    reported: SessionState,
    ready: bool,
) -> Result<(), Error> {
    // One empty round trip when nothing else would run a query on the new session.
    let answers = || async {
        if !ready {
            return Ok(());
        }
        bounded_simple_query(client, "", 0)
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::new(e.kind(), "session check failed")
                    .with_reason(e.reason().unwrap_or(Reason::Other))
                    .with_source(e)
            })
    };
    if want == TargetSessionAttrs::Any {
        return answers().await;
    }
    if let Some(ok) = reported.satisfies(want) {
        if ok {
            answers().await?;
        }
        return verdict(
            ok,
            want,
            reported.in_hot_standby.unwrap_or(false),
            reported.default_transaction_read_only.unwrap_or(false)
                || reported.in_hot_standby.unwrap_or(false),
        );
    }
    let rows = bounded_simple_query(
        client,
        "SELECT pg_catalog.pg_is_in_recovery()::text, \
         pg_catalog.current_setting('transaction_read_only')",
        1,
    )
    .await
    .map_err(|e| {
        Error::new(e.kind(), "session check failed")
            .with_reason(e.reason().unwrap_or(Reason::Other))
            .with_source(e)
    })?;
    let row = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    let (in_recovery, read_only) = match row {
        Some(r) => (
            r.try_get(0).ok().flatten() == Some("true"),
            r.try_get(1).ok().flatten() == Some("on"),
        ),
        None => {
            return Err(Error::new(
                ErrorKind::Connect,
                "session check returned no row",
            ));
        }
    };
    let ok = match want {
        TargetSessionAttrs::ReadWrite => !read_only,
        TargetSessionAttrs::ReadOnly => read_only,
        TargetSessionAttrs::Primary => !in_recovery,
        TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => in_recovery,
        _ => true,
    };
    verdict(ok, want, in_recovery, read_only)
}

fn verdict(
    ok: bool,
    want: TargetSessionAttrs,
    in_recovery: bool,
    read_only: bool,
) -> Result<(), Error> {
    if ok {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Connect,
        format!(
            "server is {}, but target_session_attrs={want}",
            describe(in_recovery, read_only)
        ),
    )
    .with_reason(Reason::WrongSessionType))
}

/// One error for a failed pass: lists every host; its reason decides retry vs fail fast. If
/// every host failed permanently, the first permanent failure speaks; otherwise the pass is
/// transient (one host may come up) and the last transient failure speaks, preferring one
/// that the pass's deadline did not cut short (`cut_short[i]`: host i timed out under less
/// than its own attempt timeout, which says only that the time ran out).
pub(super) fn combine(
    failures: Vec<HostFailure>,
    mut errors: Vec<Error>,
    cut_short: &[bool],
) -> Error {
    if errors.len() == 1
        && let Some(e) = errors.pop()
    {
        let reason = e.reason().unwrap_or(Reason::Other);
        let hosts = failures
            .into_iter()
            .take(1)
            .map(|host| HostFailure {
                message: e.to_string(),
                ..host
            })
            .collect();
        return Error::new(e.kind(), "could not connect")
            .with_reason(reason)
            .with_hosts(hosts)
            .with_source(e);
    }
    let is_transient = |e: &Error| classify::connect(e).action == Action::Retry;
    let informative = errors
        .iter()
        .enumerate()
        .rposition(|(i, e)| is_transient(e) && !cut_short.get(i).copied().unwrap_or(false));
    let transient = informative.or_else(|| errors.iter().rposition(is_transient));
    let speaker = transient.unwrap_or(0);
    let e = errors.swap_remove(speaker);
    let reason = e.reason().unwrap_or(Reason::Other);
    // Every host's failure is in the message (see `Error`'s `Display`), the speaker's among
    // them: it is kept for `code()` and classification, but not offered again as the cause.
    Error::new(
        e.kind(),
        format!("could not connect to any of {} hosts", failures.len()),
    )
    .with_reason(reason)
    .with_hosts(failures)
    .with_hidden_source(e)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    Resolve,
    Connect,
    Tls,
    Startup,
    SessionCheck,
}

impl Phase {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "name resolution",
            Phase::Connect => "the tcp connect",
            Phase::Tls => "tls negotiation",
            Phase::Startup => {
                "startup/authentication (the server accepted the connection but did not answer)"
            }
            Phase::SessionCheck => "the session check query",
        }
    }
}

impl From<u8> for Phase {
    fn from(v: u8) -> Self {
        match v {
            0 => Phase::Resolve,
            1 => Phase::Connect,
            2 => Phase::Tls,
            3 => Phase::Startup,
            _ => Phase::SessionCheck,
        }
    }
}
