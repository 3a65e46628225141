//! PostgreSQL's own `pgbench` as the reference row: libpq running the same statement
//! (`-M prepared`) with one connection per client, the throughput a pool's overhead is
//! measured against. A separate process, so it is not a [`Subject`](crate::Subject): it
//! has no warm-up (its figure leaves out the connection time) and whole seconds only.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::subject::{BoxError, QUERY, Target};

/// What one pgbench run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Report {
    /// `tps = ... (without initial connection time)`.
    pub(crate) tps: f64,
    /// `number of transactions actually processed`.
    pub(crate) processed: u64,
    /// `number of failed transactions` (0 when pgbench does not print it).
    pub(crate) failed: u64,
}

/// Longest pgbench output read: its summary is a few hundred bytes.
const OUTPUT_CAP: usize = 64 * 1024;

/// Runs `pgbench -n -M prepared -f FILE -c clients -j 2 -T seconds` against `target`, where
/// `seconds` is `warmup + measure` (plus a second per 32 clients for connecting) rounded up (pgbench's `-T` is whole seconds and counts
/// its connection time, which its `tps` leaves out: the warm-up is there so that opening
/// 256 connections on a loaded machine does not eat the measured time).
pub(crate) async fn run(
    pgbench: &Path,
    target: &Target,
    clients: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Report, BoxError> {
    let mut script = tempfile::Builder::new()
        .prefix("pgsteady-bench-")
        .suffix(".sql")
        .tempfile()?;
    writeln!(script, "{QUERY};")?;
    script.flush()?;
    // Its threads open their connections one after the other (SCRAM each): 256 of them took
    // over 2 s on two loaded cores, and a run whose `-T` ends first reports nothing.
    let connecting = Duration::from_secs(u64::try_from(clients / 32).unwrap_or(u64::MAX));
    let seconds = (warmup + measure + connecting)
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64;
    let threads = clients.clamp(1, 2);
    let child = tokio::process::Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(script.path())
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()])
        .args(["-h", &target.host, "-p", &target.port.to_string()])
        .args(["-U", &target.user, &target.dbname])
        // The environment, not the command line: other users' `ps` would show an argument.
        .env("PGPASSWORD", &target.password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", pgbench.display()))?;
    // 256 connections open in well under a second here; 30 s more is slack, not a figure.
    let bound = Duration::from_secs(seconds + 30);
    let output = tokio::time::timeout(bound, child.wait_with_output())
        .await
        .map_err(|_| format!("pgbench did not finish within {bound:?}"))??;
    let stdout = String::from_utf8_lossy(&output.stdout[..output.stdout.len().min(OUTPUT_CAP)]);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr[..output.stderr.len().min(OUTPUT_CAP)]);
        let last = stderr.lines().last().unwrap_or("").trim();
        return Err(format!("pgbench exited with {}: {last}", output.status).into());
    }
    parse(&stdout).ok_or_else(|| {
        let stderr = String::from_utf8_lossy(&output.stderr[..output.stderr.len().min(OUTPUT_CAP)]);
        let last = stderr.lines().last().unwrap_or("").trim().to_owned();
        let out = stdout.lines().last().unwrap_or("").trim().to_owned();
        // pgbench prints no rates when no transaction ran within `-T`.
        format!("pgbench printed no `tps =` line (last line {out:?}, last error {last:?})").into()
    })
}

/// The figures from pgbench's summary.
pub(crate) fn parse(stdout: &str) -> Option<Report> {
    let mut tps = None;
    let mut processed = None;
    let mut failed = 0;
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next()?.parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            processed = rest.split('/').next()?.trim().parse::<u64>().ok();
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            failed = rest.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(Report {
        tps: tps?,
        processed: processed?,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_15s_summary() {
        let out = "transaction type: /tmp/x.sql\n\
                   scaling factor: 1\n\
                   query mode: prepared\n\
                   number of clients: 16\n\
                   number of threads: 2\n\
                   maximum number of tries: 1\n\
                   duration: 2 s\n\
                   number of transactions actually processed: 168056\n\
                   number of failed transactions: 3 (0.002%)\n\
                   latency average = 0.190 ms\n\
                   initial connection time = 12.345 ms\n\
                   tps = 84028.123456 (without initial connection time)\n";
        assert_eq!(
            parse(out),
            Some(Report {
                tps: 84028.123456,
                processed: 168056,
                failed: 3,
            })
        );
        assert_eq!(parse("pgbench: error: connection refused\n"), None);
    }
}
