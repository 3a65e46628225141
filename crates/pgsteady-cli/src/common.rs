//! Arguments and helpers shared by the connection commands.

use std::time::Duration;

use pgsteady::Config;

/// How to print progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// A single updating status line (stderr is a terminal).
    Tty,
    /// One log line per state change.
    Lines,
    /// Nothing but the final error.
    Quiet,
    /// One JSON object per event on stdout.
    Json,
}

impl Output {
    pub(crate) fn choose(quiet: bool, json: bool) -> Self {
        use std::io::IsTerminal;
        if json {
            Output::Json
        } else if quiet {
            Output::Quiet
        } else if std::io::stderr().is_terminal() {
            Output::Tty
        } else {
            Output::Lines
        }
    }
}

/// Parses a duration flag: humantime's syntax, as the drill's flags take it (a unit required,
/// `5` is refused: seconds or milliseconds? `0` is the one bare number), at most
/// [`MAX_DURATION`]: added to an `Instant`, a duration of centuries overflows it.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err(format!(
            "too long a duration (at most {} seconds)",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(d)
}

/// Why a command's plan cannot be made: an argument the CLI rejects itself, or a
/// configuration the library rejects. The CLI cannot make library errors (their kind and
/// reason come from the library alone), so its own checks say so with [`PlanError::Arg`].
#[derive(Debug)]
pub(crate) enum PlanError {
    /// The CLI's own check of an argument failed: a usage error.
    Arg(String),
    /// The library rejected the configuration.
    Lib(pgsteady::Error),
}

impl PlanError {
    /// The classification reason, for the report.
    pub(crate) fn reason(&self) -> Option<pgsteady::Reason> {
        match self {
            PlanError::Arg(_) => Some(pgsteady::Reason::Config),
            PlanError::Lib(e) => e.reason(),
        }
    }

    /// The library's error, when it is one.
    pub(crate) fn lib(&self) -> Option<&pgsteady::Error> {
        match self {
            PlanError::Arg(_) => None,
            PlanError::Lib(e) => Some(e),
        }
    }
}

/// The message and, for a library error, its causes.
impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Arg(m) => f.write_str(m),
            PlanError::Lib(e) => write!(f, "{e:#}"),
        }
    }
}

/// A slot name: checked before anything runs.
impl From<pgsteady_slot::Error> for PlanError {
    fn from(e: pgsteady_slot::Error) -> Self {
        match e {
            pgsteady_slot::Error::Query(lib) => PlanError::Lib(lib),
            other => PlanError::Arg(format!("{other:#}")),
        }
    }
}

/// The migration files or the history table name: checked before anything runs.
impl From<pgsteady_migrate::Error> for PlanError {
    fn from(e: pgsteady_migrate::Error) -> Self {
        match e.connection() {
            Some(lib) => PlanError::Lib(lib.clone()),
            None => PlanError::Arg(format!("{e:#}")),
        }
    }
}

impl From<pgsteady::Error> for PlanError {
    fn from(e: pgsteady::Error) -> Self {
        PlanError::Lib(e)
    }
}

/// The longest duration an argument may give (about 31 years).
const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Resolves the target: a URL, key=value pairs, or `None` for `DATABASE_URL` / `PG*`.
pub(crate) fn resolve_target(target: Option<&str>) -> Result<Config, PlanError> {
    if let Some(t) = target
        && !t.contains('=')
        && !t.contains("://")
    {
        // Not shown: `postgresql:/app:PW@host/db` (one slash) or `host h password
        // PW` land here, password included.
        return Err(PlanError::Arg(format!(
            "the target ({} characters, not shown: it may hold a password) is neither a \
             postgresql:// URL nor key=value pairs",
            t.chars().count()
        )));
    }
    Ok(Config::resolve(target)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_words_are_not_targets() {
        let err = resolve_target(Some("db.example.com")).unwrap_err();
        assert!(
            err.to_string()
                .contains("neither a postgresql:// URL nor key=value")
        );
        for t in [
            "postgresql:/app:S3cret@host/db",
            "host 127.0.0.1 password S3cret",
        ] {
            let err = resolve_target(Some(t)).unwrap_err();
            assert!(!err.to_string().contains("S3cret"), "{err}");
        }
    }

    /// Fuzz target: any duration text is a value within the bound or an error; never a
    /// panic, here or when added to the clock. 256 cases by default, `PGSTEADY_FUZZ_CASES`
    /// or `PGSTEADY_FUZZ_SECS` to run more (the rate is printed: `--nocapture`).
    #[test]
    fn fuzz_the_duration_parser_never_panics() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let cases = std::env::var("PGSTEADY_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256);
        let unit = "(ns|nsec|us|usec|ms|msec|s|sec|secs|seconds|m|min|mins|h|hr|hrs|d|days|w|weeks|M|months|y|years|)";
        let text = prop_oneof![
            3 => proptest::collection::vec(("[0-9]{0,25}(\\.[0-9]{0,5})?", unit, " {0,2}"), 0..5)
                .prop_map(|parts| parts.into_iter().map(|(n, u, sp)| format!("{n}{u}{sp}")).collect::<String>()),
            1 => "[0-9a-z .+-]{0,30}",
            1 => any::<String>(),
        ];
        // As the library's harness: `PGSTEADY_FUZZ_SECS=S` runs batches until S seconds.
        let budget = std::env::var("PGSTEADY_FUZZ_SECS")
            .ok()
            .and_then(|n| n.parse().ok())
            .map(std::time::Duration::from_secs);
        let start = std::time::Instant::now();
        let mut total: u64 = 0;
        loop {
            let mut runner = TestRunner::new(Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            });
            let result = runner.run(&text, |s| {
                if let Ok(d) = parse_duration(&s) {
                    prop_assert!(d <= MAX_DURATION, "{s:?}: {d:?}");
                    prop_assert!(std::time::Instant::now().checked_add(d).is_some(), "{s:?}");
                }
                Ok(())
            });
            total += u64::from(cases);
            result.unwrap();
            if budget.is_none_or(|b| start.elapsed() >= b) {
                break;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "fuzz duration: {total} cases in {secs:.1}s ({:.0} cases/s)",
            total as f64 / secs.max(1e-9)
        );
    }
}
