//! `pgsteady doctor`: walk the layers between this process and the database and name the first
//! broken one: config, DNS, TCP (with the likely cause of a refused port), TLS, startup,
//! authentication, database, server version, recovery / read-only, connection headroom,
//! round-trip time, replication slots (a warning for inactive, at-risk and lost ones). Every
//! failed layer carries a `fix`: the concrete change, found by bounded, read-only probing
//! (docs/doctor.md lists them).

mod certs;
mod compose;
mod layers;
mod listeners;
mod names;
mod patroni;
mod pooler;
mod session;
mod slots;
mod sockets;
mod wire;

use std::process::ExitCode;
use std::time::Duration;

use pgsteady::{Connector, Reason};
use tokio::time::Instant;

use serde::Serialize;

use crate::common::{parse_duration, resolve_target};
use crate::exit;
use layers::{Layer, SessionState, Status};
use pgsteady::TargetSessionAttrs;

const HELP: &str = "\
Bounds: each step (name lookup, TCP connect, handshake) within --timeout, the server's
queries within 4x --timeout, the whole run within --max-time: hosts not reached by then are
reported as not checked.

Exit codes (the same meanings as check, wait and migrate):
  0  every layer works for at least one host
  1  a transient layer is broken (DNS, TCP, startup, headroom, hung server), or --max-time
     ran out before a host was found working, or Patroni's view disagrees with a
     server's (--patroni)
  2  the configuration is invalid (nothing was tried)
  3  a permanent layer is broken (TLS, authentication or no password found, database,
     session type, an option the server rejects, not a PostgreSQL server)";

/// Arguments of `pgsteady doctor`.
#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub(crate) struct DoctorArgs {
    /// A postgresql:// URL or a key=value connection string. Default: $DATABASE_URL, then the
    /// PG* variables and ~/.pgpass.
    target: Option<String>,
    /// Bound on each step (name lookup, TCP connect, handshake).
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Bound on the whole run, over every host.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    max_time: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// A Patroni REST API address (http://HOST:PORT, repeatable): check that Patroni's view
    /// (GET /patroni, GET /cluster) agrees with each member's own pg_is_in_recovery().
    #[arg(long, value_name = "URL", value_parser = patroni::parse_url)]
    patroni: Vec<String>,
}

#[derive(Debug, Serialize)]
struct HostReport {
    host: String,
    layers: Vec<Layer>,
    #[serde(skip)]
    state: Option<SessionState>,
}

#[derive(Debug, Serialize)]
struct Broken {
    layer: &'static str,
    host: Option<String>,
    detail: String,
    hints: Vec<String>,
    /// The concrete change that repairs the broken layer.
    fix: Option<String>,
    #[serde(skip)]
    cause: Option<Reason>,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The redacted configuration.
    config: String,
    ok: bool,
    exit_code: u8,
    broken: Option<Broken>,
    hosts: Vec<HostReport>,
    /// The host a libpq client with this configuration would connect to now (issue 14):
    /// the first in the list whose layers all work and whose session matches
    /// `target_session_attrs` (`prefer-standby`: a standby first, else any); `None` when
    /// none would.
    libpq_pick: Option<String>,
    /// Hosts not checked because --max-time ran out.
    #[serde(skip_serializing_if = "is_zero")]
    not_checked: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(crate) async fn run(args: DoctorArgs) -> ExitCode {
    // Validate everything before touching the network.
    // A bad file named by the configuration (a FIFO as sslrootcert) is a usage error too.
    // (error, whether it is a usage error): a configuration the connector cannot load for
    // another reason (TLS files) is reported per host instead.
    let config = match resolve_target(args.target.as_deref())
        .map_err(|e| {
            let usage = e
                .lib()
                .is_none_or(|l| l.kind() == pgsteady::ErrorKind::Config);
            (e, usage)
        })
        .and_then(|c| {
            Connector::new(c.clone()).map(|_| c).map_err(|e| {
                let usage =
                    e.kind() == pgsteady::ErrorKind::Config && e.reason() == Some(Reason::Config);
                (crate::common::PlanError::Lib(e), usage)
            })
        }) {
        Ok(c) => c,
        Err((e, true)) => {
            let report = Report {
                config: String::new(),
                ok: false,
                exit_code: exit::USAGE,
                broken: Some(Broken {
                    layer: "config",
                    host: None,
                    detail: format!("{e:#}"),
                    hints: Vec::new(),
                    fix: Some(
                        "correct the part of the connection string named above (see `pgsteady \
                         doctor --help` for the forms accepted)"
                            .to_owned(),
                    ),
                    cause: e.reason(),
                }),
                hosts: Vec::new(),
                not_checked: 0,
                libpq_pick: None,
            };
            print(&report, args.json);
            return exit::code(exit::USAGE);
        }
        // TLS settings that cannot be loaded: reported per host by the tls layer.
        Err(_) => match resolve_target(args.target.as_deref()) {
            Ok(c) => c,
            Err(_) => return exit::code(exit::USAGE),
        },
    };
    // The overall bound (issue 19 item 10): hosts are checked in order until --max-time.
    let deadline = Instant::now() + args.max_time;
    let mut hosts = Vec::new();
    let mut not_checked = 0;
    for host in &config.hosts {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            not_checked += 1;
            continue;
        }
        let (layers, state) = match tokio::time::timeout(
            left,
            layers::check_host(&config, args.target.as_deref(), host, args.timeout),
        )
        .await
        {
            Ok(pair) => pair,
            Err(_) => (
                vec![layers::Layer::fail(
                    "deadline",
                    format!(
                        "not finished when --max-time ({:.1}s) ran out",
                        args.max_time.as_secs_f64()
                    ),
                    Reason::TimedOut,
                )],
                None,
            ),
        };
        hosts.push(HostReport {
            host: host.to_string(),
            layers,
            state,
        });
    }
    session_type_fixes(&mut hosts, config.target_session_attrs);
    let libpq_pick = libpq_pick(
        &hosts,
        config.target_session_attrs,
        config.load_balance_hosts,
    );
    // After libpq's pick: the Patroni layers add no host a client would try.
    if !args.patroni.is_empty() {
        patroni::check(&config, &args.patroni, args.timeout, &mut hosts).await;
    }
    let healthy = hosts
        .iter()
        .any(|h| h.layers.iter().all(|l| l.status != Status::Fail));
    let broken = if healthy {
        None
    } else {
        hosts.iter().find_map(|h| {
            h.layers
                .iter()
                .find(|l| l.status == Status::Fail)
                .map(|l| Broken {
                    layer: l.layer,
                    host: Some(h.host.clone()),
                    detail: l.detail.clone(),
                    hints: l.hints.clone(),
                    fix: l.fix.clone(),
                    cause: l.cause,
                })
        })
    };
    // The code follows the failure's classification, as for check, wait and migrate: a
    // non-PostgreSQL server or a rejected option is permanent whichever layer saw it.
    // A disagreement between Patroni and a server fails the run even when a host works.
    let broken = broken.or_else(|| {
        patroni::first_failure(&hosts).map(|(host, l)| Broken {
            layer: l.layer,
            host: Some(host.to_owned()),
            detail: l.detail.clone(),
            hints: l.hints.clone(),
            fix: l.fix.clone(),
            cause: l.cause,
        })
    });
    let exit_code = match &broken {
        None if not_checked > 0 && !healthy => exit::NOT_READY,
        None => exit::READY,
        Some(b) => match b.layer {
            "tls" | "auth" | "database" | "recovery" => exit::PERMANENT,
            _ => b.cause.map_or(exit::NOT_READY, exit::for_reason),
        },
    };
    let report = Report {
        config: config.to_string(),
        ok: broken.is_none() && healthy,
        exit_code,
        broken,
        hosts,
        not_checked,
        libpq_pick,
    };
    print(&report, args.json);
    exit::code(exit_code)
}

fn print(report: &Report, json: bool) {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("pgsteady doctor: cannot encode the report: {e:#}"),
        }
        return;
    }
    if !report.config.is_empty() {
        println!("{:<9} {:<4}  {}", "config", "ok", report.config);
    }
    for host in &report.hosts {
        println!("host {}", host.host);
        for l in &host.layers {
            let status = match l.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let ms = l.ms.map(|ms| format!(" ({ms} ms)")).unwrap_or_default();
            println!("  {:<9} {:<4}  {}{ms}", l.layer, status, l.detail);
            for hint in &l.hints {
                println!("  {:<9} {:<4}  hint: {hint}", "", "");
            }
            if let Some(fix) = &l.fix {
                println!("  {:<9} {:<4}  fix: {fix}", "", "");
            }
        }
    }
    if report.not_checked > 0 {
        println!(
            "{} more host{} not checked: --max-time ran out",
            report.not_checked,
            if report.not_checked == 1 { "" } else { "s" }
        );
    }
    if !report.hosts.is_empty() {
        match &report.libpq_pick {
            Some(pick) => {
                println!("a libpq client with this configuration would connect to {pick}")
            }
            None => println!("a libpq client with this configuration would connect to no host now"),
        }
    }
    match &report.broken {
        None if !report.ok => println!("no host was found working before --max-time ran out"),
        None => println!("all layers ok"),
        Some(b) if b.layer == "config" => {
            println!("{:<9} {:<4}  {}", "config", "FAIL", b.detail);
            println!("first broken layer: config");
            if let Some(fix) = &b.fix {
                println!("fix: {fix}");
            }
        }
        Some(b) => {
            let host = b.host.as_deref().unwrap_or("");
            println!("first broken layer: {} ({host}): {}", b.layer, b.detail);
            if let Some(fix) = &b.fix {
                println!("fix: {fix}");
            }
        }
    }
}

/// Which host libpq's host selection (`fe-connect.c`) would end on, from what doctor saw of
/// each: hosts in order, the first that connects and matches `want`; for `prefer-standby`
/// a standby first, then any host. With `load_balance_hosts=random` the order is random, so
/// every matching host is named.
fn libpq_pick(
    hosts: &[HostReport],
    want: pgsteady::TargetSessionAttrs,
    random: bool,
) -> Option<String> {
    let works = |h: &&HostReport| h.layers.iter().all(|l| l.status != Status::Fail);
    let matching: Vec<&HostReport> = match want {
        pgsteady::TargetSessionAttrs::PreferStandby => {
            let standbys: Vec<&HostReport> = hosts
                .iter()
                .filter(works)
                .filter(|h| h.state.is_some_and(|s| s.in_recovery))
                .collect();
            if standbys.is_empty() {
                hosts.iter().filter(works).collect()
            } else {
                standbys
            }
        }
        _ => hosts
            .iter()
            .filter(works)
            .filter(|h| h.state.is_none_or(|s| s.satisfies(want)))
            .collect(),
    };
    match (random, matching.as_slice()) {
        (_, []) => None,
        (false, [first, ..]) | (true, [first]) => Some(first.host.clone()),
        (true, all) => Some(format!(
            "one of {} (load_balance_hosts=random)",
            all.iter()
                .map(|h| h.host.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A host that is not the session type asked for: name the host in the list that is, or say
/// that none is.
fn session_type_fixes(hosts: &mut [HostReport], want: TargetSessionAttrs) {
    let matching: Vec<(String, &'static str)> = hosts
        .iter()
        .filter_map(|h| Some((h.host.clone(), h.state.filter(|s| s.satisfies(want))?)))
        .map(|(h, s)| (h, s.describe()))
        .collect();
    for h in hosts.iter_mut() {
        let Some(state) = h.state else { continue };
        let Some(layer) = h
            .layers
            .iter_mut()
            .find(|l| l.layer == "recovery" && l.status == Status::Fail)
        else {
            continue;
        };
        let unlock = if state.read_only && !state.in_recovery {
            " (if this server should take writes, end the read-only default: ALTER SYSTEM RESET \
             default_transaction_read_only; SELECT pg_reload_conf())"
        } else {
            ""
        };
        layer.fix = Some(match matching.first() {
            Some((other, desc)) => format!(
                "{other} in the host list is {desc} and satisfies \
                 target_session_attrs={want}: a connect skips {} and uses {other}; list \
                 {other} first to save an attempt{unlock}",
                h.host
            ),
            None => format!(
                "no host in the list satisfies target_session_attrs={want} ({} is {}): add the \
                 primary to the host list (host=a,b,...), or relax target_session_attrs{unlock}",
                h.host,
                state.describe()
            ),
        });
    }
}
