//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), as libpq reads it.
//!
//! Each line is `hostname:port:database:username:password`; `*` matches anything, `\` escapes
//! `:` and `\`, lines starting with `#` are comments. The first matching line wins. On Unix the
//! file is ignored, with a warning, unless it is a regular file without group or world access
//! (chmod 0600), exactly like libpq.

use std::fmt;
use std::path::{Path, PathBuf};

/// A loaded password file. Its `Debug` shows the path and the number of entries only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PassFile {
    path: PathBuf,
    /// (1-based line number, the five fields).
    entries: Vec<(usize, [String; 5])>,
}

impl fmt::Debug for PassFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassFile")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// What happened when looking for a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassFileStatus {
    /// The file does not exist (the normal case).
    Missing,
    /// Loaded.
    Loaded(PassFile),
    /// Present but ignored; the message says why (permissions, not a regular file, unreadable).
    Ignored(String),
}

impl PassFile {
    /// Loads `path`, applying libpq's permission rule. An ignored file is logged with
    /// `tracing::warn!` and reported in the status.
    ///
    /// Only a regular file of at most 1 MiB is read (a FIFO or a device there is skipped, not
    /// waited on). A line that is not valid UTF-8 is skipped, the others are used, as libpq
    /// (which reads bytes) would use them.
    pub fn load(path: &Path) -> PassFileStatus {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PassFileStatus::Missing,
            Err(e) => return ignored(path, format!("cannot be read: {e}")),
        };
        if !meta.is_file() {
            return ignored(path, "is not a plain file".into());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return ignored(
                    path,
                    format!(
                        "has group or world access (mode {:o}); permissions should be u=rw (0600) or less",
                        mode & 0o777
                    ),
                );
            }
        }
        match crate::fsread::read_regular(path, crate::fsread::MAX_PASSFILE) {
            Ok(bytes) => PassFileStatus::Loaded(Self::parse_bytes(path, &bytes)),
            Err(e) => ignored(path, e.to_string()),
        }
    }

    /// Parses the file's bytes line by line; a line that is not UTF-8 is skipped (with a
    /// warning naming its number, never its content).
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Self {
        let mut text = String::with_capacity(bytes.len());
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            match std::str::from_utf8(line) {
                Ok(line) => {
                    text.push_str(line);
                    text.push('\n');
                }
                Err(_) => tracing::warn!(
                    "password file \"{}\": line {} is not valid UTF-8; skipping it",
                    path.display(),
                    i + 1
                ),
            }
        }
        Self::parse(path, &text)
    }

    /// Parses the file's text (no permission check).
    pub fn parse(path: &Path, text: &str) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|(i, l)| Some((i + 1, parse_line(l)?)))
            .collect();
        PassFile {
            path: path.to_owned(),
            entries,
        }
    }

    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The password of the first line matching all four fields.
    pub fn lookup(&self, host: &str, port: &str, dbname: &str, user: &str) -> Option<&str> {
        let wanted = [host, port, dbname, user];
        self.entries
            .iter()
            .find(|(_, e)| mismatch(e, wanted).is_none())
            .map(|(_, e)| e[4].as_str())
    }

    /// Why each line does or does not match, in file order, up to the first match: for
    /// telling a user why no password was found. Never shows a password.
    pub fn explain(&self, host: &str, port: &str, dbname: &str, user: &str) -> Vec<LineMatch> {
        let wanted = [host, port, dbname, user];
        let mut out = Vec::new();
        for (line, e) in &self.entries {
            let mismatch = mismatch(e, wanted).map(|i| {
                let field = ["hostname", "port", "database", "username"][i];
                format!("{field} `{}` is not `{}`", e[i], wanted[i])
            });
            let matched = mismatch.is_none();
            out.push(LineMatch {
                line: *line,
                key: e[..4].join(":"),
                mismatch,
            });
            if matched {
                break;
            }
        }
        out
    }
}

/// One password-file line checked against a connection ([`PassFile::explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMatch {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line's first four fields, `hostname:port:database:username` (not the password).
    pub key: String,
    /// Why it does not match (the first field that differs), or `None` when it matches.
    pub mismatch: Option<String>,
}

/// The index of the first of host, port, database, user that `entry` does not match.
fn mismatch(entry: &[String; 5], wanted: [&str; 4]) -> Option<usize> {
    entry[..4]
        .iter()
        .zip(wanted)
        .position(|(field, want)| field != "*" && field != want)
}

impl PassFile {
    /// The number of usable lines (five fields).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file holds no usable line.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn ignored(path: &Path, why: String) -> PassFileStatus {
    let message = format!("password file \"{}\" {why}", path.display());
    tracing::warn!("{message}; ignoring it");
    PassFileStatus::Ignored(message)
}

/// Splits one line into five fields; `None` if it has fewer.
fn parse_line(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut()?.push(next);
                }
            }
            // The password is the rest of the line, colons included.
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
db.example:5432:app:alice:first
*:5433:*:bob:any\\:host
localhost:*:*:*:local:with:colons
*:*:*:*:fallback
short:line
";

    #[test]
    fn first_match_wins_with_wildcards_and_escapes() {
        let f = PassFile::parse(Path::new("/x"), FILE);
        let rows = [
            (("db.example", "5432", "app", "alice"), Some("first")),
            (("db.example", "5432", "other", "alice"), Some("fallback")),
            (("h", "5433", "d", "bob"), Some("any:host")),
            (("localhost", "1", "d", "u"), Some("local:with:colons")),
            (("x", "1", "d", "u"), Some("fallback")),
        ];
        for ((h, p, d, u), want) in rows {
            assert_eq!(f.lookup(h, p, d, u), want, "{h}:{p}:{d}:{u}");
        }
        assert_eq!(
            PassFile::parse(Path::new("/x"), "short:line\n").lookup("short", "line", "", ""),
            None
        );
    }

    /// One invalid byte no longer hides the whole file.
    #[test]
    fn invalid_utf8_line_is_skipped_not_the_file() {
        let bytes = b"bad:*:*:*:\xff\xfe\n*:*:*:*:good\n";
        let f = PassFile::parse_bytes(Path::new("/x"), bytes);
        assert_eq!(f.lookup("h", "1", "d", "u"), Some("good"));
        assert_eq!(f.lookup("bad", "1", "d", "u"), Some("good"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        match PassFile::load(&path) {
            PassFileStatus::Loaded(f) => assert_eq!(f.lookup("h", "1", "d", "u"), Some("good")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_shows_no_password() {
        let f = PassFile::parse(Path::new("/x"), FILE);
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("first") && !dbg.contains("fallback"), "{dbg}");
    }

    #[cfg(unix)]
    #[test]
    fn permission_rule() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match PassFile::load(&path) {
            PassFileStatus::Ignored(msg) => {
                assert!(msg.contains("group or world access"), "{msg}");
                assert!(!msg.contains("pw\n"));
            }
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        match PassFile::load(&path) {
            PassFileStatus::Loaded(f) => assert_eq!(f.lookup("h", "1", "d", "u"), Some("pw")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            PassFile::load(&dir.path().join("nope")),
            PassFileStatus::Missing
        );
        assert!(matches!(
            PassFile::load(dir.path()),
            PassFileStatus::Ignored(_)
        ));
    }
}
