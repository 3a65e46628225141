//! `pgsteady slot`: is this replication slot there, can the consumer resume from its stored
//! offset, and how much WAL does the slot hold? Waits for the server like `wait` (same
//! target parsing, bounded polling and failure classification), then reads the slot and the
//! server's position in one round trip and classifies them with `pgsteady_slot`.

use std::process::ExitCode;
use std::time::Duration;

use pgsteady::FailFastClass;
use pgsteady_slot::{self as slot, Lsn, SlotState, Verdict};
use serde_json::{Value, json};

use crate::common::{Output, resolve_target};
use crate::exit;
use crate::probe::Failure;
use crate::report::Reporter;
use crate::slot_text;
use crate::wait::{self, Stopped, parse_class};

/// The slot is missing.
pub(crate) const MISSING: u8 = 6;
/// The slot is lost, or the offset cannot be used (gap, ahead): re-snapshot.
pub(crate) const OFFSET_UNUSABLE: u8 = 7;
/// `--strict`: a warning (inactive, extended, unreserved) holds.
pub(crate) const STRICT_WARNING: u8 = 8;

const HELP: &str = "\
States (several can hold; the worst decides):
  ok          exists, active, WAL reserved; lag in bytes
  inactive    no consumer attached: the slot retains WAL (bytes shown)
  extended    holds more WAL than max_wal_size (safe_wal_size shown)
  unreserved  its WAL goes at the next checkpoint unless it catches up
  gap         --offset is below confirmed_flush_lsn: changes in between cannot be replayed
  ahead       --offset is beyond this server's WAL (another cluster, timeline or a restore)
  lost        required WAL removed: decoding fails (55000)
  missing     no such slot on this server

Exit codes:
  0  the slot exists and the offset (if given) can be used; warnings are printed
  1  the server was not ready before the timeout (the last reason is printed)
  2  usage or configuration error: bad slot name, bad LSN, bad target (nothing was tried)
  3  permanent connection error: authentication failed, database missing, TLS refused
  6  missing
  7  lost, gap or ahead: the offset cannot be used, the consumer must re-snapshot
  8  with --strict: a warning holds (inactive, extended, unreserved)

A start script:
  pgsteady slot debezium --offset \"$LSN\" || case $? in 6|7) reset_offset;; *) exit 1;; esac";

/// Arguments of `pgsteady slot`.
#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub(crate) struct SlotArgs {
    /// The replication slot's name (with --all: the target).
    #[arg(required_unless_present = "all", value_name = "NAME")]
    name: Option<String>,
    /// A postgresql:// URL or a key=value connection string. Default: $DATABASE_URL, then the
    /// PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...) and ~/.pgpass.
    target: Option<String>,
    /// List every slot with its state instead of checking one.
    #[arg(long, conflicts_with = "offset")]
    all: bool,
    /// The consumer's stored offset, e.g. 16/B374D848: is it still within the slot's range?
    #[arg(long, value_name = "LSN")]
    offset: Option<String>,
    /// Give up waiting for the server after this long (e.g. 60s, 2m, 500ms).
    #[arg(long, default_value = "60s", value_parser = crate::common::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Bound on one connection attempt. Default: the target's connect_timeout, else 5s.
    #[arg(long, value_parser = crate::common::parse_duration, value_name = "DURATION")]
    attempt_timeout: Option<Duration>,
    /// Also retry these normally permanent failures, comma-separated: auth, missing-db,
    /// undefined-object, tls, session-type (as `wait --retry-on`).
    #[arg(long, value_delimiter = ',', value_parser = parse_class, value_name = "CLASSES")]
    retry_on: Vec<FailFastClass>,
    /// Exit 8 when a warning holds (inactive, extended, unreserved).
    #[arg(long)]
    strict: bool,
    /// Print only failures and exit codes' reasons.
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object on stdout (with --all, an array).
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// What to read.
#[derive(Debug)]
enum What {
    One { name: String, offset: Option<Lsn> },
    All,
}

/// What `slot` will do, validated before any network I/O.
#[derive(Debug)]
struct Plan {
    what: What,
    /// How to wait for the server: `wait`'s plan (target, bounds, retried failures).
    wait: wait::Plan,
    strict: bool,
    output: Output,
}

impl Plan {
    fn new(args: SlotArgs) -> Result<Plan, crate::common::PlanError> {
        let (what, target) = if args.all {
            if args.target.is_some() {
                return Err(crate::common::PlanError::Arg(
                    "with --all give at most one argument, the target".to_owned(),
                ));
            }
            (What::All, args.name)
        } else {
            let name = args.name.unwrap_or_default();
            slot::validate_name(&name)?;
            let offset = match args.offset {
                Some(text) => Some(
                    text.parse::<Lsn>()
                        .map_err(|e| crate::common::PlanError::Arg(format!("--offset: {e:#}")))?,
                ),
                None => None,
            };
            (What::One { name, offset }, args.target)
        };
        let config = resolve_target(target.as_deref())?;
        let output = Output::choose(args.quiet, args.json);
        // Progress lines as `wait` prints them; none with --json (stdout holds one object).
        let progress = match output {
            Output::Json => Output::Quiet,
            other => other,
        };
        Ok(Plan {
            what,
            wait: wait::Plan::for_config(wait::Wanted {
                config,
                timeout: args.timeout,
                attempt_timeout: args.attempt_timeout,
                retry_on: args.retry_on,
                query: String::new(),
                output: progress,
                name: "pgsteady slot",
            }),
            strict: args.strict,
            output,
        })
    }

    fn slot_name(&self) -> Option<&str> {
        match &self.what {
            What::One { name, .. } => Some(name),
            What::All => None,
        }
    }
}

/// What was read.
#[derive(Debug)]
enum Found {
    One(Box<Verdict>),
    All(Vec<Verdict>),
}

pub(crate) async fn run(args: SlotArgs) -> ExitCode {
    let output = Output::choose(args.quiet, args.json);
    let name = if args.all { None } else { args.name.clone() };
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(e) => {
            // Never echo a name that failed validation: it may be a misplaced target.
            let name = name.filter(|n| slot::validate_name(n).is_ok());
            fail(
                output,
                name.as_deref(),
                "",
                exit::USAGE,
                e.reason(),
                &format!("{e:#}"),
            );
            return exit::code(exit::USAGE);
        }
    };
    match read(&plan).await {
        Ok(found) => exit::code(report(&plan, &found)),
        Err(stopped) => {
            let target = plan.wait.config.to_string();
            fail(
                plan.output,
                plan.slot_name(),
                &target,
                stopped.code,
                stopped.reason,
                &stopped.message,
            );
            exit::code(stopped.code)
        }
    }
}

/// Waits for the server as `wait` does (same polling policy, same classification of
/// failures), then reads the slot(s) on the connection that answered.
async fn read(plan: &Plan) -> Result<Found, Stopped> {
    let w = &plan.wait;
    let mut reporter = Reporter::new(w.output(), w.name, w.config.to_string());
    let connector = wait::connector(w)?;
    let read_once = |budget| {
        let connector = &connector;
        async move {
            let connected = connector
                .connect_within(budget)
                .await
                .map_err(Failure::Connect)?;
            let client = &connected.client;
            match &plan.what {
                What::One { name, offset } => slot::check(client, name, *offset)
                    .await
                    .map(|v| Found::One(Box::new(v)))
                    .map_err(failure),
                What::All => slot::check_all(client)
                    .await
                    .map(Found::All)
                    .map_err(failure),
            }
        }
    };
    let (found, _, _) = wait::until_ready(w, &connector, &mut reporter, read_once).await?;
    Ok(found)
}

/// A slot reader's error as a probe failure: the connection layer's error as it is (its
/// SQLSTATE and classification decide), the reader's own (no position yet, an answer no
/// PostgreSQL gives) by whether asking again may help.
fn failure(e: slot::Error) -> Failure {
    let transient = e.is_transient();
    match e {
        slot::Error::Query(e) => Failure::Query(e),
        other => Failure::Answer {
            message: format!("{other:#}"),
            transient,
        },
    }
}

/// The exit code for the worst state.
pub(crate) fn exit_code(worst: SlotState, strict: bool) -> u8 {
    match worst {
        SlotState::Missing => MISSING,
        s if s.blocks_offset() => OFFSET_UNUSABLE,
        s if s.is_warning() && strict => STRICT_WARNING,
        _ => exit::READY,
    }
}

/// Prints what was found; returns the exit code.
fn report(plan: &Plan, found: &Found) -> u8 {
    let target = plan.wait.config.to_string();
    match found {
        Found::One(v) => {
            let code = exit_code(v.state, plan.strict);
            match plan.output {
                Output::Json => {
                    let mut obj = slot_text::to_json(v);
                    obj["exit_code"] = json!(code);
                    obj["target"] = json!(target);
                    println!("{obj}");
                }
                Output::Quiet => {}
                Output::Lines | Output::Tty => print_one(v),
            }
            if code != exit::READY && plan.output != Output::Json {
                eprintln!("pgsteady slot: {}", slot_text::summary(v));
            }
            code
        }
        Found::All(all) => {
            let worst = all.iter().map(|v| v.state).max().unwrap_or(SlotState::Ok);
            let code = exit_code(worst, plan.strict);
            match plan.output {
                Output::Json => {
                    let rows: Vec<Value> = all
                        .iter()
                        .map(|v| {
                            let mut obj = slot_text::to_json(v);
                            obj["exit_code"] = json!(exit_code(v.state, plan.strict));
                            obj
                        })
                        .collect();
                    println!("{}", Value::Array(rows));
                }
                Output::Quiet => {}
                Output::Lines | Output::Tty => print_table(all),
            }
            if code != exit::READY && plan.output != Output::Json {
                for v in all.iter().filter(|v| exit_code(v.state, plan.strict) != 0) {
                    eprintln!("pgsteady slot: {}", slot_text::summary(v));
                }
            }
            code
        }
    }
}

fn lsn(l: Option<Lsn>) -> String {
    l.map_or_else(|| "-".to_owned(), |l| l.to_string())
}

fn bytes(b: Option<u64>) -> String {
    match b {
        None => "-".to_owned(),
        Some(b) if b < 1024 => format!("{b} B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / 1048576.0),
        Some(b) => format!("{:.1} GiB", b as f64 / 1073741824.0),
    }
}

fn states(v: &Verdict) -> String {
    v.states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn print_one(v: &Verdict) {
    println!("slot {}: {}", v.slot, states(v));
    for line in slot_text::details(v) {
        println!("  {line}");
    }
    let f = v.facts.as_ref();
    if let Some(f) = f {
        let mut kind = f.slot_type.as_str().to_owned();
        if let Some(plugin) = &f.plugin {
            kind.push_str(&format!(", plugin {plugin}"));
        }
        if let Some(db) = &f.database {
            kind.push_str(&format!(", database {db}"));
        }
        println!(
            "  {kind}; active {}{}",
            if f.active { "yes" } else { "no" },
            f.active_pid
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default()
        );
        println!(
            "  restart_lsn {}  confirmed_flush_lsn {}  wal_status {}  safe_wal_size {}",
            lsn(f.restart_lsn),
            lsn(f.confirmed_flush_lsn),
            f.wal_status.map_or("-", |w| w.as_str()),
            f.safe_wal_size
                .map_or_else(|| "-".to_owned(), |s| format!("{s} bytes"))
        );
    }
    println!(
        "  server position {}{}  offset {}  retained {}  lag {}",
        v.position.lsn,
        if v.position.in_recovery {
            " (standby, replayed)"
        } else {
            ""
        },
        lsn(v.offset),
        bytes(v.retained_bytes),
        bytes(v.lag_bytes)
    );
}

fn print_table(all: &[Verdict]) {
    if all.is_empty() {
        println!("no replication slots on this server");
        return;
    }
    let rows: Vec<[String; 8]> = all
        .iter()
        .map(|v| {
            let f = v.facts.as_ref();
            [
                v.slot.clone(),
                f.map_or("-", |f| f.slot_type.as_str()).to_owned(),
                f.map_or("-", |f| if f.active { "yes" } else { "no" })
                    .to_owned(),
                states(v),
                bytes(v.retained_bytes),
                bytes(v.lag_bytes),
                f.and_then(|f| f.wal_status)
                    .map_or("-", |w| w.as_str())
                    .to_owned(),
                f.and_then(|f| f.safe_wal_size)
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            ]
        })
        .collect();
    let head = [
        "SLOT",
        "TYPE",
        "ACTIVE",
        "STATE",
        "RETAINED",
        "LAG",
        "WAL_STATUS",
        "SAFE_WAL_SIZE",
    ];
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(head.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A failure before a verdict (exit 1, 2, 3): a JSON object on stdout with --json, a line on
/// stderr otherwise.
fn fail(
    output: Output,
    slot: Option<&str>,
    target: &str,
    code: u8,
    reason: Option<pgsteady::Reason>,
    message: &str,
) {
    if output == Output::Json {
        println!(
            "{}",
            json!({
                "slot": slot,
                "state": null,
                "states": [],
                "exit_code": code,
                "reason": reason.map(pgsteady::Reason::as_str),
                "error": message,
                "target": target,
            })
        );
    } else {
        Reporter::new(Output::Quiet, "pgsteady slot", target.to_owned())
            .failed(code, reason, message);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SlotArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["slot"];
        argv.extend_from_slice(args);
        let args = Cli::try_parse_from(argv).map_err(|e| e.to_string())?.args;
        Plan::new(args).map_err(|e| e.to_string())
    }

    #[test]
    fn exit_codes_per_state() {
        use SlotState::*;
        for (state, plain, strict) in [
            (Ok, 0, 0),
            (Inactive, 0, 8),
            (Extended, 0, 8),
            (Unreserved, 0, 8),
            (Gap, 7, 7),
            (Ahead, 7, 7),
            (Lost, 7, 7),
            (Missing, 6, 6),
        ] {
            assert_eq!(exit_code(state, false), plain, "{state}");
            assert_eq!(exit_code(state, true), strict, "{state}");
        }
    }

    #[test]
    fn plans() {
        let p = plan(&["debezium", "postgresql://h/db", "--offset", "16/B374D848"]).unwrap();
        match p.what {
            What::One { name, offset } => {
                assert_eq!(name, "debezium");
                assert_eq!(offset, Some("16/B374D848".parse().unwrap()));
            }
            What::All => panic!("one slot"),
        }
        let p = plan(&["--all", "postgresql://h/db"]).unwrap();
        assert!(matches!(p.what, What::All));
        assert_eq!(p.wait.config.dbname, "db");
        for (bad, needle) in [
            ("16/ZZ", "`16/ZZ` is not an LSN"),
            ("abc", "`abc` is not an LSN"),
            ("", "an empty string is not an LSN"),
        ] {
            let err = plan(&["debezium", "postgresql://h/db", "--offset", bad]).unwrap_err();
            assert!(err.starts_with("--offset: "), "{err}");
            assert!(err.contains(needle), "{err}");
        }
        let err = plan(&["Bad-Name", "postgresql://h/db"]).unwrap_err();
        assert!(
            err.contains("`Bad-Name` is not a replication slot name"),
            "{err}"
        );
        let err = plan(&["postgresql://u:s3cret@h/db"]).unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(plan(&[]).is_err(), "a name or --all is required");
        assert!(plan(&["--all", "--offset", "0/1"]).is_err());
        assert!(plan(&["--all", "postgresql://h/db", "extra"]).is_err());
        let err = plan(&["debezium", "db.example.com"]).unwrap_err();
        assert!(err.contains("neither a postgresql:// URL"), "{err}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(None), "-");
        assert_eq!(bytes(Some(10)), "10 B");
        assert_eq!(bytes(Some(16 * 1024 * 1024)), "16.0 MiB");
    }
}
