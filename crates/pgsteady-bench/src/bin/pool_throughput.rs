//! Checkout + `SELECT 1` throughput of every client at several concurrencies, like for like
//! (each client caches its prepared statement per connection). See BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pgsteady_bench::{ClientKind, Target, ThroughputResults, measure_once};
use pgsteady_testkit::{Cluster, PgBouncer, PoolMode};

/// Checkout + SELECT 1 throughput, median of several rounds, against a throwaway cluster.
#[derive(Debug, Parser)]
struct Args {
    /// Clients to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ClientKind::ALL)]
    clients: Vec<ClientKind>,
    /// Concurrent workers (one measurement series each).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256])]
    concurrency: Vec<usize>,
    /// Maximum connections per pool.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// Rounds per client and concurrency (the report shows the median).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds measured per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Warm-up per round before measuring, in milliseconds.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Fewer, shorter rounds (3 rounds of 1 s).
    #[arg(long)]
    quick: bool,
    /// Measure through a connection pooler: `pgbouncer` starts a real PgBouncer in
    /// transaction pooling mode (`default_pool_size` = the pool size) in front of the
    /// cluster; the default clients are then those of `ClientKind::POOLER`.
    #[arg(long, value_name = "POOLER")]
    via: Option<Via>,
    /// Also write every sample as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A pooler to measure through.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Via {
    /// PgBouncer in transaction pooling mode.
    Pgbouncer,
}

#[tokio::main]
async fn main() -> Result<(), pgsteady_bench::BoxError> {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = 3;
        args.seconds = 1.0;
    }
    // One server connection per worker for pgbench and the naive loop, plus the sampling
    // session and the administrator's: the default 100 would refuse 256 workers.
    let most = args.concurrency.iter().copied().max().unwrap_or(1);
    let cluster = Cluster::builder()
        .max_connections(u32::try_from(most.max(args.pool_size) + 20)?.max(100))
        .start()
        .await?;
    let pgbench = cluster.bin().tool("pgbench");
    let bouncer = match args.via {
        None => None,
        Some(Via::Pgbouncer) => {
            if args.clients == ClientKind::ALL {
                args.clients = ClientKind::POOLER.to_vec();
            }
            Some(
                PgBouncer::builder()
                    .pool_mode(PoolMode::Transaction)
                    .default_pool_size(u32::try_from(args.pool_size)?)
                    .start(&cluster)
                    .await?,
            )
        }
    };
    let clients = ClientKind::runnable(&args.clients);
    let port = bouncer.as_ref().map_or(cluster.port(), PgBouncer::port);
    let target = Target::new(&cluster, port, args.pool_size);
    let warmup = Duration::from_millis(args.warmup_ms);
    let measure = Duration::from_secs_f64(args.seconds);
    eprintln!(
        "server {} on {}; pool size {}, {} rounds of {:?} after {:?} warm-up",
        cluster.bin().dir().display(),
        cluster.addr(),
        args.pool_size,
        args.rounds,
        measure,
        warmup
    );
    let mut results = ThroughputResults::default();
    for &concurrency in &args.concurrency {
        for round in 0..args.rounds {
            // Rotate the order every round so no client always runs first or last.
            for i in 0..clients.len() {
                let kind = clients[(i + round) % clients.len()];
                let sample =
                    measure_once(kind, &target, &pgbench, concurrency, warmup, measure).await?;
                eprintln!(
                    "concurrency {concurrency:>3} round {}/{}: {kind:<22} {:>9.0} ops/s {:>6.1} µs CPU/call {:>3} conns{}",
                    round + 1,
                    args.rounds,
                    sample.ops_per_sec,
                    sample.cpu_us_per_op,
                    sample.server_connections,
                    if sample.errors > 0 {
                        format!(" ({} errors)", sample.errors)
                    } else {
                        String::new()
                    }
                );
                results.add(concurrency, kind, sample);
            }
        }
    }
    println!(
        "\nCheckout + SELECT 1{}, pool size {}, median of {} rounds of {:?}:\n",
        if bouncer.is_some() {
            " through PgBouncer 1.18 (transaction pooling)"
        } else {
            ""
        },
        args.pool_size,
        args.rounds,
        measure
    );
    println!("{}", results.table(&clients));
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
