//! The checks of one host, layer by layer, stopping at the first broken one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgsteady::config::{Host, HostSpec, SslMode, TargetSessionAttrs};
use pgsteady::connect::{SslAnswer, request_ssl};
use pgsteady::{Config, Connector, Reason};
use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::session::{self, Ctx};
use super::wire::Dial;
use super::{compose, listeners, names, pooler, sockets};

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
    /// The same reason, for the exit code.
    #[serde(skip)]
    pub(crate) cause: Option<Reason>,
    /// The concrete change that repairs this layer (failures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fix: Option<String>,
}

/// What a host's session showed, for the session-type fix across the host list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionState {
    pub(crate) in_recovery: bool,
    pub(crate) read_only: bool,
}

impl SessionState {
    /// Whether a host in this state satisfies `want`.
    pub(crate) fn satisfies(self, want: TargetSessionAttrs) -> bool {
        match want {
            TargetSessionAttrs::ReadWrite => !self.read_only,
            TargetSessionAttrs::ReadOnly => self.read_only,
            TargetSessionAttrs::Primary => !self.in_recovery,
            TargetSessionAttrs::Standby => self.in_recovery,
            _ => true,
        }
    }

    /// "in recovery (a standby)", "primary, read-only", "primary, read-write".
    pub(crate) fn describe(self) -> &'static str {
        match (self.in_recovery, self.read_only) {
            (true, _) => "in recovery (a standby): read-only",
            (false, true) => "primary, but sessions are read-only (default_transaction_read_only)",
            (false, false) => "primary, read-write",
        }
    }
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
            cause: None,
            fix: None,
        }
    }

    pub(crate) fn warn(layer: &'static str, detail: impl Into<String>) -> Self {
        Layer {
            status: Status::Warn,
            ..Layer::ok(layer, detail, None)
        }
    }

    /// Sets the fix.
    pub(crate) fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub(crate) fn fail(layer: &'static str, detail: impl Into<String>, reason: Reason) -> Self {
        Layer {
            status: Status::Fail,
            reason: Some(reason.as_str()),
            cause: Some(reason),
            ..Layer::ok(layer, detail, None)
        }
    }
}

/// Runs every layer for `host`, stopping after the first failure. `target` is the
/// connection string as given (to say where the password was looked for).
pub(crate) async fn check_host(
    config: &Config,
    target: Option<&str>,
    host: &HostSpec,
    timeout: Duration,
) -> (Vec<Layer>, Option<SessionState>) {
    let mut out = Vec::new();
    let mut dial = None;
    // DNS.
    let addrs: Vec<SocketAddr> = match (&host.host, host.hostaddr) {
        (Host::Unix(dir), _) => {
            let path = dir.join(format!(".s.PGSQL.{}", host.port));
            let extra = session::socket_dirs(config);
            let exists = match path.try_exists() {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    out.push(
                        Layer::fail("socket", format!("{}: {e:#}", path.display()), Reason::Io)
                            .with_fix(sockets::permission_fix(&path)),
                    );
                    return (out, None);
                }
                other => other.unwrap_or(false),
            };
            if !exists {
                let fix = sockets::missing_fix(dir, host.port, &extra).await;
                out.push(
                    Layer::fail(
                        "socket",
                        format!("no server socket at {}", path.display()),
                        Reason::Refused,
                    )
                    .with_fix(fix),
                );
                return (out, None);
            }
            let connect = tokio::net::UnixStream::connect(&path);
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(_)) => out.push(Layer::ok(
                    "socket",
                    format!("{} accepts connections", path.display()),
                    None,
                )),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    out.push(
                        Layer::fail("socket", format!("{}: {e:#}", path.display()), Reason::Io)
                            .with_fix(sockets::permission_fix(&path)),
                    );
                    return (out, None);
                }
                Ok(Err(e)) => {
                    let fix = sockets::missing_fix(dir, host.port, &extra).await;
                    out.push(
                        Layer::fail(
                            "socket",
                            format!(
                                "{}: {e:#} (a socket file left behind by a server that is gone?)",
                                path.display()
                            ),
                            pgsteady::classify::reason_for_io(e.kind()),
                        )
                        .with_fix(fix),
                    );
                    return (out, None);
                }
                Err(_) => {
                    out.push(
                        Layer::fail(
                            "socket",
                            format!(
                                "{}: no answer within {:.1}s",
                                path.display(),
                                timeout.as_secs_f64()
                            ),
                            Reason::TimedOut,
                        )
                        .with_fix(session::hung_fix(timeout)),
                    );
                    return (out, None);
                }
            }
            dial = Some(Dial::Unix(path));
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
                    out.push(
                        Layer::fail(
                            "dns",
                            format!("cannot resolve `{name}`: {e:#}"),
                            Reason::Dns,
                        )
                        .with_fix(dns_fix(name)),
                    );
                    return (out, None);
                }
                Err(_) => {
                    out.push(
                        Layer::fail(
                            "dns",
                            format!(
                                "resolving `{name}` took longer than {:.1}s",
                                timeout.as_secs_f64()
                            ),
                            Reason::Dns,
                        )
                        .with_fix(dns_fix(name)),
                    );
                    return (out, None);
                }
            }
        }
    };

    // TCP, then the TLS offer, on the first address that accepts.
    let mut tls_offered = false;
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
                    format!("{e:#}"),
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
            layer.fix = Some(match layer.hints.first() {
                Some(hint) => hint.clone(),
                None if reason == Reason::Refused => format!(
                    "nothing listens on {first_addr}: start the server, or check the host and \
                     port (the server's `port` and `listen_addresses` settings)"
                ),
                None => format!(
                    "{first_addr} cannot be reached ({}): check the address, routes and \
                     firewalls between this machine and the server",
                    reason.as_str()
                ),
            });
            out.push(layer);
            return (out, None);
        };
        out.push(Layer::ok("tcp", format!("connected to {addr}"), Some(took)));
        dial = Some(Dial::Tcp(addr));
        match tls_offer(stream, config.tls.mode, timeout).await {
            Ok((layer, offered)) => {
                out.push(layer);
                tls_offered = offered;
            }
            Err(mut layer) => {
                if layer.layer == "tls" {
                    let ctx = Ctx {
                        config,
                        target,
                        host,
                        dial,
                        tls: false,
                        timeout,
                    };
                    layer.fix = Some(session::no_tls_fix(&ctx).await);
                } else if layer.reason == Some(Reason::TimedOut.as_str()) {
                    layer.fix = Some(session::hung_fix(timeout));
                } else {
                    layer.fix = Some(
                        "check that this address and port belong to PostgreSQL (and not \
                         another service or a proxy that closes connections)"
                            .to_owned(),
                    );
                }
                out.push(layer);
                return (out, None);
            }
        }
    }
    let ctx = Ctx {
        config,
        target,
        host,
        dial,
        tls: tls_offered && config.tls.mode != SslMode::Disable,
        timeout,
    };

    // Startup, authentication, database: a real session through the library.
    let mut single = config.clone();
    single.hosts = vec![host.clone()];
    // Session attributes are examined below, not required here.
    single.target_session_attrs = TargetSessionAttrs::Any;
    let connector = match Connector::new(single) {
        Ok(c) => c
            .with_attempt_timeout(timeout)
            .with_max_message_len(crate::exit::MAX_MESSAGE_LEN)
            .with_ready_check(true),
        Err(e) => {
            push_replacing(&mut out, session::diagnose(&e, &ctx).await);
            return (out, None);
        }
    };
    let started = Instant::now();
    let connected = match connector.connect_once().await {
        Ok(c) => c,
        Err(e) => {
            // PgBouncer's own error, or its holding the session check while its server is
            // down (then a second session gets its error at once).
            let pooled = match pooler::pooler_failure(&e) {
                Some(layer) => Some(layer),
                None if e.reason() == Some(Reason::TimedOut) => {
                    pooler::unanswered(&connector, timeout).await
                }
                None => None,
            };
            let layer = match pooled {
                Some(layer) => layer,
                None => session::diagnose(&e, &ctx).await,
            };
            push_replacing(&mut out, layer);
            return (out, None);
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
    let (layers, state) =
        server_layers(&connected.client, config.target_session_attrs, timeout).await;
    out.extend(layers);
    // A query that got no answer: a hung server, or PgBouncer holding it while its server
    // is down (issue 17); a second session tells which.
    if out
        .last()
        .is_some_and(|l| l.reason == Some(Reason::TimedOut.as_str()))
        && let Some(layer) = pooler::unanswered(&connector, timeout).await
    {
        out.pop();
        out.push(layer);
    }
    if out.iter().all(|l| l.status != Status::Fail) {
        out.push(super::slots::layer(&connected.client).await);
        if let Some(layer) =
            pooler::transaction_pooling(&connector, &connected.client, timeout).await
        {
            out.push(layer);
        }
    }
    (out, state)
}

/// Adds a failed layer; when the layer before is the same one (a `tls` that looked fine
/// until the session showed otherwise), the failure replaces it.
fn push_replacing(out: &mut Vec<Layer>, layer: Layer) {
    if out.last().is_some_and(|l| l.layer == layer.layer) {
        out.pop();
    }
    out.push(layer);
}

fn dns_fix(name: &str) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    names::dns_fix(name, std::path::Path::new("/etc/hosts"), &cwd)
}

/// Sends the SSLRequest on the fresh TCP connection to see whether the server offers TLS.
async fn tls_offer(
    mut stream: tokio::net::TcpStream,
    mode: SslMode,
    timeout: Duration,
) -> Result<(Layer, bool), Layer> {
    if mode == SslMode::Disable {
        return Ok((Layer::ok("tls", "not used (sslmode=disable)", None), false));
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
            format!("the connection failed at the first PostgreSQL message: {e:#}"),
            pgsteady::classify::reason_for_io(e.kind()),
        )),
        Ok(Ok(SslAnswer::Offered)) => Ok((
            Layer::ok(
                "tls",
                format!("offered (sslmode={mode})"),
                Some(started.elapsed()),
            ),
            true,
        )),
        Ok(Ok(SslAnswer::Declined)) => match mode {
            SslMode::Allow | SslMode::Prefer => Ok((
                Layer::warn(
                    "tls",
                    format!("not offered by the server: plain text (sslmode={mode})"),
                ),
                false,
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

/// Version, recovery / read-only state, connection headroom and round-trip time.
async fn server_layers(
    client: &Client,
    want: TargetSessionAttrs,
    timeout: Duration,
) -> (Vec<Layer>, Option<SessionState>) {
    let mut out = Vec::new();
    let sql = "SELECT current_setting('server_version'), pg_is_in_recovery()::text, \
               current_setting('transaction_read_only'), \
               current_setting('max_connections'), \
               current_setting('superuser_reserved_connections'), \
               (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::text, \
               CASE WHEN pg_is_in_recovery() \
                 THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                               (SELECT timeline_id FROM pg_control_checkpoint())) \
                 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
               END::text, \
               pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint::text, \
               round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 1)::text";
    let query_fix = "the session started but a query failed: read the server log at this time \
                     (a statement_timeout or a terminated backend), then run doctor again";
    let row = match tokio::time::timeout(
        timeout,
        pgsteady::connect::bounded_simple_query(client, sql, 1),
    )
    .await
    {
        Ok(Ok(msgs)) => msgs.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        }),
        Ok(Err(e)) => {
            out.push(pooler::pooler_failure(&e).unwrap_or_else(|| {
                Layer::fail(
                    "version",
                    format!("cannot query the server: {e:#}"),
                    Reason::Db,
                )
                .with_fix(query_fix)
            }));
            return (out, None);
        }
        Err(_) => {
            out.push(
                Layer::fail(
                    "version",
                    format!(
                        "the server did not answer a query within {:.1}s",
                        timeout.as_secs_f64()
                    ),
                    Reason::TimedOut,
                )
                .with_fix(session::hung_fix(timeout)),
            );
            return (out, None);
        }
    };
    let Some(row) = row else {
        out.push(
            Layer::fail("version", "the server returned no row", Reason::Other).with_fix(query_fix),
        );
        return (out, None);
    };
    let col = |i: usize| row.get(i).unwrap_or("").to_owned();
    out.push(Layer::ok("version", format!("PostgreSQL {}", col(0)), None));

    let session = SessionState {
        in_recovery: col(1) == "true",
        read_only: col(2) == "on",
    };
    let read_only = session.read_only;
    // Timeline and, on a standby, how far replay is behind what it received.
    let mut state = format!("{}; timeline {}", session.describe(), col(6));
    if session.in_recovery {
        match (row.get(7), row.get(8)) {
            (Some(bytes), Some(age)) => state.push_str(&format!(
                "; replay lag {bytes} bytes behind what it received, last replayed transaction \
                 {age} s ago"
            )),
            (Some(bytes), None) => state.push_str(&format!("; replay lag {bytes} bytes")),
            _ => state.push_str("; not streaming (no WAL received)"),
        }
    }
    out.push(if !session.satisfies(want) {
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
        let fix = slot_holders(client, max, reserved, timeout).await;
        Layer::fail("headroom", detail, Reason::TooManyConnections).with_fix(fix)
    } else if free * 10 < max {
        Layer::warn("headroom", detail)
    } else {
        Layer::ok("headroom", detail, None)
    });

    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        match tokio::time::timeout(
            timeout,
            pgsteady::connect::bounded_simple_query(client, "SELECT 1", 1),
        )
        .await
        {
            Ok(Ok(_)) => {}
            _ => break,
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
        None => out.push(
            Layer::fail(
                "rtt",
                "SELECT 1 failed or took longer than --timeout",
                Reason::Other,
            )
            .with_fix(query_fix),
        ),
    }
    (out, Some(session))
}

/// Who holds the connection slots: sessions grouped by user, application and client address
/// (pg_stat_activity; other roles' details show as unknown without pg_read_all_stats).
async fn slot_holders(client: &Client, max: i64, reserved: i64, timeout: Duration) -> String {
    let sql = "SELECT coalesce(usename, '?'), coalesce(nullif(application_name, ''), '(none)'), \
               coalesce(host(client_addr), 'local socket'), count(*)::text \
               FROM pg_stat_activity \
               WHERE usesysid IS NOT NULL AND coalesce(backend_type, 'client backend') = 'client backend' \
               AND pid <> pg_backend_pid() \
               GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 1, 2, 3 LIMIT 10";
    let rows = match tokio::time::timeout(timeout, client.simple_query(sql)).await {
        Ok(Ok(msgs)) => msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(format!(
                    "{} by user {} application `{}` from {}",
                    r.get(3).unwrap_or("?"),
                    r.get(0).unwrap_or("?"),
                    r.get(1).unwrap_or("?"),
                    r.get(2).unwrap_or("?"),
                )),
                _ => None,
            })
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let holders = if rows.is_empty() {
        "doctor cannot see the other sessions".to_owned()
    } else {
        format!("held besides doctor's own: {}", rows.join("; "))
    };
    format!(
        "all {} connection slots open to non-superusers are taken ({holders}): lower the pool \
         sizes of the biggest holders (their max connections), put a pooler (PgBouncer) in \
         front of the server, or raise max_connections (now {max}, needs a restart)",
        max - reserved
    )
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
                hints.push(format!("cannot read {name}: {e:#}"));
                continue;
            }
        };
        let services = match compose::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                hints.push(format!("{name}: {e:#}"));
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
