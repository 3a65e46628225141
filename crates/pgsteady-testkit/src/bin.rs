//! Finding the PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result, apt};

/// A directory holding `initdb`, `postgres` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    dir: PathBuf,
}

impl PgBin {
    /// Finds the server binaries: `$PGSTEADY_PG_BIN`, then `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/*/bin`.
    ///
    /// When none is found on a machine with `apt-get` (as root, or with password-less
    /// `sudo`), installs the distribution's `postgresql` package once and looks again, saying
    /// so on stderr: the README promises that a fresh machine with only Rust and apt runs the
    /// drill and the tests. `PGSTEADY_NO_INSTALL=1` turns that off. The error names every
    /// place searched.
    pub fn find() -> Result<PgBin> {
        match Self::search() {
            Ok(bin) => Ok(bin),
            Err(searched) => {
                let _lock = apt::lock();
                if let Ok(bin) = Self::search() {
                    return Ok(bin);
                }
                let installed = install_with_apt(apt::allowed());
                Self::search().map_err(|searched_again| Error::NoBinaries {
                    searched: match installed {
                        Ok(()) => format!("{searched_again} (after apt-get install postgresql)"),
                        Err(why) => format!("{searched}; {why}"),
                    },
                })
            }
        }
    }

    /// One look in every place, without installing; the error lists the places.
    fn search() -> std::result::Result<PgBin, String> {
        let mut searched = Vec::new();
        if let Some(dir) = std::env::var_os("PGSTEADY_PG_BIN") {
            let dir = PathBuf::from(dir);
            if has_server(&dir) {
                return Ok(PgBin { dir });
            }
            searched.push(format!("$PGSTEADY_PG_BIN={}", dir.display()));
        } else {
            searched.push("$PGSTEADY_PG_BIN (unset)".to_owned());
        }
        match Command::new("pg_config").arg("--bindir").output() {
            Ok(out) if out.status.success() => {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if has_server(&dir) {
                    return Ok(PgBin { dir });
                }
                searched.push(format!("pg_config --bindir={}", dir.display()));
            }
            _ => searched.push("pg_config --bindir (no pg_config on PATH)".to_owned()),
        }
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = name
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
                    .ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort();
        if let Some((_, dir)) = versions.into_iter().rev().find(|(_, dir)| has_server(dir)) {
            return Ok(PgBin { dir });
        }
        searched.push("/usr/lib/postgresql/*/bin".to_owned());
        Err(searched.join(", "))
    }

    /// Uses the given directory, which must hold `initdb` and `postgres`.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Result<PgBin> {
        let dir = dir.into();
        if has_server(&dir) {
            Ok(PgBin { dir })
        } else {
            Err(Error::NoBinaries {
                searched: dir.display().to_string(),
            })
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one program in the directory (`pg_isready`, `psql`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Installs the `postgresql` package with apt-get; the error says why it was not done or what
/// failed, with the command to run by hand.
fn install_with_apt(allowed: bool) -> std::result::Result<(), String> {
    apt::install(
        allowed,
        &["postgresql"],
        "no PostgreSQL server binaries found; installing the `postgresql` package with apt-get",
        "install PostgreSQL (e.g. `apt-get install -y postgresql`) or set PGSTEADY_PG_BIN to \
         its bin directory",
    )
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_dir_rejects_a_directory_without_initdb() {
        let err = PgBin::from_dir("/nonexistent/pg/bin").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pg/bin"), "{err}");
    }

    #[test]
    fn install_opt_out_says_what_to_do_by_hand() {
        let why = install_with_apt(false).unwrap_err();
        assert!(why.contains("PGSTEADY_NO_INSTALL"), "{why}");
        assert!(why.contains("apt-get install -y postgresql"), "{why}");
        assert!(why.contains("PGSTEADY_PG_BIN"), "{why}");
    }
}
