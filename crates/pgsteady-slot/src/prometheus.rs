//! Prometheus metrics of a [`SlotWatch`] (feature `prometheus`), read from its snapshot at
//! scrape time: a scrape never queries the database.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pgsteady_slot_state` | gauge (1 for each state that holds) | `slot`, `state` |
//! | `pgsteady_slot_active` | gauge (0 or 1) | `slot` |
//! | `pgsteady_slot_retained_bytes` | gauge | `slot` |
//! | `pgsteady_slot_lag_bytes` | gauge | `slot` |
//! | `pgsteady_slot_safe_wal_size_bytes` | gauge (absent: unlimited or unknown) | `slot` |
//! | `pgsteady_slot_refreshes_total` | counter | |
//! | `pgsteady_slot_refresh_failures_total` | counter | |
//! | `pgsteady_slot_refresh_age_seconds` | gauge (absent: never refreshed) | |
//!
//! Per-slot series appear after the first successful refresh. `slot` is the slot's name
//! (PostgreSQL restricts it to `[a-z0-9_]`).

use std::fmt::Error as FmtError;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::{SlotState, SlotWatch};

/// Encodes a [`SlotWatch`]'s latest snapshot at each scrape.
///
/// # Examples
///
/// ```no_run
/// # fn demo(watch: &pgsteady_slot::SlotWatch) {
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(pgsteady_slot::prometheus::SlotCollector::new(watch)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SlotCollector {
    watch: SlotWatch,
}

impl SlotCollector {
    /// A collector for `watch`.
    pub fn new(watch: &SlotWatch) -> Self {
        SlotCollector {
            watch: watch.clone(),
        }
    }
}

impl Collector for SlotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), FmtError> {
        let snap = self.watch.snapshot();
        let v = &snap.verdicts;
        if !v.is_empty() {
            let mut family = encoder.encode_descriptor(
                "pgsteady_slot_state",
                "1 for each state that holds for the slot (several can), 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for verdict in v {
                for state in SlotState::ALL {
                    ConstGauge::new(i64::from(verdict.has(state))).encode(
                        family.encode_family(&[
                            ("slot", verdict.slot.as_str()),
                            ("state", state.as_str()),
                        ])?,
                    )?;
                }
            }
            per_slot(
                &mut encoder,
                "pgsteady_slot_active",
                "1 while a consumer is attached to the slot",
                None,
                v.iter().map(|v| {
                    (
                        v.slot.as_str(),
                        v.facts.as_ref().map(|f| i64::from(f.active)),
                    )
                }),
            )?;
            per_slot(
                &mut encoder,
                "pgsteady_slot_retained",
                "Bytes of WAL the slot holds (server position - restart_lsn)",
                Some(&Unit::Bytes),
                v.iter()
                    .map(|v| (v.slot.as_str(), v.retained_bytes.map(saturate))),
            )?;
            per_slot(
                &mut encoder,
                "pgsteady_slot_lag",
                "Bytes between the slot's confirmed position and the server's position",
                Some(&Unit::Bytes),
                v.iter()
                    .map(|v| (v.slot.as_str(), v.lag_bytes.map(saturate))),
            )?;
            per_slot(
                &mut encoder,
                "pgsteady_slot_safe_wal_size",
                "Bytes of WAL that can be written before the slot is at risk of being lost",
                Some(&Unit::Bytes),
                v.iter().map(|v| {
                    (
                        v.slot.as_str(),
                        v.facts.as_ref().and_then(|f| f.safe_wal_size),
                    )
                }),
            )?;
        }
        for (name, help, value) in [
            (
                "pgsteady_slot_refreshes",
                "Successful reads of the watched slots (one query each)",
                snap.refreshes,
            ),
            (
                "pgsteady_slot_refresh_failures",
                "Failed reads of the watched slots",
                snap.failures,
            ),
        ] {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        if let Some(at) = snap.refreshed_at {
            let metric = ConstGauge::new(at.elapsed().as_secs_f64());
            metric.encode(encoder.encode_descriptor(
                "pgsteady_slot_refresh_age",
                "Time since the watched slots were last read",
                Some(&Unit::Seconds),
                metric.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

fn saturate(b: u64) -> i64 {
    i64::try_from(b).unwrap_or(i64::MAX)
}

/// A gauge family with one series per slot whose value is known.
fn per_slot<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: impl Iterator<Item = (&'a str, Option<i64>)>,
) -> Result<(), FmtError> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (slot, value) in values {
        if let Some(value) = value {
            ConstGauge::new(value).encode(family.encode_family(&[("slot", slot)])?)?;
        }
    }
    Ok(())
}
