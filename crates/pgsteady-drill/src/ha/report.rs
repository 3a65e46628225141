//! The `--ha` result: what `--json` prints, and the text the terminal gets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::choices::HaPath;
use super::figures::EngineFigures;
use crate::output::{self, Report};

/// The whole `--ha` result, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct HaReport {
    /// Always `"ha"`.
    pub(super) mode: &'static str,
    /// The cluster's directory (removed when the drill ends).
    pub(super) cluster_dir: String,
    /// Patroni's settings: ttl, loop_wait, retry_timeout, primary_start_timeout (s).
    pub(super) patroni: PatroniSettings,
    /// HAProxy's check interval, when it ran.
    pub(super) haproxy_check_interval_ms: Option<f64>,
    /// pgsteady's run / transaction deadline (also its acquire timeout).
    pub(super) deadline_ms: f64,
    /// One drill per connection path.
    pub(super) passes: Vec<Pass>,
    /// Whether pgsteady's guarantees held on every path.
    pub(super) held: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct PatroniSettings {
    pub(super) ttl: u32,
    pub(super) loop_wait: u32,
    pub(super) retry_timeout: u32,
    pub(super) primary_start_timeout: u32,
}

/// One connection path's drill: the single-server drill's report, plus the engine's figures.
#[derive(Debug, Serialize)]
pub(super) struct Pass {
    pub(super) path: HaPath,
    /// The connection string, password removed.
    pub(super) target: String,
    pub(super) report: Report,
    /// Per fault: what Patroni did and when, and each client's write gap.
    pub(super) engine: Vec<EngineFigures>,
    /// The first error message per class, per client (`naive`, `pgsteady`).
    pub(super) error_examples: BTreeMap<&'static str, BTreeMap<String, String>>,
}

fn secs(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
    }
}

/// The text result: per path, the drill's table, then the engine's table.
pub(super) fn summary(report: &HaReport) -> String {
    let mut out = String::new();
    let p = &report.patroni;
    let _ = writeln!(
        out,
        "pgsteady drill --ha: Patroni (ttl {}, loop_wait {}, retry_timeout {}, primary_start_timeout {}){}; pgsteady deadline {}",
        p.ttl,
        p.loop_wait,
        p.retry_timeout,
        p.primary_start_timeout,
        report
            .haproxy_check_interval_ms
            .map(|i| format!(", HAProxy check every {i:.0} ms"))
            .unwrap_or_default(),
        secs(Some(report.deadline_ms)),
    );
    for pass in &report.passes {
        let _ = writeln!(out);
        let _ = writeln!(out, "== {} ({})", pass.path.name(), pass.target);
        out.push_str(&output::summary(&pass.report));
        let _ = writeln!(out);
        out.push_str(&engine_table(&pass.engine));
        for (client, examples) in &pass.error_examples {
            for (class, message) in examples {
                let _ = writeln!(out, "first {class} error of {client}: {message}");
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "leader change: Patroni's own time of the promotion (/history), from the fault; writable: the leader's \
         ready line; write gap: last acknowledged write before the fault to the first after; after change / \
         after writable: from then to the first acknowledged write"
    );
    if report.held {
        let _ = writeln!(out, "pgsteady's guarantees held on every path");
    } else {
        let _ = writeln!(out, "pgsteady's guarantees BROKEN on a path (see above)");
    }
    out
}

fn engine_table(engine: &[EngineFigures]) -> String {
    let header = [
        "fault",
        "leaders",
        "leader change",
        "writable",
        "client",
        "write gap",
        "after change",
        "after writable",
        "longest call",
    ];
    let mut rows: Vec<[String; 9]> = vec![header.map(str::to_owned)];
    for e in engine {
        let leaders = format!("{} -> {}", e.old_leader, e.new_leader);
        for (i, (client, g)) in [("naive", &e.naive), ("pgsteady", &e.pgsteady)]
            .into_iter()
            .enumerate()
        {
            let first = i == 0;
            rows.push([
                if first {
                    e.fault.to_owned()
                } else {
                    String::new()
                },
                if first {
                    leaders.clone()
                } else {
                    String::new()
                },
                if first {
                    secs(e.fault_to_change_ms)
                } else {
                    String::new()
                },
                if first {
                    secs(Some(e.fault_to_writable_ms))
                } else {
                    String::new()
                },
                client.to_owned(),
                secs(g.write_gap_ms),
                secs(g.after_change_ms),
                secs(g.after_writable_ms),
                secs(Some(g.longest_call_ms)),
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (j, (cell, w)) in r.iter().zip(widths).enumerate() {
            if matches!(j, 0 | 1 | 4) {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
