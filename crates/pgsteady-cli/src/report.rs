//! Progress output for `wait` and `check`: a single updating status line on a terminal, one
//! log line per state change otherwise, nothing with `--quiet`, JSON lines with `--json`.
//! Messages come from pgsteady errors and the redacted config, so they never hold a password.

use std::io::Write;
use std::time::Duration;

use pgsteady::Reason;
use serde_json::json;

use crate::common::Output;

/// Reports the progress of one command.
#[derive(Debug)]
pub(crate) struct Reporter {
    mode: Output,
    command: &'static str,
    target: String,
    last_reason: Option<Reason>,
    status_line: bool,
}

impl Reporter {
    pub(crate) fn new(mode: Output, command: &'static str, target: String) -> Self {
        Reporter {
            mode,
            command,
            target,
            last_reason: None,
            status_line: false,
        }
    }

    /// A failed attempt that will be retried after `delay`.
    pub(crate) fn attempt_failed(
        &mut self,
        attempt: u32,
        elapsed: Duration,
        reason: Reason,
        message: &str,
        delay: Duration,
    ) {
        match self.mode {
            Output::Quiet => {}
            Output::Json => emit(json!({
                "event": "attempt_failed",
                "attempt": attempt,
                "elapsed_ms": ms(elapsed),
                "reason": reason.as_str(),
                "message": message,
                "retry_in_ms": ms(delay),
            })),
            Output::Lines => {
                if self.last_reason != Some(reason) {
                    eprintln!(
                        "{}: not ready ({reason}, attempt {attempt}, {:.1}s): {message}",
                        self.command,
                        elapsed.as_secs_f64()
                    );
                }
            }
            Output::Tty => {
                let line = format!(
                    "{}: waiting for {} | attempt {attempt} | {:.1}s | {reason}: {message}",
                    self.command,
                    self.target,
                    elapsed.as_secs_f64()
                );
                let width = std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse::<usize>().ok())
                    .unwrap_or(100)
                    .max(20);
                let line: String = line.chars().take(width - 1).collect();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                self.status_line = true;
            }
        }
        self.last_reason = Some(reason);
    }

    /// Success.
    pub(crate) fn ready(&mut self, attempts: u32, elapsed: Duration, host: &str) {
        self.clear();
        match self.mode {
            Output::Quiet => {}
            Output::Json => emit(json!({
                "event": "ready",
                "target": self.target,
                "host": host,
                "attempts": attempts,
                "elapsed_ms": ms(elapsed),
            })),
            Output::Lines | Output::Tty => eprintln!(
                "{}: ready: {} ({host}) after {attempts} attempt{} in {:.2}s",
                self.command,
                self.target,
                if attempts == 1 { "" } else { "s" },
                elapsed.as_secs_f64()
            ),
        }
    }

    /// The final failure; printed even with `--quiet`.
    pub(crate) fn failed(&mut self, exit_code: u8, reason: Option<Reason>, message: &str) {
        self.clear();
        match self.mode {
            Output::Json => emit(json!({
                "event": "failed",
                "target": self.target,
                "exit_code": exit_code,
                "reason": reason.map(Reason::as_str),
                "message": message,
            })),
            _ => eprintln!("{}: {message}", self.command),
        }
    }

    fn clear(&mut self) {
        if self.status_line {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.status_line = false;
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}
