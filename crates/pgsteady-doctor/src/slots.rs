//! The replication-slots section of `doctor`: inactive, at-risk and lost slots and the WAL
//! they retain. A warning, never a failure: a slot does not stop this application from
//! connecting, but an abandoned one fills the server's disk.

use pgsteady_slot::{self as slot, SlotState, Verdict};
use tokio_postgres::Client;

use crate::finding::{Layer, Status};

/// Reads every slot in one round trip and summarises them as one layer.
pub(crate) async fn layer(client: &Client) -> Layer {
    match slot::check_all(client).await {
        Ok(all) => summarise(&all),
        Err(e) => layer_of(
            Status::Warn,
            format!("cannot read pg_replication_slots: {e:#}"),
            Vec::new(),
        ),
    }
}

fn layer_of(status: Status, detail: String, hints: Vec<String>) -> Layer {
    Layer {
        layer: "slots",
        status,
        detail,
        ms: None,
        hints,
        reason: None,
        cause: None,
        fix: None,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

fn summarise(all: &[Verdict]) -> Layer {
    if all.is_empty() {
        return layer_of(Status::Ok, "no replication slots".to_owned(), Vec::new());
    }
    let retained: u64 = all.iter().filter_map(|v| v.retained_bytes).sum();
    let mut problems = Vec::new();
    let mut hints = Vec::new();
    for v in all {
        let bytes = mib(v.retained_bytes.unwrap_or(0));
        // A slot's name is the server's: escaped before it is shown.
        let name = pgsteady::text::sanitize_to(&v.slot, 200);
        if v.has(SlotState::Lost) {
            problems.push(format!("`{name}` lost"));
            hints.push(format!(
                "slot `{name}` is lost (its WAL was removed): its consumer must re-snapshot; drop it (SELECT pg_drop_replication_slot('{name}')) and recreate it"
            ));
            continue;
        }
        let risk = [SlotState::Unreserved, SlotState::Extended]
            .into_iter()
            .find(|s| v.has(*s));
        if let Some(risk) = risk {
            let safe = v
                .facts
                .as_ref()
                .and_then(|f| f.safe_wal_size)
                .map(|s| format!(", safe_wal_size {s} bytes"))
                .unwrap_or_default();
            problems.push(format!("`{name}` {risk} ({bytes} retained{safe})"));
            hints.push(format!(
                "slot `{name}` is at risk ({risk}): its consumer is {bytes} behind; once max_slot_wal_keep_size is exceeded and a checkpoint runs, the slot is lost and its consumer must re-snapshot"
            ));
        }
        if v.has(SlotState::Inactive) {
            problems.push(format!("`{name}` inactive ({bytes} retained)"));
            hints.push(format!(
                "slot `{name}` has no consumer and retains {bytes} of WAL, growing until the disk fills: start its consumer, or drop it if abandoned (SELECT pg_drop_replication_slot('{name}')); max_slot_wal_keep_size bounds what a slot may hold"
            ));
        }
    }
    let count = format!(
        "{} slot{}, {} of WAL retained",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        mib(retained)
    );
    if problems.is_empty() {
        layer_of(Status::Ok, format!("{count}; all active"), Vec::new())
    } else {
        hints.push("`pgsteady slot --all` lists them; `pgsteady slot NAME --offset LSN` checks a consumer's offset".to_owned());
        layer_of(
            Status::Warn,
            format!("{count}; {}", problems.join(", ")),
            hints,
        )
    }
}

#[cfg(test)]
mod tests {
    use pgsteady_slot::{ServerPosition, SlotFacts, SlotType, WalStatus, classify};

    use super::*;

    fn verdict(name: &str, active: bool, wal_status: &str) -> Verdict {
        let mut f = SlotFacts::new(name, SlotType::Logical);
        f.active = active;
        f.restart_lsn = Some("0/100000".parse().unwrap());
        f.confirmed_flush_lsn = f.restart_lsn;
        f.wal_status = WalStatus::parse(wal_status);
        f.safe_wal_size = Some(-5);
        let at = ServerPosition::new("0/500000".parse().unwrap(), false, 150004, Some(1));
        classify(name, Some(f), at, None)
    }

    #[test]
    fn warns_about_inactive_at_risk_and_lost_slots() {
        let l = summarise(&[]);
        assert_eq!(l.status, Status::Ok);
        let l = summarise(&[verdict("busy", true, "reserved")]);
        assert_eq!(l.status, Status::Ok, "{}", l.detail);
        let l = summarise(&[
            verdict("busy", true, "reserved"),
            verdict("idle", false, "reserved"),
            verdict("behind", true, "unreserved"),
            verdict("gone", false, "lost"),
        ]);
        assert_eq!(l.status, Status::Warn);
        assert!(
            l.detail.starts_with("4 slots, 16.0 MiB of WAL retained"),
            "{}",
            l.detail
        );
        for needle in [
            "`idle` inactive (4.0 MiB retained)",
            "`behind` unreserved",
            "`gone` lost",
        ] {
            assert!(l.detail.contains(needle), "{needle}: {}", l.detail);
        }
        assert!(!l.detail.contains("busy"), "{}", l.detail);
        assert!(
            l.hints
                .iter()
                .any(|h| h.contains("pg_drop_replication_slot('idle')"))
        );
    }
}
