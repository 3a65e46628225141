//! Reading the server log.
//!
//! The cluster logs with `log_line_prefix = '%m %n [%p] '`: `%m` is the human-readable
//! timestamp with milliseconds (UTC), `%n` the same instant as Unix epoch seconds with
//! milliseconds, which is what we parse.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The log line prefix the cluster is configured with.
pub(crate) const LOG_LINE_PREFIX: &str = "%m %n [%p] ";

const READY: &str = "database system is ready to accept connections";

/// Every instant the server logged that it was ready to accept connections, oldest first.
pub(crate) fn ready_times(log: &str) -> Vec<SystemTime> {
    log.lines()
        .filter(|line| line.contains(READY))
        .filter_map(line_time)
        .collect()
}

const PROMOTE_REQUEST: &str = "received promote request";

/// Every instant a promotion completed, oldest first: the first "ready to accept
/// connections" line after each "received promote request" (the postmaster logs it once the
/// startup process has left recovery, on the new timeline).
pub(crate) fn promoted_times(log: &str) -> Vec<SystemTime> {
    let mut pending = false;
    let mut times = Vec::new();
    for line in log.lines() {
        if line.contains(PROMOTE_REQUEST) {
            pending = true;
        } else if pending && line.contains(READY) {
            pending = false;
            times.extend(line_time(line));
        }
    }
    times
}

/// The timestamp of one log line written with [`LOG_LINE_PREFIX`].
pub(crate) fn line_time(line: &str) -> Option<SystemTime> {
    // "2026-11-23 10:00:00.123 UTC 1763892000.123 [4242] LOG:  ..."
    let epoch = line.split_whitespace().nth(3)?;
    let (secs, millis) = epoch.split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    let millis: u64 = millis.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// The last `n` lines of the file, for error messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_epoch_field_of_the_prefix() {
        let log = "2026-11-23 10:00:00.123 UTC 1763892000.123 [4242] LOG:  starting PostgreSQL 15\n\
                   2026-11-23 10:00:00.456 UTC 1763892000.456 [4242] LOG:  database system is ready to accept connections\n\
                   2026-11-23 10:00:05.007 UTC 1763892005.007 [4300] LOG:  database system is ready to accept connections\n";
        let times = ready_times(log);
        assert_eq!(
            times,
            vec![
                UNIX_EPOCH + Duration::from_millis(1_763_892_000_456),
                UNIX_EPOCH + Duration::from_millis(1_763_892_005_007),
            ]
        );
    }

    #[test]
    fn a_promotion_is_the_first_ready_line_after_the_promote_request() {
        let log = "2026-11-23 10:00:00.100 UTC 1763892000.100 [1] LOG:  database system is ready to accept read-only connections\n\
                   2026-11-23 10:00:01.000 UTC 1763892001.000 [2] LOG:  received promote request\n\
                   2026-11-23 10:00:01.010 UTC 1763892001.010 [2] LOG:  selected new timeline ID: 2\n\
                   2026-11-23 10:00:01.020 UTC 1763892001.020 [1] LOG:  database system is ready to accept connections\n\
                   2026-11-23 10:00:09.000 UTC 1763892009.000 [1] LOG:  database system is ready to accept connections\n";
        assert_eq!(
            promoted_times(log),
            vec![UNIX_EPOCH + Duration::from_millis(1_763_892_001_020)]
        );
        assert_eq!(
            ready_times(log).len(),
            2,
            "read-only readiness is not readiness"
        );
    }

    #[test]
    fn ignores_lines_without_a_prefix() {
        assert!(ready_times("database system is ready to accept connections\n").is_empty());
    }
}
