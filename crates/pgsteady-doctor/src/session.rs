//! Why a session could not start, and the fix: the library's error gives the SQLSTATE; bounded
//! probes ([`wire::startup`], a session to `postgres`) give the rest.
//!
//! Classification is by SQLSTATE and protocol facts: which authentication request the server
//! sent, whether it refused before asking for credentials or after authenticating, whether
//! the other encryption (TLS or plain) is accepted. One documented exception uses the
//! server's message text: PostgreSQL reports a missing pg_hba.conf line, a pg_hba.conf
//! `reject` line and failed `peer` / `ident` authentication with the same SQLSTATE (28000) at
//! the same point (before any authentication request), and a missing role and a NOLOGIN role
//! with the same SQLSTATE after AuthenticationOk; only the (English) message tells them apart.
//! With `lc_messages` in another language the fix falls back to a generic one
//! ([`refusal_of`], tested with both).

use std::path::PathBuf;
use std::time::Duration;

use pgsteady::config::{
    Host, HostSpec, PassFileSearch, PasswordSearch, ProcessEnv, password_search,
};
use pgsteady::text::sanitize;
use pgsteady::{Config, Connector, Reason, TargetSessionAttrs};

use crate::certs;
use crate::finding::Layer;
use crate::query::{self, MAX_QUERY_BYTES};
use crate::wire::{self, Answer, AuthRequest, Dial, ServerError};

/// What the failed session was made of.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) target: Option<&'a str>,
    pub(crate) host: &'a HostSpec,
    /// The address that accepted TCP, or the Unix socket.
    pub(crate) dial: Option<Dial>,
    /// Whether the session negotiated (or would negotiate) TLS.
    pub(crate) tls: bool,
    pub(crate) timeout: Duration,
}

impl Ctx<'_> {
    fn host_name(&self) -> String {
        match &self.host.host {
            Host::Tcp(h) => h.clone(),
            Host::Unix(_) => "localhost".to_owned(),
        }
    }

    async fn probe(&self, tls: bool) -> Option<wire::Probe> {
        let dial = self.dial.as_ref()?;
        let name = self.host_name();
        wire::startup(
            dial,
            tls.then_some(name.as_str()),
            &self.config.user,
            &self.config.dbname,
            self.timeout,
        )
        .await
        .ok()
    }
}

/// Why PostgreSQL refused a login with SQLSTATE 28000 (see the module docs for why this reads
/// the message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoHbaEntry,
    HbaReject,
    Peer,
    Ident,
    MissingRole,
    NoLogin,
    Unknown,
}

/// Classifies a 28000 refusal; `after_auth` is true when AuthenticationOk came first.
pub(crate) fn refusal_of(e: &ServerError, after_auth: bool) -> Refusal {
    if e.code != "28000" {
        return Refusal::Unknown;
    }
    let m = e.message.as_str();
    if after_auth {
        if m.starts_with("role \"") && m.ends_with("\" does not exist") {
            Refusal::MissingRole
        } else if m.ends_with("is not permitted to log in") {
            Refusal::NoLogin
        } else {
            Refusal::Unknown
        }
    } else if m.starts_with("no pg_hba.conf entry for ") {
        Refusal::NoHbaEntry
    } else if m.starts_with("pg_hba.conf rejects connection for ") {
        Refusal::HbaReject
    } else if m.starts_with("Peer authentication failed") {
        Refusal::Peer
    } else if m.starts_with("Ident authentication failed") {
        Refusal::Ident
    } else {
        Refusal::Unknown
    }
}

/// The host, user, database and encryption a pg_hba.conf message names, as the server saw
/// them: `no pg_hba.conf entry for host "127.0.0.1", user "app", database "app", no
/// encryption`.
fn hba_fields(message: &str) -> Option<(String, String, String, String)> {
    let quoted: Vec<&str> = message.split('"').skip(1).step_by(2).collect();
    let [host, user, db, ..] = quoted.as_slice() else {
        return None;
    };
    let encryption = message.rsplit(", ").next().unwrap_or("").to_owned();
    Some((
        host.to_string(),
        user.to_string(),
        db.to_string(),
        encryption,
    ))
}

/// Diagnoses a failed session: the layer it belongs to, the detail and the fix.
pub(crate) async fn diagnose(e: &pgsteady::Error, ctx: &Ctx<'_>) -> Layer {
    let reason = e.reason().unwrap_or(Reason::Other);
    let detail = format!("{e:#}");
    match reason {
        Reason::Tls => tls_failure(e, ctx).await,
        Reason::MissingDatabase => {
            let fix = database_fix(ctx).await;
            Layer::fail("database", detail, reason).with_fix(fix)
        }
        Reason::TooManyConnections => Layer::fail("headroom", detail, reason).with_fix(format!(
            "every connection slot open to role `{}` is taken, and PostgreSQL refuses before \
             login, so doctor cannot see who holds them: as a superuser run `SELECT usename, \
             application_name, client_addr, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3 \
             ORDER BY 4 DESC`; then lower the pool sizes of the biggest holders, put a pooler \
             (PgBouncer) in front, or raise max_connections (needs a restart)",
            ctx.config.user
        )),
        Reason::TimedOut => Layer::fail("startup", detail, reason).with_fix(hung_fix(ctx.timeout)),
        _ => auth_failure(reason, detail, ctx).await,
    }
}

/// The fix for a server that accepts TCP but never answers.
pub(crate) fn hung_fix(timeout: Duration) -> String {
    format!(
        "the server accepted the TCP connection but never answered the first PostgreSQL \
         message, and doctor's client-side bound ({:.1}s, --timeout) was hit: the server is \
         stopped (SIGSTOP, a debugger, a frozen VM or container: `ps -o stat= -p <postmaster \
         pid>` shows T), overloaded (fork, memory or disk stalls), or a proxy or load balancer \
         accepts connections and forwards them nowhere; check the server process and its log \
         (or the proxy's backend), and keep a connect timeout in the application \
         (connect_timeout) so it fails the same way instead of hanging",
        timeout.as_secs_f64()
    )
}

async fn tls_failure(e: &pgsteady::Error, ctx: &Ctx<'_>) -> Layer {
    let detail = format!("{e:#}");
    let reason = Reason::Tls;
    // The certificate the server presents, from a probe that verifies nothing.
    let leaf = match ctx.probe(true).await {
        Some(p) => p.certs.first().and_then(certs::facts),
        None => None,
    };
    let fix = match certs::rustls_error(e) {
        Some(err) => certs::verification_fix(err, leaf.as_ref(), ctx.config, &ctx.host_name()),
        None => match &leaf {
            Some(f) => format!(
                "{detail}; the server presents a certificate issued by `{}` ({}): give that CA's \
                 certificate as sslrootcert, or use sslmode=require to encrypt without verifying",
                f.issuer,
                f.describe()
            ),
            None => format!(
                "{detail}: fix the TLS settings (sslmode, sslrootcert, sslcert, sslkey) named above"
            ),
        },
    };
    Layer::fail("tls", detail, reason).with_fix(fix)
}

/// The server answered `N` to the SSLRequest but sslmode requires TLS: would `prefer` work?
pub(crate) async fn no_tls_fix(ctx: &Ctx<'_>) -> String {
    let plain = ctx.probe(false).await.map(|p| p.answer);
    let prefer = match &plain {
        Some(Answer::Auth(req)) => format!(
            "sslmode=prefer would connect, unencrypted (without TLS the server accepts this user \
             and database and asks for a password: {})",
            req.method()
        ),
        Some(Answer::Ready) | Some(Answer::ErrorAfterAuth(_)) => {
            "sslmode=prefer would connect, unencrypted (without TLS the server lets this user in)"
                .to_owned()
        }
        Some(Answer::Error(e)) => format!(
            "sslmode=prefer would not help: without TLS the server refuses too ({})",
            e.message
        ),
        _ => "doctor could not tell whether sslmode=prefer would work".to_owned(),
    };
    format!(
        "the server does not offer TLS (ssl = off); {prefer}; to keep TLS, enable it on the \
         server (ssl = on with ssl_cert_file and ssl_key_file, then reload)"
    )
}

async fn auth_failure(reason: Reason, detail: String, ctx: &Ctx<'_>) -> Layer {
    let Some(probe) = ctx.probe(ctx.tls).await else {
        return Layer::fail("startup", detail, reason).with_fix(
            "the server ended the session during startup: read the server log at this time \
             for the reason",
        );
    };
    match probe.answer {
        Answer::Auth(req) => {
            let search =
                password_search(ctx.target, &ProcessEnv, ctx.host).map_err(|e| e.to_string());
            let who = Who {
                user: &ctx.config.user,
                host: ctx.host_name(),
                port: ctx.host.port,
                dbname: &ctx.config.dbname,
            };
            password_failure(&req, detail, reason, search, &who)
        }
        Answer::Error(e) if e.code == "28000" => refusal_failure(&e, false, detail, ctx).await,
        Answer::ErrorAfterAuth(e) if e.code == "28000" => {
            refusal_failure(&e, true, detail, ctx).await
        }
        Answer::Error(e) | Answer::ErrorAfterAuth(e) => Layer::fail("startup", detail, reason)
            .with_fix(format!(
                "the server refused the session (SQLSTATE {}): {}; read the server log at this \
                 time for more",
                e.code, e.message
            )),
        Answer::Ready | Answer::NoTls => Layer::fail("startup", detail, reason).with_fix(
            "a bare startup probe succeeded where the session failed: the failure is \
             intermittent or in the client settings (options, application_name); read the \
             server log at this time",
        ),
    }
}

/// 28P01 or no password sent: where pgsteady looked, and what to change.
/// Whose password a fix talks about.
#[derive(Debug)]
pub(crate) struct Who<'a> {
    pub(crate) user: &'a str,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) dbname: &'a str,
}

/// The rule of a password refusal: `search` is where pgsteady looked (the probe's facts).
pub(crate) fn password_failure(
    req: &AuthRequest,
    detail: String,
    reason: Reason,
    search: Result<PasswordSearch, String>,
    who: &Who<'_>,
) -> Layer {
    let user = who.user;
    let search = match search {
        Ok(s) => s,
        Err(e) => {
            return Layer::fail("auth", detail, Reason::InvalidPassword)
                .with_fix(format!("the configuration cannot be read again: {e:#}"));
        }
    };
    if !search.found() {
        let detail = format!(
            "the server asks for a password ({}) and none was found; looked in: {}",
            req.method(),
            sanitize(&search.to_string())
        );
        let fix = match &search.passfile {
            PassFileSearch::Ignored {
                path,
                mode: Some(mode),
                ..
            } => format!(
                "chmod 0600 {}: it has mode {mode:04o}, and pgsteady (like libpq) ignores a \
                 password file that group or others may read",
                shown(path)
            ),
            PassFileSearch::NoMatch {
                path,
                lines,
                wanted,
            } if !lines.is_empty() => {
                let first = &lines[0];
                format!(
                    "no line of {} matches {wanted} (line {} `{}`: {}); add a line \
                     `{wanted}:<password>` or correct that field (`*` matches anything; the \
                     host is compared as written, so `localhost` does not match `127.0.0.1`)",
                    shown(path),
                    first.line,
                    sanitize(&first.key),
                    sanitize(first.mismatch.as_deref().unwrap_or(""))
                )
            }
            other => {
                let file = match other {
                    PassFileSearch::Missing(p)
                    | PassFileSearch::Ignored { path: p, .. }
                    | PassFileSearch::NoMatch { path: p, .. } => shown(p),
                    _ => "~/.pgpass".to_owned(),
                };
                format!(
                    "give the password for role `{user}`: in the URL \
                     (postgresql://{user}:<password>@host/db), in PGPASSWORD, or as a line \
                     `{}:{}:{}:{user}:<password>` in {file} (mode 0600)",
                    who.host, who.port, who.dbname
                )
            }
        };
        return Layer::fail("auth", detail, Reason::InvalidPassword).with_fix(fix);
    }
    let origin = sanitize(&search.origin().unwrap_or_default()).into_owned();
    let method = match req {
        AuthRequest::Sasl(_) => format!(
            "; the server asked for SCRAM-SHA-256: if role `{user}`'s password was stored as an \
             MD5 hash (set while password_encryption was md5), no password can pass SCRAM: \
             re-set it with password_encryption = scram-sha-256 (ALTER ROLE \"{user}\" \
             PASSWORD '...'), or use md5 in pg_hba.conf"
        ),
        AuthRequest::Md5 => "; the server asked for MD5".to_owned(),
        _ => String::new(),
    };
    let detail = if reason == Reason::InvalidPassword {
        detail
    } else {
        format!(
            "{detail} (the server asks for a password: {})",
            req.method()
        )
    };
    Layer::fail("auth", detail, Reason::InvalidPassword).with_fix(format!(
        "the password from {origin} was refused for role `{user}`: it is wrong, or role \
         `{user}` does not exist (with password methods PostgreSQL answers both the same way, \
         so as not to reveal which roles exist); check the user name and the password (an \
         administrator can reset it: ALTER ROLE \"{user}\" PASSWORD '...'){method}"
    ))
}

/// 28000: pg_hba.conf, peer / ident, a missing or NOLOGIN role. First: would the other
/// encryption be accepted? That is a TLS fix, whatever the message.
async fn refusal_failure(
    e: &ServerError,
    after_auth: bool,
    detail: String,
    ctx: &Ctx<'_>,
) -> Layer {
    let reason = Reason::InvalidAuthorization;
    let tcp = matches!(ctx.dial, Some(Dial::Tcp(_)));
    if !after_auth && tcp {
        let other = ctx.probe(!ctx.tls).await.map(|p| p.answer);
        if let Some(Answer::Auth(_) | Answer::Ready | Answer::ErrorAfterAuth(_)) = other {
            let fix = if ctx.tls {
                "the server accepts this user and database only without TLS (pg_hba.conf \
                 `hostnossl`): use sslmode=disable, or ask for a `hostssl` line"
                    .to_owned()
            } else {
                "the server accepts this user and database only over TLS (pg_hba.conf \
                 `hostssl`): use sslmode=require (or verify-full with sslrootcert=<CA file> to \
                 also check the server's identity; sslmode=prefer works too)"
                    .to_owned()
            };
            let refused = if ctx.tls {
                "over TLS; it accepts this user and database without TLS"
            } else {
                "without TLS; it accepts this user and database over TLS"
            };
            return Layer::fail(
                "tls",
                format!("{detail} (the server refuses this {refused})"),
                Reason::Tls,
            )
            .with_fix(fix);
        }
    }
    let user = &ctx.config.user;
    let fix = match refusal_of(e, after_auth) {
        Refusal::NoHbaEntry => match hba_fields(&e.message) {
            Some((host, huser, db, enc)) => {
                let line = if host == "[local]" {
                    format!("local {db} {huser} scram-sha-256")
                } else {
                    let kind = if enc == "no encryption" {
                        "host"
                    } else {
                        "hostssl"
                    };
                    let mask = if host.contains(':') { 128 } else { 32 };
                    format!("{kind} {db} {huser} {host}/{mask} scram-sha-256")
                };
                format!(
                    "no pg_hba.conf line matches what the server saw: host {host}, user {huser}, \
                     database {db}, {enc}; add one (e.g. `{line}`) above any broader `reject` \
                     and reload (SELECT pg_reload_conf())"
                )
            }
            None => generic_hba_fix(ctx),
        },
        Refusal::HbaReject => {
            let seen = hba_fields(&e.message)
                .map(|(h, u, d, enc)| format!("host {h}, user {u}, database {d}, {enc}"))
                .unwrap_or_else(|| "this connection".to_owned());
            format!(
                "a `reject` line in pg_hba.conf matches {seen}: the server refuses this on \
                 purpose; connect as another user or to another database, or ask the \
                 administrator to put an allowing line above the reject and reload"
            )
        }
        Refusal::Peer | Refusal::Ident => {
            let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| "?".into());
            let method = if refusal_of(e, after_auth) == Refusal::Peer {
                "peer"
            } else {
                "ident"
            };
            let tcp_probe = tcp_alternative(ctx).await;
            format!(
                "{method} authentication requires the operating-system user to match the role: \
                 this process runs as `{me}`, the role is `{user}`: run as OS user `{user}` \
                 (sudo -u {user} ...), map `{me}` to `{user}` in pg_ident.conf, or connect \
                 over TCP with a password{tcp_probe}"
            )
        }
        Refusal::MissingRole => format!(
            "role `{user}` does not exist on this server: check the user name, or create the \
             role (CREATE ROLE \"{user}\" LOGIN PASSWORD '...')"
        ),
        Refusal::NoLogin => format!(
            "role `{user}` exists but may not log in (NOLOGIN): connect as a login role, or \
             ALTER ROLE \"{user}\" LOGIN"
        ),
        Refusal::Unknown => generic_hba_fix(ctx),
    };
    Layer::fail("auth", detail, reason).with_fix(fix)
}

fn generic_hba_fix(ctx: &Ctx<'_>) -> String {
    format!(
        "the server refused user `{}` on database `{}` before any password exchange \
         (SQLSTATE 28000): check which pg_hba.conf line matches this client (SELECT * FROM \
         pg_hba_file_rules), and that the role exists and may log in",
        ctx.config.user, ctx.config.dbname
    )
}

/// Over a Unix socket: does TCP on the same port take a password instead?
async fn tcp_alternative(ctx: &Ctx<'_>) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ctx.host.port));
    let probe = wire::startup(
        &Dial::Tcp(addr),
        None,
        &ctx.config.user,
        &ctx.config.dbname,
        ctx.timeout,
    )
    .await;
    match probe.map(|p| p.answer) {
        Ok(Answer::Auth(req)) => format!(
            " (probed: on {addr} the server asks for a password, {}: use host=127.0.0.1 \
             port={} with the role's password)",
            req.method(),
            ctx.host.port
        ),
        Ok(Answer::Ready) => {
            format!(" (probed: on {addr} the server lets this user in: use host=127.0.0.1)")
        }
        Ok(Answer::Error(e) | Answer::ErrorAfterAuth(e)) => {
            format!(" (probed: on {addr} the server refuses too: {})", e.message)
        }
        _ => format!(" (nothing answered on {addr})"),
    }
}

/// 3D000: which databases this role may connect to, learned over a session to `postgres` or
/// `template1` with the same credentials (read-only).
async fn database_fix(ctx: &Ctx<'_>) -> String {
    let names = visible_databases(ctx).await;
    database_rule(&ctx.config.dbname, &ctx.config.user, names.as_deref())
}

/// The databases this role may connect to, over a session to `postgres` or `template1`;
/// `None` when neither session could list them.
async fn visible_databases(ctx: &Ctx<'_>) -> Option<Vec<String>> {
    for db in ["postgres", "template1"] {
        let mut config = ctx.config.clone();
        config.hosts = vec![ctx.host.clone()];
        config.dbname = db.to_owned();
        config.target_session_attrs = TargetSessionAttrs::Any;
        let Ok(connector) = Connector::new(config) else {
            continue;
        };
        let Ok(connected) = connector
            .with_attempt_timeout(ctx.timeout)
            .connect_once()
            .await
        else {
            continue;
        };
        let sql = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate \
                   AND has_database_privilege(datname, 'CONNECT') ORDER BY datname LIMIT 50";
        let Ok(rows) = query::rows(&connected.client, sql, 50, MAX_QUERY_BYTES, ctx.timeout).await
        else {
            continue;
        };
        return Some(
            rows.iter()
                .filter_map(|r| query::column(r, "datname").ok().flatten())
                .map(|n| sanitize(n).into_owned())
                .collect(),
        );
    }
    None
}

/// The rule of a missing database: the names this role may use (`None`: not listed), with
/// the closest one offered.
pub(crate) fn database_rule(wanted: &str, user: &str, names: Option<&[String]>) -> String {
    let create = format!("or create it (CREATE DATABASE \"{wanted}\" OWNER \"{user}\")");
    let Some(names) = names else {
        return format!(
            "database `{wanted}` does not exist, and doctor could not list the others (no \
             session to `postgres` or `template1` with these credentials): check the name \
             (`\\l` in psql), {create}"
        );
    };
    if names.is_empty() {
        return format!("role `{user}` may connect to no database here; {create}");
    }
    let close = names
        .iter()
        .min_by_key(|n| strsim::damerau_levenshtein(n, wanted))
        .filter(|n| strsim::damerau_levenshtein(n, wanted) <= wanted.len().div_ceil(3))
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    format!(
        "database `{wanted}` does not exist; role `{user}` may connect to: {}{close}: use one \
         of them as the database name, {create}",
        names.join(", ")
    )
}

/// A path from the configuration or the environment, escaped for the report.
fn shown(path: &std::path::Path) -> String {
    sanitize(&path.display().to_string()).into_owned()
}

/// Directories to search for sockets besides the usual ones: the configuration's and
/// `PGHOST`'s.
pub(crate) fn socket_dirs(config: &Config) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config
        .hosts
        .iter()
        .filter_map(|h| match &h.host {
            Host::Unix(d) => Some(d.clone()),
            Host::Tcp(_) => None,
        })
        .collect();
    if let Ok(pghost) = std::env::var("PGHOST") {
        dirs.extend(
            pghost
                .split(',')
                .filter(|h| h.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, message: &str) -> ServerError {
        ServerError {
            code: code.into(),
            message: message.into(),
        }
    }

    fn who() -> Who<'static> {
        Who {
            user: "app",
            host: "db".into(),
            port: 5432,
            dbname: "app",
        }
    }

    fn searched(passfile: PassFileSearch) -> Result<PasswordSearch, String> {
        Ok(PasswordSearch {
            string_name: "the connection string",
            in_string: false,
            in_env: false,
            passfile,
        })
    }

    #[test]
    fn password_rules_say_where_pgsteady_looked() {
        let scram = AuthRequest::Sasl(vec!["SCRAM-SHA-256".into()]);
        let fail = |search| {
            password_failure(
                &scram,
                "refused".into(),
                Reason::InvalidPassword,
                search,
                &who(),
            )
        };
        let l = fail(searched(PassFileSearch::Ignored {
            path: "/home/a/.pgpass".into(),
            why: "group or world access".into(),
            mode: Some(0o644),
        }));
        assert_eq!((l.layer, l.cause), ("auth", Some(Reason::InvalidPassword)));
        assert!(
            l.fix
                .unwrap()
                .starts_with("chmod 0600 /home/a/.pgpass: it has mode 0644")
        );
        let l = fail(searched(PassFileSearch::Missing("/home/a/.pgpass".into())));
        assert!(
            l.detail
                .starts_with("the server asks for a password (scram-sha-256"),
            "{}",
            l.detail
        );
        assert!(
            l.fix
                .unwrap()
                .contains("`db:5432:app:app:<password>` in /home/a/.pgpass"),
        );
        // A line of the file, and the file's path, are text from outside: escaped.
        let line = pgsteady::config::LineMatch {
            line: 1,
            key: "ot\x1bher:5432:app:app".into(),
            mismatch: Some("host `ot\x1bher`".into()),
        };
        let l = fail(searched(PassFileSearch::NoMatch {
            path: "/tmp/p\nq".into(),
            lines: vec![line],
            wanted: "db:5432:app:app".into(),
        }));
        let fix = l.fix.unwrap();
        assert!(
            fix.starts_with("no line of /tmp/p\\nq matches db:5432:app:app (line 1 `ot\\u{1b}her"),
            "{fix}"
        );
        // A password that was found and refused: the SCRAM / MD5 hint.
        let mut found = searched(PassFileSearch::NoPath).unwrap();
        found.in_env = true;
        let fix = fail(Ok(found)).fix.unwrap();
        assert!(
            fix.starts_with("the password from PGPASSWORD was refused for role `app`"),
            "{fix}"
        );
        assert!(fix.contains("MD5 hash"), "{fix}");
        let l = fail(Err("bad string".into()));
        assert_eq!(
            l.fix.as_deref(),
            Some("the configuration cannot be read again: bad string")
        );
    }

    #[test]
    fn database_rule_offers_the_closest_name() {
        let names = ["app".to_owned(), "billing".to_owned()];
        let fix = database_rule("ap", "u", Some(&names));
        assert!(
            fix.starts_with("database `ap` does not exist; role `u` may connect to: app, billing (did you mean `app`?)"),
            "{fix}"
        );
        assert!(!database_rule("zzzzzz", "u", Some(&names)).contains("did you mean"));
        assert!(
            database_rule("x", "u", Some(&[]))
                .starts_with("role `u` may connect to no database here")
        );
        assert!(database_rule("x", "u", None).contains("could not list the others"));
    }

    /// The one place doctor reads message text (module docs): the PostgreSQL 12-17 English
    /// messages, and the fallback for anything else (another language, another SQLSTATE).
    #[test]
    fn refusals_by_message_text_with_a_generic_fallback() {
        let rows = [
            (
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database \"app\", no encryption",
                false,
                Refusal::NoHbaEntry,
            ),
            (
                "pg_hba.conf rejects connection for host \"[local]\", user \"app\", database \"app\", no encryption",
                false,
                Refusal::HbaReject,
            ),
            (
                "Peer authentication failed for user \"app\"",
                false,
                Refusal::Peer,
            ),
            (
                "Ident authentication failed for user \"app\"",
                false,
                Refusal::Ident,
            ),
            ("role \"ghost\" does not exist", true, Refusal::MissingRole),
            (
                "role \"app\" is not permitted to log in",
                true,
                Refusal::NoLogin,
            ),
            // The same texts at the wrong protocol point are not trusted.
            ("role \"ghost\" does not exist", false, Refusal::Unknown),
            (
                "Peer authentication failed for user \"app\"",
                true,
                Refusal::Unknown,
            ),
            // lc_messages=de: unknown, so the generic fix.
            (
                "keine pg_hba.conf-Eintrag für Host »127.0.0.1«, Benutzer »app«",
                false,
                Refusal::Unknown,
            ),
        ];
        for (message, after_auth, want) in rows {
            assert_eq!(
                refusal_of(&err("28000", message), after_auth),
                want,
                "{message}"
            );
        }
        assert_eq!(
            refusal_of(
                &err("28P01", "Peer authentication failed for user \"app\""),
                false
            ),
            Refusal::Unknown
        );
        assert_eq!(
            hba_fields(
                "no pg_hba.conf entry for host \"10.0.0.9\", user \"a b\", database \"d\", SSL encryption"
            ),
            Some((
                "10.0.0.9".into(),
                "a b".into(),
                "d".into(),
                "SSL encryption".into()
            ))
        );
    }
}
