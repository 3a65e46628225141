//! What the drill prints: progress while it runs (a status line on a terminal, plain lines
//! otherwise), then the table or JSON.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clients::Ledger;
use super::figures::{ClientFigures, FaultFigures, classes};

/// The whole result, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The throwaway cluster's directory (removed when the drill ends).
    pub(crate) cluster_dir: String,
    pub(crate) server_version: String,
    /// Drill time: from the clients' start to the last call, in ms.
    pub(crate) duration_ms: f64,
    pub(crate) workers_per_client: usize,
    pub(crate) pace_ms: f64,
    /// The pool's configuration, in words.
    pub(crate) pgsteady_config: Vec<String>,
    pub(crate) faults: Vec<FaultFigures>,
    pub(crate) totals: Totals,
    /// pgsteady's guarantees and whether they held.
    pub(crate) guarantees: Guarantees,
    /// Successes and errors per 100 ms from the start, per client: `[ok, err]`.
    pub(crate) timeline: Timeline,
}

#[derive(Debug, Serialize)]
pub(crate) struct Totals {
    pub(crate) naive: ClientFigures,
    pub(crate) pgsteady: ClientFigures,
}

#[derive(Debug, Serialize)]
pub(crate) struct Guarantees {
    pub(crate) held: bool,
    pub(crate) checked: Vec<&'static str>,
    pub(crate) violations: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Timeline {
    pub(crate) bucket_ms: u64,
    pub(crate) naive: Vec<(u64, u64)>,
    pub(crate) pgsteady: Vec<(u64, u64)>,
}

/// pgsteady's guarantees, as `--help`, the README and the report state them.
pub(crate) const GUARANTEES: [&str; 4] = [
    "0 errors surfaced through run / transaction (an unknown commit outcome counts as one)",
    "every acknowledged write is in the table",
    "no write is in the table twice",
    "no write reported not committed is in the table",
];

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One status line on stderr, redrawn.
    Tty,
    /// One line per event on stderr.
    Lines,
}

impl Mode {
    pub(crate) fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Lines
        }
    }
}

/// Progress reporting, shared with the ticker task.
#[derive(Debug)]
pub(crate) struct Progress {
    mode: Mode,
    started: Instant,
    stage: Mutex<String>,
    ledgers: [Arc<Ledger>; 2],
}

impl Progress {
    pub(crate) fn new(mode: Mode, ledgers: [Arc<Ledger>; 2]) -> Arc<Self> {
        Arc::new(Progress {
            mode,
            started: Instant::now(),
            stage: Mutex::new("starting".to_owned()),
            ledgers,
        })
    }

    fn counts(&self) -> String {
        let (n_ok, n_err) = self.ledgers[0].progress();
        let (p_ok, p_err) = self.ledgers[1].progress();
        format!("naive ok {n_ok} err {n_err} | pgsteady ok {p_ok} err {p_err}")
    }

    /// Sets what is happening now and, in line mode, prints it with the counts.
    pub(crate) fn stage(&self, what: impl Into<String>) {
        let what = what.into();
        if self.mode == Mode::Lines {
            eprintln!(
                "[{:6.2}s] {what}  ({})",
                self.started.elapsed().as_secs_f64(),
                self.counts()
            );
        }
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }

    /// Prints a line now (clearing the status line on a terminal).
    pub(crate) fn note(&self, line: &str) {
        match self.mode {
            Mode::Tty => eprintln!("\r\x1b[2K{line}"),
            Mode::Lines => eprintln!("{line}"),
        }
    }

    /// On a terminal, redraws the status line every 100 ms until the returned guard drops.
    pub(crate) fn ticker(self: &Arc<Self>) -> Ticker {
        let progress = self.clone();
        let task = (self.mode == Mode::Tty).then(|| {
            tokio::spawn(async move {
                loop {
                    let stage = progress
                        .stage
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    eprint!(
                        "\r\x1b[2K[{:6.1}s] {stage}  {}",
                        progress.started.elapsed().as_secs_f64(),
                        progress.counts()
                    );
                    let _ = std::io::stderr().flush();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Ticker { task }
    }
}

/// Stops the status line (and clears it) when dropped.
#[derive(Debug)]
pub(crate) struct Ticker {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "never".to_owned(),
        Some(ms) => duration(ms),
    }
}

fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn unknown(f: &ClientFigures) -> String {
    match f.writes.unknown {
        0 => "0".to_owned(),
        n => format!("{n} ({} committed)", f.writes.unknown_present),
    }
}

const HEADER: [&str; 11] = [
    "fault",
    "window",
    "client",
    "errors",
    "ready->ok",
    "no success",
    "writes ok",
    "present",
    "dup",
    "unknown",
    "error classes",
];

fn row(
    fault: &str,
    window: &str,
    client: &str,
    f: &ClientFigures,
    first_success: bool,
) -> [String; 11] {
    [
        fault.to_owned(),
        window.to_owned(),
        client.to_owned(),
        f.errors.to_string(),
        if first_success {
            millis(f.ready_to_first_success_ms)
        } else {
            String::new()
        },
        if first_success {
            duration(f.no_success_ms)
        } else {
            String::new()
        },
        f.writes.acknowledged.to_string(),
        f.writes.present.to_string(),
        f.writes.duplicated.to_string(),
        unknown(f),
        classes(&f.errors_by_class),
    ]
}

/// Prints a drill's figures, one JSON object with `--json`, else `text` (the table), and
/// returns the verdict's exit code: [`crate::exit::HELD`] or [`crate::exit::BROKEN`];
/// [`crate::exit::COULD_NOT_RUN`] when the figures cannot be encoded. The one ending of the
/// plain, `--ha` and `--herd` drills.
pub(crate) fn verdict<R: Serialize>(
    json: bool,
    report: &R,
    text: impl FnOnce(&R) -> String,
    held: bool,
) -> u8 {
    use crate::exit::{BROKEN, COULD_NOT_RUN, HELD};
    if json {
        match serde_json::to_string(report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("pgsteady drill: cannot encode the figures: {e}");
                return COULD_NOT_RUN;
            }
        }
    } else {
        print!("{}", text(report));
    }
    if held { HELD } else { BROKEN }
}

/// The end table, aligned, with the totals and the verdict.
pub(crate) fn table(report: &Report) -> String {
    let mut rows: Vec<[String; 11]> = vec![HEADER.map(str::to_owned)];
    for f in &report.faults {
        // When the fault began (from the clients' start) and how long it was applied.
        let window = format!(
            "{:.1} s +{:.1} s",
            f.start_ms / 1000.0,
            (f.end_ms - f.start_ms) / 1000.0
        );
        rows.push(row(f.name, &window, "naive", &f.naive, true));
        rows.push(row("", "", "pgsteady", &f.pgsteady, true));
    }
    let whole = format!("0.0 s +{:.1} s", report.duration_ms / 1000.0);
    rows.push(row(
        "whole drill",
        &whole,
        "naive",
        &report.totals.naive,
        false,
    ));
    rows.push(row("", "", "pgsteady", &report.totals.pgsteady, false));
    let mut widths = [0usize; 11];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i == 1 || i == rows.len() - 2 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
        let mut line = String::new();
        for (j, (cell, w)) in r.iter().zip(widths).enumerate() {
            // Names and classes left-aligned, numbers right-aligned.
            if matches!(j, 0 | 2 | 10) {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The whole human-readable result: setup, table, notes, verdict.
pub(crate) fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pgsteady drill: {} faults in {:.1} s against PostgreSQL {}, {} workers per client, one call per worker every {} ms (1 in 3 a write)",
        report.faults.len(),
        report.duration_ms / 1000.0,
        report.server_version,
        report.workers_per_client,
        report.pace_ms
    );
    let _ = writeln!(
        out,
        "naive:    tokio-postgres, one connection per worker, reconnect at once after any error, no timeouts"
    );
    let _ = writeln!(out, "pgsteady: {}", report.pgsteady_config.join(", "));
    let _ = writeln!(out);
    out.push_str(&table(report));
    let notes: Vec<String> = report
        .faults
        .iter()
        .flat_map(|f| f.notes.iter().map(move |n| format!("{}: {n}", f.name)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out);
        for n in notes {
            let _ = writeln!(out, "note: {n}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "window: when the fault began (from the clients' start) and how long it was applied; \
         ready->ok: from the server's ready log line (or the fault being lifted) to the first success; \
         no success: longest stretch without any success after the fault began; \
         unknown: COMMIT sent, no answer (and how many did commit)"
    );
    if report.guarantees.held {
        let _ = writeln!(
            out,
            "pgsteady's guarantees held: {}",
            report.guarantees.checked.join("; ")
        );
    } else {
        let _ = writeln!(out, "pgsteady's guarantees BROKEN:");
        for v in &report.guarantees.violations {
            let _ = writeln!(out, "  - {v}");
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::figures::{FaultFigures, WriteFigures};

    /// A small report: one fault, where the naive client failed and pgsteady did not.
    pub(crate) fn sample() -> Report {
        let naive = ClientFigures {
            errors: 12,
            errors_by_class: [("57P01".to_owned(), 4), ("reset".to_owned(), 8)].into(),
            calls_ok: 90,
            ready_to_first_success_ms: Some(48.0),
            no_success_ms: 310.0,
            writes: WriteFigures {
                acknowledged: 30,
                present: 30,
                unknown: 1,
                ..WriteFigures::default()
            },
        };
        let pgsteady = ClientFigures {
            errors: 0,
            errors_by_class: Default::default(),
            calls_ok: 88,
            ready_to_first_success_ms: Some(75.0),
            no_success_ms: 320.0,
            writes: WriteFigures {
                acknowledged: 29,
                present: 29,
                ..WriteFigures::default()
            },
        };
        Report {
            cluster_dir: "/tmp/pgsteady-x".to_owned(),
            server_version: "15.18".to_owned(),
            duration_ms: 4200.0,
            workers_per_client: 4,
            pace_ms: 10.0,
            pgsteady_config: vec!["pgsteady::Pool max_size 4".to_owned()],
            faults: vec![FaultFigures {
                name: "fast-restart",
                summary: "fast shutdown, start again",
                start_ms: 1000.0,
                end_ms: 1650.0,
                ready_ms: 1600.0,
                notes: vec![],
                naive: naive.clone(),
                pgsteady: pgsteady.clone(),
            }],
            totals: Totals { naive, pgsteady },
            guarantees: Guarantees {
                held: true,
                checked: GUARANTEES.to_vec(),
                violations: vec![],
            },
            timeline: Timeline {
                bucket_ms: 100,
                naive: vec![(20, 0), (0, 12), (25, 0)],
                pgsteady: vec![(20, 0), (0, 0), (24, 0)],
            },
        }
    }

    #[test]
    fn the_table_has_a_row_per_fault_and_client_with_its_window() {
        let table = table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("fault"), "{table}");
        let naive = lines
            .iter()
            .find(|l| l.starts_with("fast-restart"))
            .unwrap();
        assert!(naive.contains("1.0 s +0.7 s"), "{naive}");
        assert!(naive.contains("naive"), "{naive}");
        assert!(
            naive.contains("reset 8, 57P01 4"),
            "largest class first: {naive}"
        );
        assert!(naive.contains("1 (0 committed)"), "{naive}");
        let pg = lines[lines.iter().position(|l| l == naive).unwrap() + 1];
        assert!(pg.contains("pgsteady"), "{pg}");
        assert!(pg.contains("75 ms"), "{pg}");
        // Columns line up: every row's client starts at the same offset.
        let at = |l: &str, word: &str| l.find(word).unwrap();
        assert_eq!(at(lines[0], "client"), at(naive, "naive"));
        assert_eq!(at(naive, "naive"), at(pg, "pgsteady"));
    }

    #[test]
    fn the_summary_names_broken_guarantees() {
        let mut report = sample();
        assert!(summary(&report).contains("guarantees held"));
        report.guarantees.held = false;
        report.guarantees.violations = vec!["2 acknowledged writes are missing".to_owned()];
        let text = summary(&report);
        assert!(text.contains("BROKEN"), "{text}");
        assert!(text.contains("2 acknowledged writes are missing"), "{text}");
    }
}
