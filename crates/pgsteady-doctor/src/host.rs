//! The checks of one host, layer by layer, stopping at the first broken one. Each step is a
//! probe that gathers facts and a rule that turns them into a layer; the rules are plain
//! functions, tested below without a server.

// A step ends with its working layer or its broken one: both are lines of the report, moved
// once per host, so boxing the error would only add an allocation.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgsteady::config::{Host, HostSpec, SslMode, TargetSessionAttrs};
use pgsteady::connect::{SslAnswer, request_ssl};
use pgsteady::{Config, Connector, Reason, SessionState};

use crate::finding::{Layer, Status};
use crate::session::{self, Ctx};
use crate::wire::Dial;
use crate::{compose, listeners, names, pooler, server, slots, sockets};

/// What [`check_host`] needs besides the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Each step (name lookup, TCP connect, handshake); the server's queries.
    pub(crate) timeout: Duration,
    /// The longest message accepted from the server.
    pub(crate) max_message_len: usize,
}

/// Runs every layer for `host`, stopping after the first failure. `target` is the
/// connection string as given (to say where the password was looked for).
pub(crate) async fn check_host(
    config: &Config,
    target: Option<&str>,
    host: &HostSpec,
    bounds: Bounds,
) -> (Vec<Layer>, Option<SessionState>) {
    let timeout = bounds.timeout;
    let mut out = Vec::new();
    let mut ctx = Ctx {
        config,
        target,
        host,
        dial: None,
        tls: false,
        timeout,
    };
    match reach(&mut out, &mut ctx).await {
        Ok(()) => {}
        Err(layer) => {
            out.push(layer);
            return (out, None);
        }
    }
    session_layers(out, &ctx, bounds).await
}

/// Socket or DNS, TCP and the TLS offer: on success `ctx` says where the server is and
/// whether TLS will be used.
async fn reach(out: &mut Vec<Layer>, ctx: &mut Ctx<'_>) -> Result<(), Layer> {
    let (host, timeout) = (ctx.host, ctx.timeout);
    let addrs = match (&host.host, host.hostaddr) {
        (Host::Unix(dir), _) => {
            let extra = session::socket_dirs(ctx.config);
            let (layer, path) = unix_socket(dir, host.port, &extra, timeout).await?;
            out.push(layer);
            ctx.dial = Some(Dial::Unix(path));
            return Ok(());
        }
        (_, Some(addr)) => {
            out.push(Layer::ok(
                "dns",
                format!("hostaddr {addr} (no lookup)"),
                None,
            ));
            vec![SocketAddr::new(addr, host.port)]
        }
        (Host::Tcp(name), None) => {
            let (layer, addrs) = resolve(name, host.port, timeout).await?;
            out.push(layer);
            addrs
        }
    };
    let (layer, stream, addr) = tcp(&addrs, timeout).await?;
    out.push(layer);
    ctx.dial = Some(Dial::Tcp(addr));
    let mode = ctx.config.tls.mode;
    match tls_offer(stream, mode, timeout).await {
        Ok((layer, offered)) => {
            out.push(layer);
            ctx.tls = offered && mode != SslMode::Disable;
            Ok(())
        }
        Err(mut layer) => {
            layer.fix = Some(if layer.layer == "tls" {
                session::no_tls_fix(ctx).await
            } else if layer.cause == Some(Reason::TimedOut) {
                session::hung_fix(timeout)
            } else {
                "check that this address and port belong to PostgreSQL (and not another \
                 service or a proxy that closes connections)"
                    .to_owned()
            });
            Err(layer)
        }
    }
}

/// The `socket` layer: does `dir` hold the server's socket, and may this user connect?
async fn unix_socket(
    dir: &Path,
    port: u16,
    extra: &[PathBuf],
    timeout: Duration,
) -> Result<(Layer, PathBuf), Layer> {
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let shown = pgsteady::text::sanitize(&path.display().to_string()).into_owned();
    let denied = |e: std::io::Error| {
        Layer::fail("socket", format!("{shown}: {e}"), Reason::Io)
            .with_fix(sockets::permission_fix(&path))
    };
    let exists = match path.try_exists() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(denied(e)),
        other => other.unwrap_or(false),
    };
    if !exists {
        let fix = sockets::missing_fix(dir, port, extra).await;
        return Err(Layer::fail(
            "socket",
            format!("no server socket at {shown}"),
            Reason::Refused,
        )
        .with_fix(fix));
    }
    match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(&path)).await {
        Ok(Ok(_)) => Ok((
            Layer::ok("socket", format!("{shown} accepts connections"), None),
            path,
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(denied(e)),
        Ok(Err(e)) => {
            let fix = sockets::missing_fix(dir, port, extra).await;
            Err(Layer::fail(
                "socket",
                format!("{shown}: {e} (a socket file left behind by a server that is gone?)"),
                pgsteady::classify::reason_for_io(e.kind()),
            )
            .with_fix(fix))
        }
        Err(_) => Err(Layer::fail(
            "socket",
            format!("{shown}: no answer within {:.1}s", timeout.as_secs_f64()),
            Reason::TimedOut,
        )
        .with_fix(session::hung_fix(timeout))),
    }
}

/// What a name lookup gave.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The name is an IP address: no lookup.
    Numeric(std::net::IpAddr),
    /// The resolver's addresses.
    Found(Vec<SocketAddr>, Duration),
    /// The resolver's error.
    Failed(String),
    /// No answer within the bound.
    TimedOut(Duration),
}

/// The `dns` layer for `name`: lookup (the probe), then [`dns_layer`] (the rule).
async fn resolve(
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<(Layer, Vec<SocketAddr>), Layer> {
    let lookup = match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Lookup::Numeric(ip),
        Err(_) => {
            let started = Instant::now();
            match tokio::time::timeout(timeout, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(addrs)) => Lookup::Found(addrs.collect(), started.elapsed()),
                Ok(Err(e)) => Lookup::Failed(e.to_string()),
                Err(_) => Lookup::TimedOut(timeout),
            }
        }
    };
    dns_layer(name, port, lookup, dns_fix)
}

/// The rule of the `dns` layer; `fix` names close names for one that does not resolve.
pub(crate) fn dns_layer(
    name: &str,
    port: u16,
    lookup: Lookup,
    fix: impl Fn(&str) -> String,
) -> Result<(Layer, Vec<SocketAddr>), Layer> {
    let shown = pgsteady::text::sanitize(name);
    match lookup {
        Lookup::Numeric(ip) => Ok((
            Layer::ok(
                "dns",
                format!("{shown} is a numeric address (no lookup)"),
                None,
            ),
            vec![SocketAddr::new(ip, port)],
        )),
        Lookup::Found(addrs, took) => {
            let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            Ok((
                Layer::ok("dns", format!("{shown} -> {}", ips.join(", ")), Some(took)),
                addrs,
            ))
        }
        Lookup::Failed(e) => Err(Layer::fail(
            "dns",
            format!("cannot resolve `{shown}`: {}", pgsteady::text::sanitize(&e)),
            Reason::Dns,
        )
        .with_fix(fix(name))),
        Lookup::TimedOut(d) => Err(Layer::fail(
            "dns",
            format!(
                "resolving `{shown}` took longer than {:.1}s",
                d.as_secs_f64()
            ),
            Reason::Dns,
        )
        .with_fix(fix(name))),
    }
}

/// One address that did not accept: why, classified, and the words for it.
pub(crate) type TcpFailure = (SocketAddr, Reason, String);

/// The `tcp` layer: the first address that accepts, else [`tcp_failed`].
async fn tcp(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(Layer, tokio::net::TcpStream, SocketAddr), Layer> {
    let mut failures: Vec<TcpFailure> = Vec::new();
    for addr in addrs {
        let started = Instant::now();
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let layer = Layer::ok(
                    "tcp",
                    format!("connected to {addr}"),
                    Some(started.elapsed()),
                );
                return Ok((layer, stream, *addr));
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
    let hints = match failures.first() {
        Some((addr, Reason::Refused, _)) => refused_hints(*addr).await,
        _ => Vec::new(),
    };
    Err(tcp_failed(&failures, hints))
}

/// The rule of a failed `tcp` layer: every address's failure, and a fix from the first hint
/// (or from the kind of failure).
pub(crate) fn tcp_failed(failures: &[TcpFailure], hints: Vec<String>) -> Layer {
    let Some((first_addr, reason, _)) = failures.first().cloned() else {
        return Layer::fail("tcp", "the name resolved to no address", Reason::Dns).with_fix(
            "the name lookup returned no address: check the DNS record or /etc/hosts entry",
        );
    };
    let detail = failures
        .iter()
        .map(|(a, _, m)| format!("{a}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let fix = match hints.first() {
        Some(hint) => hint.clone(),
        None if reason == Reason::Refused => format!(
            "nothing listens on {first_addr}: start the server, or check the host and port (the \
             server's `port` and `listen_addresses` settings)"
        ),
        None => format!(
            "{first_addr} cannot be reached ({}): check the address, routes and firewalls \
             between this machine and the server",
            reason.as_str()
        ),
    };
    let mut layer = Layer::fail("tcp", detail, reason).with_fix(fix);
    layer.hints = hints;
    layer
}

/// What the server did with the SSLRequest.
#[derive(Debug)]
pub(crate) enum Offer {
    /// It answered this byte.
    Answer(SslAnswer, Duration),
    /// The connection failed.
    Failed(std::io::Error),
    /// Nothing within the bound.
    TimedOut(Duration),
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
    let offer = match tokio::time::timeout(timeout, request_ssl(&mut stream)).await {
        Err(_) => Offer::TimedOut(timeout),
        Ok(Err(e)) => Offer::Failed(e),
        Ok(Ok(answer)) => Offer::Answer(answer, started.elapsed()),
    };
    tls_layer(offer, mode)
}

/// The rule of the `tls` layer (`Ok(.., true)`: TLS offered); a failure before TLS is a
/// `startup` layer. The fix is added by the caller, which may probe for it.
pub(crate) fn tls_layer(offer: Offer, mode: SslMode) -> Result<(Layer, bool), Layer> {
    match offer {
        Offer::TimedOut(d) => Err(Layer::fail(
            "startup",
            format!(
                "the server accepted the TCP connection but sent nothing for {:.1}s: hung (stopped, overloaded) or not PostgreSQL",
                d.as_secs_f64()
            ),
            Reason::TimedOut,
        )),
        Offer::Failed(e) => Err(Layer::fail(
            "startup",
            format!("the connection failed at the first PostgreSQL message: {e}"),
            pgsteady::classify::reason_for_io(e.kind()),
        )),
        Offer::Answer(SslAnswer::Offered, took) => Ok((
            Layer::ok("tls", format!("offered (sslmode={mode})"), Some(took)),
            true,
        )),
        Offer::Answer(SslAnswer::Declined, _) => match mode {
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
        Offer::Answer(SslAnswer::Other(other), _) => Err(Layer::fail(
            "startup",
            format!("not a PostgreSQL server: it answered the TLS request with byte {other:#04x}"),
            Reason::Other,
        )),
    }
}

/// Startup, authentication, database through the library, then the server's layers, the
/// slots and the pooler on the session.
async fn session_layers(
    mut out: Vec<Layer>,
    ctx: &Ctx<'_>,
    bounds: Bounds,
) -> (Vec<Layer>, Option<SessionState>) {
    let (config, host, timeout) = (ctx.config, ctx.host, bounds.timeout);
    let mut single = config.clone();
    single.hosts = vec![host.clone()];
    // Session attributes are examined below, not required here.
    single.target_session_attrs = TargetSessionAttrs::Any;
    let connector = match Connector::new(single) {
        Ok(c) => c
            .with_attempt_timeout(timeout)
            .with_max_message_len(bounds.max_message_len)
            .with_ready_check(true),
        Err(e) => {
            push_replacing(&mut out, session::diagnose(&e, ctx).await);
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
                None => session::diagnose(&e, ctx).await,
            };
            push_replacing(&mut out, layer);
            return (out, None);
        }
    };
    let password = if config.password.is_some() {
        "password given"
    } else if config.password_for(host).is_some() {
        "password from the password file"
    } else {
        "no password"
    };
    out.extend(session_ok(
        connected.tls,
        started.elapsed(),
        &config.user,
        &config.dbname,
        password,
    ));
    let (layers, state) =
        server::probe(&connected.client, config.target_session_attrs, timeout).await;
    out.extend(layers);
    // A query that got no answer: a hung server, or PgBouncer holding it while its server
    // is down; a second session tells which.
    if out
        .last()
        .is_some_and(|l| l.cause == Some(Reason::TimedOut))
        && let Some(layer) = pooler::unanswered(&connector, timeout).await
    {
        out.pop();
        out.push(layer);
    }
    if out.iter().all(|l| l.status != Status::Fail) {
        out.push(slots::layer(&connected.client).await);
        if let Some(layer) =
            pooler::transaction_pooling(&connector, &connected.client, timeout).await
        {
            out.push(layer);
        }
    }
    (out, state)
}

/// The `startup`, `auth` and `database` layers of a session that started.
pub(crate) fn session_ok(
    tls: bool,
    took: Duration,
    user: &str,
    dbname: &str,
    password: &str,
) -> [Layer; 3] {
    let (user, dbname) = (
        pgsteady::text::sanitize(user),
        pgsteady::text::sanitize(dbname),
    );
    [
        Layer::ok(
            "startup",
            format!("session established{}", if tls { " over TLS" } else { "" }),
            Some(took),
        ),
        Layer::ok("auth", format!("user `{user}` accepted ({password})"), None),
        Layer::ok("database", format!("`{dbname}` exists"), None),
    ]
}

/// Adds a failed layer; when the layer before is the same one (a `tls` that looked fine
/// until the session showed otherwise), the failure replaces it.
pub(crate) fn push_replacing(out: &mut Vec<Layer>, layer: Layer) {
    if out.last().is_some_and(|l| l.layer == layer.layer) {
        out.pop();
    }
    out.push(layer);
}

fn dns_fix(name: &str) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    names::dns_fix(name, Path::new("/etc/hosts"), &cwd)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dns_rules() {
        let fix = |n: &str| format!("fix for {n}");
        let (l, addrs) = dns_layer(
            "10.0.0.1",
            5432,
            Lookup::Numeric("10.0.0.1".parse().unwrap()),
            fix,
        )
        .unwrap();
        assert_eq!(l.detail, "10.0.0.1 is a numeric address (no lookup)");
        assert_eq!(addrs, [addr("10.0.0.1:5432")]);
        let found = Lookup::Found(
            vec![addr("10.0.0.2:5432"), addr("[::1]:5432")],
            Duration::from_millis(2),
        );
        let (l, _) = dns_layer("db", 5432, found, fix).unwrap();
        assert_eq!(
            (l.detail.as_str(), l.ms),
            ("db -> 10.0.0.2, ::1", Some(2.0))
        );
        let l = dns_layer(
            "db\x1b[2J",
            5432,
            Lookup::Failed("no such host".into()),
            fix,
        )
        .unwrap_err();
        assert_eq!(l.detail, "cannot resolve `db\\u{1b}[2J`: no such host");
        assert_eq!(
            (l.cause, l.fix.as_deref()),
            (Some(Reason::Dns), Some("fix for db\x1b[2J"))
        );
        let l = dns_layer("db", 5432, Lookup::TimedOut(Duration::from_secs(3)), fix).unwrap_err();
        assert_eq!(l.detail, "resolving `db` took longer than 3.0s");
    }

    #[test]
    fn tcp_rules() {
        let refused = (
            addr("127.0.0.1:5433"),
            Reason::Refused,
            "connection refused".to_owned(),
        );
        let l = tcp_failed(std::slice::from_ref(&refused), Vec::new());
        assert_eq!(l.detail, "127.0.0.1:5433: connection refused");
        assert!(
            l.fix
                .unwrap()
                .starts_with("nothing listens on 127.0.0.1:5433: start the server")
        );
        let l = tcp_failed(std::slice::from_ref(&refused), vec!["use port 5432".into()]);
        assert_eq!(
            (l.fix.as_deref(), l.hints.len()),
            (Some("use port 5432"), 1)
        );
        let filtered = (
            addr("10.0.0.9:5432"),
            Reason::TimedOut,
            "no answer".to_owned(),
        );
        let l = tcp_failed(&[filtered, refused], Vec::new());
        assert_eq!(
            l.detail,
            "10.0.0.9:5432: no answer; 127.0.0.1:5433: connection refused"
        );
        assert!(l.fix.unwrap().contains("routes and firewalls"));
        // A lookup that gave no address is not a panic.
        assert_eq!(tcp_failed(&[], Vec::new()).status, Status::Fail);
    }

    #[test]
    fn tls_rules() {
        let ms = Duration::from_millis(1);
        let (l, on) = tls_layer(Offer::Answer(SslAnswer::Offered, ms), SslMode::Require).unwrap();
        assert_eq!((l.status, on), (Status::Ok, true));
        let (l, on) = tls_layer(Offer::Answer(SslAnswer::Declined, ms), SslMode::Prefer).unwrap();
        assert_eq!((l.status, on), (Status::Warn, false));
        let l = tls_layer(Offer::Answer(SslAnswer::Declined, ms), SslMode::VerifyFull).unwrap_err();
        assert_eq!((l.layer, l.cause), ("tls", Some(Reason::Tls)));
        let l = tls_layer(Offer::Answer(SslAnswer::Other(b'H'), ms), SslMode::Prefer).unwrap_err();
        assert_eq!(
            l.detail,
            "not a PostgreSQL server: it answered the TLS request with byte 0x48"
        );
        let l = tls_layer(Offer::TimedOut(Duration::from_secs(3)), SslMode::Prefer).unwrap_err();
        assert_eq!((l.layer, l.cause), ("startup", Some(Reason::TimedOut)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let l = tls_layer(Offer::Failed(reset), SslMode::Prefer).unwrap_err();
        assert_eq!(l.layer, "startup");
    }

    /// The `socket` layer from what the file system shows: no socket file, a listening
    /// socket, a socket file left behind.
    #[tokio::test]
    async fn socket_rules() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let bound = Duration::from_secs(2);
        let l = unix_socket(dir.path(), port, &[], bound).await.unwrap_err();
        assert_eq!((l.layer, l.cause), ("socket", Some(Reason::Refused)));
        assert!(l.detail.starts_with("no server socket at "), "{}", l.detail);
        assert!(l.fix.is_some());
        let path = dir.path().join(format!(".s.PGSQL.{port}"));
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (l, dialled) = unix_socket(dir.path(), port, &[], bound).await.unwrap();
        assert_eq!((l.status, dialled), (Status::Ok, path.clone()));
        drop(listener);
        let l = unix_socket(dir.path(), port, &[], bound).await.unwrap_err();
        assert!(
            l.detail.contains("left behind by a server that is gone"),
            "{}",
            l.detail
        );
    }

    #[test]
    fn session_rules() {
        let [startup, auth, db] = session_ok(true, Duration::ZERO, "app", "d\nb", "password given");
        assert_eq!(startup.detail, "session established over TLS");
        assert_eq!(auth.detail, "user `app` accepted (password given)");
        assert_eq!(db.detail, "`d\\nb` exists");
        let mut out = vec![Layer::ok("tls", "offered", None)];
        push_replacing(&mut out, Layer::fail("tls", "refused", Reason::Tls));
        push_replacing(
            &mut out,
            Layer::fail("auth", "refused", Reason::InvalidPassword),
        );
        let names: Vec<_> = out.iter().map(|l| (l.layer, l.status)).collect();
        assert_eq!(names, [("tls", Status::Fail), ("auth", Status::Fail)]);
    }
}
