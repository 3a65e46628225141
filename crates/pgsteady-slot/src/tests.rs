//! Classification, table-driven: every state from facts alone.

use super::*;

fn lsn(s: &str) -> Lsn {
    s.parse().unwrap()
}

fn position(at: &str) -> ServerPosition {
    ServerPosition::new(lsn(at), false, 150004, Some(1))
}

fn logical(active: bool, wal_status: &str, restart: &str, confirmed: &str) -> SlotFacts {
    let mut f = SlotFacts::new("debezium", SlotType::Logical);
    f.plugin = Some("pgoutput".into());
    f.database = Some("app".into());
    f.active = active;
    f.active_pid = active.then_some(4242);
    f.restart_lsn = Some(lsn(restart));
    f.confirmed_flush_lsn = Some(lsn(confirmed));
    f.wal_status = WalStatus::parse(wal_status);
    f.safe_wal_size = Some(1048576);
    f
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
    assert_eq!(v.slot_start(), Some(lsn("0/2000")));
    let v = classify(
        "debezium",
        Some(logical(true, "reserved", "0/1000", "0/2000")),
        at,
        Some(lsn("1/3000")),
    );
    assert_eq!(v.ahead_bytes, Some(1 << 32));
}

#[test]
fn physical_slots_start_at_restart_lsn() {
    let mut f = SlotFacts::new("standby1", SlotType::Physical);
    f.active = true;
    f.restart_lsn = Some(lsn("0/2000"));
    f.wal_status = Some(WalStatus::Reserved);
    let v = classify("standby1", Some(f.clone()), position("0/3000"), None);
    assert_eq!(v.states, [SlotState::Ok]);
    assert_eq!(v.lag_bytes, Some(0x1000));
    let v = classify("standby1", Some(f), position("0/3000"), Some(lsn("0/1000")));
    assert_eq!(v.states, [SlotState::Gap]);
}

#[test]
fn invalidated_slots_are_lost() {
    let mut conflicting = SlotFacts::new("s", SlotType::Logical);
    conflicting.active = true;
    conflicting.wal_status = Some(WalStatus::Reserved);
    conflicting.conflicting = Some(true);
    let mut invalidated = conflicting.clone();
    invalidated.conflicting = None;
    invalidated.invalidation_reason = Some("rows_removed".into());
    for f in [conflicting, invalidated] {
        let v = classify("s", Some(f.clone()), position("0/3000"), None);
        assert_eq!(v.state, SlotState::Lost, "{f:?}");
    }
}

#[test]
fn states_order_by_severity() {
    let mut sorted = SlotState::ALL;
    sorted.sort();
    assert_eq!(sorted, SlotState::ALL);
    assert!(SlotState::ALL.iter().filter(|s| s.is_warning()).count() == 3);
    assert!(SlotState::ALL.iter().filter(|s| s.blocks_offset()).count() == 4);
}
