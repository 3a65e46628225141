//! A text timeline of a history: per column (a fixed slice of the run), the calls that
//! succeeded, those that did not, the faults that began and the commit resolutions, so the
//! eye finds where an anomaly sat among the faults.

use std::fmt::Write as _;

use super::history::{Line, Outcome, Phase, PoolLine};

/// Columns of the picture.
const COLUMNS: usize = 72;

/// The picture, or nothing for an empty history.
pub(crate) fn picture(lines: &[Line]) -> String {
    let times = lines.iter().filter_map(|l| match l {
        Line::Invoke { t, .. } | Line::Complete { t, .. } | Line::Nemesis { t, .. } => Some(*t),
        _ => None,
    });
    // From the first call: the topology's start-up before it is not part of the run.
    let begin = lines
        .iter()
        .find_map(|l| match l {
            Line::Invoke { t, .. } => Some(*t),
            _ => None,
        })
        .unwrap_or(0.0);
    let span = times.fold(0.0_f64, f64::max) - begin;
    if span <= 0.0 {
        return String::new();
    }
    let width = span / COLUMNS as f64;
    let column = |t: f64| (((t - begin).max(0.0) / width) as usize).min(COLUMNS - 1);
    let mut ok = [0u64; COLUMNS];
    let mut bad = [0u64; COLUMNS];
    let mut faults = [' '; COLUMNS];
    let mut resolved = [' '; COLUMNS];
    for line in lines {
        match line {
            Line::Complete { t, result, .. } => {
                if *result == Outcome::Ok {
                    ok[column(*t)] += 1;
                } else {
                    bad[column(*t)] += 1;
                }
            }
            Line::Nemesis {
                t,
                fault,
                phase: Phase::Start,
                ..
            } => {
                let c = &mut faults[column(*t)];
                let mark = fault.chars().next().unwrap_or('?');
                *c = if *c == ' ' || *c == mark { mark } else { '*' };
            }
            Line::Pool {
                t,
                event: PoolLine::Resolved { verdict, .. },
                ..
            } => {
                let c = &mut resolved[column(*t)];
                let mark = match verdict.as_str() {
                    "committed" => 'c',
                    "aborted" => 'a',
                    _ => 'U',
                };
                // An unknown outcome is the one to see.
                if *c != 'U' {
                    *c = if *c == ' ' || *c == mark { mark } else { '+' };
                }
            }
            _ => {}
        }
    }
    let most = ok.iter().copied().max().unwrap_or(0).max(1);
    let level = |n: u64| -> char {
        if n == 0 {
            ' '
        } else {
            char::from(b'0' + (1 + n * 8 / most).min(9) as u8)
        }
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "timeline: {COLUMNS} columns of {:.1} s; ok 1-9 relative to the busiest column",
        width / 1000.0
    );
    let row = |name: &str, cells: String| format!("  {name:<10}|{cells}|\n");
    text.push_str(&row("ok", ok.iter().map(|n| level(*n)).collect()));
    text.push_str(&row(
        "not ok",
        bad.iter().map(|n| if *n > 0 { 'x' } else { ' ' }).collect(),
    ));
    text.push_str(&row("faults", faults.iter().collect()));
    text.push_str(&row("resolved", resolved.iter().collect()));
    text.push_str(
        "  faults: first letter of the fault started there (* several); resolved: c committed, \
         a aborted, + both, U unknown\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_failures_land_in_their_column() {
        let complete = |t: f64, result| Line::Complete {
            t,
            wall: String::new(),
            call: 0,
            result,
            kind: None,
            code: None,
            xid: None,
            read: None,
        };
        let lines = vec![
            Line::Invoke {
                t: 0.0,
                wall: String::new(),
                call: 0,
                worker: 0,
                op: super::super::history::Op::Read,
            },
            complete(1.0, Outcome::Ok),
            Line::Nemesis {
                t: 500.0,
                wall: String::new(),
                fault: "crash".to_owned(),
                phase: Phase::Start,
                note: String::new(),
            },
            complete(720.0, Outcome::Unknown),
        ];
        let text = picture(&lines);
        let row = |name: &str| -> String {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap();
            line.split('|').nth(1).unwrap().to_owned()
        };
        assert_eq!(row("ok").find('9'), Some(0), "{text}");
        assert_eq!(row("not ok").find('x'), Some(COLUMNS - 1), "{text}");
        assert_eq!(row("faults").find('c'), Some(50), "{text}");
        assert!(picture(&[]).is_empty());
    }
}
