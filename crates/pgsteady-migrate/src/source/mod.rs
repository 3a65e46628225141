//! Migration files: the name format, the header directives, the checksum, reading a directory.
//! Here: [`Migration`], [`Checksum`] and the header; names are in `name`, directories in `dir`.
//!
//! Everything here is pure or plain file I/O: no database.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::Error;

mod dir;
mod name;

pub(crate) use dir::{read_dir, sort_and_check};

use name::{FORMAT_HELP, parse_file_name};

/// The cap on one migration file's size.
pub(crate) const MAX_MIGRATION_FILE: u64 = 64 << 20;

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
    /// use pgsteady_migrate::Migration;
    /// let m = Migration::new("0001_create_users.sql", "CREATE TABLE users (id bigint);")?;
    /// assert_eq!((m.version(), m.name()), (1, "create_users"));
    /// assert!(m.is_transactional());
    /// # Ok::<(), pgsteady_migrate::Error>(())
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
        // The wire protocol ends a query string at a NUL: the server would see a cut statement
        // (or tokio-postgres refuses to send it), on every attempt.
        if let Some(at) = text.find('\0') {
            let line = text
                .as_bytes()
                .iter()
                .take(at)
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(format!(
                "holds a NUL byte (line {line}), which no SQL statement can contain"
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = Migration::new("1_a.sql", "SELECT 1;\nSELECT '\0';").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert_eq!(
            err.to_string(),
            "`1_a.sql`: holds a NUL byte (line 2), which no SQL statement can contain"
        );
    }
}
