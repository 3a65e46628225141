//! The raw connection parameters shared by the URI, key=value and environment layers: a map
//! from canonical libpq keyword to the string value, before validation.

use std::collections::BTreeMap;

use crate::Error;

/// Every keyword pgsteady accepts, libpq spelling.
pub(crate) const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslnegotiation",
    "target_session_attrs",
    "load_balance_hosts",
    "channel_binding",
    "require_auth",
    "gssencmode",
    // Consumed by the service-file layer before validation.
    "service",
    // pgsteady's own: named prepared statements on or off (PgBouncer in transaction mode).
    "statement_cache",
];

/// Spellings accepted for compatibility, mapped to the libpq keyword.
const ALIASES: &[(&str, &str)] = &[
    // tokio-postgres and JDBC spell it this way.
    ("keepalives_retries", "keepalives_count"),
    // Not libpq, but common in URLs and harmless.
    ("database", "dbname"),
    ("username", "user"),
];

/// Raw parameters in the order of precedence they were given (later `set` wins).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    values: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.values {
            if *k == "password" {
                map.entry(k, &"***");
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

impl Params {
    /// Sets `key` (any accepted spelling) to `value`; an unknown key is an error that names it
    /// and suggests the closest known keyword.
    ///
    /// `place` says where the key is in the input (e.g. "at character 12"): the message never
    /// shows an unknown key itself, since a mistyped string may have put a password there.
    pub(crate) fn set(
        &mut self,
        key: &str,
        value: impl Into<String>,
        place: &str,
    ) -> Result<(), Error> {
        let canonical = canonical_key(key).ok_or_else(|| unknown_key(key, place))?;
        self.values.insert(canonical, value.into());
        Ok(())
    }

    /// Sets `key` only when it is not set yet (the environment and default layers).
    pub(crate) fn set_default(&mut self, key: &'static str, value: impl Into<String>) {
        debug_assert!(KEYS.contains(&key));
        self.values.entry(key).or_insert_with(|| value.into());
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Whether `key` is set to a non-empty value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_empty())
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

/// The libpq keyword for `key` (any accepted spelling), if it is one.
pub(crate) fn canonical_key(key: &str) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| *k == key).or_else(|| {
        ALIASES
            .iter()
            .find(|(alias, _)| *alias == key)
            .map(|(_, k)| *k)
    })
}

fn unknown_key(key: &str, place: &str) -> Error {
    let suggestion = KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Error::config(format!(
        "unknown connection option {place}{suggestion} (the option is not shown: it may hold a password)"
    ))
}

/// Levenshtein distance, for "did you mean" hints only.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(64).enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_it_and_suggests() {
        // The unknown key is placed, never shown (it may be a password).
        let err = Params::default()
            .set("conect_timeout", "5", "at character 3")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown connection option at character 3 (did you mean `connect_timeout`?) \
             (the option is not shown: it may hold a password)"
        );
        let err = Params::default()
            .set("zzzzzzzzzz", "5", "at character 1")
            .unwrap_err();
        assert!(!err.to_string().contains("zzzzzzzzzz"), "{err}");
    }

    #[test]
    fn aliases_map_to_libpq_keys() {
        let mut p = Params::default();
        p.set("keepalives_retries", "4", "").unwrap();
        assert_eq!(p.get("keepalives_count"), Some("4"));
    }

    #[test]
    fn debug_hides_password() {
        let mut p = Params::default();
        p.set("password", "hunter2", "").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
