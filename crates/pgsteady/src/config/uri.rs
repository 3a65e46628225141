//! libpq connection URIs: `postgresql://[user[:password]@][host][:port][,...][/dbname][?k=v&...]`.
//!
//! Follows <https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS>,
//! with one friendliness: the *last* `@` before the path separates the user info, so a password
//! with an unencoded `@` still parses (libpq would take the first one and fail).
//!
//! Error messages place the bad part (host entry, query parameter number, a known keyword) but
//! never show a piece of the URL: a mangled URL may have put the password anywhere
//! (`postgresql://app:PW/app` would otherwise print "invalid port `PW`").

use super::params::{Params, canonical_key};
use crate::Error;

/// The schemes libpq accepts.
pub(crate) const SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

/// Whether `s` looks like a URI rather than key=value pairs.
pub(crate) fn is_uri(s: &str) -> bool {
    SCHEMES.iter().any(|p| s.starts_with(p))
}

/// Parses a URI into parameters.
pub(crate) fn parse(uri: &str) -> Result<Params, Error> {
    let rest = SCHEMES
        .iter()
        .find_map(|p| uri.strip_prefix(p))
        .ok_or_else(|| {
            Error::config("invalid URL: it must start with `postgresql://` or `postgres://`")
        })?;
    let mut params = Params::default();

    // Split off `?query` first, then `/dbname`: neither may appear unencoded in the authority
    // (Unix socket paths are percent-encoded there).
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };

    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                let user = decode(user).map_err(|e| e.context("the user name of the URL"))?;
                params.set("user", user, "")?;
            }
            if let Some(password) = password {
                // Never echo the password or its bad token.
                let password = decode(password).map_err(|_| {
                    Error::config("invalid URL: bad percent-encoding in the password")
                })?;
                params.set("password", password, "")?;
            }
            hosts
        }
        None => authority,
    };

    parse_hosts(hostspec, &mut params)?;

    if let Some(path) = path
        && !path.is_empty()
    {
        let db = decode(path).map_err(|e| e.context("the database name of the URL"))?;
        params.set("dbname", db, "")?;
    }

    if let Some(query) = query {
        for (i, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            let n = i + 1;
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                let which = match canonical_key(pair) {
                    Some(k) => format!("`{k}`"),
                    None => format!("{n}"),
                };
                Error::config(format!(
                    "invalid URL: query parameter {which} has no `=value`"
                ))
            })?;
            let k =
                decode(k).map_err(|e| e.context(&format!("the name of query parameter {n}")))?;
            let v = if k == "password" {
                decode(v).map_err(|_| {
                    Error::config("invalid URL: bad percent-encoding in the password")
                })?
            } else {
                let which = match canonical_key(&k) {
                    Some(k) => format!("URL query parameter `{k}`"),
                    None => format!("URL query parameter {n}"),
                };
                decode(v).map_err(|e| e.context(&which))?
            };
            if k == "ssl" {
                // JDBC's `ssl=true`, which libpq also accepts.
                if v == "true" {
                    params.set("sslmode", "require", "")?;
                    continue;
                }
                return Err(Error::config(
                    "invalid URL: query parameter `ssl`: only `ssl=true` is accepted (use sslmode)",
                ));
            }
            params
                .set(&k, v, &format!("(URL query parameter {n})"))
                .map_err(|e| {
                    Error::config(format!("invalid URL: {}", e.message()))
                        .with_reason(crate::Reason::Config)
                })?;
        }
    }
    Ok(params)
}

/// `h1:5432,[::1]:5433,%2Ftmp` into `host` and `port` lists, keeping positions aligned.
fn parse_hosts(spec: &str, params: &mut Params) -> Result<(), Error> {
    if spec.is_empty() {
        return Ok(());
    }
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for (i, entry) in spec.split(',').enumerate() {
        let n = i + 1;
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| {
                Error::config(format!("invalid URL: missing `]` in IPv6 host entry {n}"))
            })?;
            let port = match after {
                "" => "",
                p => p.strip_prefix(':').ok_or_else(|| {
                    Error::config(format!(
                        "invalid URL: unexpected text after the IPv6 address of host entry {n}: expected `:port`"
                    ))
                })?,
            };
            (h.to_owned(), port)
        } else {
            let (h, p) = match entry.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (entry, ""),
            };
            let h = decode(h).map_err(|e| e.context(&format!("host entry {n} of the URL")))?;
            (h, p)
        };
        if !port.is_empty() && !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::config(format!(
                "invalid URL: invalid port in host entry {n}: expected digits (the text is not \
                 shown: a URL missing `@host` puts the password there)"
            )));
        }
        hosts.push(host);
        ports.push(port.to_owned());
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        params.set("host", hosts.join(","), "")?;
    }
    if ports.iter().any(|p| !p.is_empty()) {
        params.set("port", ports.join(","), "")?;
    }
    Ok(())
}

/// Percent-decoding as libpq does it: `%` must be followed by two hex digits, `%00` is
/// forbidden, and the result must be UTF-8.
pub(crate) fn decode(s: &str) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(DecodeError::Token(i))?;
            let hex = std::str::from_utf8(hex).map_err(|_| DecodeError::Token(i))?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| DecodeError::Token(i))?;
            if byte == 0 {
                return Err(DecodeError::Nul);
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::Utf8)
}

/// Why percent-decoding failed; turned into a message with [`DecodeError::context`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A `%` at this byte offset is not followed by two hex digits.
    Token(usize),
    /// `%00`.
    Nul,
    /// The decoded bytes are not UTF-8.
    Utf8,
}

impl DecodeError {
    fn context(self, what: &str) -> Error {
        Error::config(match self {
            DecodeError::Token(_) => {
                format!(
                    "invalid URL: bad percent-encoding in {what} (`%` must be followed by two hex digits)"
                )
            }
            DecodeError::Nul => format!("invalid URL: `%00` is not allowed in {what}"),
            DecodeError::Utf8 => format!("invalid URL: {what} is not valid UTF-8 once decoded"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(uri: &str) -> Vec<(&'static str, String)> {
        parse(uri)
            .unwrap_or_else(|e| panic!("{uri}: {e}"))
            .iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect()
    }

    fn kv(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut v: Vec<_> = pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        v.sort();
        v
    }

    /// The examples of the libpq documentation (34.1.1.2 Connection URIs).
    #[test]
    fn libpq_documented_examples() {
        let rows: &[(&str, &[(&str, &str)])] = &[
            ("postgresql://", &[]),
            ("postgresql://localhost", &[("host", "localhost")]),
            (
                "postgresql://localhost:5433",
                &[("host", "localhost"), ("port", "5433")],
            ),
            (
                "postgresql://localhost/mydb",
                &[("host", "localhost"), ("dbname", "mydb")],
            ),
            (
                "postgresql://user@localhost",
                &[("host", "localhost"), ("user", "user")],
            ),
            (
                "postgresql://user:secret@localhost",
                &[
                    ("host", "localhost"),
                    ("user", "user"),
                    ("password", "secret"),
                ],
            ),
            (
                "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
                &[
                    ("host", "localhost"),
                    ("user", "other"),
                    ("dbname", "otherdb"),
                    ("connect_timeout", "10"),
                    ("application_name", "myapp"),
                ],
            ),
            (
                "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp",
                &[
                    ("host", "host1,host2"),
                    ("port", "123,456"),
                    ("dbname", "somedb"),
                    ("target_session_attrs", "any"),
                    ("application_name", "myapp"),
                ],
            ),
            (
                "postgresql:///mydb?host=localhost&port=5433",
                &[("dbname", "mydb"), ("host", "localhost"), ("port", "5433")],
            ),
            (
                "postgresql://[2001:db8::1234]/database",
                &[("host", "2001:db8::1234"), ("dbname", "database")],
            ),
            (
                "postgresql://[2001:db8::1234]:5433",
                &[("host", "2001:db8::1234"), ("port", "5433")],
            ),
            (
                "postgresql:///dbname?host=/var/lib/postgresql",
                &[("dbname", "dbname"), ("host", "/var/lib/postgresql")],
            ),
            (
                "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
                &[("host", "/var/lib/postgresql"), ("dbname", "dbname")],
            ),
            (
                "postgres://u%40x:p%3Aw%2Fd@h/d%20b",
                &[
                    ("host", "h"),
                    ("user", "u@x"),
                    ("password", "p:w/d"),
                    ("dbname", "d b"),
                ],
            ),
            (
                "postgresql://h1,h2:5433,h3",
                &[("host", "h1,h2,h3"), ("port", ",5433,")],
            ),
            (
                "postgresql://h?ssl=true",
                &[("host", "h"), ("sslmode", "require")],
            ),
            (
                "postgresql://h?keepalives_retries=3",
                &[("host", "h"), ("keepalives_count", "3")],
            ),
            // Unencoded `@` in the password: the last `@` separates.
            (
                "postgresql://u:p@ss@h",
                &[("host", "h"), ("user", "u"), ("password", "p@ss")],
            ),
        ];
        for (uri, want) in rows {
            assert_eq!(p(uri), kv(want), "{uri}");
        }
    }

    #[test]
    fn errors_name_the_bad_part() {
        let rows = [
            ("mysql://h", "must start with `postgresql://`"),
            ("postgresql://h:54x2", "invalid port in host entry 1"),
            ("postgresql://[::1/db", "missing `]` in IPv6 host"),
            (
                "postgresql://h/db?foo=1",
                "unknown connection option (URL query parameter 1)",
            ),
            (
                "postgresql://h/db?connect_timeout",
                "query parameter `connect_timeout` has no `=value`",
            ),
            (
                "postgresql://h/d%zzb",
                "bad percent-encoding in the database name",
            ),
            (
                "postgresql://h/d%00b",
                "`%00` is not allowed in the database name",
            ),
            ("postgresql://h/db?ssl=maybe", "only `ssl=true` is accepted"),
        ];
        for (uri, want) in rows {
            let err = parse(uri).unwrap_err();
            assert!(err.to_string().contains(want), "{uri}: {err}");
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            for token in ["54x2", "foo", "maybe", "zzb"] {
                assert!(!err.to_string().contains(token), "{uri}: {err}");
            }
        }
    }

    #[test]
    fn password_errors_do_not_echo_the_password() {
        for uri in [
            "postgresql://u:s3cr%zzet@h/db",
            "postgresql://h/db?password=s3cr%zzet",
            // `@host` forgotten, so the password parses as a port.
            "postgresql://app:s3cret/app",
        ] {
            let err = parse(uri).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cr"), "{text}");
            assert!(text.contains("password"), "{text}");
        }
    }
}
