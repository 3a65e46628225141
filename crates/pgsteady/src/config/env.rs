//! The PG* environment variables that libpq reads, applied below explicit parameters.

use super::params::Params;

/// (variable, libpq keyword), as listed in libpq's "Environment Variables" section, limited to
/// the keywords pgsteady supports.
pub(crate) const VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGGSSENCMODE", "gssencmode"),
    ("PGCLIENTENCODING", "client_encoding"),
];

/// Where environment variables come from: the process environment in production, a map in
/// tests.
pub trait Env {
    /// The variable's value, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Fills every keyword not set yet from its variable. An empty variable counts as unset, as in
/// libpq.
///
/// libpq applies `PGHOST`/`PGHOSTADDR` only as a pair: if either `host` or `hostaddr` was given
/// explicitly, neither variable is used (a `hostaddr` from the environment paired with an
/// explicit `host` would silently dial the wrong server).
pub(crate) fn apply(params: &mut Params, env: &dyn Env) {
    let host_given = params.has("host") || params.has("hostaddr");
    for (var, key) in VARS {
        if host_given && matches!(*key, "host" | "hostaddr") {
            continue;
        }
        if params.has(key) {
            continue;
        }
        if let Some(value) = env.var(var).filter(|v| !v.is_empty()) {
            params.set_default(key, value);
        }
    }
}
