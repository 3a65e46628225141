//! What `pgsteady migrate` prints. Progress goes to stderr (waiting lines through the `wait`
//! reporter, one line per migration); results a script consumes (status table, dry-run list)
//! go to stdout; with `--json`, one JSON object per line on stdout. Messages come from
//! pgsteady errors and the redacted config: no password.

use std::io::Write;
use std::time::{Duration, SystemTime};

use pgsteady::connect::ConnectEvent;
use pgsteady::{HostSpec, Reason};
use pgsteady_migrate::{Event, Failure, Migration, Migrator, Repair, Report, State, Status};
use serde_json::{Value, json};

use crate::common::Output;
use crate::exit::{self, HISTORY_MISMATCH};
use crate::report::Reporter;

const CMD: &str = "pgsteady migrate";

#[derive(Debug)]
pub(super) struct Printer {
    mode: Output,
    waiting: Reporter,
    failed_attempts: u32,
}

impl Printer {
    pub(super) fn new(mode: Output, target: String) -> Self {
        Printer {
            mode,
            waiting: reporter(mode, target),
            failed_attempts: 0,
        }
    }

    fn quiet(&self) -> bool {
        self.mode == Output::Quiet
    }

    fn json(&self) -> bool {
        self.mode == Output::Json
    }

    /// A failed connection attempt that will be retried.
    pub(super) fn waiting(
        &mut self,
        event: &ConnectEvent<'_>,
        reason: Reason,
        error: &pgsteady::Error,
        delay: Duration,
    ) {
        self.failed_attempts = event.attempt;
        self.waiting.attempt_failed(
            event.attempt,
            event.elapsed,
            reason,
            &format!("{error:#}"),
            delay,
        );
    }

    /// Connected (after waiting, or at once).
    pub(super) fn connected(&mut self, event: &ConnectEvent<'_>, host: &HostSpec) {
        let attempts = self.failed_attempts + 1;
        self.failed_attempts = 0;
        self.waiting
            .ready(attempts, event.elapsed, &host.to_string());
    }

    /// A migration event.
    pub(super) fn event(&mut self, event: &Event) {
        if self.json() {
            let value = match event {
                Event::LockWait { holder_pid } => {
                    json!({"event": "lock_wait", "holder_pid": holder_pid})
                }
                Event::Locked { waited } => json!({"event": "locked", "waited_ms": ms(*waited)}),
                Event::Planned { applied, pending } => {
                    json!({"event": "planned", "already_applied": applied, "pending": pending})
                }
                Event::Applying {
                    version,
                    file,
                    transactional,
                } => json!({"event": "applying", "version": version, "file": file,
                            "transactional": transactional}),
                Event::Applied(a) => json!({"event": "applied", "version": a.version,
                    "file": a.file, "execution_ms": ms(a.execution),
                    "transactional": a.transactional}),
                Event::SessionMode { transaction_pooler } => json!({
                    "event": "session_mode",
                    "transaction_pooler": transaction_pooler,
                }),
                Event::CommitResolved { version, committed } => {
                    json!({"event": "commit_resolved", "version": version, "committed": committed})
                }
                Event::Resuming {
                    attempt,
                    reason,
                    error,
                } => json!({"event": "resuming", "attempt": attempt,
                            "reason": reason.map(Reason::as_str), "message": error}),
                _ => return,
            };
            return emit(value);
        }
        if self.quiet() {
            return;
        }
        match event {
            Event::LockWait { holder_pid } => {
                let by = holder_pid
                    .map(|p| format!(" (held by backend pid {p})"))
                    .unwrap_or_default();
                eprintln!("{CMD}: another runner holds the migration lock{by}; waiting");
            }
            Event::Locked { waited } if !waited.is_zero() && *waited > Duration::from_millis(5) => {
                eprintln!("{CMD}: got the migration lock after {}", secs(*waited));
            }
            Event::Applying { file, .. } => eprintln!("{CMD}: applying {file}"),
            Event::Applied(a) => eprintln!("{CMD}: applied {} in {}", a.file, secs(a.execution)),
            Event::CommitResolved { version, committed } => eprintln!(
                "{CMD}: the history shows version {version} {}",
                if *committed {
                    "committed before the connection was lost"
                } else {
                    "did not commit; applying it again"
                }
            ),
            Event::SessionMode {
                transaction_pooler: true,
            } => eprintln!(
                "{CMD}: a transaction pooler is in front (PgBouncer in transaction mode?): \
                 migrating under transaction-level locks"
            ),
            Event::Resuming { attempt, error, .. } => {
                eprintln!("{CMD}: {error:#}; reconnecting and resuming (resume {attempt})");
            }
            _ => {}
        }
    }

    /// The end of a successful run.
    pub(super) fn report(&mut self, report: &Report) -> u8 {
        if self.json() {
            emit(json!({
                "event": "done",
                "applied": report.applied.iter().map(|a| json!({
                    "version": a.version, "file": a.file, "execution_ms": ms(a.execution),
                })).collect::<Vec<_>>(),
                "already_applied": report.already_applied,
                "lock_wait_ms": ms(report.lock_wait),
                "resumes": report.resumes,
                "elapsed_ms": ms(report.elapsed),
            }));
        } else if !self.quiet() {
            let n = report.applied.len();
            eprintln!(
                "{CMD}: done: {n} applied, {} already applied, in {}",
                report.already_applied,
                secs(report.elapsed)
            );
        }
        exit::READY
    }

    /// A dry run's list: one file per line on stdout.
    pub(super) fn pending(&mut self, pending: &[Migration]) -> u8 {
        if self.json() {
            emit(json!({
                "event": "dry_run",
                "pending": pending.iter().map(|m| json!({
                    "version": m.version(), "file": m.display_path(),
                    "transactional": m.is_transactional(),
                })).collect::<Vec<_>>(),
            }));
            return exit::READY;
        }
        let mut out = std::io::stdout().lock();
        for m in pending {
            let note = if m.is_transactional() {
                ""
            } else {
                "  (no transaction)"
            };
            let _ = writeln!(out, "{}{note}", m.display_path());
        }
        if !self.quiet() {
            eprintln!(
                "{CMD}: dry run: {} migration{} would be applied",
                pending.len(),
                if pending.len() == 1 { "" } else { "s" }
            );
        }
        exit::READY
    }

    /// The status table on stdout; exit 5 when a run would refuse.
    pub(super) fn status(&mut self, status: &Status, out_of_order: bool) -> u8 {
        let code = match status.check(out_of_order) {
            Ok(()) => exit::READY,
            Err(_) => HISTORY_MISMATCH,
        };
        if self.json() {
            emit(json!({
                "event": "status",
                "table_exists": status.table_exists,
                "entries": status.entries.iter().map(|e| json!({
                    "version": e.version,
                    "name": e.name,
                    "state": e.state.as_str(),
                    "file": e.file,
                    "checksum": e.checksum.map(|c| c.to_string()),
                    "applied_checksum": e.applied_checksum,
                    "applied_at": e.applied_at.map(rfc3339),
                    "execution_ms": e.execution.map(ms),
                })).collect::<Vec<_>>(),
            }));
            return code;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:<20} {:>8}  FILE",
            "VERSION", "STATE", "APPLIED AT", "TOOK"
        );
        for e in &status.entries {
            let file = match &e.file {
                Some(f) => f.clone(),
                None => format!("(no file; recorded name `{}`)", e.name),
            };
            let _ = writeln!(
                out,
                "{:<8} {:<12} {:<20} {:>8}  {file}",
                e.version,
                e.state.as_str(),
                e.applied_at.map(rfc3339).unwrap_or_default(),
                e.execution
                    .map(|d| format!("{}ms", d.as_millis()))
                    .unwrap_or_default(),
            );
        }
        drop(out);
        if !self.quiet() {
            let count = |s| status.in_state(s).count();
            eprintln!(
                "{CMD}: {} applied, {} pending, {} modified, {} missing, {} out of order, {} \
                 future",
                count(State::Applied),
                count(State::Pending),
                count(State::Modified),
                count(State::Missing),
                count(State::OutOfOrder),
                count(State::Future),
            );
            for e in status.problems(out_of_order) {
                if let Some(p) = e.problem(out_of_order) {
                    eprintln!("{CMD}: {p}");
                }
            }
        }
        code
    }

    /// What a repair changed.
    pub(super) fn repair(&mut self, repair: &Repair) -> u8 {
        if self.json() {
            emit(json!({
                "event": "repair",
                "dry_run": repair.dry_run,
                "rewritten": repair.rewritten.iter().map(|r| json!({
                    "version": r.version, "file": r.file, "old_name": r.old_name,
                    "old_checksum": r.old_checksum, "new_checksum": r.new_checksum.to_string(),
                })).collect::<Vec<_>>(),
                "forgotten": repair.forgotten.iter().map(|(v, n)| json!({
                    "version": v, "name": n,
                })).collect::<Vec<_>>(),
            }));
            return exit::READY;
        }
        let verb = if repair.dry_run { "would " } else { "" };
        if repair.is_empty() {
            eprintln!("{CMD}: repair: the history already matches the files");
        }
        for r in &repair.rewritten {
            eprintln!(
                "{CMD}: repair: {verb}record {} as it is now (checksum {} -> {})",
                r.file,
                r.old_checksum.get(..12).unwrap_or(&r.old_checksum),
                r.new_checksum.short()
            );
        }
        for (version, name) in &repair.forgotten {
            eprintln!("{CMD}: repair: {verb}forget version {version} (`{name}`): no file has it");
        }
        exit::READY
    }

    /// The final error; printed even with `--quiet`. For a failed migration, the offending
    /// line with a caret under the column.
    /// A plan that could not be made (exit 2).
    pub(super) fn plan_failed(&mut self, err: &crate::common::PlanError) {
        if let Some(e) = err.lib() {
            return self.failed(crate::exit::USAGE, &e.clone().into(), None);
        }
        if self.json() {
            return emit(json!({
                "event": "failed",
                "exit_code": crate::exit::USAGE,
                "kind": pgsteady::ErrorKind::Config.as_str(),
                "reason": pgsteady::Reason::Config.as_str(),
                "code": None::<&str>,
                "file": None::<&str>,
                "line": None::<u32>,
                "column": None::<u32>,
                "message": err.to_string(),
            }));
        }
        self.waiting
            .failed(crate::exit::USAGE, err.reason(), &err.to_string());
    }

    pub(super) fn failed(
        &mut self,
        code: u8,
        err: &pgsteady_migrate::Error,
        migrator: Option<&Migrator>,
    ) {
        let failure = Failure::of(err);
        if self.json() {
            let position = failure.and_then(Failure::position);
            return emit(json!({
                "event": "failed",
                "exit_code": code,
                "kind": err.kind().as_str(),
                "reason": err.reason().map(Reason::as_str),
                "code": err.code().map(|c| c.code()),
                "file": failure.map(Failure::file),
                "line": position.map(|p| p.line),
                "column": position.map(|p| p.column),
                "message": format!("{err:#}"),
            }));
        }
        self.waiting.failed(code, err.reason(), &format!("{err:#}"));
        if err.kind() == pgsteady_migrate::ErrorKind::HistoryMismatch {
            eprintln!(
                "{CMD}: `pgsteady migrate status` shows every version; `pgsteady migrate repair` \
                 records the files as they are now; --out-of-order applies older files"
            );
        }
        let Some(failure) = failure else { return };
        if let Some(p) = failure.position() {
            let gutter = p.line.to_string().len();
            let (text, column) = excerpt(&p.line_text, p.column);
            // Keep tabs so the caret lines up under the same terminal column.
            let pad: String = text
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            eprintln!("{:>gutter$} |", "");
            eprintln!("{} | {text}", p.line);
            eprintln!("{:>gutter$} | {pad}^", "");
        }
        let Some(m) = migrator else { return };
        let later = m
            .migrations()
            .iter()
            .filter(|x| x.version() > failure.version())
            .count();
        let transactional = m
            .migrations()
            .iter()
            .find(|x| x.version() == failure.version())
            .is_some_and(Migration::is_transactional);
        let after = match later {
            0 => String::new(),
            1 => "the 1 migration after it was not applied".to_owned(),
            n => format!("the {n} migrations after it were not applied"),
        };
        if err.kind() == pgsteady_migrate::ErrorKind::Migration && transactional {
            let after = if after.is_empty() {
                String::new()
            } else {
                format!(", and {after}")
            };
            eprintln!(
                "{CMD}: {} was rolled back{after}; the migrations before it stay applied",
                failure.file()
            );
        } else if !after.is_empty() {
            eprintln!("{CMD}: {after}");
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn emit(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Characters of a line shown on each side of the error's column.
const EXCERPT_HALF: usize = 60;

/// The part of `line` around 1-based `column` that is printed, and the caret's column in it:
/// at most `2 * EXCERPT_HALF` characters, `...` where cut (a 3 MB line printed whole, twice
/// counting the caret line), every control character but a tab shown as `?` (one column, so
/// the caret stays aligned; a byte from the file never reaches the terminal as a command).
fn excerpt(line: &str, column: usize) -> (String, usize) {
    let len = line.chars().count();
    let start = column.saturating_sub(1).saturating_sub(EXCERPT_HALF);
    let end = len.min(start + 2 * EXCERPT_HALF);
    let mut text = String::new();
    if start > 0 {
        text.push_str("...");
    }
    let shown = line.chars().skip(start).take(end.saturating_sub(start));
    text.extend(shown.map(|c| if c.is_control() && c != '\t' { '?' } else { c }));
    if end < len {
        text.push_str("...");
    }
    let caret = column - start.min(column) + if start > 0 { 3 } else { 0 };
    (text, caret)
}

/// Adapts the connect events to the `wait` reporter.
fn reporter(output: Output, target: String) -> Reporter {
    Reporter::new(output, "pgsteady migrate", target)
}

#[cfg(test)]
mod excerpt_tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_around_the_column_and_escaped() {
        assert_eq!(excerpt("SELECT 1 +;", 11), ("SELECT 1 +;".to_owned(), 11));
        let long = format!("SELECT {}oops", " ".repeat(3 << 20));
        let column = long.chars().count() - 3;
        let (text, caret) = excerpt(&long, column);
        assert!(text.len() < 200, "{}", text.len());
        assert!(text.starts_with("...") && text.ends_with("oops"), "{text}");
        assert_eq!(text.chars().nth(caret - 1), Some('o'), "{text}");
        let (text, caret) = excerpt("a\u{1b}[2Jb\tc", 4);
        assert_eq!(text, "a?[2Jb\tc");
        assert_eq!(caret, 4);
    }
}
