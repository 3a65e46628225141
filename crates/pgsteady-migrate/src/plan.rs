//! Comparing the files with the history: each version's state, what to apply, what is wrong.
//! Pure logic, no database.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::source::{Checksum, Migration};
use crate::{Error, ErrorKind};

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) checksum: String,
    pub(crate) applied_at: Option<SystemTime>,
    pub(crate) execution_ms: Option<i64>,
}

/// The state of one version, comparing the directory with the history table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Applied, and the file is unchanged.
    Applied,
    /// Not applied yet; the next run applies it.
    Pending,
    /// Not applied, but a later version is: a file added out of order (e.g. from a branch
    /// merged late). A run refuses it unless out-of-order is allowed.
    OutOfOrder,
    /// Applied, but the file changed since (its checksum differs). A run refuses to proceed.
    Modified,
    /// Applied, but no file has this version, while later files exist. A run refuses to
    /// proceed.
    Missing,
    /// Applied, newer than every file: applied by a newer release of the application (e.g.
    /// during a rolling deployment). Not an error.
    Future,
}

impl State {
    /// A stable lowercase name: `applied`, `pending`, `out_of_order`, `modified`, `missing`,
    /// `future`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::OutOfOrder => "out_of_order",
            State::Modified => "modified",
            State::Missing => "missing",
            State::Future => "future",
        }
    }

    /// Whether a run refuses to proceed because of this state (out-of-order only when not
    /// allowed).
    pub const fn is_problem(self, allow_out_of_order: bool) -> bool {
        match self {
            State::Modified | State::Missing => true,
            State::OutOfOrder => !allow_out_of_order,
            _ => false,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The version.
    pub version: i64,
    /// The name: the file's when there is a file, else the one recorded in the history.
    pub name: String,
    /// The state.
    pub state: State,
    /// The file's path (or name), when there is a file.
    pub file: Option<String>,
    /// The file's checksum, when there is a file.
    pub checksum: Option<Checksum>,
    /// The checksum recorded when it was applied (hex), when applied.
    pub applied_checksum: Option<String>,
    /// When it was applied.
    pub applied_at: Option<SystemTime>,
    /// How long it took to apply, when recorded.
    pub execution: Option<Duration>,
    /// Whether the file runs in a transaction, when there is a file.
    pub transactional: Option<bool>,
}

impl Entry {
    /// What is wrong with this entry, in one line naming the file, or `None`.
    pub fn problem(&self, allow_out_of_order: bool) -> Option<String> {
        if !self.state.is_problem(allow_out_of_order) {
            return None;
        }
        let file = self.file.as_deref().unwrap_or("?");
        Some(match self.state {
            State::Modified => format!(
                "`{file}` was changed after it was applied (checksum {} when applied, {} now)",
                short(self.applied_checksum.as_deref().unwrap_or("")),
                self.checksum.map(|c| c.short()).unwrap_or_default()
            ),
            State::Missing => format!(
                "version {} (`{}`) was applied but no file has that version",
                self.version, self.name
            ),
            _ => format!("`{file}` is not applied but a later version is"),
        })
    }
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// Every version known to the directory or the history, in order, with its state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Status {
    /// One entry per version, ascending.
    pub entries: Vec<Entry>,
    /// Whether the history table exists (it is created by the first run).
    pub table_exists: bool,
}

impl Status {
    /// Entries in `state`.
    pub fn in_state(&self, state: State) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.state == state)
    }

    /// Entries a run would refuse (modified, missing, and out-of-order unless allowed).
    pub fn problems(&self, allow_out_of_order: bool) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |e| e.state.is_problem(allow_out_of_order))
    }

    /// The error a run would fail with, if any ([`ErrorKind::HistoryMismatch`]).
    pub fn check(&self, allow_out_of_order: bool) -> Result<(), Error> {
        let problems: Vec<&Entry> = self.problems(allow_out_of_order).collect();
        if problems.is_empty() {
            return Ok(());
        }
        let mut text = problems
            .iter()
            .filter_map(|e| e.problem(allow_out_of_order))
            .collect::<Vec<_>>()
            .join("; ");
        let changed = problems
            .iter()
            .any(|e| matches!(e.state, State::Modified | State::Missing));
        let late = problems.iter().any(|e| e.state == State::OutOfOrder);
        if changed {
            text.push_str(
                "; nothing was applied. If the files are right, run repair to record them as \
                 they are now",
            );
        }
        if late {
            text.push_str(if changed {
                "; to apply files older than the latest applied version, allow out-of-order"
            } else {
                "; nothing was applied. Rename the file to a version after the latest applied \
                 one, or allow out-of-order to apply it anyway"
            });
        }
        Err(Error::new(
            ErrorKind::HistoryMismatch,
            format!("the history does not match the migration files: {text}"),
        ))
    }
}

/// Compares the (sorted) files with the history rows.
pub(crate) fn compare(files: &[Migration], rows: &[Row], table_exists: bool) -> Status {
    let latest_file = files.iter().map(Migration::version).max();
    let latest_applied = rows.iter().map(|r| r.version).max();
    let mut by_version: BTreeMap<i64, (Option<&Migration>, Option<&Row>)> = BTreeMap::new();
    for m in files {
        by_version.entry(m.version()).or_default().0 = Some(m);
    }
    for r in rows {
        by_version.entry(r.version).or_default().1 = Some(r);
    }
    let entries = by_version
        .into_iter()
        .map(|(version, (file, row))| {
            let state = match (file, row) {
                (Some(m), Some(r))
                    if r.checksum.eq_ignore_ascii_case(&m.checksum().to_string()) =>
                {
                    State::Applied
                }
                (Some(_), Some(_)) => State::Modified,
                (Some(_), None) if latest_applied.is_some_and(|l| l > version) => State::OutOfOrder,
                (Some(_), None) => State::Pending,
                (None, Some(_)) if latest_file.is_none_or(|l| l < version) => State::Future,
                (None, _) => State::Missing,
            };
            Entry {
                version,
                name: file
                    .map(|m| m.name().to_owned())
                    .or_else(|| row.map(|r| r.name.clone()))
                    .unwrap_or_default(),
                state,
                file: file.map(Migration::display_path),
                checksum: file.map(Migration::checksum),
                applied_checksum: row.map(|r| r.checksum.clone()),
                applied_at: row.and_then(|r| r.applied_at),
                execution: row
                    .and_then(|r| r.execution_ms)
                    .map(|ms| Duration::from_millis(ms.max(0) as u64)),
                transactional: file.map(Migration::is_transactional),
            }
        })
        .collect();
    Status {
        entries,
        table_exists,
    }
}

/// The migrations to apply, in order: pending ones, plus out-of-order ones when allowed.
/// Fails with [`ErrorKind::HistoryMismatch`] when the history does not match.
pub(crate) fn pending<'a>(
    files: &'a [Migration],
    status: &Status,
    allow_out_of_order: bool,
) -> Result<Vec<&'a Migration>, Error> {
    status.check(allow_out_of_order)?;
    let todo: Vec<i64> = status
        .entries
        .iter()
        .filter(|e| matches!(e.state, State::Pending | State::OutOfOrder))
        .map(|e| e.version)
        .collect();
    Ok(files
        .iter()
        .filter(|m| todo.binary_search(&m.version()).is_ok())
        .collect())
}

/// What repair changes: rows to rewrite (modified, or renamed with the same content) and rows
/// to delete (missing files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RepairPlan<'a> {
    pub(crate) rewrite: Vec<&'a Migration>,
    pub(crate) forget: Vec<(i64, String)>,
}

pub(crate) fn repair_plan<'a>(files: &'a [Migration], rows: &[Row]) -> RepairPlan<'a> {
    let status = compare(files, rows, true);
    let mut plan = RepairPlan::default();
    for e in &status.entries {
        match e.state {
            State::Modified => plan
                .rewrite
                .extend(files.iter().find(|m| m.version() == e.version)),
            State::Applied => {
                let renamed = rows
                    .iter()
                    .find(|r| r.version == e.version)
                    .is_some_and(|r| r.name != e.name);
                if renamed {
                    plan.rewrite
                        .extend(files.iter().find(|m| m.version() == e.version));
                }
            }
            State::Missing => plan.forget.push((e.version, e.name.clone())),
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Migration {
        Migration::new(name, format!("-- {name}\nSELECT 1;")).unwrap()
    }

    fn row(m: &Migration) -> Row {
        Row {
            version: m.version(),
            name: m.name().to_owned(),
            checksum: m.checksum().to_string(),
            applied_at: Some(SystemTime::UNIX_EPOCH),
            execution_ms: Some(5),
        }
    }

    fn states(status: &Status) -> Vec<(i64, State)> {
        status
            .entries
            .iter()
            .map(|e| (e.version, e.state))
            .collect()
    }

    #[test]
    fn fresh_database_everything_pending() {
        let files = [file("1_a.sql"), file("2_b.sql")];
        let status = compare(&files, &[], false);
        assert_eq!(states(&status), [(1, State::Pending), (2, State::Pending)]);
        let todo = pending(&files, &status, false).unwrap();
        assert_eq!(todo.iter().map(|m| m.version()).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn applied_modified_missing_future_out_of_order() {
        let files = [
            file("1_a.sql"),
            file("2_b.sql"),
            file("4_d.sql"),
            file("5_e.sql"),
        ];
        let mut modified = row(&files[1]);
        modified.checksum = Checksum::of(b"old").to_string();
        let rows = [
            row(&files[0]),
            modified,
            Row {
                version: 3,
                name: "c".into(),
                ..row(&files[0])
            },
            row(&files[3]),
            Row {
                version: 9,
                name: "newer".into(),
                ..row(&files[0])
            },
        ];
        let status = compare(&files, &rows, true);
        assert_eq!(
            states(&status),
            [
                (1, State::Applied),
                (2, State::Modified),
                (3, State::Missing),
                (4, State::OutOfOrder),
                (5, State::Applied),
                (9, State::Future),
            ]
        );
        let err = pending(&files, &status, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HistoryMismatch);
        let text = err.to_string();
        assert!(
            text.contains("`2_b.sql` was changed after it was applied (checksum "),
            "{text}"
        );
        assert!(
            text.contains("version 3 (`c`) was applied but no file"),
            "{text}"
        );
        assert!(!text.contains("4_d.sql"), "out-of-order allowed: {text}");
        assert!(text.contains("run repair"), "{text}");
    }

    #[test]
    fn out_of_order_is_refused_unless_allowed() {
        let files = [file("1_a.sql"), file("2_b.sql"), file("3_c.sql")];
        let rows = [row(&files[0]), row(&files[2])];
        let status = compare(&files, &rows, true);
        assert_eq!(status.entries[1].state, State::OutOfOrder);
        let err = pending(&files, &status, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the history does not match the migration files: `2_b.sql` is not applied but a \
             later version is; nothing was applied. Rename the file to a version after the \
             latest applied one, or allow out-of-order to apply it anyway"
        );
        let todo = pending(&files, &status, true).unwrap();
        assert_eq!(todo.iter().map(|m| m.version()).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn future_versions_from_a_newer_release_are_not_an_error() {
        let files = [file("1_a.sql")];
        let mut newer = row(&files[0]);
        newer.version = 2;
        let status = compare(&files, &[row(&files[0]), newer], true);
        assert_eq!(states(&status), [(1, State::Applied), (2, State::Future)]);
        assert!(pending(&files, &status, false).unwrap().is_empty());
        // With no files at all, every applied version is "future", not "missing".
        let status = compare(&[], &[row(&files[0])], true);
        assert_eq!(states(&status), [(1, State::Future)]);
    }

    #[test]
    fn repair_rewrites_modified_and_renamed_and_forgets_missing() {
        let files = [file("1_a.sql"), file("2_b.sql"), file("4_d.sql")];
        let mut modified = row(&files[0]);
        modified.checksum = Checksum::of(b"old").to_string();
        let mut renamed = row(&files[1]);
        renamed.name = "old_name".into();
        let missing = Row {
            version: 3,
            name: "c".into(),
            ..row(&files[0])
        };
        let future = Row {
            version: 7,
            name: "f".into(),
            ..row(&files[0])
        };
        let rows = [modified, renamed, missing, row(&files[2]), future];
        let plan = repair_plan(&files, &rows);
        assert_eq!(
            plan.rewrite.iter().map(|m| m.version()).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(plan.forget, [(3, "c".to_owned())]);
        assert_eq!(
            repair_plan(&files, &files.iter().map(row).collect::<Vec<_>>()),
            RepairPlan::default()
        );
    }
}
