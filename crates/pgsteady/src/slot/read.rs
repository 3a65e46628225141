//! Reading slots and the server's position: one query, one round trip.

use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{Lsn, ServerPosition, SlotFacts, Verdict, classify};
use crate::{Error, ErrorKind};

/// The longest slot name PostgreSQL accepts (`NAMEDATALEN - 1`).
const MAX_NAME: usize = 63;

/// Checks `name` the way PostgreSQL does (`ReplicationSlotValidateName`): 1 to 63 lower-case
/// letters, digits and underscores. A [`ErrorKind::Config`] error naming it otherwise.
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
        return Err(Error::config(format!(
            "the slot name looks like a connection string (not shown); the name comes first: slot NAME [TARGET]. {RULE}"
        )));
    }
    let shown: String = name.chars().take(70).collect();
    Err(Error::config(format!(
        "`{}` is not a replication slot name: {RULE}",
        shown.escape_debug()
    )))
}

/// The server's position and the slots' rows (all of them, or the one named), in one
/// statement so that the byte counts compare values of the same moment.
fn query(name: Option<&str>) -> String {
    let filter = name
        .map(|n| format!(" WHERE s.slot_name = '{n}'"))
        .unwrap_or_default();
    format!(
        "SELECT pg_is_in_recovery()::text, current_setting('server_version_num'), \
         (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
         CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, \
         (SELECT coalesce(json_agg(row_to_json(s) ORDER BY s.slot_name), '[]'::json) \
          FROM pg_replication_slots s{filter})::text"
    )
}

async fn fetch(
    client: &Client,
    name: Option<&str>,
) -> Result<(ServerPosition, Vec<SlotFacts>), Error> {
    if let Some(n) = name {
        validate_name(n)?;
    }
    let messages = client
        .simple_query(&query(name))
        .await
        .map_err(|e| Error::from_pg(e, "reading pg_replication_slots"))?;
    let row = messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| unexpected("no row"))?;
    let in_recovery = row.get(0) == Some("true");
    let version_num = row
        .get(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| unexpected("no server_version_num"))?;
    let lsn: Lsn = match row.get(2) {
        Some(text) => text
            .parse()
            .map_err(|_| unexpected("an unreadable WAL position"))?,
        // A standby that has replayed nothing yet: its position is not known. Transient.
        None => {
            return Err(Error::new(
                ErrorKind::Db,
                "the standby has not replayed any WAL yet: its position is unknown",
            )
            .with_reason(crate::Reason::CannotConnectNow));
        }
    };
    let timeline = row.get(3).and_then(|t| u32::from_str_radix(t, 16).ok());
    let slots: Value = serde_json::from_str(row.get(4).unwrap_or("[]"))
        .map_err(|_| unexpected("unreadable slot rows"))?;
    let facts = slots
        .as_array()
        .map(|rows| rows.iter().filter_map(SlotFacts::from_json).collect())
        .unwrap_or_default();
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

fn unexpected(what: &str) -> Error {
    Error::new(
        ErrorKind::Db,
        format!("unexpected answer reading replication slots: {what}"),
    )
}

/// Reads the slot `name` (`None`: no such slot) and the server's position, in one round trip.
/// Fails with [`ErrorKind::Config`] for a name PostgreSQL would reject (see
/// [`validate_name`]), [`ErrorKind::Db`] if the statement fails.
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
/// # async fn demo(client: &tokio_postgres::Client) -> Result<(), pgsteady::Error> {
/// let verdict = pgsteady::slot::check(client, "debezium", None).await?;
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
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
            assert!(
                err.to_string().contains("not a replication slot name"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_name_is_the_only_thing_interpolated() {
        assert!(query(Some("debezium")).contains("WHERE s.slot_name = 'debezium'"));
        assert!(!query(None).contains("WHERE"));
    }
}
