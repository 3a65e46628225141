//! The history table and the advisory lock: the SQL the runner sends besides the files.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::plan::Row;
use crate::{Error, ErrorKind};

/// The name of the history table, optionally schema-qualified.
///
/// Names are lowercase SQL identifiers (`[a-z_][a-z0-9_]*`, at most 63 bytes), so they mean
/// the same quoted or not. Without a schema the table is found (and created) through the
/// session's `search_path`, like any unqualified name.
///
/// # Default
///
/// `pgsteady_migrations`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryTable {
    schema: Option<String>,
    name: String,
}

impl Default for HistoryTable {
    fn default() -> Self {
        HistoryTable {
            schema: None,
            name: HistoryTable::DEFAULT_NAME.to_owned(),
        }
    }
}

impl HistoryTable {
    /// The default table name.
    pub const DEFAULT_NAME: &'static str = "pgsteady_migrations";

    /// Parses `name` or `schema.name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use pgsteady_migrate::HistoryTable;
    /// let t = HistoryTable::parse("app.schema_history")?;
    /// assert_eq!((t.schema(), t.name()), (Some("app"), "schema_history"));
    /// assert!(HistoryTable::parse("Bad Name").is_err());
    /// # Ok::<(), pgsteady_migrate::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (schema, name) = match s.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, s),
        };
        for part in schema.into_iter().chain([name]) {
            let valid = !part.is_empty()
                && part.len() <= 63
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(Error::config(format!(
                    "history table `{s}`: expected `name` or `schema.name` made of lowercase \
                     letters, digits and `_`"
                )));
            }
        }
        Ok(HistoryTable {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The schema, if qualified.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as SQL, quoted.
    pub(crate) fn sql(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }
}

impl fmt::Display for HistoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether the history table exists (no lock, no write).
pub(crate) async fn exists(client: &Client, table: &HistoryTable) -> Result<bool, Error> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.sql()])
        .await
        .map_err(|e| Error::from_pg(e, "looking for the migration history table"))?;
    crate::error::column(&row, 0, "exists", "looking for the migration history table")
}

/// Creates the history table. Called under the lock, and only when it does not exist (so a
/// role without CREATE on the schema can run against an existing table).
pub(crate) async fn create(client: &Client, table: &HistoryTable) -> Result<(), Error> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            execution_ms bigint
        )",
        table.sql()
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| Error::from_pg(e, &format!("creating the migration history table {table}")))
}

/// Reads every history row, ascending.
pub(crate) async fn read(client: &Client, table: &HistoryTable) -> Result<Vec<Row>, Error> {
    let sql = format!(
        "SELECT version, name, checksum, applied_at, execution_ms FROM {} ORDER BY version",
        table.sql()
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| Error::from_pg(e, &format!("reading the migration history {table}")))?;
    let context = format!("reading the migration history {table}");
    rows.iter()
        .map(|r| {
            Ok(Row {
                version: crate::error::column(r, 0, "version bigint", &context)?,
                name: crate::error::column(r, 1, "name text", &context)?,
                checksum: crate::error::column(r, 2, "checksum text", &context)?,
                applied_at: crate::error::column::<Option<SystemTime>>(
                    r,
                    3,
                    "applied_at timestamptz",
                    &context,
                )?,
                execution_ms: crate::error::column(r, 4, "execution_ms bigint", &context)?,
            })
        })
        .collect()
}

/// The advisory lock key: a constant hashed with the database name and the history table, so
/// runners of one database and table serialise while other databases and tables do not wait.
/// (Advisory locks are already per database; the name is hashed in as well so the key is
/// self-describing in logs and stable across `pg_dump`/restore to another OID.)
pub(crate) fn lock_key(database: &str, table: &HistoryTable) -> i64 {
    let mut h = Sha256::new();
    h.update(b"pgsteady.migrate\0");
    h.update(database.as_bytes());
    h.update(b"\0");
    h.update(table.to_string().as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The lock key of this session's database.
pub(crate) async fn session_lock_key(client: &Client, table: &HistoryTable) -> Result<i64, Error> {
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .map_err(|e| Error::from_pg(e, "reading the database name"))?;
    let name = crate::error::column(&row, 0, "current_database", "reading the database name")?;
    Ok(lock_key(name, table))
}

/// Takes the session advisory lock `key`, waiting at most `timeout` (`None`: as long as it
/// takes). Calls `on_wait(holder_pid)` once if another session holds it. Returns how long it
/// waited.
pub(crate) async fn lock(
    client: &Client,
    key: i64,
    timeout: Option<Duration>,
    on_wait: impl FnOnce(Option<i32>),
) -> Result<Duration, Error> {
    let start = Instant::now();
    let got: bool = crate::error::column(
        &client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| Error::from_pg(e, "taking the migration lock"))?,
        0,
        "pg_try_advisory_lock",
        "taking the migration lock",
    )?;
    if got {
        return Ok(start.elapsed());
    }
    let holder = holder_pid(client, key).await.ok().flatten();
    on_wait(holder);
    let result = match timeout {
        None => client.execute("SELECT pg_advisory_lock($1)", &[&key]).await,
        Some(timeout) => {
            // The server's lock_timeout bounds this one wait; the session's own value is put
            // back afterwards.
            let previous: String = crate::error::column(
                &client
                    .query_one("SELECT current_setting('lock_timeout')", &[])
                    .await
                    .map_err(|e| Error::from_pg(e, "taking the migration lock"))?,
                0,
                "lock_timeout",
                "taking the migration lock",
            )?;
            let ms = format!("{}ms", timeout.as_millis().max(1));
            client
                .execute("SELECT set_config('lock_timeout', $1, false)", &[&ms])
                .await
                .map_err(|e| Error::from_pg(e, "taking the migration lock"))?;
            let result = client.execute("SELECT pg_advisory_lock($1)", &[&key]).await;
            if result.is_ok() || !client.is_closed() {
                client
                    .execute("SELECT set_config('lock_timeout', $1, false)", &[&previous])
                    .await
                    .map_err(|e| Error::from_pg(e, "restoring lock_timeout"))?;
            }
            result
        }
    };
    match result {
        Ok(_) => Ok(start.elapsed()),
        Err(e)
            if matches!(
                e.code(),
                Some(&SqlState::LOCK_NOT_AVAILABLE | &SqlState::QUERY_CANCELED)
            ) =>
        {
            let by = holder
                .map(|p| format!(" held by backend pid {p}"))
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "timed out after {:.1}s waiting for the migration lock{by} (another runner is \
                     applying migrations)",
                    start.elapsed().as_secs_f64()
                ),
            )
            .with_reason(pgsteady::Reason::TimedOut)
            .with_source(e))
        }
        Err(e) => Err(Error::from_pg(e, "waiting for the migration lock")),
    }
}

/// Inside a transaction: takes the transaction-level advisory lock `key` (released by the
/// transaction's end, whatever happens, on whichever server connection a pooler gave it),
/// waiting at most `timeout` (`SET LOCAL lock_timeout`, `None`: as long as it takes).
/// Returns how long it waited.
pub(crate) async fn xact_lock(
    tx: &impl tokio_postgres::GenericClient,
    key: i64,
    timeout: Option<Duration>,
) -> Result<Duration, Error> {
    let start = Instant::now();
    if let Some(timeout) = timeout {
        let ms = format!("{}ms", timeout.as_millis().max(1));
        tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&ms])
            .await
            .map_err(|e| Error::from_pg(e, "taking the migration lock"))?;
    }
    match tx
        .execute("SELECT pg_advisory_xact_lock($1)", &[&key])
        .await
    {
        Ok(_) => Ok(start.elapsed()),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "timed out after {:.1}s waiting for the migration lock (another runner is \
                 applying migrations)",
                start.elapsed().as_secs_f64()
            ),
        )
        .with_reason(pgsteady::Reason::TimedOut)
        .with_source(e)),
        Err(e) => Err(Error::from_pg(e, "waiting for the migration lock")),
    }
}

/// The backend holding advisory lock `key`, if any. A bigint advisory key is stored as
/// `classid` (high 32 bits), `objid` (low 32 bits), `objsubid = 1`.
async fn holder_pid(client: &Client, key: i64) -> Result<Option<i32>, tokio_postgres::Error> {
    let classid = ((key as u64) >> 32) as u32;
    let objid = (key as u64 & 0xffff_ffff) as u32;
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid = $1 AND objid = $2 AND objsubid = 1 LIMIT 1",
            &[&classid, &objid],
        )
        .await?;
    // Only for the message: an odd answer names no holder.
    Ok(row.and_then(|r| r.try_get(0).ok()))
}

/// Releases the lock (best effort: a closed session has released it already).
pub(crate) async fn unlock(client: &Client, key: i64) {
    if !client.is_closed() {
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        let t = HistoryTable::default();
        assert_eq!((t.schema(), t.name()), (None, "pgsteady_migrations"));
        assert_eq!(t.sql(), "\"pgsteady_migrations\"");
        let t = HistoryTable::parse("ops.history_2").unwrap();
        assert_eq!(t.sql(), "\"ops\".\"history_2\"");
        assert_eq!(t.to_string(), "ops.history_2");
        for bad in [
            "",
            "a.",
            ".a",
            "A",
            "a b",
            "1abc",
            "a.b.c",
            "x\"y",
            &"a".repeat(64),
        ] {
            let err = HistoryTable::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn lock_key_depends_on_database_and_table_and_is_stable() {
        let t = HistoryTable::default();
        let k = lock_key("app", &t);
        assert_eq!(k, lock_key("app", &t));
        assert_ne!(k, lock_key("app2", &t));
        assert_ne!(k, lock_key("app", &HistoryTable::parse("other").unwrap()));
        // Pinned: a changed key would let an old and a new runner migrate concurrently.
        assert_eq!(k, -8_075_741_636_362_512_989);
    }
}
