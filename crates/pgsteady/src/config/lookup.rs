//! "Where did pgsteady look for the password?": the answer a user needs when a server asks
//! for a password and none was sent, or the wrong one was. It follows the same order as
//! [`Config::password_for`]: the connection string (or `DATABASE_URL`), `PGPASSWORD`, then
//! the password file (`passfile=`, `PGPASSFILE`, `$HOME/.pgpass`) line by line.
//!
//! Nothing here holds or shows a password: only where one is, or why none was taken.

// Public with the `probe` feature only; the crate's own connect path does not need it.
#![cfg_attr(not(feature = "probe"), allow(dead_code, unreachable_pub))]

use std::fmt;
use std::path::PathBuf;

use super::{Config, Env, Host, HostSpec, LineMatch, PassFile, PassFileStatus, parse_string};
use crate::Error;

/// The result of [`password_search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSearch {
    /// Where the connection string came from: `"the connection string"` or `"DATABASE_URL"`.
    pub string_name: &'static str,
    /// The connection string holds a password (URL user info, `?password=`, `password=`).
    pub in_string: bool,
    /// `PGPASSWORD` is set (and not empty).
    pub in_env: bool,
    /// What the password file gave.
    pub passfile: PassFileSearch,
}

/// The password file's part of a [`PasswordSearch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassFileSearch {
    /// No `passfile`, no `PGPASSFILE` and no `HOME`: no file to look in.
    NoPath,
    /// The file does not exist.
    Missing(PathBuf),
    /// The file exists but is not used; `why` says why (e.g. group or world access, which
    /// libpq refuses: mode 0600 is needed).
    Ignored {
        /// The file.
        path: PathBuf,
        /// Why, e.g. "has group or world access (mode 644); ...".
        why: String,
        /// The file's mode bits when the reason is its permissions.
        mode: Option<u32>,
    },
    /// The file was read; no line matches this host, port, database and user.
    NoMatch {
        /// The file.
        path: PathBuf,
        /// Each line and why it does not match.
        lines: Vec<LineMatch>,
        /// What was matched against: `hostname:port:database:username`.
        wanted: String,
    },
    /// A line matches (its password is the one sent).
    Matched {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
}

impl PasswordSearch {
    /// True when a password is sent for this host, from any of the places.
    pub fn found(&self) -> bool {
        self.in_string || self.in_env || matches!(self.passfile, PassFileSearch::Matched { .. })
    }

    /// Where the password sent comes from, e.g. "PGPASSWORD" or "line 3 of /root/.pgpass".
    pub fn origin(&self) -> Option<String> {
        if self.in_string {
            Some(self.string_name.to_owned())
        } else if self.in_env {
            Some("PGPASSWORD".to_owned())
        } else if let PassFileSearch::Matched { path, line } = &self.passfile {
            Some(format!("line {line} of {}", path.display()))
        } else {
            None
        }
    }
}

/// Every place looked at, in order, e.g. "the connection string: no password; PGPASSWORD: not
/// set; /root/.pgpass: does not exist".
impl fmt::Display for PasswordSearch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool, yes: &'static str, no: &'static str| if b { yes } else { no };
        write!(
            f,
            "{}: {}; PGPASSWORD: {}; ",
            self.string_name,
            yes_no(self.in_string, "has a password", "no password"),
            yes_no(self.in_env, "set", "not set"),
        )?;
        match &self.passfile {
            PassFileSearch::NoPath => f.write_str("password file: none (no HOME, no PGPASSFILE)"),
            PassFileSearch::Missing(p) => write!(f, "{}: does not exist", p.display()),
            PassFileSearch::Ignored { path, why, .. } => {
                write!(f, "{}: ignored, {why}", path.display())
            }
            PassFileSearch::NoMatch {
                path,
                lines,
                wanted,
            } if lines.is_empty() => {
                write!(f, "{}: no usable line for {wanted}", path.display())
            }
            PassFileSearch::NoMatch {
                path,
                lines,
                wanted,
            } => {
                write!(f, "{}: no line matches {wanted} (", path.display())?;
                for (i, l) in lines.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let why = l.mismatch.as_deref().unwrap_or("matches");
                    write!(f, "line {} `{}`: {why}", l.line, l.key)?;
                }
                f.write_str(")")
            }
            PassFileSearch::Matched { path, line } => {
                write!(f, "{}: line {line} matches", path.display())
            }
        }
    }
}

/// Where the password for `host` comes from when connecting to `target` (as
/// [`Config::resolve_with_env`] reads it), or why there is none.
///
/// # Examples
///
/// ```
/// use pgsteady::config::{password_search, PassFileSearch};
/// let env = |k: &str| (k == "HOME").then(|| "/nonexistent".to_owned());
/// let config = pgsteady::Config::resolve_with_env(Some("postgresql://app@db/app"), &env)?;
/// let search = password_search(Some("postgresql://app@db/app"), &env, &config.hosts[0])?;
/// assert!(!search.found());
/// assert_eq!(search.passfile, PassFileSearch::Missing("/nonexistent/.pgpass".into()));
/// assert!(search.to_string().starts_with("the connection string: no password; PGPASSWORD: not set"));
/// # Ok::<(), pgsteady::Error>(())
/// ```
pub fn password_search(
    target: Option<&str>,
    env: &dyn Env,
    host: &HostSpec,
) -> Result<PasswordSearch, Error> {
    let config = Config::resolve_with_env(target, env)?;
    let (string_name, text) = match target {
        Some(t) => ("the connection string", t.to_owned()),
        None => match env
            .var_checked("DATABASE_URL")?
            .filter(|v| !v.trim().is_empty())
        {
            Some(url) => ("DATABASE_URL", url),
            None => ("the connection string", String::new()),
        },
    };
    let params = parse_string(&text)?;
    let in_string = params.has("password");
    let in_env = !in_string
        && env
            .var_checked("PGPASSWORD")?
            .is_some_and(|v| !v.is_empty());
    let set = |name: &str| -> Result<Option<PathBuf>, Error> {
        Ok(env
            .var_checked(name)?
            .filter(|v| !v.is_empty())
            .map(PathBuf::from))
    };
    let path = match params.get("passfile").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => match set("PGPASSFILE")? {
            Some(p) => Some(p),
            None => set("HOME")?.map(|h| h.join(".pgpass")),
        },
    };
    let name = match &host.host {
        Host::Tcp(h) => h.clone(),
        Host::Unix(_) => "localhost".to_owned(),
    };
    let port = host.port.to_string();
    let passfile = match path {
        None => PassFileSearch::NoPath,
        Some(path) => match PassFile::load(&path) {
            PassFileStatus::Missing => PassFileSearch::Missing(path),
            PassFileStatus::Ignored(why) => {
                let mode = mode_of(&path).filter(|m| m & 0o077 != 0);
                let why = why
                    .split_once("\" ")
                    .map(|(_, w)| w.to_owned())
                    .unwrap_or(why);
                PassFileSearch::Ignored { path, why, mode }
            }
            PassFileStatus::Loaded(file) => {
                let lines = file.explain(&name, &port, &config.dbname, &config.user);
                match lines.last() {
                    Some(l) if l.mismatch.is_none() => {
                        PassFileSearch::Matched { path, line: l.line }
                    }
                    _ => PassFileSearch::NoMatch {
                        path,
                        lines,
                        wanted: format!("{name}:{port}:{}:{}", config.dbname, config.user),
                    },
                }
            }
        },
    };
    Ok(PasswordSearch {
        string_name,
        in_string,
        in_env,
        passfile,
    })
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_: &std::path::Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_place_in_order_and_why_lines_do_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nlocalhost:5432:app:app:Secret1\n127.0.0.1:6543:*:app:Secret2\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let path = file.to_str().unwrap().to_owned();
        let env = move |k: &str| (k == "PGPASSFILE").then(|| path.clone());
        let target = "postgresql://app@127.0.0.1:5432/app";
        let config = Config::resolve_with_env(Some(target), &env).unwrap();
        let search = password_search(Some(target), &env, &config.hosts[0]).unwrap();
        assert!(!search.found());
        let text = search.to_string();
        assert_eq!(
            text,
            format!(
                "the connection string: no password; PGPASSWORD: not set; {}: no line matches \
                 127.0.0.1:5432:app:app (line 2 `localhost:5432:app:app`: hostname `localhost` \
                 is not `127.0.0.1`, line 3 `127.0.0.1:6543:*:app`: port `6543` is not `5432`)",
                file.display()
            )
        );
        assert!(!text.contains("Secret"));

        // The line for localhost matches a Unix socket, as in libpq.
        let target = "host=/tmp port=5432 user=app dbname=app";
        let config = Config::resolve_with_env(Some(target), &env).unwrap();
        let search = password_search(Some(target), &env, &config.hosts[0]).unwrap();
        assert_eq!(
            search.origin(),
            Some(format!("line 2 of {}", file.display()))
        );

        // The string wins over PGPASSWORD.
        let env = |k: &str| (k == "PGPASSWORD").then(|| "x".to_owned());
        let target = "postgresql://app:pw@h/app";
        let config = Config::resolve_with_env(Some(target), &env).unwrap();
        let search = password_search(Some(target), &env, &config.hosts[0]).unwrap();
        assert_eq!(search.origin().as_deref(), Some("the connection string"));
        let search =
            password_search(Some("postgresql://app@h/app"), &env, &config.hosts[0]).unwrap();
        assert_eq!(search.origin().as_deref(), Some("PGPASSWORD"));
    }

    #[cfg(unix)]
    #[test]
    fn a_group_readable_file_is_named_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:Secret3\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = file.to_str().unwrap().to_owned();
        let env = move |k: &str| (k == "PGPASSFILE").then(|| path.clone());
        let config = Config::resolve_with_env(Some("host=h user=u"), &env).unwrap();
        let search = password_search(Some("host=h user=u"), &env, &config.hosts[0]).unwrap();
        match &search.passfile {
            PassFileSearch::Ignored { mode, why, .. } => {
                assert_eq!(*mode, Some(0o644));
                assert!(why.starts_with("has group or world access"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!search.to_string().contains("Secret3"));
    }
}
