//! Doctor against answers a real PostgreSQL never gives: a fake server
//! (`pgsteady_testkit::fake`, `Behavior::Tables`) answers doctor's catalog queries with other
//! columns, absurd numbers, huge rows or control characters; and arguments that carry a
//! password or overflow the clock. Each test asserts the exit code (never 101, a panic) and
//! what the output shows.

use std::os::unix::fs::PermissionsExt;

use pgsteady_testkit::fake::{Behavior, FakeServer, Table};
use serde_json::Value;

use crate::{Finished, TestCommand};

/// The query behind doctor's version, recovery and headroom layers is the one that names
/// `superuser_reserved_connections`.
const FACTS: &str = "superuser_reserved_connections";
/// "Who holds the slots", run when no slot is free.
const HOLDERS: &str = "GROUP BY 1, 2, 3";

/// A complete, well-formed answer to the facts query, in the column order doctor asks for.
fn facts(overrides: &[(&str, &str)]) -> Table {
    let mut pairs = vec![
        ("server_version", "15.0"),
        ("in_recovery", "false"),
        ("read_only", "off"),
        ("max_connections", "100"),
        ("reserved", "3"),
        ("used", "2"),
        ("timeline", "1"),
        ("lag_bytes", "0"),
        ("replay_age", "0"),
    ];
    for (k, v) in overrides {
        if let Some(p) = pairs.iter_mut().find(|(n, _)| n == k) {
            p.1 = v;
        }
    }
    Table::one(FACTS, &pairs)
}

async fn doctor(server: &FakeServer, extra: &[&str]) -> Finished {
    let mut args = vec!["doctor".to_owned(), server.url("app", "app")];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    TestCommand::new(args).run().await
}

fn json(f: &Finished) -> Value {
    serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {f:#?}"))
}

/// Fewer columns than asked for, or none of the names: a finding (not PostgreSQL's
/// answer), never a panic ("invalid column" before).
#[tokio::test]
async fn an_answer_with_other_columns_is_a_finding_not_a_panic() {
    let answers = [
        (
            Table::one(
                FACTS,
                &[("server_version", "15.0"), ("in_recovery", "false")],
            ),
            "the server's answer has no column `read_only`",
        ),
        (
            Table::one(FACTS, &[("?column?", "1")]),
            "the server's answer has no column `server_version`",
        ),
        // A row with fewer values than its description announces: tokio-postgres refuses it.
        (
            Table {
                when: FACTS.into(),
                columns: vec!["server_version".into(), "in_recovery".into()],
                row: vec![Some("15.0".into())],
                rows: 1,
            },
            "cannot query the server: ",
        ),
    ];
    for (answer, want) in answers {
        let server = FakeServer::start(Behavior::Tables(vec![answer.clone()]))
            .await
            .unwrap();
        let done = doctor(&server, &["--json"]).await;
        done.assert_exit_code(3);
        let report = json(&done);
        assert_eq!(
            report["broken"]["layer"], "version",
            "{answer:?}: {report:#}"
        );
        let detail = report["broken"]["detail"].as_str().unwrap();
        assert!(detail.starts_with(want), "{detail}");
        assert!(
            report["broken"]["fix"]
                .as_str()
                .unwrap()
                .contains("not PostgreSQL's"),
            "{report:#}"
        );
    }
    // Negative control: the same fake with a complete answer passes every layer up to
    // rtt, so the failures above come from the columns alone.
    let server = FakeServer::start(Behavior::Tables(vec![facts(&[])]))
        .await
        .unwrap();
    let done = doctor(&server, &["--json"]).await;
    let report = json(&done);
    assert_eq!(
        report["hosts"][0]["layers"][6]["layer"], "version",
        "{report:#}"
    );
    assert_eq!(report["hosts"][0]["layers"][6]["detail"], "PostgreSQL 15.0");
    assert_eq!(
        report["hosts"][0]["layers"][7]["status"], "ok",
        "{report:#}"
    );
}

/// Numbers that are not numbers, or that overflow the headroom arithmetic.
#[tokio::test]
async fn absurd_numbers_are_findings_not_panics() {
    let server = FakeServer::start(Behavior::Tables(vec![facts(&[("used", "lots")])]))
        .await
        .unwrap();
    let done = doctor(&server, &["--json"]).await;
    done.assert_exit_code(3);
    let report = json(&done);
    assert_eq!(
        report["broken"]["detail"],
        "the server's answer has `lots` for `used`, not a number"
    );
    let server = FakeServer::start(Behavior::Tables(vec![facts(&[
        ("max_connections", "-9223372036854775808"),
        ("reserved", "9223372036854775807"),
    ])]))
    .await
    .unwrap();
    let done = doctor(&server, &["--json"]).await;
    done.assert_exit_code(1);
    assert_eq!(json(&done)["broken"]["layer"], "headroom");
}

/// "Who holds the slots" answered with 200 rows of 100 KB: doctor reads at most 1 MiB of
/// its own queries' answers, and says it cannot see the other sessions (before, all 20 MB
/// were read and printed in the fix).
#[tokio::test]
async fn the_slot_holders_answer_is_capped_by_bytes() {
    let big = "x".repeat(100_000);
    let holders = Table {
        when: HOLDERS.into(),
        columns: ["usename", "application", "client", "sessions"]
            .map(String::from)
            .to_vec(),
        row: vec![
            Some(big.clone()),
            Some(big),
            Some("local socket".into()),
            Some("1".into()),
        ],
        rows: 200,
    };
    let full = facts(&[("max_connections", "5"), ("reserved", "3"), ("used", "2")]);
    let server = FakeServer::start(Behavior::Tables(vec![full.clone(), holders]))
        .await
        .unwrap();
    let done = doctor(&server, &[]).await;
    done.assert_exit_code(1);
    assert!(
        done.stdout.len() < 64 * 1024,
        "{} bytes of output",
        done.stdout.len()
    );
    assert!(
        done.stdout.contains("doctor cannot see the other sessions"),
        "{}",
        done.stdout
    );
    // Negative control: one small row is read and named.
    let holder = Table::one(
        HOLDERS,
        &[
            ("usename", "app"),
            ("application", "api"),
            ("client", "10.0.0.7"),
            ("sessions", "2"),
        ],
    );
    let server = FakeServer::start(Behavior::Tables(vec![full, holder]))
        .await
        .unwrap();
    let done = doctor(&server, &[]).await;
    assert!(
        done.stdout
            .contains("held besides doctor's own: 2 by user app application `api` from 10.0.0.7"),
        "{}",
        done.stdout
    );
}

/// Control characters in server_version and the timeline are shown escaped: a server cannot
/// retitle the terminal or forge report lines.
#[tokio::test]
async fn server_values_are_escaped_in_the_text_report() {
    let server = FakeServer::start(Behavior::Tables(vec![facts(&[
        ("server_version", "15.0\x1b]0;pwned\x07"),
        ("timeline", "1\nall layers ok"),
    ])]))
    .await
    .unwrap();
    let done = doctor(&server, &[]).await;
    assert!(!done.stdout.contains('\x1b'), "{:?}", done.stdout);
    assert!(
        done.stdout.contains("PostgreSQL 15.0\\u{1b}]0;pwned\\u{7}"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("timeline 1\\nall layers ok"),
        "{}",
        done.stdout
    );
}

/// A password file's lines and its path come from outside too: escaped in the auth fix.
#[tokio::test]
async fn password_file_lines_and_paths_are_escaped() {
    let server = FakeServer::start(Behavior::PasswordRequest).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass\x1b[2Jfile");
    std::fs::write(&file, "other\x1b]0;x\x07:5432:app:app:pw\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let done = TestCommand::new(["doctor", &server.url("app", "app")])
        .env("PGPASSFILE", file.to_str().unwrap())
        .run()
        .await;
    done.assert_exit_code(3);
    assert!(!done.stdout.contains('\x1b'), "{:?}", done.stdout);
    assert!(
        done.stdout.contains("pass\\u{1b}[2Jfile"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("other\\u{1b}]0;x\\u{7}"),
        "{}",
        done.stdout
    );
}

/// `--patroni` with credentials in the address: refused before anything runs, and the
/// password is in no output (clap used to repeat the value, and so did doctor's message),
/// also when it holds what would end an authority (`/`, `?`, `#`, `@`), in text and JSON.
#[tokio::test]
async fn a_patroni_password_is_never_echoed() {
    for (url, shown) in [
        (
            "http://u:Secr3tPw@127.0.0.1:8008/",
            "http://<redacted>@127.0.0.1:8008/",
        ),
        (
            "http://u:Sec/r3tPw@127.0.0.1:8008/",
            "http://<redacted>@127.0.0.1:8008/",
        ),
        (
            "http://u:Sec?r3t#Pw@127.0.0.1:8008",
            "http://<redacted>@127.0.0.1:8008",
        ),
        (
            "http://u:Sec@r3tPw@127.0.0.1:8008",
            "http://<redacted>@127.0.0.1:8008",
        ),
        ("http:/u:Sec/r3tPw@127.0.0.1", "<redacted>@127.0.0.1"),
    ] {
        for json in [false, true] {
            let mut args = vec![
                "doctor",
                "postgresql://app@127.0.0.1:1/app",
                "--patroni",
                url,
            ];
            if json {
                args.push("--json");
            }
            let done = TestCommand::new(args).run().await;
            done.assert_exit_code(2)
                .assert_no_secret("Sec")
                .assert_no_secret("r3t");
            assert!(done.stderr().contains(shown), "{url}: {}", done.stderr());
        }
    }
}

/// Bounds too large for the clock: a clear usage error naming the flag (as for every
/// command's duration flags), not a panic on `Instant + Duration`.
#[tokio::test]
async fn a_max_time_past_the_clock_does_not_overflow() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("postgresql://app@127.0.0.1:{port}/app");
    let huge = "18446744073709551615s";
    for flags in [["--max-time", huge], ["--timeout", huge]] {
        let done = TestCommand::new(["doctor", &target, "--json", flags[0], flags[1]])
            .run()
            .await;
        done.assert_exit_code(2);
        assert!(
            done.stderr().contains(flags[0]) && done.stderr().contains("too long"),
            "{flags:?}: {}",
            done.stderr()
        );
    }
}
