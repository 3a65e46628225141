//! The connection service file (`pg_service.conf`), as libpq reads it.
//!
//! A service name comes from `service=` in the connection string, else `PGSERVICE`. Its
//! `[name]` section is looked for in `PGSERVICEFILE` (which must then exist) or
//! `~/.pg_service.conf`, then in `pg_service.conf` under `PGSYSCONFDIR` (default
//! `/etc/postgresql-common`, where Debian's and Ubuntu's libpq look). A section's `key=value`
//! lines fill keywords the connection string left unset, above the `PG*` variables. As in
//! libpq, a line is trimmed at both ends but not around `=` (`host = x` is a syntax error), a
//! `service` line inside a section is refused, an unknown keyword is an error, and a section
//! found in the first file ends the search.

use std::path::{Path, PathBuf};

use super::env::Env;
use super::params::{Params, canonical_key};
use crate::Error;

/// libpq's compiled-in `SYSCONFDIR` on Debian and Ubuntu (`pg_config --sysconfdir`).
pub(crate) const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// The largest service file read: a FIFO or `/dev/zero` there is refused, not read forever.
const MAX_SERVICE_FILE: u64 = 1 << 20;

/// Fills `params` from the named service's section; nothing when no service is named.
pub(crate) fn apply(params: &mut Params, env: &dyn Env) -> Result<(), Error> {
    let service = match params.remove("service").filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => match env.var_checked("PGSERVICE")?.filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => return Ok(()),
        },
    };
    let mut looked = Vec::new();
    let user_file = match env.var_checked("PGSERVICEFILE")?.filter(|s| !s.is_empty()) {
        // Named explicitly: a missing file is an error, as in libpq.
        Some(path) => Some(PathBuf::from(path)),
        None => env
            .var_checked("HOME")?
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(&h).join(".pg_service.conf"))
            .filter(|p| {
                looked.push(p.display().to_string());
                p.exists()
            }),
    };
    if let Some(path) = user_file {
        if !looked.contains(&path.display().to_string()) {
            looked.push(path.display().to_string());
        }
        if section(&path, &service, params)? {
            return Ok(());
        }
    }
    let dir = env
        .var_checked("PGSYSCONFDIR")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SYSCONFDIR.to_owned());
    let system = Path::new(&dir).join("pg_service.conf");
    looked.push(system.display().to_string());
    if system.exists() && section(&system, &service, params)? {
        return Ok(());
    }
    Err(Error::config(format!(
        "definition of service \"{service}\" not found (looked in {})",
        looked.join(", ")
    )))
}

/// Reads `service`'s section of `path` into `params` (keywords not set yet only); whether the
/// section was there.
fn section(path: &Path, service: &str, params: &mut Params) -> Result<bool, Error> {
    let shown = path.display();
    let bytes = crate::fsread::read_regular(path, MAX_SERVICE_FILE).map_err(|e| {
        Error::config(match e {
            crate::fsread::ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("service file \"{shown}\" not found")
            }
            e => format!("service file \"{shown}\" {e}"),
        })
    })?;
    parse(&bytes, service, &mut |line, key, value| {
        let syntax = || Error::config(format!("syntax error in service file \"{shown}\", line {line}"));
        if key == "service" {
            return Err(Error::config(format!(
                "nested service specifications not supported in service file \"{shown}\", line {line}"
            )));
        }
        // Keywords are exact in a service file (libpq has no aliases there).
        let key = canonical_key(key).filter(|k| *k == key).ok_or_else(syntax)?;
        let value = std::str::from_utf8(value).map_err(|_| {
            Error::config(format!(
                "service file \"{shown}\", line {line}: the value is not valid UTF-8 (not shown)"
            ))
        })?;
        params.set_default(key, value);
        Ok(())
    })
    .map_err(|e| match e {
        Parse::NoEquals(line) => {
            Error::config(format!("syntax error in service file \"{shown}\", line {line}"))
        }
        Parse::Entry(e) => e,
    })
}

/// Why [`parse`] stopped.
#[derive(Debug)]
pub(crate) enum Parse {
    /// A line in the section without `=` (1-based line number).
    NoEquals(usize),
    /// The entry callback refused a line.
    Entry(Error),
}

/// Called for each `key=value` line of the section: (1-based line number, key, raw value).
pub(crate) type Entry<'a> = dyn FnMut(usize, &str, &[u8]) -> Result<(), Error> + 'a;

/// libpq's `parseServiceFile`: calls `entry(line number, key, value)` for each `key=value`
/// line of the `[service]` section; whether the section was found.
pub(crate) fn parse(bytes: &[u8], service: &str, entry: &mut Entry<'_>) -> Result<bool, Parse> {
    let mut in_group = false;
    let mut found = false;
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"[") {
            if in_group {
                return Ok(true);
            }
            in_group = rest
                .strip_prefix(service.as_bytes())
                .is_some_and(|r| r.first() == Some(&b']'));
            found |= in_group;
            continue;
        }
        if !in_group {
            continue;
        }
        let eq = line
            .iter()
            .position(|b| *b == b'=')
            .ok_or(Parse::NoEquals(i + 1))?;
        // A key that is not UTF-8 is no keyword.
        let key = std::str::from_utf8(&line[..eq]).unwrap_or("\u{fffd}");
        entry(i + 1, key, &line[eq + 1..]).map_err(Parse::Entry)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Lines = Vec<(usize, String, String)>;

    fn entries(text: &str, service: &str) -> Result<(bool, Lines), String> {
        let mut got = Vec::new();
        let found = parse(text.as_bytes(), service, &mut |n, k, v| {
            got.push((n, k.to_owned(), String::from_utf8_lossy(v).into_owned()));
            Ok(())
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok((found, got))
    }

    #[test]
    fn libpq_grammar() {
        let text = "# comment\n[other]\nhost=nope\n  [app]  \n  host=db1\nport=5433 \n\n# c\ndbname=a=b\n[app]\nhost=second\n";
        let (found, got) = entries(text, "app").unwrap();
        assert!(found);
        assert_eq!(
            got,
            vec![
                (5, "host".into(), "db1".into()),
                (6, "port".into(), "5433".into()),
                (9, "dbname".into(), "a=b".into()),
            ]
        );
        // A prefix of a section name is not the section; text after `]` is ignored.
        assert!(!entries("[application]\nhost=x\n", "app").unwrap().0);
        assert!(entries("[app] trailing\nhost=x\n", "app").unwrap().0);
        // No `=` in the section is an error; outside it, not looked at.
        assert_eq!(entries("[app]\nhost\n", "app").unwrap_err(), "NoEquals(2)");
        assert!(entries("[x]\nhost\n[app]\n", "app").unwrap().0);
        // No trimming around `=`: the key is `host ` (then refused by the caller).
        assert_eq!(entries("[app]\nhost = x\n", "app").unwrap().1[0].1, "host ");
    }
}
