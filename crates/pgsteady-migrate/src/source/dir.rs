//! Reading a migrations directory: which files are ignored (the name format is in `name`), and
//! ordering by version with duplicates reported.

use std::fs;
use std::io;
use std::path::Path;

use super::Migration;
use super::name::parse_file_name;
use crate::Error;

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
        // Regular files only, size-capped: a FIFO blocked `migrate` forever and a link to
        // /dev/zero read 4 GB.
        let bytes = match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Err("is a directory, not a migration file".to_owned()),
            Ok(_) => pgsteady::fsread::read_regular(&path, crate::source::MAX_MIGRATION_FILE)
                .map_err(|e| match e {
                    pgsteady::fsread::ReadError::Io(e) => format!("cannot read: {e}"),
                    other => other.to_string(),
                }),
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

    /// A FIFO or a link to a device is refused before anything is read.
    #[cfg(unix)]
    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0001_ok.sql"), "SELECT 1;").unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("0002_fifo.sql"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("0003_zero.sql")).unwrap();
        let started = std::time::Instant::now();
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(
            err.contains("0002_fifo.sql`: is a FIFO, not a regular file"),
            "{err}"
        );
        assert!(
            err.contains("0003_zero.sql`: is a device, not a regular file"),
            "{err}"
        );
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
