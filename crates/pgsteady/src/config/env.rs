//! The PG* environment variables that libpq reads, applied below explicit parameters.

use super::params::Params;
use crate::Error;

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
    ("PGREQUIREAUTH", "require_auth"),
    ("PGGSSENCMODE", "gssencmode"),
    ("PGCLIENTENCODING", "client_encoding"),
];

/// Where environment variables come from: the process environment in production, a map in
/// tests.
pub trait Env {
    /// The variable's value, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;

    /// The variable's value if set; a [`Config`](crate::ErrorKind::Config) error naming it
    /// when it is set but not valid Unicode, where [`Env::var`] says "unset" (libpq would use
    /// the bytes; falling back to a default or another source would connect somewhere the
    /// user did not say). The default asks [`Env::var`], which cannot tell.
    fn var_checked(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.var(name))
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(feature = "probe"), allow(unreachable_pub))]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn var_checked(&self, name: &str) -> Result<Option<String>, Error> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(not_unicode(name)),
        }
    }
}

/// The error for a variable that is set but not valid UTF-8 (its value is never shown: it may
/// be a password).
pub(crate) fn not_unicode(name: &str) -> Error {
    Error::config(format!(
        "the environment variable {name} is set but is not valid UTF-8 (value not shown); \
         fix or unset it"
    ))
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
///
/// A variable that would be used but is not valid UTF-8 is an error naming it, not "unset"
/// (which fell back to a default: another server, no password).
pub(crate) fn apply(params: &mut Params, env: &dyn Env) -> Result<(), Error> {
    let host_given = params.has("host") || params.has("hostaddr");
    for (var, key) in VARS {
        if host_given && matches!(*key, "host" | "hostaddr") {
            continue;
        }
        if params.has(key) {
            continue;
        }
        if let Some(value) = env.var_checked(var)?.filter(|v| !v.is_empty()) {
            params.set_default(key, value);
        }
    }
    Ok(())
}
