//! The value types of a [`Config`](super::Config): password, hosts, `sslmode`,
//! `target_session_attrs`, TLS settings.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// A password. `Debug` prints `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The secret itself; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a server is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name or numeric address, reached over TCP.
    Tcp(String),
    /// A directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    Unix(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(h) if h.parse::<std::net::Ipv6Addr>().is_ok() => write!(f, "[{h}]"),
            Host::Tcp(h) => f.write_str(h),
            Host::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One entry of the host list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostSpec {
    /// The host (name used for TLS verification and the password file).
    pub host: Host,
    /// A numeric address to dial instead of resolving `host` (libpq `hostaddr`).
    pub hostaddr: Option<IpAddr>,
    /// The port. Default: 5432.
    pub port: u16,
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Unix(dir) => write!(f, "{}/.s.PGSQL.{}", dir.display(), self.port),
            Host::Tcp(_) => {
                write!(f, "{}:{}", self.host, self.port)?;
                match self.hostaddr {
                    Some(addr) if Host::Tcp(addr.to_string()) != self.host => {
                        write!(f, " ({addr})")
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The libpq spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    // The value is not shown: it may be a misplaced password.
                    _ => Err(Error::config(format!(
                        concat!("invalid ", $what, " (expected one of: {})"),
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// libpq `sslmode`. Default: `prefer`.
    SslMode, "sslmode", {
        /// Plain text only.
        Disable = "disable",
        /// Plain text first; TLS if the server refuses it.
        Allow = "allow",
        /// TLS if the server offers it, no certificate check.
        Prefer = "prefer",
        /// TLS required, no certificate check (unless `sslrootcert` is given: then as
        /// `verify-ca`, as libpq does).
        Require = "require",
        /// TLS, certificate chain verified against `sslrootcert`, host name not checked.
        VerifyCa = "verify-ca",
        /// TLS, chain and host name verified.
        VerifyFull = "verify-full",
    }
);

keyword_enum!(
    /// libpq `target_session_attrs`. Default: `any`.
    TargetSessionAttrs, "target_session_attrs", {
        /// Any server.
        Any = "any",
        /// A session that accepts writes (`transaction_read_only` off).
        ReadWrite = "read-write",
        /// A session that refuses writes.
        ReadOnly = "read-only",
        /// A server not in recovery.
        Primary = "primary",
        /// A server in recovery (a hot standby).
        Standby = "standby",
        /// A standby if any host is one, else any server.
        PreferStandby = "prefer-standby",
    }
);

/// Which certificate authorities verify the server (libpq `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file.
    File(PathBuf),
    /// The bundled Mozilla root store (`sslrootcert=system`).
    System,
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`. Default: [`SslMode::Prefer`].
    pub mode: SslMode,
    /// `sslrootcert`. Default: `~/.postgresql/root.crt` if it exists, else none.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: client certificate (PEM). Default: none.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: client private key (PEM). Default: none.
    pub client_key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}
