//! `pgsteady slot`'s words: the verdicts of `pgsteady_slot` (facts and states) as lines for
//! people and as one JSON object per slot.

use pgsteady_slot::{Lsn, SlotState, Verdict, WalStatus};

/// Why a missing slot may be missing, from what the server is: a standby, or a primary
/// on a timeline above 1 (promoted, or restored from a backup).
pub(crate) fn missing_note(v: &Verdict) -> Option<String> {
    if v.facts.is_some() {
        return None;
    }
    let p = &v.position;
    if p.in_recovery {
        return Some(
            "this server is a standby: slots created on the primary are not on it \
             (PostgreSQL 17 synchronizes only slots created with failover = true, with sync_replication_slots on)"
                .to_owned(),
        );
    }
    match p.timeline {
        Some(tli) if tli > 1 => Some(format!(
            "this server is on timeline {tli}: it was promoted (or restored from a backup). \
             Before PostgreSQL 17, logical slots are not carried over to a promoted standby, and from 17 only \
             those created with failover = true and synchronized: recreate the slot and re-snapshot the consumer"
        )),
        _ => None,
    }
}

/// One line per fact that matters, for people: the states with their numbers.
pub(crate) fn details(v: &Verdict) -> Vec<String> {
    let mut lines = Vec::new();
    let mb = human_bytes;
    for state in &v.states {
        let line = match state {
            SlotState::Missing => {
                let mut s = format!("missing: no slot `{}` on this server", v.slot);
                if let Some(note) = missing_note(v) {
                    s.push_str("; ");
                    s.push_str(&note);
                }
                s
            }
            SlotState::Lost => {
                let why = v
                    .facts
                    .as_ref()
                    .and_then(|f| f.invalidation_reason.clone())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                format!(
                    "lost{why}: the WAL it needs was removed; decoding fails (55000): drop and recreate the slot, re-snapshot the consumer"
                )
            }
            SlotState::Gap => format!(
                "gap: the offset {} is below the slot's start {}: {} of changes cannot be replayed",
                v.offset.unwrap_or_default(),
                v.slot_start().unwrap_or_default(),
                mb(v.gap_bytes.unwrap_or(0))
            ),
            SlotState::Ahead => format!(
                "ahead: the offset {} is {} beyond this server's WAL ({}): another cluster, timeline or a restore",
                v.offset.unwrap_or_default(),
                mb(v.ahead_bytes.unwrap_or(0)),
                v.position.lsn
            ),
            SlotState::Unreserved => format!(
                "unreserved: its WAL will be removed at the next checkpoint unless it catches up (safe_wal_size {})",
                safe_wal_size_text(v)
            ),
            SlotState::Extended => format!(
                "extended: it holds more WAL than max_wal_size (safe_wal_size {})",
                safe_wal_size_text(v)
            ),
            SlotState::Inactive => {
                let since = v
                    .facts
                    .as_ref()
                    .and_then(|f| f.inactive_since.clone())
                    .map(|s| format!(" since {s}"))
                    .unwrap_or_default();
                match v.retained_bytes {
                    Some(b) => format!(
                        "inactive{since}: no consumer attached; it retains {} of WAL",
                        mb(b)
                    ),
                    None => format!("inactive{since}: no consumer attached"),
                }
            }
            SlotState::Ok => format!(
                "ok: lag {}",
                v.lag_bytes.map(mb).unwrap_or_else(|| "unknown".to_owned())
            ),
            // A state a newer pgsteady-slot names: its name, at least.
            other => other.as_str().to_owned(),
        };
        lines.push(line);
    }
    lines
}

/// One line: the slot, the worst state, and the states' details.
pub(crate) fn summary(v: &Verdict) -> String {
    format!("slot `{}`: {}", v.slot, details(v).join("; "))
}

fn safe_wal_size_text(v: &Verdict) -> String {
    match v.facts.as_ref().and_then(|f| f.safe_wal_size) {
        Some(b) => format!("{b} bytes"),
        None => "unknown".to_owned(),
    }
}

/// The verdict as one JSON object : `slot`, `state`, `states`, `offset_usable`, `exists`,
/// the LSNs as text (`offset`, `position`, `restart_lsn`, `confirmed_flush_lsn`), the byte
/// counts (`retained_bytes`, `lag_bytes`, `gap_bytes`, `ahead_bytes`, `safe_wal_size`),
/// the slot's other facts, the server's (`in_recovery`, `server_version_num`,
/// `timeline`), `details` and `note`. Facts not known are `null`.
pub(crate) fn to_json(v: &Verdict) -> serde_json::Value {
    use serde_json::json;
    let text = |l: Option<Lsn>| l.map(|l| l.to_string());
    let f = v.facts.as_ref();
    json!({
        "slot": v.slot,
        "state": v.state.as_str(),
        "states": v.states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "offset_usable": v.offset_usable(),
        "exists": f.is_some(),
        "slot_type": f.map(|f| f.slot_type.as_str()),
        "plugin": f.and_then(|f| f.plugin.clone()),
        "database": f.and_then(|f| f.database.clone()),
        "temporary": f.and_then(|f| f.temporary),
        "active": f.map(|f| f.active),
        "active_pid": f.and_then(|f| f.active_pid),
        "wal_status": f.and_then(|f| f.wal_status).map(WalStatus::as_str),
        "safe_wal_size": f.and_then(|f| f.safe_wal_size),
        "conflicting": f.and_then(|f| f.conflicting),
        "invalidation_reason": f.and_then(|f| f.invalidation_reason.clone()),
        "inactive_since": f.and_then(|f| f.inactive_since.clone()),
        "offset": text(v.offset),
        "position": v.position.lsn.to_string(),
        "restart_lsn": text(f.and_then(|f| f.restart_lsn)),
        "confirmed_flush_lsn": text(f.and_then(|f| f.confirmed_flush_lsn)),
        "retained_bytes": v.retained_bytes,
        "lag_bytes": v.lag_bytes,
        "gap_bytes": v.gap_bytes,
        "ahead_bytes": v.ahead_bytes,
        "in_recovery": v.position.in_recovery,
        "server_version_num": v.position.version_num,
        "timeline": v.position.timeline,
        "details": details(v),
        "note": missing_note(v),
    })
}

/// `N bytes`, with the size in KiB, MiB or GiB from 1 KiB on: `283272 bytes (276.6 KiB)`.
fn human_bytes(b: u64) -> String {
    const UNITS: [(f64, &str); 3] = [
        (1024.0 * 1024.0 * 1024.0, "GiB"),
        (1024.0 * 1024.0, "MiB"),
        (1024.0, "KiB"),
    ];
    match UNITS.iter().find(|(size, _)| b as f64 >= *size) {
        Some((size, unit)) => format!("{b} bytes ({:.1} {unit})", b as f64 / size),
        None => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use pgsteady_slot::{ServerPosition, SlotFacts, SlotType, classify};

    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    fn position(at: &str) -> ServerPosition {
        ServerPosition::new(lsn(at), false, 150004, Some(1))
    }

    fn logical(active: bool, wal_status: &str) -> SlotFacts {
        let mut f = SlotFacts::new("debezium", SlotType::Logical);
        f.active = active;
        f.restart_lsn = Some(lsn("0/1000"));
        f.confirmed_flush_lsn = Some(lsn("0/2000"));
        f.wal_status = WalStatus::parse(wal_status);
        f
    }

    #[test]
    fn json_names_every_state() {
        let at = position("0/3000");
        let cases: [(Option<SlotFacts>, Option<&str>, usize); 4] = [
            (Some(logical(true, "reserved")), None, 1),
            (Some(logical(false, "unreserved")), None, 2),
            (Some(logical(false, "reserved")), Some("0/1FFF"), 2),
            (None, Some("1/0"), 2),
        ];
        for (facts, offset, states) in cases {
            let v = classify("debezium", facts.clone(), at, offset.map(lsn));
            let json = to_json(&v);
            assert_eq!(json["slot"], "debezium");
            assert_eq!(json["state"], v.state.as_str());
            assert_eq!(
                json["states"].as_array().unwrap().len(),
                states,
                "{facts:?}"
            );
        }
    }

    #[test]
    fn gap_and_ahead_say_their_positions() {
        let at = position("0/3000");
        let v = classify(
            "debezium",
            Some(logical(true, "reserved")),
            at,
            Some(lsn("0/1800")),
        );
        assert!(
            summary(&v).contains("0/1800") && summary(&v).contains("0/2000"),
            "{}",
            summary(&v)
        );
        let v = classify(
            "debezium",
            Some(logical(true, "reserved")),
            at,
            Some(lsn("1/3000")),
        );
        assert_eq!(to_json(&v)["ahead_bytes"], 1u64 << 32);
    }

    #[test]
    fn missing_says_why_when_the_server_knows() {
        let v = classify(
            "s",
            None,
            ServerPosition::new(lsn("0/1"), false, 150004, Some(3)),
            None,
        );
        assert!(missing_note(&v).unwrap().contains("timeline 3"));
        let v = classify(
            "s",
            None,
            ServerPosition::new(lsn("0/1"), true, 150004, None),
            None,
        );
        assert!(missing_note(&v).unwrap().contains("standby"));
        let v = classify("s", None, position("0/1"), None);
        assert_eq!(missing_note(&v), None);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(56), "56 bytes");
        assert_eq!(human_bytes(283272), "283272 bytes (276.6 KiB)");
        assert_eq!(human_bytes(16 << 20), "16777216 bytes (16.0 MiB)");
        assert_eq!(human_bytes(3 << 30), "3221225472 bytes (3.0 GiB)");
    }
}
