//! libpq's authentication protections: `require_auth` (which methods the server may ask
//! for) and `channel_binding` (whether SCRAM must be bound to the TLS session).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// An authentication method a server can ask for, as `require_auth` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `password`: the cleartext password (AuthenticationCleartextPassword).
    Password,
    /// `md5`: the MD5-hashed password (AuthenticationMD5Password).
    Md5,
    /// `gss`: GSSAPI (Kerberos).
    Gss,
    /// `sspi`: Windows SSPI.
    Sspi,
    /// `scram-sha-256`: SCRAM-SHA-256 over SASL, with or without channel binding.
    ScramSha256,
    /// `none`: the server lets the client in without authenticating it (`trust`).
    None,
}

const METHODS: [AuthMethod; 6] = [
    AuthMethod::Password,
    AuthMethod::Md5,
    AuthMethod::Gss,
    AuthMethod::Sspi,
    AuthMethod::ScramSha256,
    AuthMethod::None,
];

impl AuthMethod {
    /// libpq's name: `password`, `md5`, `gss`, `sspi`, `scram-sha-256` or `none`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::Gss => "gss",
            AuthMethod::Sspi => "sspi",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::None => "none",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `require_auth` (libpq 16): the authentication methods the server may use. A request for
/// any other method is refused before a credential is sent, and a server that lets the
/// client in without authenticating it is refused unless `none` is allowed.
///
/// Parsed from a comma-separated list (`scram-sha-256,md5`) or a list all negated
/// (`!password,!md5`: anything but those); mixing the two forms, an unknown method or one
/// named twice is an error.
///
/// # Examples
///
/// ```
/// use pgsteady::config::{AuthMethod, RequireAuth};
/// let only_scram: RequireAuth = "scram-sha-256".parse()?;
/// assert!(only_scram.allows(AuthMethod::ScramSha256));
/// assert!(!only_scram.allows(AuthMethod::None));
/// let not_cleartext: RequireAuth = "!password".parse()?;
/// assert!(not_cleartext.allows(AuthMethod::ScramSha256));
/// assert!(!not_cleartext.allows(AuthMethod::Password));
/// # Ok::<(), pgsteady::Error>(())
/// ```
///
/// # Default
///
/// [`RequireAuth::ANY`]: every method, and none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequireAuth {
    /// The methods named in the list.
    listed: u8,
    /// `!a,!b`: everything but the listed ones.
    negated: bool,
}

impl Default for RequireAuth {
    fn default() -> Self {
        RequireAuth::ANY
    }
}

impl RequireAuth {
    /// No requirement: the server may use any method, or none.
    pub const ANY: RequireAuth = RequireAuth {
        listed: 0,
        negated: true,
    };

    /// Whether the server may use `method`.
    pub const fn allows(self, method: AuthMethod) -> bool {
        (self.listed & method.bit() != 0) != self.negated
    }

    /// Whether this is [`RequireAuth::ANY`] (nothing was required).
    pub const fn is_any(self) -> bool {
        self.negated && self.listed == 0
    }
}

/// The list as libpq takes it back: `scram-sha-256,md5` or `!password,!md5`.
impl fmt::Display for RequireAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for m in METHODS.iter().filter(|m| self.listed & m.bit() != 0) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if self.negated {
                f.write_str("!")?;
            }
            f.write_str(m.as_str())?;
        }
        Ok(())
    }
}

/// A part of a `require_auth` value for a message: a mistyped method name is shown, anything
/// else (which could be text pasted from elsewhere, a password included) is not.
fn shown(part: &str) -> String {
    if !part.is_empty()
        && part.len() <= 32
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'!'))
    {
        format!("\"{part}\"")
    } else {
        "(not shown: not a method name)".to_owned()
    }
}

impl FromStr for RequireAuth {
    type Err = Error;

    /// libpq's rules (`fe-connect.c`): no spaces are trimmed, an empty list is no requirement.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Ok(RequireAuth::ANY);
        }
        let mut listed = 0u8;
        let mut negated = None;
        for part in s.split(',') {
            let (neg, name) = match part.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, part),
            };
            match negated {
                Some(n) if n != neg => {
                    return Err(Error::config(format!(
                        "invalid require_auth: method {} mixes negated (!) and plain methods: \
                         list the methods allowed, or negate every one",
                        shown(part)
                    )));
                }
                _ => negated = Some(neg),
            }
            let method = METHODS
                .iter()
                .copied()
                .find(|m| m.as_str() == name)
                .ok_or_else(|| {
                    Error::config(format!(
                        "invalid require_auth: unknown method {} (expected a list of: \
                         password, md5, gss, sspi, scram-sha-256, none, all negated with ! \
                         or none)",
                        shown(part)
                    ))
                })?;
            if listed & method.bit() != 0 {
                return Err(Error::config(format!(
                    "invalid require_auth: method \"{method}\" is listed more than once"
                )));
            }
            listed |= method.bit();
        }
        Ok(RequireAuth {
            listed,
            negated: negated.unwrap_or(false),
        })
    }
}

/// `channel_binding`: whether SCRAM authentication is bound to the TLS session
/// (`tls-server-end-point`, RFC 5929), so a man in the middle holding another certificate
/// cannot relay the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// Never bind.
    Disable,
    /// Bind when the connection is encrypted and the server offers SCRAM-SHA-256-PLUS.
    #[default]
    Prefer,
    /// Refuse the server unless the connection is encrypted and it authenticates with
    /// SCRAM-SHA-256-PLUS bound to the session; no other method, and no skipping
    /// authentication.
    Require,
}

impl ChannelBinding {
    /// `disable`, `prefer` or `require`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

impl fmt::Display for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelBinding {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "disable" => Ok(ChannelBinding::Disable),
            "prefer" => Ok(ChannelBinding::Prefer),
            "require" => Ok(ChannelBinding::Require),
            _ => Err(Error::config(
                "invalid channel_binding (expected one of: disable, prefer, require)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_auth_lists_as_libpq() {
        use AuthMethod::*;
        let rows: &[(&str, &[AuthMethod], &[AuthMethod])] = &[
            ("", &[Password, Md5, Gss, Sspi, ScramSha256, None], &[]),
            ("scram-sha-256", &[ScramSha256], &[Password, Md5, None]),
            ("md5,scram-sha-256", &[Md5, ScramSha256], &[Password, None]),
            ("none", &[None], &[Password, Md5, ScramSha256]),
            ("!password", &[Md5, ScramSha256, None], &[Password]),
            ("!password,!none", &[Md5, ScramSha256], &[Password, None]),
        ];
        for (text, yes, no) in rows {
            let r: RequireAuth = text.parse().unwrap();
            for m in *yes {
                assert!(r.allows(*m), "{text} allows {m}");
            }
            for m in *no {
                assert!(!r.allows(*m), "{text} refuses {m}");
            }
            assert_eq!(r.to_string(), *text);
            assert_eq!(r.is_any(), text.is_empty());
        }
    }

    #[test]
    fn require_auth_errors_name_the_setting_and_the_value() {
        let rows = [
            ("scram", "unknown method \"scram\""),
            ("md5,!password", "method \"!password\" mixes negated"),
            ("!md5,password", "method \"password\" mixes negated"),
            ("md5,md5", "method \"md5\" is listed more than once"),
            ("md5, scram-sha-256", "unknown method (not shown"),
            ("md5,", "unknown method (not shown"),
            ("!", "unknown method \"!\""),
            ("hunter2 secret", "unknown method (not shown"),
        ];
        for (text, want) in rows {
            let err = text.parse::<RequireAuth>().unwrap_err();
            let shown = err.to_string();
            assert!(shown.starts_with("invalid require_auth"), "{text}: {shown}");
            assert!(shown.contains(want), "{text}: {shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }
}
