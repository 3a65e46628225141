//! Settings from the environment, validated before anything starts. A bad value is named in
//! one clear message; the connection string is never echoed back (it may hold a password).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pgsteady::{Config, ShutdownConfig};

/// Everything the service reads from its environment.
#[derive(Debug)]
pub struct Settings {
    /// `DATABASE_URL`, else the `PG*` variables and `~/.pgpass` (libpq rules).
    pub database: Config,
    /// `LISTEN_ADDR`. Default: `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// `MIGRATIONS_DIR`. Default: `migrations`.
    pub migrations: PathBuf,
    /// `POOL_MAX_SIZE`. Default: 10.
    pub pool_max_size: usize,
    /// `REQUEST_TIMEOUT_MS`: requests taking longer are answered 504. Default: 10 s.
    pub request_timeout: Duration,
    /// `READINESS_GRACE_MS`: how long the database may be unreachable before `/readyz`
    /// answers 503. Default: 1 s.
    pub readiness_grace: Duration,
    /// `SHUTDOWN_LINGER_MS`, `SHUTDOWN_DEADLINE_MS`, `SHUTDOWN_POOL_CLOSE_MS`. Defaults: 0,
    /// 20 s, 5 s.
    pub shutdown: ShutdownConfig,
}

impl Settings {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Settings, String> {
        // pgsteady's errors name the variable and the bad part, never the password.
        let database = Config::resolve(None).map_err(|e| e.to_string())?;
        let listen = var("LISTEN_ADDR", "0.0.0.0:8080")?;
        let listen = listen
            .parse()
            .map_err(|_| format!("LISTEN_ADDR `{listen}` is not an address like 0.0.0.0:8080"))?;
        let shutdown = ShutdownConfig::default()
            .with_linger(millis("SHUTDOWN_LINGER_MS", 0)?)
            .with_deadline(millis("SHUTDOWN_DEADLINE_MS", 20_000)?)
            .with_pool_close(millis("SHUTDOWN_POOL_CLOSE_MS", 5_000)?);
        Ok(Settings {
            database,
            listen,
            migrations: PathBuf::from(var("MIGRATIONS_DIR", "migrations")?),
            pool_max_size: number("POOL_MAX_SIZE", 10)? as usize,
            request_timeout: millis("REQUEST_TIMEOUT_MS", 10_000)?,
            readiness_grace: millis("READINESS_GRACE_MS", 1_000)?,
            shutdown,
        })
    }
}

fn var(name: &str, default: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) => Ok(v),
        Err(std::env::VarError::NotPresent) => Ok(default.to_owned()),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

fn number(name: &str, default: u64) -> Result<u64, String> {
    let v = var(name, &default.to_string())?;
    v.trim()
        .parse()
        .map_err(|_| format!("{name} `{v}` is not a whole number"))
}

fn millis(name: &str, default: u64) -> Result<Duration, String> {
    number(name, default).map(Duration::from_millis)
}
