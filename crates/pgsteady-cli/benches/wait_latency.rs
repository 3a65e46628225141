//! Latency from the server's "ready to accept connections" log line to the waiter noticing,
//! for `pgsteady wait`, a `pg_isready` loop and a TCP-port loop, measured side by side against
//! the same starting server in each run, plus how many attempts each made.
//!
//! Run: `cargo bench -p pgsteady-cli --bench wait_latency` (RUNS=20 by default). Results go to
//! stdout as a Markdown table; per-run lines go to stderr.
//!
//! The two loops poll every 33 ms (~30 attempts per second, the same budget `pgsteady wait`
//! keeps to), so the comparison is about what "ready" means and how precisely each notices it,
//! not about a slower sleep. A negative latency means the waiter said "ready" before the
//! server was.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use pgsteady_testkit::{Cluster, StopMode};

const INTERVAL: Duration = Duration::from_millis(33);

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When the waiter reported ready.
    at: SystemTime,
    attempts: u32,
    /// From the first attempt's start to the last one's: `attempts - 1` intervals.
    span: Duration,
    /// `pgsteady wait` only: how long the successful attempt took (connect, TLS request,
    /// startup, SCRAM, backend start, query), from its JSON events.
    last_attempt_ms: Option<f64>,
}

async fn pgsteady_wait(url: String) -> Sample {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsteady"))
        .args(["wait", &url, "--timeout", "60s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .await
        .expect("run pgsteady wait");
    let at = SystemTime::now();
    assert!(out.status.success(), "pgsteady wait failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "attempt_failed")
        .collect();
    let ready_ms = events.last().and_then(|e| e["elapsed_ms"].as_f64());
    let last_start = failed
        .last()
        .map(|e| e["elapsed_ms"].as_f64().unwrap_or(0.0) + e["retry_in_ms"].as_f64().unwrap_or(0.0))
        .unwrap_or(0.0);
    Sample {
        at,
        attempts: failed.len() as u32 + 1,
        // The first attempt starts as `wait` starts (elapsed 0 in its events).
        span: Duration::from_secs_f64(last_start / 1e3),
        last_attempt_ms: ready_ms.map(|r| r - last_start),
    }
}

async fn pg_isready_loop(tool: std::path::PathBuf, port: u16) -> Sample {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last_start = started.elapsed();
        let status = tokio::process::Command::new(&tool)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "-t", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("run pg_isready");
        if status.success() {
            return Sample {
                at: SystemTime::now(),
                attempts,
                span: last_start,
                last_attempt_ms: None,
            };
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

async fn tcp_loop(port: u16) -> Sample {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last_start = started.elapsed();
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Sample {
                at: SystemTime::now(),
                attempts,
                span: last_start,
                last_attempt_ms: None,
            };
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Signed milliseconds from `ready` to `at`.
fn ms_after(at: SystemTime, ready: SystemTime) -> f64 {
    match at.duration_since(ready) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

// Two workers: the pg_isready loop spawns a process every 33 ms, and on a single thread the
// task reaping `pgsteady wait` would sometimes run (and stamp its exit) late.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let cluster = Cluster::builder().init().await.expect("init cluster");
    let port = cluster.port();
    let tool = cluster.bin().tool("pg_isready");
    let names = [
        "pgsteady wait",
        "pg_isready loop (33 ms)",
        "TCP port loop (33 ms)",
    ];
    let mut latency: [Vec<f64>; 3] = Default::default();
    let mut rate: [Vec<f64>; 3] = Default::default();
    let mut attempts: [Vec<u32>; 3] = Default::default();
    for run in 0..runs {
        let waiters = [
            tokio::spawn(pgsteady_wait(cluster.url())),
            tokio::spawn(pg_isready_loop(tool.clone(), port)),
            tokio::spawn(tcp_loop(port)),
        ];
        // Vary the phase between the pollers and the start.
        tokio::time::sleep(Duration::from_millis(300 + (run as u64 * 37) % 400)).await;
        cluster.start_server().await.expect("start server");
        let ready = cluster.ready_at().expect("ready line in the log");
        let mut line = format!("run {run:2}:");
        for (i, w) in waiters.into_iter().enumerate() {
            let s = w.await.expect("waiter");
            let l = ms_after(s.at, ready);
            latency[i].push(l);
            attempts[i].push(s.attempts);
            // A rate counts intervals: n attempts span n - 1 of them.
            if s.attempts > 1 {
                rate[i].push(f64::from(s.attempts - 1) / s.span.as_secs_f64());
            }
            line.push_str(&format!(
                "  {}: {l:7.1} ms, {} attempts",
                names[i], s.attempts
            ));
            if let Some(last) = s.last_attempt_ms {
                line.push_str(&format!(" (last attempt ~{last:.0} ms)"));
            }
        }
        eprintln!("{line}");
        cluster.stop(StopMode::Fast).await.expect("stop server");
    }
    println!(
        "| waiter | median ms after ready | p95 ms after ready | min | max | attempts (median) | attempts/s, start to start (max) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for i in 0..3 {
        let mut l = latency[i].clone();
        l.sort_by(f64::total_cmp);
        let mut a = attempts[i].clone();
        a.sort();
        let max_rate = rate[i].iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} |",
            names[i],
            pct(&l, 50.0),
            pct(&l, 95.0),
            l[0],
            l[l.len() - 1],
            a[a.len() / 2],
            max_rate
        );
    }
    println!("\n{runs} runs; negative = reported ready before the server logged ready.");

    // The floor: one successful attempt against a server that has been up for a while (the
    // first session after a start also builds the relation cache files, so it costs more).
    cluster.start_server().await.expect("start server");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut warm = Vec::new();
    for _ in 0..10 {
        let s = pgsteady_wait(cluster.url()).await;
        warm.push(s.last_attempt_ms.unwrap_or(f64::NAN));
    }
    warm.sort_by(f64::total_cmp);
    println!(
        "\nOne `pgsteady wait` attempt (connect, SSLRequest, SCRAM, session start, SELECT 1) against a \
         server up for 0.5 s: median {:.0} ms over 10 runs (JSON timestamps, 1 ms resolution).",
        pct(&warm, 50.0)
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Load average during the run (1/5/15 min): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
