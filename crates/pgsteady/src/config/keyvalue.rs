//! libpq key=value connection strings: `host=localhost port=5432 password='it''s \'quoted\''`.
//!
//! Grammar (libpq `conninfo_parse`): whitespace-separated `key = value` pairs, spaces allowed
//! around `=`; a value is either bare (up to the next whitespace) or single-quoted; in both a
//! backslash escapes the next character.
//!
//! Errors place the bad part (character position, or the keyword when it is a known one) and
//! never show a word of the input: a mangled string may have put a password anywhere.

use super::params::{Params, canonical_key};
use crate::Error;

/// Parses key=value pairs into parameters.
pub(crate) fn parse(s: &str) -> Result<Params, Error> {
    let mut params = Params::default();
    // Character positions (1-based) for messages.
    let mut chars = s.chars().enumerate().map(|(i, c)| (i + 1, c)).peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(params);
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        // A known keyword may be named; anything else only placed.
        let name = match canonical_key(&key) {
            Some(k) => format!("`{k}` (at character {start})"),
            None => format!("the word at character {start}"),
        };
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(Error::config(format!(
                "invalid connection string: missing `=` after {name}: expected key=value pairs \
                 (the text is not shown: it may hold a password)"
            )));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => {
                        // The value may be a password: place the key, never show the value.
                        return Err(Error::config(format!(
                            "invalid connection string: unterminated quoted value for {name}"
                        )));
                    }
                    Some('\'') => break,
                    Some('\\') => {
                        if let Some((_, c)) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some((_, c)) = chars.next() {
                        value.push(c);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        params.set(&key, value, &format!("at character {start}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_documented_forms() {
        let rows: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("   ", &[]),
            (
                "host=localhost port=5432 dbname=mydb connect_timeout=10",
                &[
                    ("host", "localhost"),
                    ("port", "5432"),
                    ("dbname", "mydb"),
                    ("connect_timeout", "10"),
                ],
            ),
            ("host = h  port= 1 ", &[("host", "h"), ("port", "1")]),
            ("password=''", &[("password", "")]),
            (
                r"password='it\'s a \\ secret' user=u",
                &[("password", r"it's a \ secret"), ("user", "u")],
            ),
            (r"application_name=a\ b", &[("application_name", "a b")]),
            (
                "options='-c statement_timeout=5s'",
                &[("options", "-c statement_timeout=5s")],
            ),
            (
                "host=h1,h2 port=5432,5433",
                &[("host", "h1,h2"), ("port", "5432,5433")],
            ),
            ("keepalives_retries=2", &[("keepalives_count", "2")]),
            // Later values win, as in libpq.
            ("port=1 port=2", &[("port", "2")]),
        ];
        for (s, want) in rows {
            let got: Vec<_> = parse(s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect();
            let mut want: Vec<_> = want.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            want.sort();
            assert_eq!(got, want, "{s}");
        }
    }

    #[test]
    fn errors_name_the_bad_part() {
        let rows = [
            ("host", "missing `=` after `host` (at character 1)"),
            (
                "host localhost",
                "missing `=` after `host` (at character 1)",
            ),
            (
                "hots=h",
                "unknown connection option at character 1 (did you mean `host`?)",
            ),
            (
                "password='abc",
                "unterminated quoted value for `password` (at character 1)",
            ),
            // A stray word or unknown key is placed, never shown.
            ("host=x abcPW", "missing `=` after the word at character 8"),
            ("abcPW=1", "unknown connection option at character 1"),
        ];
        for (s, want) in rows {
            let err = parse(s).unwrap_err();
            assert!(err.to_string().contains(want), "{s}: {err}");
            assert!(!err.to_string().contains("abc"), "{err}");
        }
    }
}
