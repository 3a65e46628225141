//! The checker: the history's calls against the final state of the database.
//!
//! - every insert or transfer acknowledged (ok) is in the database exactly once;
//! - nothing reported not committed is in it;
//! - nothing is in it that no call wrote, and nothing twice;
//! - an unknown outcome, a failed call or one still running at the end counts as an error;
//! - the bank: every read saw the initial total (no partial transfer visible), the final
//!   total is the initial one, and each account's balance is its initial balance plus the
//!   transfers in the ledger (no partial transfer committed).
//!
//! Each anomaly comes with the lines around it: its call's invocation and completion, and
//! the faults and pool events from shortly before it began until shortly after it ended.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::history::{Line, Op, Outcome, Phase, PoolLine};

/// How far around an anomalous call its context reaches, in milliseconds.
const CONTEXT_MS: f64 = 2000.0;
/// The most context lines printed per anomaly.
const CONTEXT_LINES: usize = 40;
/// The most anomalies printed in full (all are counted).
const PRINTED: usize = 20;

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Anomaly {
    /// Acknowledged, not in the database.
    Lost { key: String },
    /// In the database more than once.
    Duplicated { key: String, rows: i64 },
    /// Reported not committed, in the database.
    NotCommittedPresent { key: String },
    /// In the database, written by no call of the history.
    Phantom { key: String },
    /// The caller was told the outcome is unknown (counted as an error, whatever happened).
    Unknown { key: String, present: bool },
    /// A call failed or never finished.
    Failed {
        op: &'static str,
        result: Outcome,
        kind: Option<String>,
    },
    /// A read saw a total other than the initial one.
    BadRead { sum: i64, accounts: i64 },
    /// The final total differs from the initial one.
    Total { total: i64, expected: i64 },
    /// An account's balance is not its initial balance plus the ledger's transfers.
    Balance {
        account: i64,
        balance: i64,
        expected: i64,
    },
    /// The history has no start or no final state (the run did not finish).
    Incomplete(&'static str),
}

impl Anomaly {
    /// A short name, for the summary's counts.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Anomaly::Lost { .. } => "acknowledged write lost",
            Anomaly::Duplicated { .. } => "write present more than once",
            Anomaly::NotCommittedPresent { .. } => "not-committed write present",
            Anomaly::Phantom { .. } => "write nobody made",
            Anomaly::Unknown { .. } => "commit outcome unknown",
            Anomaly::Failed { .. } => "call failed",
            Anomaly::BadRead { .. } => "read saw a partial transfer",
            Anomaly::Total { .. } => "bank total changed",
            Anomaly::Balance { .. } => "balance disagrees with the ledger",
            Anomaly::Incomplete(_) => "history incomplete",
        }
    }

    fn describe(&self) -> String {
        match self {
            Anomaly::Lost { key } => format!("{key}: acknowledged, 0 rows"),
            Anomaly::Duplicated { key, rows } => format!("{key}: {rows} rows"),
            Anomaly::NotCommittedPresent { key } => {
                format!("{key}: reported not committed, in the table")
            }
            Anomaly::Phantom { key } => format!("{key}: in the table, no call wrote it"),
            Anomaly::Unknown { key, present } => format!(
                "{key}: outcome unknown (it {} in the table)",
                if *present { "is" } else { "is not" }
            ),
            Anomaly::Failed { op, result, kind } => format!(
                "{op}: {result:?}{}",
                kind.as_deref()
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default()
            ),
            Anomaly::BadRead { sum, accounts } => {
                format!("a read saw a total of {sum} over {accounts} accounts")
            }
            Anomaly::Total { total, expected } => {
                format!("final total {total}, expected {expected}")
            }
            Anomaly::Balance {
                account,
                balance,
                expected,
            } => format!("account {account}: balance {balance}, the ledger says {expected}"),
            Anomaly::Incomplete(what) => format!("no {what} line"),
        }
    }
}

/// The checker's findings.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Each anomaly with the call it concerns (if any).
    pub(crate) anomalies: Vec<(Anomaly, Option<u64>)>,
    /// Calls by operation and outcome.
    pub(crate) calls: BTreeMap<(&'static str, String), u64>,
    /// Faults started, by name.
    pub(crate) faults: BTreeMap<String, u64>,
    /// Pool events: connects by host and role, evictions by reason, resolutions by verdict
    /// and rule.
    pub(crate) pool: BTreeMap<String, u64>,
    /// The run's span, in milliseconds.
    pub(crate) span_ms: f64,
}

impl Checked {
    pub(crate) fn ok(&self) -> bool {
        self.anomalies.is_empty()
    }
}

struct Call<'a> {
    op: &'a Op,
    completed: Option<(f64, Outcome, Option<&'a String>)>,
    read: Option<(i64, i64)>,
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Insert { .. } => "insert",
        Op::Transfer { .. } => "transfer",
        Op::Read => "read",
    }
}

/// Checks a history (see the module docs).
pub(crate) fn check(lines: &[Line]) -> Checked {
    let mut out = Checked::default();
    let mut start = None;
    let mut fin = None;
    let mut calls: BTreeMap<u64, Call<'_>> = BTreeMap::new();
    for line in lines {
        match line {
            Line::Start {
                accounts,
                initial_balance,
                ..
            } => start = Some((*accounts, *initial_balance)),
            Line::Invoke { t, call, op, .. } => {
                calls.insert(
                    *call,
                    Call {
                        op,
                        completed: None,
                        read: None,
                    },
                );
                out.span_ms = out.span_ms.max(*t);
            }
            Line::Complete {
                t,
                call,
                result,
                kind,
                read,
                ..
            } => {
                if let Some(c) = calls.get_mut(call) {
                    c.completed = Some((*t, *result, kind.as_ref()));
                    c.read = *read;
                }
                out.span_ms = out.span_ms.max(*t);
            }
            Line::Nemesis {
                fault,
                phase: Phase::Start,
                ..
            } => *out.faults.entry(fault.clone()).or_default() += 1,
            Line::Nemesis { .. } => {}
            Line::Pool { event, .. } => {
                let name = match event {
                    PoolLine::Connected { host, role } => format!("connected {host} ({role})"),
                    PoolLine::Evicted { reason, closed_by } => match closed_by {
                        Some(by) => format!("evicted {reason} ({by})"),
                        None => format!("evicted {reason}"),
                    },
                    PoolLine::Resolved { verdict, rule, .. } => {
                        format!("resolved {verdict} by {rule}")
                    }
                    PoolLine::Other { .. } => "other event".to_owned(),
                };
                *out.pool.entry(name).or_default() += 1;
            }
            Line::Final {
                writes,
                transfers,
                balances,
            } => fin = Some((writes, transfers, balances)),
        }
    }
    let Some((accounts, initial)) = start else {
        out.anomalies.push((Anomaly::Incomplete("start"), None));
        return out;
    };
    let Some((writes, transfers, balances)) = fin else {
        out.anomalies.push((Anomaly::Incomplete("final"), None));
        return out;
    };
    let balances: BTreeMap<i64, i64> = balances.iter().copied().collect();
    let expected_total = accounts * initial;
    let mut keyed: HashMap<&str, u64> = HashMap::new();
    let mut expected_balance: BTreeMap<i64, i64> = (1..=accounts).map(|a| (a, initial)).collect();
    for (&id, call) in &calls {
        let (result, kind) = match call.completed {
            Some((_, result, kind)) => (result, kind),
            None => (Outcome::Unfinished, None),
        };
        *out.calls
            .entry((op_name(call.op), format!("{result:?}").to_lowercase()))
            .or_default() += 1;
        let (key, rows) = match call.op {
            Op::Insert { key } => (key, writes.get(key).copied().unwrap_or(0)),
            Op::Transfer {
                key,
                from,
                to,
                amount,
            } => {
                let rows = transfers.get(key).copied().unwrap_or(0);
                *expected_balance.entry(*from).or_default() -= rows * amount;
                *expected_balance.entry(*to).or_default() += rows * amount;
                (key, rows)
            }
            Op::Read => {
                match (result, call.read) {
                    (Outcome::Ok, Some((sum, n))) if sum != expected_total || n != accounts => {
                        out.anomalies
                            .push((Anomaly::BadRead { sum, accounts: n }, Some(id)));
                    }
                    (Outcome::Ok, _) => {}
                    _ => out.anomalies.push((
                        Anomaly::Failed {
                            op: "read",
                            result,
                            kind: kind.cloned(),
                        },
                        Some(id),
                    )),
                }
                continue;
            }
        };
        keyed.insert(key, id);
        let key = key.clone();
        if rows > 1 {
            out.anomalies.push((
                Anomaly::Duplicated {
                    key: key.clone(),
                    rows,
                },
                Some(id),
            ));
        }
        match result {
            Outcome::Ok if rows == 0 => out.anomalies.push((Anomaly::Lost { key }, Some(id))),
            Outcome::Ok => {}
            Outcome::NotCommitted if rows > 0 => out
                .anomalies
                .push((Anomaly::NotCommittedPresent { key }, Some(id))),
            Outcome::NotCommitted => {}
            Outcome::Unknown => out.anomalies.push((
                Anomaly::Unknown {
                    key,
                    present: rows > 0,
                },
                Some(id),
            )),
            Outcome::Error | Outcome::Unfinished => out.anomalies.push((
                Anomaly::Failed {
                    op: op_name(call.op),
                    result,
                    kind: kind.cloned(),
                },
                Some(id),
            )),
        }
    }
    for key in writes.keys().chain(transfers.keys()) {
        if !keyed.contains_key(key.as_str()) {
            out.anomalies
                .push((Anomaly::Phantom { key: key.clone() }, None));
        }
    }
    let total: i64 = balances.values().sum();
    if total != expected_total {
        out.anomalies.push((
            Anomaly::Total {
                total,
                expected: expected_total,
            },
            None,
        ));
    }
    for (&account, &expected) in &expected_balance {
        let balance = balances.get(&account).copied().unwrap_or(0);
        if balance != expected {
            out.anomalies.push((
                Anomaly::Balance {
                    account,
                    balance,
                    expected,
                },
                None,
            ));
        }
    }
    out
}

/// The anomalies, each with the lines around its call, as text.
pub(crate) fn explain(lines: &[Line], checked: &Checked) -> String {
    let mut text = String::new();
    let mut windows: HashMap<u64, (f64, f64)> = HashMap::new();
    for line in lines {
        match line {
            Line::Invoke { t, call, .. } => {
                windows.insert(*call, (*t, f64::INFINITY));
            }
            Line::Complete { t, call, .. } => {
                if let Some(w) = windows.get_mut(call) {
                    w.1 = *t;
                }
            }
            _ => {}
        }
    }
    for (i, (anomaly, call)) in checked.anomalies.iter().enumerate() {
        if i == PRINTED {
            let _ = writeln!(
                text,
                "... and {} more anomalies (all are in the counts above)",
                checked.anomalies.len() - PRINTED
            );
            break;
        }
        let _ = writeln!(text, "ANOMALY {}: {}", anomaly.name(), anomaly.describe());
        let Some(call) = call else { continue };
        let Some(&(from, to)) = windows.get(call) else {
            continue;
        };
        let (from, to) = (from - CONTEXT_MS, to.min(checked.span_ms) + CONTEXT_MS);
        let mut shown = 0;
        for line in lines {
            let (t, own) = match line {
                Line::Invoke { t, call: c, .. } | Line::Complete { t, call: c, .. } => {
                    (*t, c == call)
                }
                Line::Nemesis { t, .. } | Line::Pool { t, .. } => (*t, false),
                _ => continue,
            };
            let near = (from..=to).contains(&t)
                && matches!(line, Line::Nemesis { .. } | Line::Pool { .. });
            if (own || near) && shown < CONTEXT_LINES {
                shown += 1;
                let json = serde_json::to_string(line).unwrap_or_default();
                let _ = writeln!(text, "  {}{json}", if own { "> " } else { "  " });
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Line {
        Line::Start {
            seed: 1,
            topology: "single".to_owned(),
            duration_ms: 1000,
            accounts: 2,
            initial_balance: 100,
            schedule: Vec::new(),
        }
    }

    fn call(id: u64, op: Op, result: Outcome) -> [Line; 2] {
        [
            Line::Invoke {
                t: id as f64,
                wall: String::new(),
                call: id,
                worker: 0,
                op,
            },
            Line::Complete {
                t: id as f64 + 1.0,
                wall: String::new(),
                call: id,
                result,
                kind: None,
                code: None,
                xid: None,
                read: None,
            },
        ]
    }

    fn insert(key: &str) -> Op {
        Op::Insert {
            key: key.to_owned(),
        }
    }

    fn transfer(key: &str, amount: i64) -> Op {
        Op::Transfer {
            key: key.to_owned(),
            from: 1,
            to: 2,
            amount,
        }
    }

    fn fin(writes: &[(&str, i64)], transfers: &[(&str, i64)], balances: [i64; 2]) -> Line {
        Line::Final {
            writes: writes.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            transfers: transfers.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            balances: vec![(1, balances[0]), (2, balances[1])],
        }
    }

    fn history(calls: Vec<[Line; 2]>, fin: Line) -> Vec<Line> {
        let mut lines = vec![start()];
        lines.extend(calls.into_iter().flatten());
        lines.push(fin);
        lines
    }

    fn names(lines: &[Line]) -> Vec<&'static str> {
        check(lines)
            .anomalies
            .iter()
            .map(|(a, _)| a.name())
            .collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let lines = history(
            vec![
                call(1, insert("a"), Outcome::Ok),
                call(2, insert("b"), Outcome::NotCommitted),
                call(3, transfer("t1", 10), Outcome::Ok),
                call(4, transfer("t2", 5), Outcome::NotCommitted),
            ],
            fin(&[("a", 1)], &[("t1", 1)], [90, 110]),
        );
        let checked = check(&lines);
        assert!(checked.ok(), "{:?}", checked.anomalies);
        assert_eq!(checked.calls[&("insert", "ok".to_owned())], 1);
    }

    /// A planted bug: an in-doubt COMMIT settled "committed" (so the caller
    /// got ok) while the row is not there.
    #[test]
    fn an_acknowledged_write_that_is_absent_is_caught() {
        let lines = history(
            vec![call(1, insert("a"), Outcome::Ok)],
            fin(&[], &[], [100, 100]),
        );
        assert_eq!(names(&lines), ["acknowledged write lost"]);
        // And its context names the call.
        let text = explain(&lines, &check(&lines));
        assert!(
            text.contains("ANOMALY acknowledged write lost: a:"),
            "{text}"
        );
        assert!(text.contains("> {\"type\":\"invoke\""), "{text}");
    }

    #[test]
    fn each_broken_guarantee_is_named() {
        type Case = (Vec<[Line; 2]>, Line, &'static [&'static str]);
        let cases: Vec<Case> = vec![
            (
                vec![call(1, insert("a"), Outcome::NotCommitted)],
                fin(&[("a", 1)], &[], [100, 100]),
                &["not-committed write present"],
            ),
            (
                vec![call(1, insert("a"), Outcome::Ok)],
                fin(&[("a", 2)], &[], [100, 100]),
                &["write present more than once"],
            ),
            (
                vec![],
                fin(&[("ghost", 1)], &[], [100, 100]),
                &["write nobody made"],
            ),
            (
                vec![call(1, insert("a"), Outcome::Unknown)],
                fin(&[("a", 1)], &[], [100, 100]),
                &["commit outcome unknown"],
            ),
            (
                vec![call(1, Op::Read, Outcome::Error)],
                fin(&[], &[], [100, 100]),
                &["call failed"],
            ),
            // A transfer committed half: the total moved.
            (
                vec![call(1, transfer("t", 10), Outcome::Ok)],
                fin(&[], &[("t", 1)], [90, 100]),
                &["bank total changed", "balance disagrees with the ledger"],
            ),
            // Balances moved without a ledger row: the total holds, the ledger does not.
            (
                vec![call(1, transfer("t", 10), Outcome::NotCommitted)],
                fin(&[], &[], [90, 110]),
                &["balance disagrees with the ledger"],
            ),
        ];
        for (calls, fin, expected) in cases {
            let lines = history(calls, fin);
            let mut got = names(&lines);
            got.dedup();
            assert_eq!(got, expected, "{lines:?}");
        }
    }

    #[test]
    fn a_read_of_a_partial_transfer_is_caught() {
        let mut read = call(1, Op::Read, Outcome::Ok);
        if let Line::Complete { read: r, .. } = &mut read[1] {
            *r = Some((190, 2));
        }
        let lines = history(vec![read], fin(&[], &[], [100, 100]));
        assert_eq!(names(&lines), ["read saw a partial transfer"]);
    }

    #[test]
    fn a_history_without_its_final_state_fails() {
        let lines = vec![start()];
        assert_eq!(names(&lines), ["history incomplete"]);
        assert_eq!(names(&[]), ["history incomplete"]);
    }
}
