//! The layers of a working session: server version, recovery / read-only state, connection
//! headroom and round-trip time. `probe` gathers [`ServerFacts`] with one bounded query;
//! the rules ([`version`], [`recovery`], [`headroom`], [`rtt`]) turn facts into layers and
//! need no server.

use std::time::{Duration, Instant};

use pgsteady::text::sanitize_to;
use pgsteady::{Reason, SessionState, TargetSessionAttrs};
use tokio_postgres::{Client, SimpleQueryRow};

use crate::finding::Layer;
use crate::query::{self, MAX_QUERY_BYTES, QueryError, column, required};

/// How many characters of one value from the server a report keeps.
const MAX_VALUE_CHARS: usize = 200;

/// The query behind [`ServerFacts`]; every column is named so the answer is read by name.
const FACTS_SQL: &str = "SELECT current_setting('server_version') AS server_version, \
     pg_is_in_recovery()::text AS in_recovery, \
     current_setting('transaction_read_only') AS read_only, \
     current_setting('max_connections') AS max_connections, \
     current_setting('superuser_reserved_connections') AS reserved, \
     (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::text AS used, \
     CASE WHEN pg_is_in_recovery() \
       THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                     (SELECT timeline_id FROM pg_control_checkpoint())) \
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
     END::text AS timeline, \
     pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint::text AS lag_bytes, \
     round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 1)::text AS replay_age";

/// The fix for a query that failed on a session that started.
pub(crate) const QUERY_FIX: &str = "the session started but a query failed: read the server log \
     at this time (a statement_timeout or a terminated backend), then run doctor again";

/// What one query tells about a server (values from outside already escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version`.
    pub version: String,
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `transaction_read_only` (on in recovery too).
    pub read_only: bool,
    /// The current timeline, when the server could tell.
    pub timeline: Option<String>,
    /// On a standby: bytes received but not replayed (`None`: nothing received).
    pub lag_bytes: Option<String>,
    /// On a standby: seconds since the last replayed transaction.
    pub replay_age: Option<String>,
    /// `max_connections`.
    pub max_connections: i64,
    /// `superuser_reserved_connections`.
    pub reserved: i64,
    /// Client backends connected now, doctor's own included.
    pub used: i64,
}

impl ServerFacts {
    /// Reads the facts from the answer to doctor's query, by column name; an answer that is
    /// not PostgreSQL's (a column missing, a number that is not one) is `Err` with what is
    /// wrong.
    pub fn from_row(row: &SimpleQueryRow) -> Result<Self, String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            Ok(column(row, name)?.map(|v| sanitize_to(v, MAX_VALUE_CHARS).into_owned()))
        };
        let flag = |name: &str| -> Result<bool, String> {
            match required(row, name)? {
                "true" | "on" => Ok(true),
                "false" | "off" => Ok(false),
                other => Err(format!(
                    "the server's answer has `{}` for `{name}`, not a boolean",
                    sanitize_to(other, MAX_VALUE_CHARS)
                )),
            }
        };
        let number = |name: &str| -> Result<i64, String> {
            let v = required(row, name)?;
            v.trim().parse().map_err(|_| {
                format!(
                    "the server's answer has `{}` for `{name}`, not a number",
                    sanitize_to(v, MAX_VALUE_CHARS)
                )
            })
        };
        Ok(ServerFacts {
            version: text("server_version")?
                .ok_or("the server's answer has NULL for `server_version`")?,
            in_recovery: flag("in_recovery")?,
            read_only: flag("read_only")?,
            timeline: text("timeline")?,
            lag_bytes: text("lag_bytes")?,
            replay_age: text("replay_age")?,
            max_connections: number("max_connections")?,
            reserved: number("reserved")?,
            used: number("used")?,
        })
    }

    /// The session state, in the core's terms (one `satisfies` for the whole project).
    pub fn session(&self) -> SessionState {
        SessionState::new(self.in_recovery, self.read_only)
    }

    /// Slots open to non-superusers that nobody holds (negative when over-subscribed).
    pub fn free(&self) -> i64 {
        self.max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.used)
    }
}

/// "in recovery (a standby)", "primary, read-only", "primary, read-write".
pub fn describe(state: SessionState) -> &'static str {
    match (
        state.in_hot_standby == Some(true),
        state.default_transaction_read_only == Some(true),
    ) {
        (true, _) => "in recovery (a standby): read-only",
        (false, true) => "primary, but sessions are read-only (default_transaction_read_only)",
        (false, false) => "primary, read-write",
    }
}

/// Whether a host in `state` is one a libpq client asking for `want` would stay on. For
/// `prefer-standby` a primary counts too: libpq's second pass over the host list takes any
/// server when no standby answered (the host-list rule, [`crate::report::libpq_pick`],
/// prefers the standbys).
pub fn acceptable(state: SessionState, want: TargetSessionAttrs) -> bool {
    want == TargetSessionAttrs::PreferStandby || state.satisfies(want) == Some(true)
}

/// The `version` layer.
pub fn version(facts: &ServerFacts) -> Layer {
    Layer::ok("version", format!("PostgreSQL {}", facts.version), None)
}

/// The `version` layer when doctor's query got no usable answer.
pub(crate) fn unanswered(e: &QueryError) -> Layer {
    match e {
        QueryError::TimedOut(d) => Layer::fail("version", e.to_string(), Reason::TimedOut)
            .with_fix(crate::session::hung_fix(*d)),
        QueryError::TooLarge(_) => Layer::fail(
            "version",
            format!("cannot query the server: {e}"),
            Reason::Other,
        )
        .with_fix(NOT_POSTGRES_FIX),
        QueryError::Server(pg) => {
            if let Some(layer) = crate::pooler::pooler_failure(pg) {
                return layer;
            }
            let detail = format!("cannot query the server: {e}");
            if pg.as_db_error().is_some() {
                Layer::fail("version", detail, Reason::Db).with_fix(QUERY_FIX)
            } else if pg.is_closed() {
                let reason = pgsteady::classify::reason_of(pg);
                Layer::fail("version", detail, reason).with_fix(QUERY_FIX)
            } else {
                // tokio-postgres could not parse the answer (a row with another column count
                // than its description, say): not PostgreSQL speaking.
                Layer::fail("version", detail, Reason::Other).with_fix(NOT_POSTGRES_FIX)
            }
        }
    }
}

const NOT_POSTGRES_FIX: &str = "the server's answer to a catalog query is not PostgreSQL's: check \
     that this address and port belong to PostgreSQL (and not a proxy or another service \
     speaking its protocol)";

/// The `version` layer for an answer that is not PostgreSQL's.
pub fn malformed(what: &str) -> Layer {
    Layer::fail("version", what.to_owned(), Reason::Other).with_fix(NOT_POSTGRES_FIX)
}

/// The `recovery` layer: the session type against `target_session_attrs`.
pub fn recovery(facts: &ServerFacts, want: TargetSessionAttrs) -> Layer {
    let session = facts.session();
    let timeline = facts.timeline.as_deref().unwrap_or("unknown");
    let mut state = format!("{}; timeline {timeline}", describe(session));
    if facts.in_recovery {
        match (&facts.lag_bytes, &facts.replay_age) {
            (Some(bytes), Some(age)) => state.push_str(&format!(
                "; replay lag {bytes} bytes behind what it received, last replayed transaction \
                 {age} s ago"
            )),
            (Some(bytes), None) => state.push_str(&format!("; replay lag {bytes} bytes")),
            _ => state.push_str("; not streaming (no WAL received)"),
        }
    }
    if !acceptable(session, want) {
        Layer::fail(
            "recovery",
            format!("{state}, but target_session_attrs={want}"),
            Reason::WrongSessionType,
        )
    } else if facts.read_only {
        Layer::warn("recovery", format!("{state}: writes will fail"))
    } else {
        Layer::ok("recovery", state, None)
    }
}

/// Who holds connection slots: one group of sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Role name (`?` when not visible).
    pub user: String,
    /// `application_name` (`(none)` when empty).
    pub application: String,
    /// Client address, or `local socket`.
    pub client: String,
    /// How many sessions.
    pub count: String,
}

impl Holder {
    fn from_row(row: &SimpleQueryRow) -> Option<Self> {
        let text = |name: &str| {
            column(row, name)
                .ok()
                .map(|v| sanitize_to(v.unwrap_or("?"), MAX_VALUE_CHARS).into_owned())
        };
        Some(Holder {
            user: text("usename")?,
            application: text("application")?,
            client: text("client")?,
            count: text("sessions")?,
        })
    }
}

/// The `headroom` layer; `holders` (read only when no slot is free) names who holds them.
pub fn headroom(facts: &ServerFacts, holders: &[Holder]) -> Layer {
    let (max, reserved, used) = (facts.max_connections, facts.reserved, facts.used);
    let free = facts.free();
    let open = max.saturating_sub(reserved);
    let detail = format!(
        "{used} of {open} connections in use ({max} max_connections, {reserved} reserved), {free} free"
    );
    if free <= 0 {
        Layer::fail("headroom", detail, Reason::TooManyConnections)
            .with_fix(holders_fix(max, reserved, holders))
    } else if free.saturating_mul(10) < max {
        Layer::warn("headroom", detail)
    } else {
        Layer::ok("headroom", detail, None)
    }
}

fn holders_fix(max: i64, reserved: i64, holders: &[Holder]) -> String {
    let holders = if holders.is_empty() {
        "doctor cannot see the other sessions".to_owned()
    } else {
        let list: Vec<String> = holders
            .iter()
            .map(|h| {
                format!(
                    "{} by user {} application `{}` from {}",
                    h.count, h.user, h.application, h.client
                )
            })
            .collect();
        format!("held besides doctor's own: {}", list.join("; "))
    };
    format!(
        "all {} connection slots open to non-superusers are taken ({holders}): lower the pool \
         sizes of the biggest holders (their max connections), put a pooler (PgBouncer) in \
         front of the server, or raise max_connections (now {max}, needs a restart)",
        max.saturating_sub(reserved)
    )
}

/// The `rtt` layer from the round trips that completed.
pub fn rtt(samples: &[Duration]) -> Layer {
    let mut samples = samples.to_vec();
    samples.sort();
    match samples.get(samples.len() / 2) {
        Some(median) => Layer::ok(
            "rtt",
            format!("median of {} round trips", samples.len()),
            Some(*median),
        ),
        None => Layer::fail(
            "rtt",
            "SELECT 1 failed or took longer than --timeout",
            Reason::Other,
        )
        .with_fix(QUERY_FIX),
    }
}

/// Runs the server layers on a working session: gathers the facts, then applies the rules.
pub(crate) async fn probe(
    client: &Client,
    want: TargetSessionAttrs,
    timeout: Duration,
) -> (Vec<Layer>, Option<SessionState>) {
    let mut out = Vec::new();
    let row = match query::rows(client, FACTS_SQL, 1, MAX_QUERY_BYTES, timeout).await {
        Ok(rows) => rows.into_iter().next(),
        Err(e) => {
            out.push(unanswered(&e));
            return (out, None);
        }
    };
    let Some(row) = row else {
        out.push(
            Layer::fail("version", "the server returned no row", Reason::Other).with_fix(QUERY_FIX),
        );
        return (out, None);
    };
    let facts = match ServerFacts::from_row(&row) {
        Ok(f) => f,
        Err(what) => {
            out.push(malformed(&what));
            return (out, None);
        }
    };
    out.push(version(&facts));
    out.push(recovery(&facts, want));
    let holders = if facts.free() <= 0 {
        slot_holders(client, timeout).await
    } else {
        Vec::new()
    };
    out.push(headroom(&facts, &holders));
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        if query::rows(client, "SELECT 1", 1, MAX_QUERY_BYTES, timeout)
            .await
            .is_err()
        {
            break;
        }
        samples.push(started.elapsed());
    }
    out.push(rtt(&samples));
    (out, Some(facts.session()))
}

/// Who holds the connection slots: sessions grouped by user, application and client address
/// (pg_stat_activity; other roles' details show as unknown without pg_read_all_stats).
async fn slot_holders(client: &Client, timeout: Duration) -> Vec<Holder> {
    let sql = "SELECT coalesce(usename, '?') AS usename, \
               coalesce(nullif(application_name, ''), '(none)') AS application, \
               coalesce(host(client_addr), 'local socket') AS client, \
               count(*)::text AS sessions \
               FROM pg_stat_activity \
               WHERE usesysid IS NOT NULL AND coalesce(backend_type, 'client backend') = 'client backend' \
               AND pid <> pg_backend_pid() \
               GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 1, 2, 3 LIMIT 10";
    match query::rows(client, sql, 10, MAX_QUERY_BYTES, timeout).await {
        Ok(rows) => rows.iter().filter_map(Holder::from_row).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetSessionAttrs as T;

    fn facts(in_recovery: bool, read_only: bool) -> ServerFacts {
        ServerFacts {
            version: "16.4".into(),
            in_recovery,
            read_only,
            timeline: Some("3".into()),
            lag_bytes: None,
            replay_age: None,
            max_connections: 100,
            reserved: 3,
            used: 7,
        }
    }

    #[test]
    fn version_names_the_server_version() {
        let l = version(&facts(false, false));
        assert_eq!(
            (l.status, l.detail.as_str()),
            (crate::Status::Ok, "PostgreSQL 16.4")
        );
    }

    #[test]
    fn recovery_against_every_target_session_attrs() {
        use crate::Status::{Fail, Ok, Warn};
        // any, read-write, read-only, primary, standby, prefer-standby
        let rows = [
            ((false, false), [Ok, Ok, Fail, Ok, Fail, Ok]),
            ((false, true), [Warn, Fail, Warn, Warn, Fail, Warn]),
            ((true, true), [Warn, Fail, Warn, Fail, Warn, Warn]),
        ];
        let all = [
            T::Any,
            T::ReadWrite,
            T::ReadOnly,
            T::Primary,
            T::Standby,
            T::PreferStandby,
        ];
        for ((rec, ro), want) in rows {
            let got: Vec<_> = all
                .iter()
                .map(|t| recovery(&facts(rec, ro), *t).status)
                .collect();
            assert_eq!(got, want, "in_recovery={rec} read_only={ro}");
        }
        let l = recovery(&facts(false, false), T::Standby);
        assert_eq!(l.cause, Some(Reason::WrongSessionType));
        assert_eq!(
            l.detail,
            "primary, read-write; timeline 3, but target_session_attrs=standby"
        );
    }

    #[test]
    fn recovery_on_a_standby_says_how_far_replay_is_behind() {
        let mut f = facts(true, true);
        assert!(
            recovery(&f, T::Any)
                .detail
                .ends_with("; not streaming (no WAL received): writes will fail")
        );
        f.lag_bytes = Some("128".into());
        assert!(
            recovery(&f, T::Any)
                .detail
                .contains("; replay lag 128 bytes:")
        );
        f.replay_age = Some("2.5".into());
        assert!(recovery(&f, T::Any).detail.contains(
            "replay lag 128 bytes behind what it received, last replayed transaction 2.5 s ago"
        ));
    }

    #[test]
    fn headroom_fails_when_no_slot_is_free_and_names_the_holders() {
        let mut f = facts(false, false);
        assert_eq!(headroom(&f, &[]).status, crate::Status::Ok);
        f.used = 90; // 7 free of 100: under a tenth
        assert_eq!(headroom(&f, &[]).status, crate::Status::Warn);
        f.used = 97;
        let l = headroom(&f, &[]);
        assert_eq!(l.status, crate::Status::Fail);
        assert_eq!(
            l.detail,
            "97 of 97 connections in use (100 max_connections, 3 reserved), 0 free"
        );
        assert!(
            l.fix
                .as_deref()
                .unwrap()
                .contains("doctor cannot see the other sessions")
        );
        let holder = Holder {
            user: "app".into(),
            application: "api".into(),
            client: "10.0.0.7".into(),
            count: "90".into(),
        };
        let fix = headroom(&f, &[holder]).fix.unwrap();
        assert!(
            fix.contains(
                "held besides doctor's own: 90 by user app application `api` from 10.0.0.7"
            ),
            "{fix}"
        );
        // Absurd numbers from a server do not overflow.
        f.max_connections = i64::MIN;
        f.reserved = i64::MAX;
        assert_eq!(headroom(&f, &[]).status, crate::Status::Fail);
    }

    #[test]
    fn rtt_is_the_median_and_fails_without_any_round_trip() {
        let ms = Duration::from_millis;
        let l = rtt(&[ms(9), ms(1), ms(3)]);
        assert_eq!((l.status, l.ms), (crate::Status::Ok, Some(3.0)));
        assert_eq!(rtt(&[]).status, crate::Status::Fail);
    }

    #[test]
    fn describe_the_three_session_types() {
        assert_eq!(
            describe(SessionState::new(true, true)),
            "in recovery (a standby): read-only"
        );
        assert_eq!(
            describe(SessionState::new(false, false)),
            "primary, read-write"
        );
        assert!(describe(SessionState::new(false, true)).contains("default_transaction_read_only"));
    }

    #[test]
    fn query_failures_become_version_layers() {
        let l = unanswered(&QueryError::TimedOut(Duration::from_secs(2)));
        assert_eq!((l.layer, l.cause), ("version", Some(Reason::TimedOut)));
        let l = unanswered(&QueryError::TooLarge("too big".into()));
        assert_eq!(
            (l.status, l.cause),
            (crate::Status::Fail, Some(Reason::Other))
        );
        let l = malformed("the server's answer has no column `used`");
        assert!(l.fix.unwrap().contains("not PostgreSQL's"));
    }
}
