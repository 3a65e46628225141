//! Migration files: the name format, the header directives, the checksum, reading a directory.
//!
//! Everything here is pure or plain file I/O: no database.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::Error;

/// The header directive that runs a file outside a transaction.
pub const NO_TRANSACTION: &str = "pgsteady:no-transaction";

/// The SHA-256 of a migration file's bytes, exactly as stored on disk (so it matches
/// `sha256sum FILE`). Displayed and stored as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum([u8; 32]);

impl Checksum {
    /// The checksum of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Checksum(Sha256::digest(bytes).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({self})")
    }
}

impl FromStr for Checksum {
    type Err = Error;

    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::config(format!("`{s}` is not a sha-256 checksum (64 hex digits)"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Checksum(out))
    }
}

/// One migration: a version, a name, the SQL and how to run it.
///
/// Made by [`Migrator::from_dir`](super::Migrator::from_dir) from files, or by
/// [`Migration::new`] from text embedded in a binary.
#[derive(Clone, PartialEq, Eq)]
pub struct Migration {
    version: i64,
    name: String,
    file_name: String,
    path: Option<PathBuf>,
    sql: String,
    checksum: Checksum,
    transactional: bool,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("file_name", &self.file_name)
            .field("checksum", &self.checksum)
            .field("transactional", &self.transactional)
            .finish_non_exhaustive()
    }
}

impl Migration {
    /// A migration from a file name in the documented format (`0001_create_users.sql`) and
    /// the file's contents, e.g. embedded with `include_bytes!`. The checksum is computed over
    /// `contents` exactly, so embedded and on-disk copies of a file agree.
    ///
    /// # Examples
    ///
    /// ```
    /// use pgsteady::migrate::Migration;
    /// let m = Migration::new("0001_create_users.sql", "CREATE TABLE users (id bigint);")?;
    /// assert_eq!((m.version(), m.name()), (1, "create_users"));
    /// assert!(m.is_transactional());
    /// # Ok::<(), pgsteady::Error>(())
    /// ```
    pub fn new(file_name: &str, contents: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let (version, name) = match parse_file_name(file_name) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                return Err(Error::config(format!(
                    "`{file_name}` is not a migration file name: {FORMAT_HELP}"
                )));
            }
            Err(why) => return Err(Error::config(format!("`{file_name}`: {why}"))),
        };
        let bytes = contents.into();
        Self::from_parts(version, name, file_name.to_owned(), None, bytes)
            .map_err(|why| Error::config(format!("`{file_name}`: {why}")))
    }

    fn from_parts(
        version: i64,
        name: String,
        file_name: String,
        path: Option<PathBuf>,
        bytes: Vec<u8>,
    ) -> Result<Self, String> {
        let checksum = Checksum::of(&bytes);
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            format!("not valid UTF-8 (line {line})")
        })?;
        // A byte-order mark is invisible in editors and a syntax error to the server.
        let sql = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        };
        let directives = parse_header(&sql)?;
        Ok(Migration {
            version,
            name,
            file_name,
            path,
            sql,
            checksum,
            transactional: !directives.no_transaction,
        })
    }

    /// The version: the number before the first `_` of the file name.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The name: what follows the `_`, without `.sql`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file name, e.g. `0001_create_users.sql`.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The file's path when read from a directory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The path if known, else the file name: what messages show.
    pub fn display_path(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => self.file_name.clone(),
        }
    }

    /// The SQL sent to the server (the file's text, without a leading byte-order mark).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The SHA-256 of the file's bytes.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// Whether the file runs inside a transaction together with its history row (the
    /// default), or outside one (header `-- pgsteady:no-transaction`).
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }
}

/// What the documentation and error messages say about the format.
pub(crate) const FORMAT_HELP: &str = "migration files are named `<version>_<name>.sql`, e.g. `0001_create_users.sql` \
     (version: digits; name: letters, digits, `_` or `-`)";

/// Parses a directory entry's name.
///
/// `Ok(None)`: a file the runner ignores on purpose (dotfiles, `*.md`). `Err`: a file that is
/// neither a migration nor ignorable, with the reason.
pub(crate) fn parse_file_name(file_name: &str) -> Result<Option<(i64, String)>, String> {
    if file_name.starts_with('.') || file_name.to_ascii_lowercase().ends_with(".md") {
        return Ok(None);
    }
    let Some(stem) = file_name.strip_suffix(".sql") else {
        if file_name.to_ascii_lowercase().ends_with(".sql") {
            return Err("the extension must be lowercase `.sql`".into());
        }
        return Err(format!("not a migration file: {FORMAT_HELP}"));
    };
    if stem.ends_with(".down") || stem.ends_with(".up") {
        return Err(format!(
            "up/down pairs are not supported (migrations only go forward): {FORMAT_HELP}"
        ));
    }
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        let flyway = stem.starts_with(['V', 'v'])
            && stem[1..].bytes().next().is_some_and(|b| b.is_ascii_digit());
        if flyway && stem.contains("__") {
            let (v, n) = stem[1..].split_once("__").unwrap_or_default();
            return Err(format!(
                "Flyway-style names are not supported: rename it to `{v:0>4}_{n}.sql` \
                 ({FORMAT_HELP})"
            ));
        }
        return Err(format!(
            "does not start with a version number: {FORMAT_HELP}"
        ));
    }
    let (version, rest) = stem.split_at(digits);
    let Some(name) = rest.strip_prefix('_') else {
        return Err(format!("expected `_` after the version: {FORMAT_HELP}"));
    };
    if name.is_empty() {
        return Err(format!(
            "the name after `{version}_` is empty: {FORMAT_HELP}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "the name may contain only letters, digits, `_` and `-`, not {bad:?}"
        ));
    }
    let version: i64 = version
        .parse()
        .map_err(|_| format!("version {version} is larger than {}", i64::MAX))?;
    Ok(Some((version, name.to_owned())))
}

/// Directives found in a file's header.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_transaction: bool,
}

/// Reads `-- pgsteady:...` directives from the leading comment lines (blank lines and `--`
/// comments before the first SQL). An unknown `pgsteady:` directive is an error, so a typo
/// does not silently run a file in a transaction.
pub(crate) fn parse_header(sql: &str) -> Result<Directives, String> {
    let mut directives = Directives::default();
    for (i, line) in sql.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let comment = comment.trim();
        if !comment.starts_with("pgsteady:") {
            continue;
        }
        if comment == NO_TRANSACTION {
            directives.no_transaction = true;
        } else {
            return Err(format!(
                "line {}: unknown directive `{comment}` (known: `{NO_TRANSACTION}`)",
                i + 1
            ));
        }
    }
    Ok(directives)
}

/// Reads and validates every migration in `dir`, sorted by version. All problems are
/// reported in one error, each naming its file.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<Migration>, Error> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::config(format!(
                "migrations directory `{}` is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::config(format!(
                "migrations directory `{}` does not exist",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read migrations directory `{}`: {e}",
                dir.display()
            )));
        }
    }
    let entries = fs::read_dir(dir).map_err(|e| {
        Error::config(format!(
            "cannot read migrations directory `{}`: {e}",
            dir.display()
        ))
    })?;
    let mut problems = Vec::new();
    let mut migrations = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(format!("`{}`: cannot list: {e}", dir.display()));
                continue;
            }
        };
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            problems.push(format!("`{}`: the file name is not UTF-8", path.display()));
            continue;
        };
        let (version, name) = match parse_file_name(&file_name) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => continue,
            Err(why) => {
                let what = if path.is_dir() { " (a directory)" } else { "" };
                problems.push(format!("`{}`{what}: {why}", path.display()));
                continue;
            }
        };
        let bytes = match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Err("is a directory, not a migration file".to_owned()),
            Ok(_) => fs::read(&path).map_err(|e| format!("cannot read: {e}")),
            Err(e) => Err(format!("cannot read: {e}")),
        };
        let parsed = bytes.and_then(|bytes| {
            Migration::from_parts(version, name, file_name, Some(path.clone()), bytes)
        });
        match parsed {
            Ok(m) => migrations.push(m),
            Err(why) => problems.push(format!("`{}`: {why}", path.display())),
        }
    }
    problems.sort();
    if let Err(dups) = sort_and_check(&mut migrations) {
        problems.extend(dups);
    }
    match problems.len() {
        0 => Ok(migrations),
        1 => Err(Error::config(format!(
            "migrations directory `{}`: {}",
            dir.display(),
            problems[0]
        ))),
        n => Err(Error::config(format!(
            "migrations directory `{}` has {n} problems: {}",
            dir.display(),
            problems.join("; ")
        ))),
    }
}

/// Sorts by version and reports every duplicated version.
pub(crate) fn sort_and_check(migrations: &mut [Migration]) -> Result<(), Vec<String>> {
    migrations.sort_by(|a, b| (a.version, &a.file_name).cmp(&(b.version, &b.file_name)));
    let dups: Vec<String> = migrations
        .windows(2)
        .filter(|w| w[0].version == w[1].version)
        .map(|w| {
            format!(
                "`{}` and `{}` have the same version {}",
                w[0].display_path(),
                w[1].display_path(),
                w[0].version
            )
        })
        .collect();
    if dups.is_empty() { Ok(()) } else { Err(dups) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let ok = [
            ("0001_create_users.sql", 1, "create_users"),
            ("1_a.sql", 1, "a"),
            (
                "20240101120000_add-email.sql",
                20_240_101_120_000,
                "add-email",
            ),
            ("0042_Mixed_Case_9.sql", 42, "Mixed_Case_9"),
            ("9223372036854775807_max.sql", i64::MAX, "max"),
            ("0003__leading_underscore.sql", 3, "_leading_underscore"),
        ];
        for (file, version, name) in ok {
            assert_eq!(
                parse_file_name(file),
                Ok(Some((version, name.to_owned()))),
                "{file}"
            );
        }
        for ignored in [
            ".gitkeep",
            ".DS_Store",
            "README.md",
            "notes.MD",
            ".0001_x.sql",
        ] {
            assert_eq!(parse_file_name(ignored), Ok(None), "{ignored}");
        }
        let bad = [
            (
                "V1__create_users.sql",
                "rename it to `0001_create_users.sql`",
            ),
            ("0001_create_users.SQL", "lowercase `.sql`"),
            (
                "0001_create_users.up.sql",
                "up/down pairs are not supported",
            ),
            (
                "0001_create_users.down.sql",
                "up/down pairs are not supported",
            ),
            ("create_users.sql", "does not start with a version number"),
            ("0001-create_users.sql", "expected `_` after the version"),
            ("0001.sql", "expected `_` after the version"),
            ("0001_.sql", "is empty"),
            ("0001_create users.sql", "not ' '"),
            ("0001_café.sql", "not 'é'"),
            ("9223372036854775808_big.sql", "larger than"),
            ("0001_x.sql.bak", "not a migration file"),
            ("README", "not a migration file"),
            ("schema.txt", "not a migration file"),
        ];
        for (file, want) in bad {
            let err = parse_file_name(file).unwrap_err();
            assert!(err.contains(want), "{file}: {err}");
        }
    }

    #[test]
    fn ordering_is_numeric_and_duplicates_are_named() {
        let mut ms: Vec<Migration> = ["10_c.sql", "0002_b.sql", "1_a.sql"]
            .iter()
            .map(|f| Migration::new(f, "SELECT 1;").unwrap())
            .collect();
        sort_and_check(&mut ms).unwrap();
        let versions: Vec<i64> = ms.iter().map(Migration::version).collect();
        assert_eq!(versions, [1, 2, 10]);

        let mut dup: Vec<Migration> = ["0002_b.sql", "2_again.sql", "1_a.sql"]
            .iter()
            .map(|f| Migration::new(f, "SELECT 1;").unwrap())
            .collect();
        let errs = sort_and_check(&mut dup).unwrap_err();
        assert_eq!(
            errs,
            ["`0002_b.sql` and `2_again.sql` have the same version 2"]
        );
    }

    #[test]
    fn checksum_is_sha256_of_the_raw_bytes() {
        // sha256("") and sha256("abc"), from FIPS 180-2.
        assert_eq!(
            Checksum::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let abc = Checksum::of(b"abc");
        assert_eq!(
            abc.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(abc.to_string().parse::<Checksum>().unwrap(), abc);
        assert_eq!(
            abc.to_string().to_uppercase().parse::<Checksum>().unwrap(),
            abc
        );
        assert!("xyz".parse::<Checksum>().is_err());
        assert!("zz".repeat(32).parse::<Checksum>().is_err());
        assert_eq!(abc.short(), "ba7816bf8f01");
        // The byte-order mark is stripped from the SQL but still counted in the checksum,
        // and CRLF is not normalised: the checksum is `sha256sum FILE`.
        let bom = Migration::new("1_a.sql", b"\xef\xbb\xbfSELECT 1;\r\n".to_vec()).unwrap();
        assert_eq!(bom.sql(), "SELECT 1;\r\n");
        assert_eq!(bom.checksum(), Checksum::of(b"\xef\xbb\xbfSELECT 1;\r\n"));
        assert_ne!(
            bom.checksum(),
            Migration::new("1_a.sql", "SELECT 1;\n").unwrap().checksum()
        );
    }

    #[test]
    fn header_directives() {
        let cases = [
            (
                "-- pgsteady:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);",
                true,
            ),
            ("--pgsteady:no-transaction\n", true),
            (
                "\n\n  -- a comment first\n-- pgsteady:no-transaction\nSELECT 1;",
                true,
            ),
            // Only the leading comment block counts.
            ("SELECT 1;\n-- pgsteady:no-transaction\n", false),
            ("/* pgsteady:no-transaction */ SELECT 1;", false),
            ("-- no directive here\nSELECT 1;", false),
            ("", false),
        ];
        for (sql, no_tx) in cases {
            assert_eq!(parse_header(sql).unwrap().no_transaction, no_tx, "{sql:?}");
        }
        let err = parse_header("-- fine\n-- pgsteady:no-transactions\nSELECT 1;").unwrap_err();
        assert_eq!(
            err,
            "line 2: unknown directive `pgsteady:no-transactions` (known: \
             `pgsteady:no-transaction`)"
        );
        let m = Migration::new(
            "2_idx.sql",
            "-- pgsteady:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);",
        )
        .unwrap();
        assert!(!m.is_transactional());
        let err = Migration::new("2_idx.sql", "-- pgsteady:typo\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`2_idx.sql`: line 1: unknown directive"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = Migration::new("1_a.sql", b"SELECT 1;\nSELECT '\xff';\n".to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "`1_a.sql`: not valid UTF-8 (line 2)");
    }

    #[test]
    fn read_dir_reports_every_problem_and_ignores_documented_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
        write("0001_a.sql", "SELECT 1;");
        write("0002_b.sql", "SELECT 2;");
        write("README.md", "docs");
        write(".gitkeep", "");
        fs::create_dir(dir.path().join(".git")).unwrap();
        let ms = read_dir(dir.path()).unwrap();
        assert_eq!(
            ms.iter().map(Migration::version).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(ms[0].path(), Some(dir.path().join("0001_a.sql").as_path()));

        write("V3__c.sql", "SELECT 3;");
        fs::create_dir(dir.path().join("0004_dir.sql")).unwrap();
        write("2_b_again.sql", "SELECT 2;");
        let err = read_dir(dir.path()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        let text = err.to_string();
        assert!(text.contains("has 3 problems"), "{text}");
        assert!(text.contains("0004_dir.sql`: is a directory"), "{text}");
        assert!(text.contains("V3__c.sql`: Flyway-style"), "{text}");
        assert!(text.contains("have the same version 2"), "{text}");

        let missing = dir.path().join("nope");
        let err = read_dir(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "migrations directory `{}` does not exist",
                missing.display()
            )
        );
        let file = dir.path().join("0001_a.sql");
        let err = read_dir(&file).unwrap_err();
        assert!(err.to_string().ends_with("is not a directory"), "{err}");
    }
}
