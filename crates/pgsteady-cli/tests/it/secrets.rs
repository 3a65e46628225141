//! No command ever shows the password: random configurations (a URL, key=value pairs,
//! `PGPASSWORD`, a passfile) carrying a random password of printable characters (URL and
//! quoting specials included) run through every command against a port where nothing listens
//! and against a server that refuses the password, with text and JSON output; stdout and
//! stderr must hold the password in no form (as given, percent-encoded, JSON-escaped).
//!
//! About 40 cases by default so the suite stays quick; `PROPTEST_CASES` runs more.

use std::path::Path;
use std::process::{Command, Stdio};

use pgsteady_testkit::fake::{Behavior, FakeServer};
use proptest::prelude::*;

/// How the password reaches the command.
#[derive(Debug, Clone, Copy)]
enum Source {
    Uri,
    KeyValue,
    EnvPassword,
    PassFile,
}

/// Every byte outside RFC 3986's unreserved set as `%XX`, in upper (`upper`) or lower case.
fn percent_encoded(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The form in which `output` shows `password`, if it does: as given, percent-encoded (every
/// special, upper or lower case hex), or escaped for JSON.
fn leaked(output: &str, password: &str) -> Option<&'static str> {
    let json = serde_json::to_string(password).expect("a string serializes");
    let forms = [
        ("as given", password.to_owned()),
        ("percent-encoded", percent_encoded(password, true)),
        (
            "percent-encoded (lower case)",
            percent_encoded(password, false),
        ),
        ("JSON-escaped", json[1..json.len() - 1].to_owned()),
    ];
    forms
        .into_iter()
        .find(|(_, form)| output.contains(form.as_str()))
        .map(|(name, _)| name)
}

/// A value quoted for a key=value string: `'...'` with `\` and `'` escaped.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A passfile field: `:` and `\` escaped.
fn pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// Runs `pgsteady args...` with `env`, HOME in `home`, no PG* variable of the test's own;
/// stdout and stderr joined.
fn run(args: &[String], env: &[(String, String)], home: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgsteady"));
    cmd.args(args)
        .env("HOME", home)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().expect("pgsteady runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40)
}

/// One configuration through every command; the first leak found, named.
fn check_every_command(
    password: &str,
    source: Source,
    port: u16,
    json: bool,
) -> Result<(), TestCaseError> {
    let home = tempfile::tempdir().unwrap();
    let migrations = tempfile::tempdir().unwrap();
    let user = "app";
    let plain = format!("postgresql://{user}@127.0.0.1:{port}/app?sslmode=disable");
    let mut env = Vec::new();
    let target = match source {
        Source::Uri => format!(
            "postgresql://{user}:{}@127.0.0.1:{port}/app?sslmode=disable",
            percent_encoded(password, true)
        ),
        Source::KeyValue => format!(
            "host=127.0.0.1 port={port} user={user} dbname=app sslmode=disable password={}",
            quoted(password)
        ),
        Source::EnvPassword => {
            env.push(("PGPASSWORD".to_owned(), password.to_owned()));
            plain
        }
        Source::PassFile => {
            let path = home.path().join("pgpass");
            std::fs::write(
                &path,
                format!("127.0.0.1:{port}:app:{user}:{}\n", pgpass_field(password)),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            env.push(("PGPASSFILE".to_owned(), path.display().to_string()));
            plain
        }
    };
    let dir = migrations.path().display().to_string();
    let t = target.as_str();
    let mut runs: Vec<Vec<&str>> = vec![
        vec!["check", t, "--timeout", "2s"],
        vec!["wait", t, "--timeout", "150ms"],
        vec!["doctor", t, "--timeout", "1s", "--max-time", "3s"],
        vec!["migrate", "status", t, "--dir", &dir, "--timeout", "150ms"],
        vec!["slot", "some_slot", t, "--timeout", "150ms"],
        vec!["run", t, "--timeout", "150ms", "--", "true"],
    ];
    if json {
        for args in &mut runs {
            // Before `--`: `run`'s command takes the rest.
            let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
            args.insert(at, "--json");
        }
    }
    let done: Vec<(Vec<&str>, Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|args| {
                let env = &env;
                let home = home.path();
                s.spawn(move || {
                    let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
                    let (code, out) = run(&owned, env, home);
                    (args.clone(), code, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (args, code, out) in done {
        // Every command failed (nothing answers: 1; the password is refused: 3), cleanly, and
        // not for a usage error (2): the configuration was taken, the password read.
        prop_assert!(
            matches!(code, Some(1 | 3)),
            "{source:?}: `{}` exited {code:?}",
            args[0]
        );
        if let Some(form) = leaked(&out, password) {
            // The output is not printed: it holds the password.
            return Err(TestCaseError::fail(format!(
                "{source:?}: `{}` shows the password {form}",
                args[0]
            )));
        }
    }
    Ok(())
}

#[test]
fn the_checker_catches_a_planted_password() {
    // Negative control for the property below: each form it looks for is found when an
    // output does hold it, and a clean output passes.
    let pw = "p@ss w/rd:\"x\\%";
    assert_eq!(
        leaked(&format!("error: password={pw}"), pw),
        Some("as given")
    );
    assert_eq!(
        leaked("postgresql://app:p%40ss%20w%2Frd%3A%22x%5C%25@db/app", pw),
        Some("percent-encoded")
    );
    assert_eq!(
        leaked("postgresql://app:p%40ss%20w%2frd%3a%22x%5c%25@db/app", pw),
        Some("percent-encoded (lower case)")
    );
    assert_eq!(
        leaked(r#"{"message":"password p@ss w/rd:\"x\\% refused"}"#, pw),
        Some("JSON-escaped")
    );
    assert_eq!(leaked("postgresql://app:***@db/app", pw), None);
}

#[test]
fn no_command_shows_the_password() {
    // The server that refuses every password (28P01), on a runtime of its own that outlives
    // the cases.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(FakeServer::start(Behavior::PasswordRequest))
        .unwrap();
    let refusing = server.port();
    let config = ProptestConfig {
        cases: cases(),
        // The output of a failing case holds the password: shrinking it runs every command
        // again per step; a few steps are enough to show which command leaked.
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let sources = prop_oneof![
        Just(Source::Uri),
        Just(Source::KeyValue),
        Just(Source::EnvPassword),
        Just(Source::PassFile),
    ];
    proptest!(config, |(
        password in "[ -~]{8,40}",
        source in sources,
        listening in any::<bool>(),
        json in any::<bool>(),
    )| {
        let port = if listening { refusing } else { closed_port() };
        check_every_command(&password, source, port, json)?;
    });
    // The refusing server was reached (a password was sent to it and refused), not only the
    // closed port.
    assert!(server.connections() > 0);
    drop(server);
}
