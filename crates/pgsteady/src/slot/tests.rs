//! Classification, table-driven: every state from facts alone.

use serde_json::json;

use super::*;

fn lsn(s: &str) -> Lsn {
    s.parse().unwrap()
}

fn position(at: &str) -> ServerPosition {
    ServerPosition::new(lsn(at), false, 150004, Some(1))
}

fn logical(active: bool, wal_status: &str, restart: &str, confirmed: &str) -> SlotFacts {
    SlotFacts::from_json(&json!({
        "slot_name": "debezium", "plugin": "pgoutput", "slot_type": "logical", "database": "app",
        "temporary": false, "active": active, "active_pid": if active { json!(4242) } else { json!(null) },
        "restart_lsn": restart, "confirmed_flush_lsn": confirmed, "wal_status": wal_status,
        "safe_wal_size": 1048576, "two_phase": false, "some_future_column": [1, 2],
    }))
    .unwrap()
}

#[test]
fn reads_rows_of_any_version() {
    let f = logical(true, "reserved", "0/1000", "0/2000");
    assert_eq!(f.slot_type, SlotType::Logical);
    assert_eq!(f.active_pid, Some(4242));
    assert_eq!(f.restart_lsn, Some(lsn("0/1000")));
    assert_eq!(f.wal_status, Some(WalStatus::Reserved));
    // PostgreSQL 12: no wal_status, no safe_wal_size.
    let old = SlotFacts::from_json(&json!({
        "slot_name": "s", "slot_type": "physical", "active": false, "restart_lsn": null,
    }))
    .unwrap();
    assert_eq!(old.wal_status, None);
    assert_eq!(old.safe_wal_size, None);
    assert!(!old.is_lost());
    assert!(SlotFacts::from_json(&json!({"slot_type": "logical"})).is_none());
}

#[test]
fn each_state_and_the_worst_decides() {
    let at = position("0/3000");
    // (facts, offset, states, retained, lag)
    type Case = (Option<SlotFacts>, Option<&'static str>, Vec<SlotState>);
    let cases: Vec<Case> = vec![
        (
            Some(logical(true, "reserved", "0/1000", "0/2000")),
            None,
            vec![SlotState::Ok],
        ),
        (
            Some(logical(true, "reserved", "0/1000", "0/2000")),
            Some("0/2800"),
            vec![SlotState::Ok],
        ),
        (
            Some(logical(true, "reserved", "0/1000", "0/2000")),
            Some("0/2000"),
            vec![SlotState::Ok],
        ),
        (
            Some(logical(false, "reserved", "0/1000", "0/2000")),
            None,
            vec![SlotState::Inactive],
        ),
        (
            Some(logical(false, "unreserved", "0/1000", "0/2000")),
            None,
            vec![SlotState::Inactive, SlotState::Unreserved],
        ),
        (
            Some(logical(true, "extended", "0/1000", "0/2000")),
            None,
            vec![SlotState::Extended],
        ),
        (
            Some(logical(false, "lost", "0/1000", "0/2000")),
            None,
            vec![SlotState::Inactive, SlotState::Lost],
        ),
        (
            Some(logical(false, "reserved", "0/1000", "0/2000")),
            Some("0/1FFF"),
            vec![SlotState::Inactive, SlotState::Gap],
        ),
        (
            Some(logical(true, "reserved", "0/1000", "0/2000")),
            Some("0/3001"),
            vec![SlotState::Ahead],
        ),
        (None, None, vec![SlotState::Missing]),
        (
            None,
            Some("1/0"),
            vec![SlotState::Ahead, SlotState::Missing],
        ),
    ];
    for (facts, offset, want) in cases {
        let v = classify("debezium", facts.clone(), at, offset.map(lsn));
        assert_eq!(v.states, want, "{facts:?} {offset:?}");
        assert_eq!(v.state, *want.iter().max().unwrap());
        assert_eq!(v.offset_usable(), !v.state.blocks_offset());
        let json = v.to_json();
        assert_eq!(json["slot"], "debezium");
        assert_eq!(json["state"], v.state.as_str());
        assert_eq!(json["states"].as_array().unwrap().len(), want.len());
    }
}

#[test]
fn byte_counts() {
    let at = position("0/3000");
    let v = classify(
        "debezium",
        Some(logical(false, "reserved", "0/1000", "0/2000")),
        at,
        None,
    );
    assert_eq!(v.retained_bytes, Some(0x2000));
    assert_eq!(v.lag_bytes, Some(0x1000));
    let v = classify(
        "debezium",
        Some(logical(true, "reserved", "0/1000", "0/2000")),
        at,
        Some(lsn("0/2800")),
    );
    assert_eq!(
        v.lag_bytes,
        Some(0x800),
        "lag from the offset when one is given"
    );
    let v = classify(
        "debezium",
        Some(logical(true, "reserved", "0/1000", "0/2000")),
        at,
        Some(lsn("0/1800")),
    );
    assert_eq!(v.gap_bytes, Some(0x800));
    assert!(
        v.summary().contains("0/1800") && v.summary().contains("0/2000"),
        "{}",
        v.summary()
    );
    let v = classify(
        "debezium",
        Some(logical(true, "reserved", "0/1000", "0/2000")),
        at,
        Some(lsn("1/3000")),
    );
    assert_eq!(v.ahead_bytes, Some(1 << 32));
    assert_eq!(v.to_json()["ahead_bytes"], 1u64 << 32);
}

#[test]
fn physical_slots_start_at_restart_lsn() {
    let f = SlotFacts::from_json(&json!({
        "slot_name": "standby1", "slot_type": "physical", "active": true,
        "restart_lsn": "0/2000", "confirmed_flush_lsn": null, "wal_status": "reserved",
    }))
    .unwrap();
    let v = classify("standby1", Some(f.clone()), position("0/3000"), None);
    assert_eq!(v.states, [SlotState::Ok]);
    assert_eq!(v.lag_bytes, Some(0x1000));
    let v = classify("standby1", Some(f), position("0/3000"), Some(lsn("0/1000")));
    assert_eq!(v.states, [SlotState::Gap]);
}

#[test]
fn invalidated_slots_are_lost() {
    for extra in [
        json!({"conflicting": true, "wal_status": "reserved"}),
        json!({"invalidation_reason": "rows_removed", "wal_status": "reserved"}),
    ] {
        let mut row = json!({"slot_name": "s", "slot_type": "logical", "active": true});
        row.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let v = classify("s", SlotFacts::from_json(&row), position("0/3000"), None);
        assert_eq!(v.state, SlotState::Lost, "{row}");
    }
}

#[test]
fn missing_says_why_when_the_server_knows() {
    let v = classify(
        "s",
        None,
        ServerPosition::new(lsn("0/1"), false, 150004, Some(3)),
        None,
    );
    assert!(v.missing_note().unwrap().contains("timeline 3"));
    let v = classify(
        "s",
        None,
        ServerPosition::new(lsn("0/1"), true, 150004, None),
        None,
    );
    assert!(v.missing_note().unwrap().contains("standby"));
    let v = classify("s", None, position("0/1"), None);
    assert_eq!(v.missing_note(), None);
}

#[test]
fn states_order_by_severity() {
    let mut sorted = SlotState::ALL;
    sorted.sort();
    assert_eq!(sorted, SlotState::ALL);
    assert!(SlotState::ALL.iter().filter(|s| s.is_warning()).count() == 3);
    assert!(SlotState::ALL.iter().filter(|s| s.blocks_offset()).count() == 4);
}

#[test]
fn sizes_for_people() {
    assert_eq!(human_bytes(56), "56 bytes");
    assert_eq!(human_bytes(283272), "283272 bytes (276.6 KiB)");
    assert_eq!(human_bytes(16 << 20), "16777216 bytes (16.0 MiB)");
    assert_eq!(human_bytes(3 << 30), "3221225472 bytes (3.0 GiB)");
}
