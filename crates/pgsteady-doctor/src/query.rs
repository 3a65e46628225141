//! Doctor's own queries, read with a cap on rows and on bytes: a server (or something posing
//! as one) that answers with endless or huge rows must not fill memory, and its answer is
//! read by column name with checked access, so another column count or type is a finding,
//! never a panic.

use std::fmt;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

/// The most bytes of column values doctor reads from one of its queries. Its largest answer
/// is ten short rows of names and counts.
pub(crate) const MAX_QUERY_BYTES: usize = 1 << 20;

/// Why one of doctor's queries gave no answer.
#[derive(Debug)]
pub(crate) enum QueryError {
    /// The server (or the connection) failed it.
    Server(tokio_postgres::Error),
    /// The answer went past a cap; the rest was not read.
    TooLarge(String),
    /// No answer within the bound.
    TimedOut(Duration),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Server(e) => {
                // tokio-postgres puts the server's message in its text: escape it.
                let text = match e.as_db_error() {
                    Some(db) => format!("{}: {}", db.code().code(), db.message()),
                    None => e.to_string(),
                };
                f.write_str(&pgsteady::text::sanitize(&text))
            }
            QueryError::TooLarge(what) => f.write_str(what),
            QueryError::TimedOut(d) => write!(
                f,
                "the server did not answer a query within {:.1}s",
                d.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for QueryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueryError::Server(e) => Some(e),
            _ => None,
        }
    }
}

/// Runs `sql` with the simple protocol within `timeout` and returns its rows: at most
/// `max_rows`, at most `max_bytes` of column values in all; past either the query is an
/// error and the rest is not read.
pub(crate) async fn rows(
    client: &Client,
    sql: &str,
    max_rows: usize,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Vec<SimpleQueryRow>, QueryError> {
    let read = async {
        let stream = client
            .simple_query_raw(sql)
            .await
            .map_err(QueryError::Server)?;
        futures_util::pin_mut!(stream);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(m) = stream.try_next().await.map_err(QueryError::Server)? {
            let SimpleQueryMessage::Row(row) = m else {
                continue;
            };
            bytes = bytes.saturating_add(row_bytes(&row));
            if out.len() >= max_rows {
                return Err(QueryError::TooLarge(format!(
                    "the server answered with more than {max_rows} rows where doctor reads at \
                     most that many"
                )));
            }
            if bytes > max_bytes {
                return Err(QueryError::TooLarge(format!(
                    "the server's answer exceeds {max_bytes} bytes where doctor reads at most \
                     that many"
                )));
            }
            out.push(row);
        }
        Ok(out)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(QueryError::TimedOut(timeout)),
    }
}

/// The bytes of a row's values (what holding it costs, near enough).
fn row_bytes(row: &SimpleQueryRow) -> usize {
    (0..row.len())
        .map(|i| row.try_get(i).ok().flatten().map_or(0, str::len))
        .sum()
}

/// One column of a row by name, checked: `Err` names the column when the answer lacks it.
/// `Ok(None)` is SQL NULL.
pub(crate) fn column<'a>(row: &'a SimpleQueryRow, name: &str) -> Result<Option<&'a str>, String> {
    row.try_get(name)
        .map_err(|_| format!("the server's answer has no column `{name}`"))
}

/// A column that must be present and not NULL.
pub(crate) fn required<'a>(row: &'a SimpleQueryRow, name: &str) -> Result<&'a str, String> {
    column(row, name)?.ok_or_else(|| format!("the server's answer has NULL for `{name}`"))
}
