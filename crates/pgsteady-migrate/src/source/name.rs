//! The migration file name format: `<version>_<name>.sql`, and which names are ignored.

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
