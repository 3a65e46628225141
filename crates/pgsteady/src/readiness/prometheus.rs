//! Prometheus metrics (feature `prometheus`): [`Collector`]s that read a [`PoolMetrics`]
//! snapshot and the [`Readiness`] report at scrape time, encoded by `prometheus-client`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pgsteady_pool_max_size` | gauge | |
//! | `pgsteady_pool_open_connections` | gauge | |
//! | `pgsteady_pool_idle_connections` | gauge | |
//! | `pgsteady_pool_in_use_connections` | gauge | |
//! | `pgsteady_pool_waiters` | gauge | |
//! | `pgsteady_pool_connections_created_total` | counter | |
//! | `pgsteady_pool_connection_failures_total` | counter | `reason` |
//! | `pgsteady_pool_connections_closed_total` | counter | `reason` (the server's) |
//! | `pgsteady_pool_evictions_total` | counter | `reason` |
//! | `pgsteady_pool_retries_total` | counter | |
//! | `pgsteady_pool_commit_resolutions_total` | counter | `verdict`, `rule` (in-doubt COMMITs settled) |
//! | `pgsteady_pool_checkouts_total` | counter | |
//! | `pgsteady_pool_checkout_failures_total` | counter | |
//! | `pgsteady_pool_checkout_duration_seconds` | histogram | |
//! | `pgsteady_statement_mode` | gauge (1 for the current mode) | `mode` |
//! | `pgsteady_readiness_state` | gauge (1 for the current state) | `state` |
//! | `pgsteady_readiness_last_success_age_seconds` | gauge (absent: never) | |
//!
//! Labels carry only stable snake_case tokens (never a host, user or password).

use std::fmt::Error as FmtError;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::{Readiness, ReadyState};
use crate::metrics::{CHECKOUT_BUCKETS, EvictReason, PoolMetrics, ReasonCounts, StatementMode};
use crate::pool::Pool;

/// Reads a pool's [`PoolMetrics`] at each scrape.
///
/// # Examples
///
/// ```no_run
/// # fn demo(pool: &pgsteady::Pool) -> Result<(), std::fmt::Error> {
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(pgsteady::readiness::prometheus::PoolCollector::new(pool)));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PoolCollector {
    pool: Pool,
}

impl PoolCollector {
    /// A collector for `pool`.
    pub fn new(pool: &Pool) -> Self {
        PoolCollector { pool: pool.clone() }
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), FmtError> {
        encode_pool(&self.pool.metrics(), &mut encoder)
    }
}

/// Reads a [`Readiness`] report at each scrape, and its pool's metrics if it has one (so one
/// collector covers a readiness model whose pool is attached later).
#[derive(Debug, Clone)]
pub struct ReadinessCollector {
    readiness: Readiness,
}

impl ReadinessCollector {
    /// A collector for `readiness`.
    pub fn new(readiness: &Readiness) -> Self {
        ReadinessCollector {
            readiness: readiness.clone(),
        }
    }
}

impl Collector for ReadinessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), FmtError> {
        let report = self.readiness.check();
        let mut family = encoder.encode_descriptor(
            "pgsteady_readiness_state",
            "1 for the current readiness state, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for state in ReadyState::ALL {
            let value = i64::from(report.state == state);
            ConstGauge::new(value).encode(family.encode_family(&[("state", state.as_str())])?)?;
        }
        if let Some(age) = report.last_success_age {
            gauge(
                &mut encoder,
                "pgsteady_readiness_last_success_age",
                "Time since the last successful database round trip",
                Some(&Unit::Seconds),
                age.as_secs_f64(),
            )?;
        }
        if let Some(pool) = self.readiness.pool() {
            encode_pool(&pool.metrics(), &mut encoder)?;
        }
        Ok(())
    }
}

/// A registry holding a [`ReadinessCollector`] for `readiness` (and so its pool's metrics).
pub fn registry(readiness: &Readiness) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ReadinessCollector::new(readiness)));
    registry
}

/// Encodes `registry` in the text format, ending with `# EOF`.
pub fn encode(registry: &Registry) -> Result<String, FmtError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

fn encode_pool(m: &PoolMetrics, encoder: &mut DescriptorEncoder<'_>) -> Result<(), FmtError> {
    {
        let mut family = encoder.encode_descriptor(
            "pgsteady_statement_mode",
            "1 for how the pool's statements run now (named, unnamed, or unnamed since \
         statement_cache=auto detected a transaction pooler), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for mode in StatementMode::ALL {
            let value = i64::from(m.statement_mode == mode);
            ConstGauge::new(value).encode(family.encode_family(&[("mode", mode.as_str())])?)?;
        }
    }
    let gauges = [
        (
            "pgsteady_pool_max_size",
            "The most connections the pool opens",
            m.max_size,
        ),
        (
            "pgsteady_pool_open_connections",
            "Connections open (idle + in use)",
            m.open,
        ),
        ("pgsteady_pool_idle_connections", "Idle connections", m.idle),
        (
            "pgsteady_pool_in_use_connections",
            "Connections checked out",
            m.in_use,
        ),
        (
            "pgsteady_pool_waiters",
            "Callers waiting for a connection",
            m.waiters,
        ),
    ];
    for (name, help, value) in gauges {
        gauge(encoder, name, help, None, value as i64)?;
    }
    let counters = [
        (
            "pgsteady_pool_connections_created",
            "Connections opened",
            m.creates,
        ),
        (
            "pgsteady_pool_retries",
            "Retries made by Pool::run and Pool::transaction",
            m.retries,
        ),
        (
            "pgsteady_pool_checkouts",
            "Successful checkouts",
            m.checkouts,
        ),
        (
            "pgsteady_pool_checkout_failures",
            "Checkouts that failed (timeout, permanent error, closed pool)",
            m.checkout_failures,
        ),
    ];
    for (name, help, value) in counters {
        let metric = ConstCounter::new(value);
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    by_reason(
        encoder,
        "pgsteady_pool_connection_failures",
        "Failed connection attempts, by reason",
        &m.create_failures,
    )?;
    by_reason(
        encoder,
        "pgsteady_pool_connections_closed",
        "Connections the server or the network closed, by the reason given",
        &m.closed_by,
    )?;
    let mut family = encoder.encode_descriptor(
        "pgsteady_pool_evictions",
        "Connections removed from the pool, by reason",
        None,
        MetricType::Counter,
    )?;
    for why in EvictReason::ALL {
        ConstCounter::new(m.evictions(why))
            .encode(family.encode_family(&[("reason", why.as_str())])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "pgsteady_pool_commit_resolutions",
        "In-doubt COMMITs settled by Pool::transaction, by verdict and the rule that gave it",
        None,
        MetricType::Counter,
    )?;
    for (verdict, rule, n) in m.commit_resolutions.iter_all() {
        ConstCounter::new(n).encode(
            family.encode_family(&[("verdict", verdict.as_str()), ("rule", rule.as_str())])?,
        )?;
    }
    let buckets: Vec<(f64, u64)> = CHECKOUT_BUCKETS
        .iter()
        .map(|b| b.as_secs_f64())
        .chain(std::iter::once(f64::INFINITY))
        .zip(m.checkout_buckets.iter().copied())
        .collect();
    let count = m.checkout_buckets.iter().sum();
    encoder
        .encode_descriptor(
            "pgsteady_pool_checkout_duration",
            "Time to check out a connection",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(m.checkout_seconds_sum, count, &buckets, None)
}

fn gauge<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), FmtError>
where
    ConstGauge<V>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// A counter family with one series per reason, every known reason present (at 0 until it
/// happens, so `rate()` sees the first increment).
fn by_reason(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    counts: &ReasonCounts,
) -> Result<(), FmtError> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (reason, n) in counts.iter_all() {
        ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_without_a_pool_encodes_its_state() {
        let readiness = Readiness::new();
        readiness.record_ok();
        let text = encode(&registry(&readiness)).unwrap();
        assert!(
            text.contains("pgsteady_readiness_state{state=\"ready\"} 1"),
            "{text}"
        );
        assert!(text.contains("pgsteady_readiness_state{state=\"not_ready\"} 0"));
        assert!(text.contains("pgsteady_readiness_last_success_age_seconds "));
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("pgsteady_pool_"));
    }
}
