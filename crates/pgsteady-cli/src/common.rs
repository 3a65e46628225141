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

/// Parses `60s`, `1m30s`, `500ms` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if (0.0..1e9).contains(&secs) {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("`{s}` is not a valid duration"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a valid duration ({e:#}); use e.g. 60s, 1m30s, 500ms"))
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
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("soon").unwrap_err().contains("`soon`"));
        assert!(parse_duration("-1").is_err());
    }

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
}
