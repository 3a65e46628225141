//! The checks of one host, layer by layer, stopping at the first broken one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgsteady::config::{Host, HostSpec, SslMode, TargetSessionAttrs};
use pgsteady::connect::{SslAnswer, request_ssl};
use pgsteady::{Config, Connector, Reason};
use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{compose, listeners, pooler};

/// Outcome of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Layer {
    pub(crate) layer: &'static str,
    pub(crate) status: Status,
    pub(crate) detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ms: Option<f64>,
    /// Likely causes and fixes (for a failed TCP connect).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) hints: Vec<String>,
    /// The classification reason, for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'static str>,
}

impl Layer {
    pub(crate) fn ok(
        layer: &'static str,
        detail: impl Into<String>,
        took: Option<Duration>,
    ) -> Self {
        Layer {
            layer,
            status: Status::Ok,
            detail: detail.into(),
            ms: took.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
            hints: Vec::new(),
            reason: None,
        }
    }

    pub(crate) fn warn(layer: &'static str, detail: impl Into<String>) -> Self {
        Layer {
            status: Status::Warn,
            ..Layer::ok(layer, detail, None)
        }
    }

    pub(crate) fn fail(layer: &'static str, detail: impl Into<String>, reason: Reason) -> Self {
        Layer {
            status: Status::Fail,
            reason: Some(reason.as_str()),
            ..Layer::ok(layer, detail, None)
        }
    }
}

/// Runs every layer for `host`, stopping after the first failure.
pub(crate) async fn check_host(config: &Config, host: &HostSpec, timeout: Duration) -> Vec<Layer> {
    let mut out = Vec::new();
    // DNS.
    let addrs: Vec<SocketAddr> = match (&host.host, host.hostaddr) {
        (Host::Unix(dir), _) => {
            let path = dir.join(format!(".s.PGSQL.{}", host.port));
            if path.exists() {
                out.push(Layer::ok(
                    "socket",
                    format!("{} exists", path.display()),
                    None,
                ));
            } else {
                out.push(Layer::fail(
                    "socket",
                    format!("no server socket at {}: is the server running on this machine with this port?", path.display()),
                    Reason::Refused,
                ));
                return out;
            }
            Vec::new()
        }
        (_, Some(addr)) => {
            out.push(Layer::ok(
                "dns",
                format!("hostaddr {addr} (no lookup)"),
                None,
            ));
            vec![SocketAddr::new(addr, host.port)]
        }
        (Host::Tcp(name), None) if name.parse::<std::net::IpAddr>().is_ok() => {
            out.push(Layer::ok(
                "dns",
                format!("{name} is a numeric address (no lookup)"),
                None,
            ));
            vec![SocketAddr::new(name.parse().expect("checked"), host.port)]
        }
        (Host::Tcp(name), None) => {
            let started = Instant::now();
            let lookup = tokio::net::lookup_host((name.as_str(), host.port));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                    out.push(Layer::ok(
                        "dns",
                        format!("{name} -> {}", shown.join(", ")),
                        Some(started.elapsed()),
                    ));
                    addrs
                }
                Ok(Err(e)) => {
                    out.push(Layer::fail(
                        "dns",
                        format!("cannot resolve `{name}`: {e}"),
                        Reason::Dns,
                    ));
                    return out;
                }
                Err(_) => {
                    out.push(Layer::fail(
                        "dns",
                        format!(
                            "resolving `{name}` took longer than {:.1}s",
                            timeout.as_secs_f64()
                        ),
                        Reason::Dns,
                    ));
                    return out;
                }
            }
        }
    };

    // TCP, then the TLS offer, on the first address that accepts.
    if !addrs.is_empty() {
        let mut failures = Vec::new();
        let mut connected = None;
        for addr in &addrs {
            let started = Instant::now();
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    connected = Some((stream, *addr, started.elapsed()));
                    break;
                }
                Ok(Err(e)) => failures.push((
                    *addr,
                    pgsteady::classify::reason_for_io(e.kind()),
                    e.to_string(),
                )),
                Err(_) => failures.push((
                    *addr,
                    Reason::TimedOut,
                    format!(
                        "no answer within {:.1}s (filtered or blackholed?)",
                        timeout.as_secs_f64()
                    ),
                )),
            }
        }
        let Some((stream, addr, took)) = connected else {
            let (first_addr, reason, _) = failures[0].clone();
            let detail = failures
                .iter()
                .map(|(a, _, m)| format!("{a}: {m}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut layer = Layer::fail("tcp", detail, reason);
            if reason == Reason::Refused {
                layer.hints = refused_hints(first_addr).await;
            }
            out.push(layer);
            return out;
        };
        out.push(Layer::ok("tcp", format!("connected to {addr}"), Some(took)));
        match tls_offer(stream, config.tls.mode, timeout).await {
            Ok(layer) => out.push(layer),
            Err(layer) => {
                out.push(layer);
                return out;
            }
        }
    }

    // Startup, authentication, database: a real session through the library.
    let mut single = config.clone();
    single.hosts = vec![host.clone()];
    // Session attributes are examined below, not required here.
    single.target_session_attrs = TargetSessionAttrs::Any;
    let connector = match Connector::new(single) {
        Ok(c) => c.with_attempt_timeout(timeout),
        Err(e) => {
            out.push(Layer::fail(
                "tls",
                e.to_string(),
                e.reason().unwrap_or(Reason::Tls),
            ));
            return out;
        }
    };
    let started = Instant::now();
    let connected = match connector.connect_once().await {
        Ok(c) => c,
        Err(e) => {
            out.push(session_failure(&e, config, host));
            return out;
        }
    };
    let took = started.elapsed();
    out.push(Layer::ok(
        "startup",
        format!(
            "session established{}",
            if connected.tls { " over TLS" } else { "" }
        ),
        Some(took),
    ));
    let password = if config.password.is_some() {
        "password given"
    } else if config.password_for(host).is_some() {
        "password from the password file"
    } else {
        "no password"
    };
    out.push(Layer::ok(
        "auth",
        format!("user `{}` accepted ({password})", config.user),
        None,
    ));
    out.push(Layer::ok(
        "database",
        format!("`{}` exists", config.dbname),
        None,
    ));
    // Bounded: through a pooler (PgBouncer) whose server is down, a query waits in the
    // pooler's queue (up to its query_wait_timeout, 120 s by default).
    let bound = timeout * 2;
    match tokio::time::timeout(
        bound,
        server_layers(&connected.client, config.target_session_attrs),
    )
    .await
    {
        Ok(layers) => out.extend(layers),
        Err(_) => {
            out.push(pooler::unanswered(&connector, bound).await);
            return out;
        }
    }
    if !out.iter().any(|l| l.status == Status::Fail)
        && let Some(layer) =
            pooler::transaction_pooling(&connector, &connected.client, timeout).await
    {
        out.push(layer);
    }
    out
}

/// Sends the SSLRequest on the fresh TCP connection to see whether the server offers TLS.
async fn tls_offer(
    mut stream: tokio::net::TcpStream,
    mode: SslMode,
    timeout: Duration,
) -> Result<Layer, Layer> {
    if mode == SslMode::Disable {
        return Ok(Layer::ok("tls", "not used (sslmode=disable)", None));
    }
    let started = Instant::now();
    match tokio::time::timeout(timeout, request_ssl(&mut stream)).await {
        Err(_) => Err(Layer::fail(
            "startup",
            format!(
                "the server accepted the TCP connection but sent nothing for {:.1}s: hung (stopped, overloaded) or not PostgreSQL",
                timeout.as_secs_f64()
            ),
            Reason::TimedOut,
        )),
        Ok(Err(e)) => Err(Layer::fail(
            "startup",
            format!("the connection failed at the first PostgreSQL message: {e}"),
            pgsteady::classify::reason_for_io(e.kind()),
        )),
        Ok(Ok(SslAnswer::Offered)) => Ok(Layer::ok(
            "tls",
            format!("offered (sslmode={mode})"),
            Some(started.elapsed()),
        )),
        Ok(Ok(SslAnswer::Declined)) => match mode {
            SslMode::Allow | SslMode::Prefer => Ok(Layer::warn(
                "tls",
                format!("not offered by the server: plain text (sslmode={mode})"),
            )),
            _ => Err(Layer::fail(
                "tls",
                format!("the server does not offer TLS but sslmode={mode} requires it"),
                Reason::Tls,
            )),
        },
        Ok(Ok(SslAnswer::Other(other))) => Err(Layer::fail(
            "startup",
            format!("not a PostgreSQL server: it answered the TLS request with byte {other:#04x}"),
            Reason::Other,
        )),
    }
}

/// Names the layer a session error belongs to.
fn session_failure(e: &pgsteady::Error, config: &Config, host: &HostSpec) -> Layer {
    if let Some(layer) = pooler::pooler_failure(e) {
        return layer;
    }
    let reason = e.reason().unwrap_or(Reason::Other);
    let layer = match reason {
        Reason::Tls => "tls",
        Reason::InvalidPassword | Reason::InvalidAuthorization => "auth",
        Reason::MissingDatabase => "database",
        Reason::TooManyConnections => "headroom",
        _ => "startup",
    };
    let mut detail = e.to_string();
    if reason == Reason::InvalidPassword && config.password_for(host).is_none() {
        detail.push_str(" (no password was given: set it in the URL, PGPASSWORD or ~/.pgpass)");
    }
    Layer::fail(layer, detail, reason)
}

/// Version, recovery / read-only state, connection headroom and round-trip time.
async fn server_layers(client: &Client, want: TargetSessionAttrs) -> Vec<Layer> {
    let mut out = Vec::new();
    let sql = "SELECT current_setting('server_version'), pg_is_in_recovery()::text, \
               current_setting('transaction_read_only'), \
               current_setting('max_connections'), \
               current_setting('superuser_reserved_connections'), \
               (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::text";
    let row = match client.simple_query(sql).await {
        Ok(msgs) => msgs.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        }),
        Err(e) => {
            out.push(pooler::pooler_failure(&e).unwrap_or_else(|| {
                Layer::fail(
                    "version",
                    format!("cannot query the server: {e}"),
                    Reason::Db,
                )
            }));
            return out;
        }
    };
    let Some(row) = row else {
        out.push(Layer::fail(
            "version",
            "the server returned no row",
            Reason::Other,
        ));
        return out;
    };
    let col = |i: usize| row.get(i).unwrap_or("").to_owned();
    out.push(Layer::ok("version", format!("PostgreSQL {}", col(0)), None));

    let in_recovery = col(1) == "true";
    let read_only = col(2) == "on";
    let state = match (in_recovery, read_only) {
        (true, _) => "in recovery (a standby): read-only",
        (false, true) => "primary, but sessions are read-only (default_transaction_read_only)",
        (false, false) => "primary, read-write",
    };
    let wanted_ok = match want {
        TargetSessionAttrs::ReadWrite => !read_only,
        TargetSessionAttrs::ReadOnly => read_only,
        TargetSessionAttrs::Primary => !in_recovery,
        TargetSessionAttrs::Standby => in_recovery,
        _ => true,
    };
    out.push(if !wanted_ok {
        Layer::fail(
            "recovery",
            format!("{state}, but target_session_attrs={want}"),
            Reason::WrongSessionType,
        )
    } else if read_only {
        Layer::warn("recovery", format!("{state}: writes will fail"))
    } else {
        Layer::ok("recovery", state, None)
    });

    let max: i64 = col(3).parse().unwrap_or(0);
    let reserved: i64 = col(4).parse().unwrap_or(0);
    let used: i64 = col(5).parse().unwrap_or(0);
    let free = max - reserved - used;
    let detail = format!(
        "{used} of {} connections in use ({max} max_connections, {reserved} reserved), {free} free",
        max - reserved
    );
    out.push(if free <= 0 {
        Layer::fail("headroom", detail, Reason::TooManyConnections)
    } else if free * 10 < max {
        Layer::warn("headroom", detail)
    } else {
        Layer::ok("headroom", detail, None)
    });

    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        if client.simple_query("SELECT 1").await.is_err() {
            break;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    match samples.get(samples.len() / 2) {
        Some(median) => out.push(Layer::ok(
            "rtt",
            format!("median of {} round trips", samples.len()),
            Some(*median),
        )),
        None => out.push(Layer::fail("rtt", "SELECT 1 failed", Reason::Other)),
    }
    out
}

/// Why might nothing listen on `addr`? Compose files, the docker CLI, and PostgreSQL-looking
/// listeners elsewhere on loopback.
async fn refused_hints(addr: SocketAddr) -> Vec<String> {
    let mut hints = Vec::new();
    let mut published_ports = Vec::new();
    let port = addr.port();
    let cwd = std::env::current_dir().unwrap_or_default();
    for file in compose::find(&cwd) {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                hints.push(format!("cannot read {name}: {e}"));
                continue;
            }
        };
        let services = match compose::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                hints.push(format!("{name}: {e}"));
                continue;
            }
        };
        for svc in services.iter().filter(|s| s.postgres) {
            let published: Vec<_> = svc.ports.iter().filter(|(_, _, c)| *c == 5432).collect();
            published_ports.extend(published.iter().map(|(_, h, _)| *h));
            if published.is_empty() {
                hints.push(format!(
                    "nothing listens on {addr}; service `{}` in {name} publishes no port for 5432, so the host cannot reach it: add `ports: [\"{port}:5432\"]`",
                    svc.name
                ));
            }
            for (_, host_port, _) in published {
                if *host_port != port {
                    hints.push(format!(
                        "nothing listens on {addr}; service `{}` in {name} publishes 5432 as {host_port}: use port {host_port}",
                        svc.name
                    ));
                } else {
                    hints.push(format!(
                        "service `{}` in {name} publishes 5432 on {host_port}, but nothing listens: is the container running (`docker compose ps`)?",
                        svc.name
                    ));
                }
            }
            if let Some(mapped) = compose::docker_port(&cwd, &svc.name).await {
                hints.push(format!(
                    "`docker compose port {} 5432` says {mapped}",
                    svc.name
                ));
            }
        }
    }
    if addr.ip().is_loopback() {
        for other in listeners::postgres_listeners(port, &published_ports).await {
            hints.push(format!(
                "nothing listens on {addr}; a PostgreSQL server answers on {other}: use port {}",
                other.port()
            ));
        }
    }
    hints
}
