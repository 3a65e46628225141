//! `pgsteady doctor`: arguments, the plan, the pgsteady-doctor library's run, rendering and
//! the exit code. The layers and their fixes are the library's (docs/doctor.md).

use std::process::ExitCode;
use std::time::Duration;

use pgsteady::{Connector, Reason};
use pgsteady_doctor::{Options, Report, Status};

use crate::common::resolve_target;
use crate::exit;

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
    #[arg(long, default_value = "3s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Bound on the whole run, over every host.
    #[arg(long, default_value = "60s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    max_time: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// A Patroni REST API address (http://HOST:PORT, repeatable): check that Patroni's view
    /// (GET /patroni, GET /cluster) agrees with each member's own pg_is_in_recovery().
    #[arg(long, value_name = "URL", value_parser = PatroniUrl)]
    patroni: Vec<String>,
}

/// `--patroni`'s parser. Not a plain function: clap repeats a rejected value in its error,
/// and an address may carry a password (`http://user:password@host/`); this error shows the
/// address with the credentials redacted, and only once.
#[derive(Debug, Clone, Copy)]
struct PatroniUrl;

impl clap::builder::TypedValueParser for PatroniUrl {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use clap::error::ErrorKind;
        let invalid = |kind, text: String| {
            clap::Error::raw(
                kind,
                format!("invalid value for '--patroni <URL>': {text}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid(ErrorKind::InvalidUtf8, "not valid UTF-8".to_owned()))?;
        pgsteady_doctor::parse_patroni_url(text).map_err(|e| invalid(ErrorKind::ValueValidation, e))
    }
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
            let mut report = Report::config_error(format!("{e:#}"), e.reason());
            report.exit_code = exit::USAGE;
            print(&report, args.json);
            return exit::code(exit::USAGE);
        }
        // TLS settings that cannot be loaded: reported per host by the tls layer.
        Err(_) => match resolve_target(args.target.as_deref()) {
            Ok(c) => c,
            Err(_) => return exit::code(exit::USAGE),
        },
    };
    let options = Options {
        timeout: args.timeout,
        max_time: args.max_time,
        patroni: args.patroni,
        max_message_len: exit::MAX_MESSAGE_LEN,
    };
    let mut report = pgsteady_doctor::run(&config, args.target.as_deref(), &options).await;
    report.exit_code = exit_code(&report);
    print(&report, args.json);
    exit::code(report.exit_code)
}

/// The code follows the failure's classification, as for check, wait and migrate: a
/// non-PostgreSQL server or a rejected option is permanent whichever layer saw it.
fn exit_code(report: &Report) -> u8 {
    match &report.broken {
        None if report.not_checked > 0 && !report.healthy() => exit::NOT_READY,
        None => exit::READY,
        Some(b) => match b.layer {
            "tls" | "auth" | "database" | "recovery" => exit::PERMANENT,
            _ => b.cause.map_or(exit::NOT_READY, exit::for_reason),
        },
    }
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
