//! Checkout + `SELECT 1` throughput per client and concurrency.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The most server connections of the login user seen in `pg_stat_activity` during the
    /// round (sampled every 200 ms; the benchmark's own sampling session left out).
    pub server_connections: u64,
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

/// CPU time used by this process's waited-for children so far (user + system).
fn children_cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| {
        let us = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
        };
        us(u.user_time()) + us(u.system_time())
    })
}

/// Counts the server connections of `target`'s user every 200 ms on a session of its own,
/// keeping the highest count, until dropped.
struct ConnectionCounter {
    most: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectionCounter {
    async fn start(target: &Target) -> Result<ConnectionCounter, BoxError> {
        let (client, connection) = target.pg_config().connect(tokio_postgres::NoTls).await?;
        let most = Arc::new(AtomicU64::new(0));
        let seen = most.clone();
        let task = tokio::spawn(async move {
            // The connection ends when the client does (the task is aborted on drop).
            tokio::spawn(connection);
            loop {
                let count = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE usename = current_user AND backend_type = 'client backend' \
                         AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .ok()
                    .and_then(|row| row.try_get::<_, i64>(0).ok());
                if let Some(n) = count {
                    seen.fetch_max(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(ConnectionCounter { most, task })
    }

    fn most(&self) -> u64 {
        self.most.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Measures one round: a fresh client, `workers` workers, warm-up, then the measured time.
/// [`ClientKind::Pgbench`] runs `pgbench` (the binary at `pgbench`) for warm-up + measured
/// time instead; its figure leaves out its connection time.
pub async fn measure_once(
    kind: ClientKind,
    target: &Target,
    pgbench: &Path,
    workers: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Sample, BoxError> {
    let counter = ConnectionCounter::start(target).await?;
    if kind == ClientKind::Pgbench {
        let cpu_before = children_cpu_time();
        let report = crate::pgbench::run(pgbench, target, workers, warmup, measure).await?;
        let cpu = children_cpu_time().saturating_sub(cpu_before);
        return Ok(Sample {
            ops_per_sec: report.tps,
            errors: report.failed,
            cpu_us_per_op: cpu.as_secs_f64() * 1e6 / report.processed.max(1) as f64,
            server_connections: counter.most(),
        });
    }
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
    let server_connections = counter.most();
    drop(counter);
    workload.stop_within(Duration::from_secs(10)).await;
    subject.close().await;
    let ok = after.ok - before.ok;
    Ok(Sample {
        ops_per_sec: ok as f64 / elapsed.as_secs_f64(),
        errors: after.err - before.err,
        cpu_us_per_op: cpu.as_secs_f64() * 1e6 / ok.max(1) as f64,
        server_connections,
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

    /// The median server connections of a client at a concurrency.
    pub fn median_connections(&self, concurrency: usize, kind: ClientKind) -> Option<f64> {
        let samples = self.samples.get(&concurrency)?.get(kind.name())?;
        median(
            &samples
                .iter()
                .map(|s| s.server_connections as f64)
                .collect::<Vec<_>>(),
        )
    }

    /// The markdown report: per concurrency and client the server connections it used, the
    /// median ops/s, ops/s per server connection, and the ratios to deadpool-postgres and
    /// to pgbench as the median of the ratios round by round (see
    /// [`ThroughputResults::paired_ratio`]).
    pub fn table(&self, clients: &[ClientKind]) -> Table {
        let mut table = Table::new(&[
            "concurrency",
            "client",
            "server conns",
            "median ops/s",
            "min..max ops/s",
            "ops/s per conn",
            "x deadpool",
            "x pgbench",
            "client CPU µs/call",
            "errors",
        ]);
        for (&concurrency, by_client) in &self.samples {
            for &kind in clients {
                let Some(samples) = by_client.get(kind.name()) else {
                    continue;
                };
                let rates = samples.iter().map(|s| s.ops_per_sec);
                let min = rates.clone().fold(f64::INFINITY, f64::min);
                let max = rates.fold(0.0, f64::max);
                let m = self.median(concurrency, kind).unwrap_or(0.0);
                let conns = self.median_connections(concurrency, kind).unwrap_or(0.0);
                let errors: u64 = samples.iter().map(|s| s.errors).sum();
                let ratio = |peer| {
                    self.paired_ratio(concurrency, kind, peer)
                        .map_or("-".to_owned(), |r| format!("{r:.2}x"))
                };
                table.row(vec![
                    concurrency.to_string(),
                    kind.name().to_owned(),
                    format!("{conns:.0}"),
                    thousands(m.round() as u64),
                    format!(
                        "{}..{}",
                        thousands(min.round() as u64),
                        thousands(max.round() as u64)
                    ),
                    if conns > 0.0 {
                        thousands((m / conns).round() as u64)
                    } else {
                        "-".to_owned()
                    },
                    ratio(ClientKind::Deadpool),
                    ratio(ClientKind::Pgbench),
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

    fn sample(ops_per_sec: f64, server_connections: u64) -> Sample {
        Sample {
            ops_per_sec,
            errors: 0,
            cpu_us_per_op: 10.0,
            server_connections,
        }
    }

    #[test]
    fn the_ratios_are_to_deadpool_and_pgbench_round_by_round() {
        let mut r = ThroughputResults::default();
        for ops in [100.0, 120.0, 110.0] {
            r.add(16, ClientKind::Deadpool, sample(ops, 16));
        }
        for ops in [50.0, 60.0, 55.0] {
            r.add(16, ClientKind::Sqlx, sample(ops, 16));
        }
        for ops in [200.0, 200.0, 230.0] {
            r.add(16, ClientKind::Naive, sample(ops, 16));
        }
        for ops in [400.0, 300.0, 460.0] {
            r.add(16, ClientKind::Pgbench, sample(ops, 16));
        }
        assert_eq!(r.median(16, ClientKind::Deadpool), Some(110.0));
        let text = r
            .table(&[
                ClientKind::Pgbench,
                ClientKind::Naive,
                ClientKind::Deadpool,
                ClientKind::Sqlx,
            ])
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        let cells = |i: usize| -> Vec<&str> { lines[i].split('|').map(str::trim).collect() };
        // | | concurrency | client | conns | median | min..max | per conn | x deadpool | x pgbench
        // Round by round: naive 200/100, 200/120, 230/110 -> 2.00x, 1.67x, 2.09x: median 2.00x;
        // over pgbench 200/400, 200/300, 230/460 -> 0.50x, 0.67x, 0.50x: median 0.50x.
        assert_eq!(cells(3)[2], "naive tokio-postgres", "{text}");
        assert_eq!(cells(3)[7..9], ["2.00x", "0.50x"], "{text}");
        assert_eq!(cells(4)[2], "deadpool-postgres", "{text}");
        assert_eq!(cells(4)[7], "1.00x", "{text}");
        assert_eq!(cells(5)[2], "sqlx", "{text}");
        assert_eq!(
            cells(5)[3..8],
            ["16", "55", "50..60", "3", "0.50x"],
            "{text}"
        );
        assert_eq!(cells(2)[2], "pgbench -M prepared", "{text}");
        assert_eq!(cells(2)[8], "1.00x", "{text}");
        assert_eq!(
            r.paired_ratio(16, ClientKind::Sqlx, ClientKind::Deadpool),
            Some(0.5)
        );
    }

    #[test]
    fn a_client_without_connections_has_no_rate_per_connection() {
        let mut r = ThroughputResults::default();
        r.add(1, ClientKind::Deadpool, sample(100.0, 0));
        let text = r.table(&[ClientKind::Deadpool]).to_string();
        let cells: Vec<&str> = text
            .lines()
            .nth(2)
            .unwrap()
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(cells[6], "-", "{text}");
    }
}
