//! `pgsteady doctor`: walk the layers between this process and the database and name the first
//! broken one: config, DNS, TCP (with the likely cause of a refused port), TLS, startup,
//! authentication, database, server version, recovery / read-only, connection headroom,
//! round-trip time.

mod compose;
mod layers;
mod listeners;
mod pooler;

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::common::{parse_duration, resolve_target};
use crate::exit;
use layers::{Layer, Status};

const HELP: &str = "\
Exit codes:
  0  every layer works for at least one host
  1  a transient layer is broken (DNS, TCP, startup, headroom, hung server)
  2  the configuration is invalid
  3  a permanent layer is broken (TLS, authentication, database, session type)";

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
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct HostReport {
    host: String,
    layers: Vec<Layer>,
}

#[derive(Debug, Serialize)]
struct Broken {
    layer: &'static str,
    host: Option<String>,
    detail: String,
    hints: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The redacted configuration.
    config: String,
    ok: bool,
    exit_code: u8,
    broken: Option<Broken>,
    hosts: Vec<HostReport>,
}

pub(crate) async fn run(args: DoctorArgs) -> ExitCode {
    // Validate everything before touching the network.
    let config = match resolve_target(args.target.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let report = Report {
                config: String::new(),
                ok: false,
                exit_code: exit::USAGE,
                broken: Some(Broken {
                    layer: "config",
                    host: None,
                    detail: e.to_string(),
                    hints: Vec::new(),
                }),
                hosts: Vec::new(),
            };
            print(&report, args.json);
            return exit::code(exit::USAGE);
        }
    };
    let mut hosts = Vec::new();
    for host in &config.hosts {
        let layers = layers::check_host(&config, host, args.timeout).await;
        hosts.push(HostReport {
            host: host.to_string(),
            layers,
        });
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
                })
        })
    };
    let exit_code = match &broken {
        None => exit::READY,
        Some(b) => match b.layer {
            "tls" | "auth" | "database" | "recovery" => exit::PERMANENT,
            _ => exit::NOT_READY,
        },
    };
    let report = Report {
        config: config.to_string(),
        ok: broken.is_none(),
        exit_code,
        broken,
        hosts,
    };
    print(&report, args.json);
    exit::code(exit_code)
}

fn print(report: &Report, json: bool) {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("pgsteady doctor: cannot encode the report: {e}"),
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
        }
    }
    match &report.broken {
        None => println!("all layers ok"),
        Some(b) if b.layer == "config" => {
            println!("{:<9} {:<4}  {}", "config", "FAIL", b.detail);
            println!("first broken layer: config");
        }
        Some(b) => {
            let host = b.host.as_deref().unwrap_or("");
            println!("first broken layer: {} ({host}): {}", b.layer, b.detail);
            if let Some(fix) = b.hints.first() {
                println!("fix: {fix}");
            }
        }
    }
}
