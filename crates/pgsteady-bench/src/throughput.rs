//! Checkout + `SELECT 1` throughput per client and concurrency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::{Table, median, thousands};
use crate::subject::{BoxError, ClientKind, Target};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ThroughputPlan {
    /// The clients, measured in this order (rotated every round).
    pub clients: Vec<ClientKind>,
    /// Numbers of concurrent workers.
    pub concurrency: Vec<usize>,
    /// Rounds per client and concurrency; the report shows the median.
    pub rounds: usize,
    /// Time each fresh pool runs before measuring (connections opened, statements prepared).
    pub warmup: Duration,
    /// Time measured per round.
    pub measure: Duration,
}

/// One round of one client at one concurrency.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Successful calls per second while measured.
    pub ops_per_sec: f64,
    /// Calls that failed while measured (should be 0).
    pub errors: u64,
    /// CPU time (user + system) of this process per successful call while measured, in
    /// microseconds: the client's own cost per checkout + query (the server's is not in it).
    /// Unlike throughput, other processes competing for the cores hardly change it.
    pub cpu_us_per_op: f64,
}

/// CPU time used by this process so far (user + system).
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let us = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
        };
        us(u.user_time()) + us(u.system_time())
    })
}

/// Measures one round: a fresh client, `workers` workers, warm-up, then the measured time.
pub async fn measure_once(
    kind: ClientKind,
    target: &Target,
    workers: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Sample, BoxError> {
    let subject = crate::clients::build(kind, target).await?;
    let workload = subject.start(workers);
    tokio::time::sleep(warmup).await;
    let (before, started, cpu_before) = (workload.progress(), Instant::now(), cpu_time());
    tokio::time::sleep(measure).await;
    let (after, elapsed, cpu) = (
        workload.progress(),
        started.elapsed(),
        cpu_time().saturating_sub(cpu_before),
    );
    workload.stop_within(Duration::from_secs(10)).await;
    subject.close().await;
    let ok = after.ok - before.ok;
    Ok(Sample {
        ops_per_sec: ok as f64 / elapsed.as_secs_f64(),
        errors: after.err - before.err,
        cpu_us_per_op: cpu.as_secs_f64() * 1e6 / ok.max(1) as f64,
    })
}

/// Every sample, by concurrency then client.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ThroughputResults {
    /// `results[concurrency][client name]` = samples in round order.
    pub samples: BTreeMap<usize, BTreeMap<String, Vec<Sample>>>,
}

impl ThroughputResults {
    /// Adds a sample.
    pub fn add(&mut self, concurrency: usize, kind: ClientKind, sample: Sample) {
        self.samples
            .entry(concurrency)
            .or_default()
            .entry(kind.name().to_owned())
            .or_default()
            .push(sample);
    }

    /// The median ops/s of a client at a concurrency.
    pub fn median(&self, concurrency: usize, kind: ClientKind) -> Option<f64> {
        let samples = self.samples.get(&concurrency)?.get(kind.name())?;
        median(&samples.iter().map(|s| s.ops_per_sec).collect::<Vec<_>>())
    }

    /// The median client CPU µs per call of a client at a concurrency.
    pub fn median_cpu(&self, concurrency: usize, kind: ClientKind) -> Option<f64> {
        let samples = self.samples.get(&concurrency)?.get(kind.name())?;
        median(&samples.iter().map(|s| s.cpu_us_per_op).collect::<Vec<_>>())
    }

    /// The median over rounds of `kind`'s ops/s divided by `peer`'s in the same round. The
    /// clients of a round run one after the other within seconds, so a machine that is
    /// slower for a while slows both sides of a ratio; the ratio of two medians taken over
    /// minutes does not cancel that drift. Rounds either client lacks are skipped.
    pub fn paired_ratio(
        &self,
        concurrency: usize,
        kind: ClientKind,
        peer: ClientKind,
    ) -> Option<f64> {
        let by_client = self.samples.get(&concurrency)?;
        let ours = by_client.get(kind.name())?;
        let theirs = by_client.get(peer.name())?;
        let ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .filter(|(_, p)| p.ops_per_sec > 0.0)
            .map(|(o, p)| o.ops_per_sec / p.ops_per_sec)
            .collect();
        median(&ratios)
    }

    /// The markdown report: median ops/s per client and concurrency, and the ratio to the
    /// fastest peer (deadpool, bb8, sqlx) at that concurrency: of the medians, and the median
    /// of the ratios round by round (see [`ThroughputResults::paired_ratio`]).
    pub fn table(&self, clients: &[ClientKind]) -> Table {
        let mut table = Table::new(&[
            "concurrency",
            "client",
            "median ops/s",
            "min..max ops/s",
            "vs fastest peer",
            "paired, per round",
            "client CPU µs/call",
            "errors",
        ]);
        for (&concurrency, by_client) in &self.samples {
            let fastest = clients
                .iter()
                .filter(|c| c.is_peer())
                .filter_map(|&c| Some((c, self.median(concurrency, c)?)))
                .fold(None, |best: Option<(ClientKind, f64)>, (c, m)| match best {
                    Some((_, b)) if b >= m => best,
                    _ => Some((c, m)),
                });
            for &kind in clients {
                let Some(samples) = by_client.get(kind.name()) else {
                    continue;
                };
                let rates = samples.iter().map(|s| s.ops_per_sec);
                let min = rates.clone().fold(f64::INFINITY, f64::min);
                let max = rates.fold(0.0, f64::max);
                let m = self.median(concurrency, kind).unwrap_or(0.0);
                let errors: u64 = samples.iter().map(|s| s.errors).sum();
                table.row(vec![
                    concurrency.to_string(),
                    kind.name().to_owned(),
                    thousands(m.round() as u64),
                    format!(
                        "{}..{}",
                        thousands(min.round() as u64),
                        thousands(max.round() as u64)
                    ),
                    fastest.map_or("-".to_owned(), |(_, f)| format!("{:.2}x", m / f)),
                    fastest
                        .and_then(|(peer, _)| self.paired_ratio(concurrency, kind, peer))
                        .map_or("-".to_owned(), |r| format!("{r:.2}x")),
                    self.median_cpu(concurrency, kind)
                        .map_or("-".to_owned(), |us| format!("{us:.1}")),
                    thousands(errors),
                ]);
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ops_per_sec: f64) -> Sample {
        Sample {
            ops_per_sec,
            errors: 0,
            cpu_us_per_op: 10.0,
        }
    }

    #[test]
    fn the_ratio_is_to_the_fastest_peer_at_each_concurrency() {
        let mut r = ThroughputResults::default();
        for ops in [100.0, 120.0, 110.0] {
            r.add(16, ClientKind::Deadpool, sample(ops));
        }
        for ops in [50.0, 60.0, 55.0] {
            r.add(16, ClientKind::Sqlx, sample(ops));
        }
        for ops in [200.0, 200.0, 230.0] {
            r.add(16, ClientKind::Naive, sample(ops)); // not a peer: no reference
        }
        assert_eq!(r.median(16, ClientKind::Deadpool), Some(110.0));
        let text = r
            .table(&[ClientKind::Naive, ClientKind::Deadpool, ClientKind::Sqlx])
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].contains("naive") && lines[2].contains("1.82x"),
            "{text}"
        );
        assert!(
            lines[3].contains("deadpool") && lines[3].contains("1.00x"),
            "{text}"
        );
        assert!(
            lines[4].contains("sqlx") && lines[4].contains("0.50x"),
            "{text}"
        );
        assert!(lines[4].contains("50..60"), "{text}");
        // Round by round: naive 200/100, 200/120, 230/110 -> 2.00x, 1.67x, 2.09x: median 2.00x.
        assert!(lines[2].contains("2.00x"), "{text}");
        assert_eq!(
            r.paired_ratio(16, ClientKind::Sqlx, ClientKind::Deadpool),
            Some(0.5)
        );
    }
}
