//! Reading slots and the server's position: one query, one round trip.

// Code a server reaches: a message or row it shapes must never index out of bounds or
// unwrap into a panic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use futures_util::TryStreamExt;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::Error;
use crate::lsn::Lsn;
use crate::{ServerPosition, SlotFacts, SlotType, Verdict, WalStatus, classify};

/// The longest slot name PostgreSQL accepts (`NAMEDATALEN - 1`).
const MAX_NAME: usize = 63;

/// The most rows [`read_all`] reads (one per slot; `max_replication_slots` is rarely above
/// a few dozen). More is an error, not a truncated list.
const MAX_ROWS: usize = 10_000;

/// The most bytes of values [`read_all`] reads, all rows together (a slot's row is about
/// 300): the row cap times the largest message allowed would be gigabytes.
const MAX_BYTES: usize = 16 << 20;

/// The columns of [`query`].
const COLUMNS: usize = 18;

/// Checks `name` the way PostgreSQL does (`ReplicationSlotValidateName`): 1 to 63 lower-case
/// letters, digits and underscores. An [`Error::InvalidName`] naming it otherwise.
///
/// The name is then safe to quote in SQL, which is why [`read`] can use the simple query
/// protocol (no prepared statement, so it also works through a transaction-mode pooler).
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        return Ok(());
    }
    const RULE: &str = "PostgreSQL allows 1 to 63 lower-case letters, digits and underscores";
    // A connection string given where the name belongs may hold a password: never echo it.
    if name.contains("://") || name.contains('=') || name.contains('@') {
        return Err(Error::InvalidName(format!(
            "the slot name looks like a connection string (not shown); the name comes first: slot NAME [TARGET]. {RULE}"
        )));
    }
    let shown: String = name.chars().take(70).collect();
    Err(Error::InvalidName(format!(
        "`{}` is not a replication slot name: {RULE}",
        shown.escape_debug()
    )))
}

/// The server's position and the slots' rows (all of them, or the one named), in one
/// statement so that the byte counts compare values of the same moment: one row per slot,
/// the position repeated, or one row of position and NULLs when there is no slot. Columns
/// that older servers lack are read as `to_jsonb(row) ->> 'name'`, NULL where absent.
fn query(name: Option<&str>) -> String {
    let filter = name
        .map(|n| format!(" WHERE x.slot_name = '{n}'"))
        .unwrap_or_default();
    format!(
        "SELECT p.r::text, current_setting('server_version_num'), p.lsn::text, p.tli, \
         s.slot_name::text, s.slot_type, s.plugin::text, s.database::text, s.temporary::text, \
         s.active::text, s.active_pid::text, s.restart_lsn::text, s.confirmed_flush_lsn::text, \
         s.j->>'wal_status', s.j->>'safe_wal_size', s.j->>'conflicting', \
         s.j->>'invalidation_reason', s.j->>'inactive_since' \
         FROM (SELECT pg_is_in_recovery() AS r, \
               CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn, \
               CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END AS tli) p \
         LEFT JOIN (SELECT x.*, to_jsonb(x) AS j FROM pg_replication_slots x{filter}) s ON true \
         ORDER BY s.slot_name"
    )
}

/// The slot in a row of [`query`] (`None`: the row holds no slot), from its columns as text.
fn facts_from<'a>(col: impl Fn(usize) -> Option<&'a str>) -> Option<SlotFacts> {
    let text = |i| col(i).map(str::to_owned);
    let flag = |i| col(i).map(|v| v == "true" || v == "t");
    let lsn = |i| col(i).and_then(|v| v.parse::<Lsn>().ok());
    let mut f = SlotFacts::new(
        col(4)?,
        match col(5)? {
            "logical" => SlotType::Logical,
            _ => SlotType::Physical,
        },
    );
    f.plugin = text(6);
    f.database = text(7);
    f.temporary = flag(8);
    f.active = flag(9).unwrap_or(false);
    f.active_pid = col(10).and_then(|p| p.parse().ok());
    f.restart_lsn = lsn(11);
    f.confirmed_flush_lsn = lsn(12);
    f.wal_status = col(13).and_then(WalStatus::parse);
    f.safe_wal_size = col(14).and_then(|v| v.parse().ok());
    f.conflicting = flag(15);
    f.invalidation_reason = text(16);
    f.inactive_since = text(17);
    Some(f)
}

async fn fetch(
    client: &Client,
    name: Option<&str>,
) -> Result<(ServerPosition, Vec<SlotFacts>), Error> {
    if let Some(n) = name {
        validate_name(n)?;
    }
    let failed = |e: tokio_postgres::Error| Error::from(e);
    // One row per slot: read at most MAX_ROWS, so that a server streaming rows forever
    // cannot fill memory.
    let stream = client
        .simple_query_raw(&query(name))
        .await
        .map_err(failed)?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some(message) = stream.try_next().await.map_err(failed)? {
        if let SimpleQueryMessage::Row(row) = message {
            if rows.len() == MAX_ROWS {
                return Err(unexpected(&format!("more than {MAX_ROWS} rows")));
            }
            // A server (or a proxy) answering with other columns: an error, never a panic
            // in tokio-postgres' `get`.
            if row.len() != COLUMNS {
                return Err(unexpected(&format!(
                    "{} columns where {COLUMNS} were asked for",
                    row.len()
                )));
            }
            let mut values = Vec::with_capacity(COLUMNS);
            for i in 0..COLUMNS {
                let v = row
                    .try_get(i)
                    .map_err(|_| unexpected(&format!("column {} is not UTF-8", i + 1)))?;
                bytes += v.map_or(0, str::len);
                values.push(v.map(str::to_owned));
            }
            if bytes > MAX_BYTES {
                return Err(unexpected(&format!("more than {MAX_BYTES} bytes")));
            }
            rows.push(values);
        }
    }
    let first = rows.first().ok_or_else(|| unexpected("no row"))?;
    let in_recovery = get(first, 0) == Some("true");
    let version_num = get(first, 1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| unexpected("no server_version_num"))?;
    let lsn: Lsn = match get(first, 2) {
        Some(text) => text
            .parse()
            .map_err(|_| unexpected("an unreadable WAL position"))?,
        // A standby that has replayed nothing yet: its position is not known. Transient.
        None => {
            return Err(Error::NoPosition);
        }
    };
    let timeline = get(first, 3).and_then(|t| u32::from_str_radix(t, 16).ok());
    let facts = rows
        .iter()
        .filter_map(|r| facts_from(|i| get(r, i)))
        .collect();
    Ok((
        ServerPosition {
            lsn,
            in_recovery,
            version_num,
            timeline,
        },
        facts,
    ))
}

/// Column `i` of a row read by [`fetch`], `None` for NULL.
fn get(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|v| v.as_deref())
}

/// An answer no PostgreSQL gives to [`query`] (another column count, a value that is not
/// UTF-8, no row): the server, or a proxy, is not one this can read, and asking again will
/// not change that. Permanent, like a framing violation.
fn unexpected(what: &str) -> Error {
    Error::Unexpected(what.to_owned())
}

/// Reads the slot `name` (`None`: no such slot) and the server's position, in one round trip.
/// Fails with [`Error::InvalidName`] for a name PostgreSQL would reject (see
/// [`validate_name`]), [`Error::Query`] if the statement fails, [`Error::NoPosition`] on a
/// standby that has replayed nothing, [`Error::Unexpected`] for an answer no PostgreSQL gives
/// (another column count, over 10,000 rows or 16 MiB).
pub async fn read(
    client: &Client,
    name: &str,
) -> Result<(ServerPosition, Option<SlotFacts>), Error> {
    let (position, mut facts) = fetch(client, Some(name)).await?;
    Ok((position, facts.pop()))
}

/// Reads every slot, ordered by name, and the server's position, in one round trip.
pub async fn read_all(client: &Client) -> Result<(ServerPosition, Vec<SlotFacts>), Error> {
    fetch(client, None).await
}

/// Reads the slot `name` and classifies it for a consumer at `offset` (see [`classify`]).
///
/// # Examples
///
/// ```no_run
/// # async fn demo(client: &tokio_postgres::Client) -> Result<(), pgsteady_slot::Error> {
/// let verdict = pgsteady_slot::check(client, "debezium", None).await?;
/// println!("{} {:?}", verdict.state, verdict.retained_bytes);
/// # Ok(()) }
/// ```
pub async fn check(client: &Client, name: &str, offset: Option<Lsn>) -> Result<Verdict, Error> {
    let (position, facts) = read(client, name).await?;
    Ok(classify(name, facts, position, offset))
}

/// Reads and classifies every slot (no offset), ordered by name.
pub async fn check_all(client: &Client) -> Result<Vec<Verdict>, Error> {
    let (position, facts) = read_all(client).await?;
    Ok(facts
        .into_iter()
        .map(|f| {
            let name = f.name.clone();
            classify(&name, Some(f), position, None)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["debezium", "a", "slot_1", &"x".repeat(63)] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            "Debezium",
            "my-slot",
            "a b",
            "x'; DROP TABLE t; --",
            &"x".repeat(64),
            "é",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName(_)), "{bad}");
            assert!(
                err.to_string().contains("not a replication slot name"),
                "{err}"
            );
        }
    }

    #[test]
    fn rows_of_any_version() {
        let row15 = [
            Some("false"),
            Some("150004"),
            Some("0/3000"),
            Some("00000001"),
            Some("debezium"),
            Some("logical"),
            Some("pgoutput"),
            Some("app"),
            Some("false"),
            Some("true"),
            Some("4242"),
            Some("0/1000"),
            Some("0/2000"),
            Some("reserved"),
            Some("1048576"),
            None,
            None,
            None,
        ];
        let f = facts_from(|i| row15[i]).unwrap();
        assert_eq!(
            (f.name.as_str(), f.slot_type),
            ("debezium", SlotType::Logical)
        );
        assert_eq!((f.active, f.active_pid), (true, Some(4242)));
        assert_eq!(f.restart_lsn, Some("0/1000".parse().unwrap()));
        assert_eq!(f.confirmed_flush_lsn, Some("0/2000".parse().unwrap()));
        assert_eq!(
            (f.wal_status, f.safe_wal_size),
            (Some(WalStatus::Reserved), Some(1048576))
        );
        assert_eq!((f.conflicting, f.invalidation_reason), (None, None));
        // PostgreSQL 12: no wal_status, no safe_wal_size (NULL from jsonb); a physical slot.
        let row12 = [
            Some("false"),
            Some("120000"),
            Some("0/3000"),
            Some("00000001"),
            Some("standby1"),
            Some("physical"),
            None,
            None,
            Some("false"),
            Some("false"),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ];
        let f = facts_from(|i| row12[i]).unwrap();
        assert_eq!(f.slot_type, SlotType::Physical);
        assert_eq!(
            (f.wal_status, f.safe_wal_size, f.restart_lsn),
            (None, None, None)
        );
        assert!(!f.is_lost());
        // PostgreSQL 17: invalidated.
        let mut row17 = row15;
        row17[13] = Some("lost");
        row17[16] = Some("wal_removed");
        assert!(facts_from(|i| row17[i]).unwrap().is_lost());
        // No slot: the position's row alone.
        let none = [
            Some("false"),
            Some("150004"),
            Some("0/3000"),
            Some("00000001"),
        ];
        assert!(facts_from(|i| none.get(i).copied().flatten()).is_none());
    }

    #[test]
    fn the_name_is_the_only_thing_interpolated() {
        assert!(query(Some("debezium")).contains("WHERE x.slot_name = 'debezium'"));
        assert!(!query(None).contains("WHERE"));
    }
}
