//! Connection configuration with libpq's parsing and precedence.
//!
//! Sources, highest precedence first (libpq semantics, each keyword independently):
//!
//! 1. the connection string: a URI (`postgresql://…`) or key=value pairs;
//! 2. the service file's section for `service=` / `PGSERVICE` (`PGSERVICEFILE` or
//!    `~/.pg_service.conf`, then `$PGSYSCONFDIR/pg_service.conf`), as libpq reads it;
//! 3. the `PG*` environment variables ([`Config::resolve`] and [`Config::parse_with_env`] only
//!    for 2 and 3);
//! 4. built-in defaults.
//!
//! The password comes from the string, then `PGPASSWORD`, then the password file (`passfile`,
//! `PGPASSFILE`, `~/.pgpass`), looked up per host at connect time; `password_search` (feature `probe`)
//! tells where it was looked for and why a password file line did not match.
//!
//! `DATABASE_URL` is not a libpq variable; [`Config::resolve`] uses it as the connection
//! string when no target is given, so a tool can be pointed at a database the way most
//! frameworks are.
//!
//! Where tokio-postgres falls short of libpq, this module follows libpq: `keepalives_count`
//! (tokio-postgres calls it `keepalives_retries`; both spellings are accepted),
//! `tcp_user_timeout` in milliseconds, `target_session_attrs` `primary`, `standby`,
//! `prefer-standby`, `read-only`, and `sslmode` `allow`, `verify-ca`, `verify-full` with
//! `sslrootcert` (TLS is done with rustls), `require_auth` and `channel_binding=require`
//! (libpq 16's refusal of authentication requests the client does not allow: [`RequireAuth`],
//! [`ChannelBinding`]).
//!
//! Neither `Display` nor `Debug` of any type here shows a password.

mod auth;
mod env;
mod keyvalue;
mod lookup;
mod params;
mod passfile;
mod service;
mod types;
mod uri;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use auth::{AuthMethod, ChannelBinding, RequireAuth};
pub use env::Env;
#[cfg(not(feature = "probe"))]
use env::ProcessEnv;
// The `probe` feature: where the password was looked for, for a diagnostic tool.
#[cfg(feature = "probe")]
pub use env::ProcessEnv;
#[cfg(feature = "probe")]
pub use lookup::{PassFileSearch, PasswordSearch, password_search};
pub use passfile::{LineMatch, PassFile, PassFileStatus};
pub use types::{Host, HostSpec, Password, RootCert, SslMode, TargetSessionAttrs, TlsSettings};

use params::Params;

use crate::Error;

/// The default PostgreSQL port.
pub const DEFAULT_PORT: u16 = 5432;
/// Default TCP keepalive idle time before the first probe. libpq leaves the OS default, often
/// 2 hours; pgsteady's defaults end a connection to a silently vanished peer within about 12-14 s
/// whether it is idle (keepalive probes, bounded by `tcp_user_timeout` too) or has a request in
/// flight (`tcp_user_timeout`): see docs/library.md#silent-drops for the cost on slow networks.
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(5);
/// Default interval between TCP keepalive probes.
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(2);
/// Default number of unanswered keepalive probes before the connection is dropped.
pub const DEFAULT_KEEPALIVES_COUNT: u32 = 3;
/// Default `TCP_USER_TIMEOUT`: unacknowledged data for this long drops the connection, so a
/// query on a silently dropped network fails in bounded time instead of retransmitting for
/// ~15 minutes.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(12);

/// A validated connection configuration.
///
/// Build it with [`Config::resolve`] (target or `DATABASE_URL`, then `PG*` variables, then the
/// password file), [`Config::parse_with_env`], or [`Config::parse`] / [`str::parse`] (the
/// string and built-in defaults only).
///
/// # Examples
///
/// ```
/// use pgsteady::Config;
/// let config: Config = "postgresql://app:secret@db1:5432,db2:5433/app?connect_timeout=5"
///     .parse()?;
/// assert_eq!(config.hosts.len(), 2);
/// assert_eq!(config.connect_timeout, Some(std::time::Duration::from_secs(5)));
/// // Neither Display nor Debug shows the password.
/// assert!(!config.to_string().contains("secret"));
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), pgsteady::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Hosts tried in order. Default: the Unix socket directory `/var/run/postgresql` (or
    /// `/tmp` where that does not exist), port 5432.
    pub hosts: Vec<HostSpec>,
    /// Shuffle the hosts before each connect (`load_balance_hosts=random`). Default: false.
    pub load_balance_hosts: bool,
    /// Role name. Default: the operating-system user name.
    pub user: String,
    /// Password. Default: none (then the password file is consulted per host).
    pub password: Option<Password>,
    /// The loaded password file, if one exists and passed the permission check. Default:
    /// `~/.pgpass`.
    pub passfile: Option<PassFile>,
    /// Why no password file was loaded (missing, skipped for its permissions, not a regular
    /// file...), for the "password required, none found" message. Default: none.
    pub passfile_note: Option<String>,
    /// Database name. Default: the user name.
    pub dbname: String,
    /// `options`: command-line options sent to the server, e.g. `-c statement_timeout=5s`.
    /// Default: none.
    pub options: Option<String>,
    /// `application_name` (or `fallback_application_name`). Default: none.
    pub application_name: Option<String>,
    /// Timeout for one whole connection attempt to one host: TCP, TLS, startup,
    /// authentication and the session check. `connect_timeout` is whole seconds; as in libpq, 1
    /// means 2. Default: none here; the connect layer then applies its own bound (10 s).
    pub connect_timeout: Option<Duration>,
    /// TCP keepalives on. Default: true.
    pub keepalives: bool,
    /// `keepalives_idle`. Default: 10 s (0 in the string also means this default).
    pub keepalives_idle: Duration,
    /// `keepalives_interval`. Default: 5 s (0 also means this default).
    pub keepalives_interval: Duration,
    /// `keepalives_count` (alias `keepalives_retries`). Default: 3 (0 also means this default).
    pub keepalives_count: u32,
    /// `tcp_user_timeout`, given in milliseconds as in libpq; `0` leaves the OS default
    /// (`None`). Default: 30 s.
    pub tcp_user_timeout: Option<Duration>,
    /// `target_session_attrs`. Default: [`TargetSessionAttrs::Any`].
    pub target_session_attrs: TargetSessionAttrs,
    /// TLS settings.
    pub tls: TlsSettings,
    /// `channel_binding`: whether SCRAM is bound to the TLS session. Default:
    /// [`ChannelBinding::Prefer`] (bound when the server offers SCRAM-SHA-256-PLUS over TLS).
    pub channel_binding: ChannelBinding,
    /// `require_auth`: the authentication methods the server may ask for; any other request
    /// is refused before a credential is sent. Default: [`RequireAuth::ANY`].
    pub require_auth: RequireAuth,
    /// `statement_cache` (a pgsteady keyword, not libpq's): `auto` starts with named prepared
    /// statements and switches to unnamed ones on the first sign of a transaction pooler;
    /// `on` keeps named prepared statements per connection whatever happens; `off` is the
    /// pooler-safe mode for PgBouncer in transaction (or statement) pooling, in which no named
    /// prepared statement outlives a transaction (see [`StatementCache`] and
    /// `docs/pgbouncer.md`). Default: [`StatementCache::Auto`].
    pub statement_cache: StatementCache,
}

/// Whether a pool keeps named prepared statements on its connections (`statement_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StatementCache {
    /// Named statements until the first sign of a transaction pooler, then unnamed ones for
    /// the pool's lifetime: a statement pgsteady named is missing (26000) or a name it is
    /// about to create exists already (42P05). The pool then drops its named statements, logs
    /// it once, reports it (`PoolHealth::statement_mode`, the `pgsteady_statement_mode`
    /// metric), and `Pool::run` / `Pool::transaction` replay the call that saw the sign (it
    /// certainly did not run). Where named statements keep working (a direct connection, a
    /// session pooler, PgBouncer 1.21+ with `max_prepared_statements`) it never switches.
    #[default]
    Auto,
    /// Named statements, prepared once per connection (`PooledConnection::prepare_cached`)
    /// and by each `query(&str, ...)`, never switching: the fastest with a direct connection
    /// or a session pooler, unsafe behind a transaction pooler (26000 / 42P05 errors).
    On,
    /// Pooler-safe: statements run unnamed, parsed, bound and executed in one round trip
    /// (tokio-postgres `query_typed`), their parameter types learned once per pool by
    /// preparing inside a transaction that closes the statement before it ends.
    Off,
}

impl StatementCache {
    /// `auto`, `on` or `off`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StatementCache::Auto => "auto",
            StatementCache::On => "on",
            StatementCache::Off => "off",
        }
    }
}

impl fmt::Display for StatementCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Config {
    type Err = Error;

    /// Same as [`Config::parse`].
    fn from_str(s: &str) -> Result<Self, Error> {
        Config::parse(s)
    }
}

impl Config {
    /// Parses a URI or key=value string with built-in defaults only: no environment, no
    /// password file.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let params = parse_string(s)?;
        if params.has("service") {
            // The service file is found through the environment (HOME, PGSERVICEFILE,
            // PGSYSCONFDIR); ignoring the keyword would connect somewhere else.
            return Err(Error::config(
                "service= needs the environment to find pg_service.conf: use \
                 Config::parse_with_env or Config::resolve",
            ));
        }
        Self::from_params(params, &|_: &str| None, false)
    }

    /// Parses a string with libpq precedence: the string, then the `PG*` variables from `env`,
    /// then defaults; loads the password file (its location from `passfile`, `PGPASSFILE` or
    /// `$HOME/.pgpass`).
    pub fn parse_with_env(s: &str, env: &dyn Env) -> Result<Self, Error> {
        let mut params = parse_string(s)?;
        service::apply(&mut params, env)?;
        env::apply(&mut params, env)?;
        Self::from_params(params, env, true)
    }

    /// What a command-line tool should connect to: `target` if given, else `DATABASE_URL` if
    /// set, else nothing; then the `PG*` environment and the password file, as libpq does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let config = pgsteady::Config::resolve(None)?; // DATABASE_URL / PG* / defaults
    /// println!("connecting to {config}");
    /// # Ok::<(), pgsteady::Error>(())
    /// ```
    pub fn resolve(target: Option<&str>) -> Result<Self, Error> {
        Self::resolve_with_env(target, &ProcessEnv)
    }

    /// [`Config::resolve`] with an explicit environment (for tests).
    pub fn resolve_with_env(target: Option<&str>, env: &dyn Env) -> Result<Self, Error> {
        match target {
            Some(t) => Self::parse_with_env(t, env),
            None => match env
                .var_checked("DATABASE_URL")?
                .filter(|v| !v.trim().is_empty())
            {
                Some(url) => Self::parse_with_env(&url, env)
                    .map_err(|e| Error::config(format!("DATABASE_URL: {}", e.message()))),
                None => Self::parse_with_env("", env),
            },
        }
    }

    /// The password to send to `host`: the configured one, else the password file's match
    /// (host matched on the host name, or on `localhost` for a Unix socket, as libpq does).
    pub fn password_for(&self, host: &HostSpec) -> Option<&str> {
        if let Some(p) = &self.password {
            return Some(p.expose());
        }
        let file = self.passfile.as_ref()?;
        let name = match &host.host {
            Host::Tcp(h) => h.clone(),
            Host::Unix(_) => "localhost".to_owned(),
        };
        file.lookup(&name, &host.port.to_string(), &self.dbname, &self.user)
    }

    /// The effective per-attempt timeout: `connect_timeout`, or `fallback` when unset.
    pub fn attempt_timeout(&self, fallback: Duration) -> Duration {
        self.connect_timeout.unwrap_or(fallback)
    }

    fn from_params(mut p: Params, env: &dyn Env, load_passfile: bool) -> Result<Self, Error> {
        let hosts = hosts(&p)?;
        let user = match p.remove("user").filter(|u| !u.is_empty()) {
            Some(u) => u,
            None => os_user().ok_or_else(|| {
                Error::config("no user given and the operating-system user name is unknown")
            })?,
        };
        let dbname = p
            .remove("dbname")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        let password = p.remove("password").map(Password::new);
        // HOME names the default passfile and root certificate: set but not UTF-8, it is an
        // error like any variable, not "no HOME" (which would connect without the password or
        // the root the user keeps there). Only read where it is used.
        let home = if load_passfile {
            env.var_checked("HOME")?
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
        } else {
            None
        };
        let passfile = if load_passfile {
            let path = p
                .remove("passfile")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".pgpass")));
            match path.map(|path| (PassFile::load(&path), path)) {
                Some((PassFileStatus::Loaded(f), _)) => (Some(f), None),
                Some((PassFileStatus::Ignored(why), _)) => (None, Some(format!("{why}; skipped"))),
                Some((PassFileStatus::Missing, path)) => {
                    (None, Some(format!("\"{}\" does not exist", path.display())))
                }
                None => (
                    None,
                    Some("none (no passfile, PGPASSFILE or HOME)".to_owned()),
                ),
            }
        } else {
            (None, None)
        };
        let (passfile, passfile_note) = passfile;

        let connect_timeout = match p.get("connect_timeout") {
            None | Some("") => None,
            Some(v) => match int(v) {
                // libpq: zero or negative means no timeout, 1 means 2.
                Some(n) if n <= 0 => None,
                Some(1) => Some(Duration::from_secs(2)),
                Some(n) => Some(Duration::from_secs(n as u64)),
                None => return Err(bad_number("connect_timeout", "whole seconds, e.g. 10")),
            },
        };
        let keepalives = match p.get("keepalives") {
            None | Some("") => true,
            Some(v) => int(v).ok_or_else(|| bad_number("keepalives", "1 or 0"))? != 0,
        };
        // Linux refuses larger values with EINVAL (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL,
        // MAX_TCP_KEEPCNT), so every connection would fail "cannot set socket options":
        // a configuration error, found before connecting.
        let keepalives_idle = at_most(&p, "keepalives_idle", 32_767, "seconds")?
            .map_or(DEFAULT_KEEPALIVES_IDLE, Duration::from_secs);
        let keepalives_interval = at_most(&p, "keepalives_interval", 32_767, "seconds")?
            .map_or(DEFAULT_KEEPALIVES_INTERVAL, Duration::from_secs);
        let keepalives_count = match at_most(&p, "keepalives_count", 127, "probes")? {
            None => DEFAULT_KEEPALIVES_COUNT,
            Some(n) => u32::try_from(n).unwrap_or(DEFAULT_KEEPALIVES_COUNT),
        };
        let tcp_user_timeout = match nonneg(&p, "tcp_user_timeout", "milliseconds, e.g. 30000")? {
            None => Some(DEFAULT_TCP_USER_TIMEOUT),
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        let target_session_attrs = keyword(&p, "target_session_attrs")?;
        let load_balance_hosts = match p.get("load_balance_hosts") {
            None | Some("") | Some("disable") => false,
            Some("random") => true,
            Some(_) => {
                return Err(Error::config(
                    "invalid load_balance_hosts (expected one of: disable, random)",
                ));
            }
        };
        let statement_cache = match p.get("statement_cache") {
            None | Some("") | Some("auto") => StatementCache::Auto,
            Some("on") => StatementCache::On,
            Some("off") => StatementCache::Off,
            Some(_) => {
                return Err(Error::config(
                    "invalid statement_cache (expected one of: auto, on, off)",
                ));
            }
        };
        let channel_binding = keyword(&p, "channel_binding")?.unwrap_or_default();
        let require_auth = keyword(&p, "require_auth")?.unwrap_or_default();
        unsupported(
            &p,
            "gssencmode",
            &["disable", "prefer", "allow"],
            &["disable", "prefer", "allow", "require"],
        )?;
        unsupported(&p, "sslnegotiation", &["postgres"], &["postgres", "direct"])?;
        if let Some(enc) = p.get("client_encoding")
            && !["", "UTF8", "utf8", "UTF-8", "utf-8", "auto"].contains(&enc)
        {
            return Err(Error::config(
                "unsupported client_encoding (pgsteady always uses UTF8)",
            ));
        }

        let root_cert = match p.get("sslrootcert") {
            Some("system") => Some(RootCert::System),
            Some(path) if !path.is_empty() => Some(RootCert::File(PathBuf::from(path))),
            _ => home
                .map(|h| h.join(".postgresql/root.crt"))
                .filter(|p| load_passfile && p.is_file())
                .map(RootCert::File),
        };
        let path_of = |key: &str| p.get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
        let tls = TlsSettings {
            mode: keyword(&p, "sslmode")?.unwrap_or(SslMode::Prefer),
            root_cert,
            client_cert: path_of("sslcert"),
            client_key: path_of("sslkey"),
        };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err(Error::config("sslcert and sslkey must be given together"));
        }
        let application_name = p
            .get("application_name")
            .or(p.get("fallback_application_name"))
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let options = p
            .get("options")
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        startup_packet_fits(
            &user,
            &dbname,
            options.as_deref(),
            application_name.as_deref(),
        )?;
        Ok(Config {
            hosts,
            load_balance_hosts,
            user,
            password,
            passfile,
            passfile_note,
            dbname,
            options,
            application_name,
            connect_timeout,
            keepalives,
            keepalives_idle,
            keepalives_interval,
            keepalives_count,
            tcp_user_timeout,
            target_session_attrs: target_session_attrs.unwrap_or(TargetSessionAttrs::Any),
            tls,
            channel_binding,
            require_auth,
            statement_cache,
        })
    }
}

fn parse_string(s: &str) -> Result<Params, Error> {
    if uri::is_uri(s) {
        uri::parse(s)
    } else if let Some((scheme, _)) = s.split_once("://") {
        // Only a well-known scheme is named: the text before `://` could be anything.
        const KNOWN: &[&str] = &[
            "mysql",
            "mariadb",
            "http",
            "https",
            "jdbc:postgresql",
            "postgis",
            "pgsql",
            "psql",
            "redis",
            "mongodb",
            "sqlite",
            "tcp",
        ];
        let shown = match KNOWN.iter().find(|k| k.eq_ignore_ascii_case(scheme)) {
            Some(k) => format!(" `{k}`"),
            None => String::new(),
        };
        Err(Error::config(format!(
            "invalid URL scheme{shown}: expected `postgresql://` or `postgres://`"
        )))
    } else {
        keyvalue::parse(s)
    }
}

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`: a longer startup packet is refused with "invalid
/// length of startup packet", which a retry loop would retry until its deadline.
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// Refuses, before connecting, a startup packet the server would refuse (100 KB
/// user names were retried until the timeout). Names the fields and their sizes, never their
/// contents.
fn startup_packet_fits(
    user: &str,
    dbname: &str,
    options: Option<&str>,
    application_name: Option<&str>,
) -> Result<(), Error> {
    let fields = [
        ("user", Some(user)),
        ("database", Some(dbname)),
        ("options", options),
        ("application_name", application_name),
        ("client_encoding", Some("UTF8")),
    ];
    // Length, protocol version, each `name\0value\0`, the final `\0`.
    let total = 8
        + 1
        + fields
            .iter()
            .filter_map(|(k, v)| v.map(|v| k.len() + v.len() + 2))
            .sum::<usize>();
    if total <= MAX_STARTUP_PACKET {
        return Ok(());
    }
    let sizes: Vec<String> = fields
        .iter()
        .filter(|(k, _)| *k != "client_encoding")
        .filter_map(|(k, v)| v.map(|v| format!("{k} {} bytes", v.len())))
        .collect();
    Err(Error::config(format!(
        "the startup packet would be {total} bytes, over PostgreSQL's limit of \
         {MAX_STARTUP_PACKET} ({}): shorten the longest field",
        sizes.join(", ")
    )))
}

fn int(v: &str) -> Option<i64> {
    v.trim().parse().ok()
}

/// Values are never shown in messages: a mistyped string may have put a password
/// anywhere; the key and what was expected are enough to find it.
fn bad_number(key: &str, expected: &str) -> Error {
    Error::config(format!("invalid {key}: expected {expected}"))
}

fn nonneg(p: &Params, key: &str, expected: &str) -> Result<Option<u64>, Error> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(v) => match int(v) {
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Err(bad_number(key, expected)),
        },
    }
}

/// A keepalive setting: whole, 0 meaning the default (`None`), at most `max`.
fn at_most(p: &Params, key: &str, max: u64, unit: &str) -> Result<Option<u64>, Error> {
    match nonneg(p, key, &format!("whole {unit}, e.g. 10"))? {
        None | Some(0) => Ok(None),
        Some(n) if n <= max => Ok(Some(n)),
        Some(_) => Err(Error::config(format!(
            "invalid {key}: at most {max} {unit} (the operating system refuses more)"
        ))),
    }
}

fn keyword<T: FromStr<Err = Error>>(p: &Params, key: &str) -> Result<Option<T>, Error> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some),
    }
}

/// `known`: libpq's values for `key`, the only ones a message may show.
fn unsupported(p: &Params, key: &str, ok: &[&str], known: &[&str]) -> Result<(), Error> {
    match p.get(key) {
        Some(v) if !v.is_empty() && !ok.contains(&v) => {
            let what = if known.contains(&v) {
                format!("{key}={v} is not supported by pgsteady")
            } else {
                format!("invalid {key}")
            };
            Err(Error::config(format!(
                "{what} (supported: {})",
                ok.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// The operating-system user name, looked up once (it reads the user database).
fn os_user() -> Option<String> {
    static USER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    USER.get_or_init(|| whoami::username().ok()).clone()
}

fn default_socket_dir() -> PathBuf {
    let debian = Path::new("/var/run/postgresql");
    if debian.is_dir() {
        debian.to_owned()
    } else {
        PathBuf::from("/tmp")
    }
}

/// Builds the host list from `host`, `hostaddr` and `port`, with libpq's pairing rules.
fn hosts(p: &Params) -> Result<Vec<HostSpec>, Error> {
    let split = |key: &str| -> Vec<String> {
        match p.get(key) {
            None | Some("") => Vec::new(),
            Some(v) => v.split(',').map(|s| s.trim().to_owned()).collect(),
        }
    };
    let names = split("host");
    let addrs = split("hostaddr");
    let ports = split("port");
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(Error::config(format!(
            "could not match {} host names to {} hostaddr values",
            names.len(),
            addrs.len()
        )));
    }
    let n = names.len().max(addrs.len()).max(1);
    if ports.len() > 1 && ports.len() != n {
        return Err(Error::config(format!(
            "could not match {} port numbers to {} hosts",
            ports.len(),
            n
        )));
    }
    (0..n)
        .map(|i| {
            let hostaddr = match addrs.get(i).filter(|a| !a.is_empty()) {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    Error::config(format!(
                        "invalid hostaddr (entry {}): expected a numeric IP address",
                        i + 1
                    ))
                })?),
                None => None,
            };
            let host = match names.get(i).filter(|h| !h.is_empty()) {
                Some(h) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
                Some(h) => Host::Tcp(h.clone()),
                None => match hostaddr {
                    Some(addr) => Host::Tcp(addr.to_string()),
                    None => Host::Unix(default_socket_dir()),
                },
            };
            let port_text = if ports.len() == 1 {
                ports.first()
            } else {
                ports.get(i)
            };
            let port = match port_text.filter(|s| !s.is_empty()) {
                None => DEFAULT_PORT,
                Some(s) => s.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    Error::config(format!(
                        "invalid port for host {} of {n}: expected a number 1-65535",
                        i + 1
                    ))
                })?,
            };
            Ok(HostSpec {
                host,
                hostaddr,
                port,
            })
        })
        .collect()
}

/// A redacted URI: `postgresql://user:***@h1:5432,h2:5433/db?sslmode=prefer`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const SAFE: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let enc = |s: &str| utf8_percent_encode(s, SAFE).to_string();
        write!(f, "postgresql://{}", enc(&self.user))?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        f.write_str("@")?;
        for (i, h) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match &h.host {
                Host::Unix(dir) => f.write_str(&enc(&dir.to_string_lossy()))?,
                Host::Tcp(h) if h.parse::<std::net::Ipv6Addr>().is_ok() => write!(f, "[{h}]")?,
                Host::Tcp(h) => f.write_str(&enc(h))?,
            }
            write!(f, ":{}", h.port)?;
        }
        write!(f, "/{}?sslmode={}", enc(&self.dbname), self.tls.mode)?;
        let addrs: Vec<String> = self
            .hosts
            .iter()
            .map(|h| h.hostaddr.map(|a| a.to_string()).unwrap_or_default())
            .collect();
        if addrs.iter().any(|a| !a.is_empty()) {
            write!(f, "&hostaddr={}", addrs.join(","))?;
        }
        if let Some(t) = self.connect_timeout {
            write!(f, "&connect_timeout={}", t.as_secs())?;
        }
        if self.target_session_attrs != TargetSessionAttrs::Any {
            write!(f, "&target_session_attrs={}", self.target_session_attrs)?;
        }
        if let Some(a) = &self.application_name {
            write!(f, "&application_name={}", enc(a))?;
        }
        if let Some(o) = &self.options {
            write!(f, "&options={}", enc(o))?;
        }
        if self.channel_binding != ChannelBinding::Prefer {
            write!(f, "&channel_binding={}", self.channel_binding)?;
        }
        if !self.require_auth.is_any() {
            write!(f, "&require_auth={}", self.require_auth)?;
        }
        if self.statement_cache != StatementCache::Auto {
            write!(f, "&statement_cache={}", self.statement_cache)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
