//! `require_auth` and `channel_binding=require` enforced at the authentication messages the
//! server sends, as libpq does (`check_expected_areq` in fe-auth.c): the framing guard
//! (`frame.rs`) reads each one before tokio-postgres does, so a request the client does not
//! allow ends the connection before any credential is sent.
//!
//! tokio-postgres alone would answer a cleartext-password request from an impostor with the
//! password, and takes a server that lets the client in without asking (`trust`) for a
//! success; libpq 16 lets the user refuse both.

use crate::config::{AuthMethod, ChannelBinding, RequireAuth};
use crate::{Error, ErrorKind, Reason};

/// What the client allows, and what the connection can offer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuthPolicy {
    pub(crate) require_auth: RequireAuth,
    pub(crate) channel_binding: ChannelBinding,
    /// The connection is encrypted.
    pub(crate) tls: bool,
    /// The server certificate gives a `tls-server-end-point` hash to bind SCRAM with.
    pub(crate) can_bind: bool,
}

/// The authentication exchange as far as it went.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    policy: AuthPolicy,
    /// The method the server asked for.
    requested: Option<AuthMethod>,
    /// SCRAM-SHA-256-PLUS chosen: offered by the server, and the client has a hash.
    bound: bool,
    /// The server's SASLFinal arrived (tokio-postgres checks its signature before it reads
    /// the AuthenticationOk after it).
    sasl_final: bool,
}

/// An authentication request the server may send: `R` with this code.
fn method_of(code: u32) -> Option<AuthMethod> {
    match code {
        3 => Some(AuthMethod::Password),
        5 => Some(AuthMethod::Md5),
        7 => Some(AuthMethod::Gss),
        9 => Some(AuthMethod::Sspi),
        10 => Some(AuthMethod::ScramSha256),
        _ => None,
    }
}

fn described(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Password => "a cleartext password",
        AuthMethod::Md5 => "an MD5-hashed password",
        AuthMethod::Gss => "GSSAPI authentication",
        AuthMethod::Sspi => "SSPI authentication",
        AuthMethod::ScramSha256 => "SCRAM-SHA-256 authentication",
        AuthMethod::None => "no authentication",
    }
}

/// A refusal: permanent (the server would ask the same way again).
fn refused(message: String) -> Error {
    Error::new(ErrorKind::Auth, format!("{message}; not retried"))
        .with_reason(Reason::AuthRequirement)
}

impl AuthState {
    pub(crate) fn new(policy: AuthPolicy) -> Self {
        AuthState {
            policy,
            ..AuthState::default()
        }
    }

    /// An Authentication message: its code and the body after the code.
    pub(crate) fn on_message(&mut self, code: u32, rest: &[u8]) -> Result<(), Error> {
        match code {
            0 => self.on_ok(),
            // GSSContinue: part of the GSSAPI exchange already allowed.
            8 if self.requested == Some(AuthMethod::Gss) => Ok(()),
            8 => self.on_request(AuthMethod::Gss, rest),
            12 => {
                self.sasl_final = true;
                Ok(())
            }
            _ => match method_of(code) {
                Some(method) => self.on_request(method, rest),
                // SASLContinue, and the methods tokio-postgres refuses itself.
                None => Ok(()),
            },
        }
    }

    fn on_request(&mut self, method: AuthMethod, rest: &[u8]) -> Result<(), Error> {
        let p = self.policy;
        self.requested = Some(method);
        if !p.require_auth.allows(method) {
            return Err(refused(format!(
                "authentication refused by require_auth={}: the server asked for {} \
                 (\"{method}\"); no credential was sent",
                p.require_auth,
                described(method)
            )));
        }
        let require = p.channel_binding == ChannelBinding::Require;
        if method != AuthMethod::ScramSha256 {
            if require {
                return Err(refused(format!(
                    "channel_binding=require: the server asked for {} (\"{method}\"), which \
                     cannot be bound to the TLS session; no credential was sent",
                    described(method)
                )));
            }
            return Ok(());
        }
        let plus = rest
            .split(|&b| b == 0)
            .any(|name| name == b"SCRAM-SHA-256-PLUS");
        if require {
            let why = if !p.tls {
                Some("the connection is not encrypted (sslmode)")
            } else if !plus {
                Some("the server did not offer SCRAM-SHA-256-PLUS")
            } else if !p.can_bind {
                Some(
                    "the server certificate's signature algorithm gives no \
                     tls-server-end-point hash",
                )
            } else {
                None
            };
            if let Some(why) = why {
                return Err(refused(format!(
                    "channel_binding=require: {why}, so SCRAM cannot be bound to the \
                     session; no credential was sent"
                )));
            }
        }
        // What tokio-postgres chooses: the -PLUS mechanism whenever it is offered and there
        // is a hash to send (channel_binding=disable hands it none).
        self.bound = plus && p.can_bind && p.channel_binding != ChannelBinding::Disable;
        Ok(())
    }

    fn on_ok(&mut self) -> Result<(), Error> {
        let p = self.policy;
        let finished = match self.requested {
            None => false,
            Some(AuthMethod::ScramSha256) => self.sasl_final,
            Some(_) => true,
        };
        if !finished && !p.require_auth.allows(AuthMethod::None) {
            let what = if self.requested.is_none() {
                "the server let the client in without authenticating it (allow that with \
                 \"none\")"
            } else {
                "the server ended authentication before it completed"
            };
            return Err(refused(format!(
                "authentication refused by require_auth={}: {what}",
                p.require_auth
            )));
        }
        if p.channel_binding == ChannelBinding::Require && !(self.bound && self.sasl_final) {
            return Err(refused(
                "channel_binding=require: the server let the client in without channel \
                 binding"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(require_auth: &str, channel_binding: ChannelBinding, tls: bool) -> AuthPolicy {
        AuthPolicy {
            require_auth: require_auth.parse().unwrap(),
            channel_binding,
            tls,
            can_bind: tls,
        }
    }

    /// Authentication messages: (code, body after the code).
    type Messages<'a> = &'a [(u32, &'a [u8])];
    /// The index of the message refused, and text its error must contain; `None`: accepted.
    type Verdict<'a> = Option<(usize, &'a str)>;

    const SCRAM: &[u8] = b"SCRAM-SHA-256\0\0";
    const SCRAM_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";

    /// Runs the codes through a fresh state; the index of the refused one, if any.
    fn run(p: AuthPolicy, messages: &[(u32, &[u8])]) -> Option<(usize, Error)> {
        let mut s = AuthState::new(p);
        messages
            .iter()
            .enumerate()
            .find_map(|(i, (code, rest))| s.on_message(*code, rest).err().map(|e| (i, e)))
    }

    #[test]
    fn require_auth_as_libpq() {
        use ChannelBinding::Prefer;
        let scram_ok: &[(u32, &[u8])] = &[(10, SCRAM), (11, b""), (12, b""), (0, b"")];
        let rows: &[(&str, Messages<'_>, Verdict<'_>)] = &[
            // Nothing required: anything goes, trust included.
            ("", &[(0, b"")], None),
            ("", &[(3, b""), (0, b"")], None),
            // A cleartext request refused before the password is sent.
            (
                "scram-sha-256",
                &[(3, b""), (0, b"")],
                Some((0, "asked for a cleartext password (\"password\")")),
            ),
            (
                "scram-sha-256",
                &[(5, b"salt"), (0, b"")],
                Some((0, "asked for an MD5-hashed password (\"md5\")")),
            ),
            ("scram-sha-256", scram_ok, None),
            ("!password", scram_ok, None),
            ("!password", &[(5, b"salt"), (0, b"")], None),
            (
                "!password",
                &[(3, b"")],
                Some((
                    0,
                    "require_auth=!password: the server asked for a cleartext",
                )),
            ),
            // trust: refused unless none is allowed.
            (
                "scram-sha-256",
                &[(0, b"")],
                Some((0, "without authenticating it")),
            ),
            ("none", &[(0, b"")], None),
            ("scram-sha-256,none", &[(0, b"")], None),
            ("!password", &[(0, b"")], None),
            ("!none", &[(0, b"")], Some((0, "without authenticating it"))),
            (
                "none",
                &[(10, SCRAM)],
                Some((0, "asked for SCRAM-SHA-256 authentication")),
            ),
            // SCRAM that skips its final message does not count.
            (
                "scram-sha-256",
                &[(10, SCRAM), (11, b""), (0, b"")],
                Some((2, "ended authentication before it completed")),
            ),
            ("gss", &[(7, b""), (8, b""), (0, b"")], None),
            (
                "md5",
                &[(7, b"")],
                Some((0, "GSSAPI authentication (\"gss\")")),
            ),
            (
                "md5",
                &[(9, b"")],
                Some((0, "SSPI authentication (\"sspi\")")),
            ),
        ];
        for (require_auth, messages, want) in rows {
            let got = run(policy(require_auth, Prefer, false), messages);
            match (got, want) {
                (None, None) => {}
                (Some((i, e)), Some((at, text))) => {
                    assert_eq!(i, *at, "{require_auth} {messages:?}: {e}");
                    assert!(e.to_string().contains(text), "{require_auth}: {e}");
                    assert!(e.to_string().contains("require_auth="), "{e}");
                    assert_eq!(e.reason(), Some(Reason::AuthRequirement));
                    assert_eq!(e.kind(), ErrorKind::Auth);
                }
                (got, want) => panic!("{require_auth} {messages:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn channel_binding_require_as_libpq() {
        use ChannelBinding::{Disable, Prefer, Require};
        let plus_ok: &[(u32, &[u8])] = &[(10, SCRAM_PLUS), (11, b""), (12, b""), (0, b"")];
        let rows: &[(ChannelBinding, bool, Messages<'_>, Verdict<'_>)] = &[
            (Require, true, plus_ok, None),
            (Require, false, plus_ok, Some((0, "not encrypted"))),
            (
                Require,
                true,
                &[(10, SCRAM)],
                Some((0, "did not offer SCRAM-SHA-256-PLUS")),
            ),
            (Require, true, &[(5, b"salt")], Some((0, "(\"md5\")"))),
            (Require, true, &[(3, b"")], Some((0, "(\"password\")"))),
            (
                Require,
                true,
                &[(0, b"")],
                Some((0, "without channel binding")),
            ),
            // A -PLUS exchange that skips its final message.
            (
                Require,
                true,
                &[(10, SCRAM_PLUS), (11, b""), (0, b"")],
                Some((2, "without channel binding")),
            ),
            // prefer and disable take whatever the server offers.
            (
                Prefer,
                true,
                &[(10, SCRAM), (11, b""), (12, b""), (0, b"")],
                None,
            ),
            (Prefer, false, &[(3, b""), (0, b"")], None),
            (Disable, true, &[(0, b"")], None),
        ];
        for (cb, tls, messages, want) in rows {
            let got = run(policy("", *cb, *tls), messages);
            match (got, want) {
                (None, None) => {}
                (Some((i, e)), Some((at, text))) => {
                    assert_eq!(i, *at, "{cb} {messages:?}: {e}");
                    assert!(e.to_string().contains(text), "{cb}: {e}");
                    assert!(e.to_string().contains("channel_binding=require"), "{e}");
                    assert_eq!(e.reason(), Some(Reason::AuthRequirement));
                }
                (got, want) => panic!("{cb} {tls} {messages:?}: {got:?}, want {want:?}"),
            }
        }
        // A certificate with no hash: require cannot bind.
        let mut p = policy("", Require, true);
        p.can_bind = false;
        let (_, e) = run(p, &[(10, SCRAM_PLUS)]).unwrap();
        assert!(
            e.to_string().contains("no tls-server-end-point hash"),
            "{e}"
        );
    }
}
