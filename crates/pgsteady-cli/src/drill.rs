//! `pgsteady drill`: a throwaway cluster, a fault, and what a client saw.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Cluster, StopMode};
use tokio_postgres::NoTls;

/// Arguments of `pgsteady drill`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrillArgs {
    /// Directory holding the PostgreSQL server binaries (initdb, postgres). Default: found
    /// through $PGSTEADY_PG_BIN, `pg_config --bindir`, then /usr/lib/postgresql/*/bin.
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
}

pub(crate) async fn run(args: DrillArgs) -> ExitCode {
    // The cluster lives inside `drill`; a Ctrl-C drops it, which stops the server and removes
    // its directory.
    tokio::select! {
        code = drill(args) => code,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: throwaway cluster stopped and removed");
            ExitCode::from(130)
        }
    }
}

async fn drill(args: DrillArgs) -> ExitCode {
    match steps(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgsteady drill: {e}");
            ExitCode::from(1)
        }
    }
}

async fn steps(args: DrillArgs) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut builder = Cluster::builder();
    if let Some(dir) = args.pg_bin {
        builder = builder.pg_bin(dir);
    }
    let cluster = builder.start().await?;
    println!(
        "started a throwaway PostgreSQL cluster on {} in {} ms ({})",
        cluster.addr(),
        started.elapsed().as_millis(),
        cluster.bin().dir().display()
    );

    let (client, connection) = cluster.pg_config().connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    println!("query through tokio-postgres: server_version = {version}");

    println!("fault: fast restart (SIGINT to the postmaster, then start again)");
    let fault_at = SystemTime::now();
    cluster.restart(StopMode::Fast).await?;
    match driver.await? {
        Err(e) => println!(
            "  the open connection ended: {} {}",
            e.code().map_or("no SQLSTATE", |c| c.code()),
            e.as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned())
        ),
        Ok(()) => println!("  the open connection ended without an error"),
    }
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the old connection is closed");
    println!("  its next query failed: closed = {}", err.is_closed());

    let ready = cluster
        .ready_at()
        .ok_or("the server log has no ready line")?;
    let (client, connection) = cluster.pg_config().connect(NoTls).await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    let first_success = SystemTime::now();
    println!(
        "  server ready again {} ms after the fault; a new connection's query succeeded {} ms after ready",
        millis(ready.duration_since(fault_at).unwrap_or_default()),
        millis(first_success.duration_since(ready).unwrap_or_default()),
    );
    drop(cluster);
    println!("stopped the cluster and removed its directory");
    Ok(())
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}
