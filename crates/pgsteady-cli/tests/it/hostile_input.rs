//! Hostile servers and odd input, round two: answers no PostgreSQL sends (a value that is not
//! UTF-8, another column count), floods that tokio-postgres would buffer without bound, and
//! arguments at the edge of their types. Each test asserts the exit code (never 101, a panic),
//! the message, and where memory was the failure the peak RSS of the pgsteady process.

use std::time::Duration;

use pgsteady_testkit::fake::{Behavior, FakeServer, Flood};

use crate::TestCommand;
use crate::hostile::{MB, http_status, listen_addr, run_measured, stop, watch_peak_rss};

/// The memory bound every command stays under against every flooding server.
const RSS_BOUND: u64 = 64 * MB;

fn rows(values: &[Option<&[u8]>], rows: usize) -> Behavior {
    Behavior::Rows {
        values: values.iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
        rows,
    }
}

/// A value that is not UTF-8: `check` and `wait` panicked in tokio-postgres' `get`.
/// Now a protocol violation, permanent like a framing one (exit 3, not retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_is_not_utf8_is_a_protocol_violation() {
    let server = FakeServer::start(rows(&[Some(b"\xff\xfe")], 1))
        .await
        .unwrap();
    let target = server.url("app", "db");
    let f = TestCommand::new(["check", &target, "--timeout", "5s", "--query", "SELECT x"])
        .run()
        .await;
    f.assert_exit_code(3);
    assert!(f.stderr.contains("not UTF-8 (column 1)"), "{f:#?}");
    let before = server.connections();
    let f = TestCommand::new(["wait", &target, "--timeout", "30s", "--query", "SELECT x"])
        .run()
        .await;
    f.assert_exit_code(3);
    assert_eq!(server.connections(), before + 1, "not retried: {f:#?}");

    // Negative control: the same server with a UTF-8 false is "not ready", not a violation.
    let server = FakeServer::start(rows(&[Some(b"false")], 1)).await.unwrap();
    let f = TestCommand::new([
        "check",
        &server.url("app", "db"),
        "--timeout",
        "5s",
        "--query",
        "SELECT x",
    ])
    .run()
    .await;
    f.assert_exit_code(1);
    assert!(f.stderr.contains("returned false"), "{f:#?}");
}

/// The slot reader on an answer with fewer columns panicked (`slot` exited 101; under
/// `serve --slot` the watcher died silently: `/readyz` said `slot_not_read_yet` forever and
/// the failure counter stayed 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_reader_refuses_another_column_count() {
    let server = FakeServer::start(rows(&[Some(b"false")], 1)).await.unwrap();
    let target = server.url("app", "db");
    let f = TestCommand::new(["slot", "debezium", &target, "--timeout", "5s"])
        .run()
        .await;
    assert_ne!(f.code, Some(101), "{f:#?}");
    f.assert_exit_code(3);
    assert!(
        f.stderr.contains("1 columns where 18 were asked for"),
        "{f:#?}"
    );

    let mut serve = TestCommand::new([
        "serve",
        &target,
        "--listen",
        "127.0.0.1:0",
        "--slot",
        "debezium",
        "--slot-ready",
        "--slot-interval",
        "200ms",
    ])
    .spawn();
    let addr = listen_addr(&mut serve).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // The watcher reads every 200 ms: wait (bounded) until it has failed at least twice, so
    // a watcher that died after one failure would not pass.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failures = metrics
            .lines()
            .find(|l| l.starts_with("pgsteady_slot_refresh_failures_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0);
        if failures >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        metrics.contains("pgsteady_slot_refresh_failures_total"),
        "{metrics}"
    );
    let readyz = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status().as_u16(), 503);
    let body: serde_json::Value = serde_json::from_str(&readyz.text().await.unwrap()).unwrap();
    assert_eq!(body["reason"], "slot_read_failed", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("1 columns where 18"),
        "{body}"
    );
    stop(serve).await;
}

/// Arguments at the edge of their types: a duration that overflows an Instant, a connection
/// limit over the semaphore's. Both panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_arguments_never_panic() {
    let server = FakeServer::start(Behavior::Hang).await.unwrap();
    let target = server.url("app", "db");
    for cmd in ["check", "wait"] {
        let f = TestCommand::new([cmd, &target, "--timeout", "18446744073709551615s"])
            .run()
            .await;
        f.assert_exit_code(2);
        assert!(f.stderr.contains("too long a duration"), "{cmd}: {f:#?}");
    }
    let mut serve = TestCommand::new([
        "serve",
        &target,
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "18446744073709551615",
    ])
    .spawn();
    let addr = listen_addr(&mut serve).await;
    assert_eq!(http_status(&addr, "/livez").await, Some(200));
    stop(serve).await;
}

/// The floods tokio-postgres buffers: start-up notices and parameter statuses (held until
/// ReadyForQuery), distinct parameter names after start-up (one value kept per name), and
/// 1 MiB rows (10,000 rows of up to 16 MiB each were accepted: `check` reached 6 GB).
fn floods() -> Vec<(&'static str, Behavior, &'static str)> {
    vec![
        (
            "startup notices",
            Behavior::Flood {
                message: Flood::Notices,
                at_startup: true,
            },
            "1048576 bytes of notices and parameter statuses",
        ),
        (
            "startup parameters",
            Behavior::Flood {
                message: Flood::Parameters,
                at_startup: true,
            },
            // 256 names of 1 KB: the name cap comes before the byte cap.
            "256 distinct parameter statuses",
        ),
        (
            "parameters after startup",
            Behavior::Flood {
                message: Flood::Parameters,
                at_startup: false,
            },
            "256 distinct parameter statuses",
        ),
        (
            "1 MiB rows",
            rows(&[Some(&[b'x'; 1 << 20])], 100_000),
            "more than 4194304 bytes",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_capped_in_bytes_for_check_and_wait() {
    for (name, behavior, limit) in floods() {
        let server = FakeServer::start(behavior).await.unwrap();
        let target = server.url("app", "db");
        let (f, peak) = run_measured(TestCommand::new([
            "check",
            &target,
            "--timeout",
            "10s",
            "--query",
            "SELECT x",
        ]))
        .await;
        eprintln!("check / {name}: peak {:.1} MB", peak as f64 / MB as f64);
        assert!(f.stderr.contains(limit), "check / {name}: {f:#?}");
        assert!(peak < RSS_BOUND, "check / {name}: {} MB", peak / MB);
        // Row floods are a query failure ("not ready"); the others break the protocol.
        f.assert_exit_code(if name == "1 MiB rows" { 1 } else { 3 });

        let (f, peak) = run_measured(TestCommand::new([
            "wait",
            &target,
            "--timeout",
            "3s",
            "--attempt-timeout",
            "2s",
            "--query",
            "SELECT x",
        ]))
        .await;
        eprintln!("wait / {name}: peak {:.1} MB", peak as f64 / MB as f64);
        assert!(f.stderr.contains(limit), "wait / {name}: {f:#?}");
        assert!(peak < RSS_BOUND, "wait / {name}: {} MB", peak / MB);
    }
}

/// `serve` retries against each flooding server for a few seconds: its memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_leave_serve_flat() {
    for (name, behavior, _) in floods() {
        let server = FakeServer::start(behavior).await.unwrap();
        let target = server.url("app", "db");
        let mut serve = TestCommand::new([
            "serve",
            &target,
            "--listen",
            "127.0.0.1:0",
            "--slot",
            "debezium",
            "--slot-interval",
            "200ms",
        ])
        .spawn();
        let peak = watch_peak_rss(serve.child.id().unwrap());
        let addr = listen_addr(&mut serve).await;
        for _ in 0..20 {
            // The row flood answers only queries that return rows (the slot reader's); the
            // session itself is fine.
            if name != "1 MiB rows" {
                assert_ne!(http_status(&addr, "/readyz").await, Some(200), "{name}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(server.connections() >= 1, "{name}: the fake was reached");
        stop(serve).await;
        let peak = peak.await.unwrap();
        eprintln!("serve / {name}: peak {:.1} MB", peak as f64 / MB as f64);
        assert!(peak < RSS_BOUND, "serve / {name}: {} MB", peak / MB);
    }
}

/// A SCRAM exchange that does not verify was retried as transient: `wait` sent a fresh
/// client proof to the impostor ~1,700 times a minute and exited 1 at its timeout. As libpq,
/// each fault now fails the connection for good (exit 3, one connection), and an iteration
/// count of 0, which postgres-protocol accepts, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scram_exchange_is_permanent() {
    use pgsteady_testkit::fake::ScramFault as F;
    for (fault, want) in [
        (F::BadSignature, "scram authentication failed"),
        (F::BadNonce, "scram authentication failed"),
        (F::InvalidProof, "scram authentication failed"),
        (F::MalformedFirst, "scram authentication failed"),
        (F::ZeroIterations, "iteration count of 0"),
        (F::TooManyIterations, "scram authentication failed"),
    ] {
        let server = FakeServer::start(Behavior::Scram(fault)).await.unwrap();
        let target = format!(
            "postgresql://app:S3cret-pw@127.0.0.1:{}/db?sslmode=disable",
            server.port()
        );
        let f = TestCommand::new(["wait", &target, "--timeout", "30s"])
            .run()
            .await;
        f.assert_exit_code(3);
        assert!(f.stderr.contains(want), "{fault:?}: {f:#?}");
        assert!(f.stderr.contains("not retried"), "{fault:?}: {f:#?}");
        f.assert_no_secret("S3cret-pw");
        assert_eq!(server.connections(), 1, "{fault:?}: retried: {f:#?}");
    }
}

/// A variable set to bytes that are not UTF-8 read as unset: `check` reported "ready" for
/// another database taken from `PG*` when `DATABASE_URL` was not UTF-8, a bad `PGHOST` or
/// `PGPORT` fell back to the defaults, a bad `PGPASSWORD` read as "no password". Now a
/// configuration error naming the variable, before any connection; so is a bad `HOME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_that_is_not_utf8_is_a_configuration_error() {
    // A server that would answer "ready": reaching it would be the silent fallback.
    let server = FakeServer::start(rows(&[Some(b"true")], 1)).await.unwrap();
    let port = server.port().to_string();
    // Every variable the target is resolved from: libpq's, DATABASE_URL, the service file's
    // (PGSERVICEFILE and PGSYSCONFDIR are read once a service is named), and HOME (the
    // default passfile and root certificate: a HOME that read as unset connected without them).
    let vars = [
        "DATABASE_URL",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGOPTIONS",
        "PGAPPNAME",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLNEGOTIATION",
        "PGCONNECT_TIMEOUT",
        "PGTARGETSESSIONATTRS",
        "PGLOADBALANCEHOSTS",
        "PGCHANNELBINDING",
        "PGGSSENCMODE",
        "PGCLIENTENCODING",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSYSCONFDIR",
        "HOME",
    ];
    for var in vars {
        let mut cmd = TestCommand::new(["check", "--timeout", "5s"])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", &port)
            .env("PGSSLMODE", "disable");
        if matches!(var, "PGSERVICEFILE" | "PGSYSCONFDIR") {
            cmd = cmd.env("PGSERVICE", "svc");
        }
        let f = cmd.env_bytes(var, b"S3cret\xff").run().await;
        f.assert_exit_code(2);
        assert!(
            f.stderr.contains(var) && f.stderr.contains("not valid UTF-8"),
            "{var}: {f:#?}"
        );
        f.assert_no_secret("S3cret");
    }
    assert_eq!(server.connections(), 0);
    // Negative control: the same environment, valid, reaches the server and is ready.
    let f = TestCommand::new(["check", "--timeout", "5s"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGSSLMODE", "disable")
        .env("PGUSER", "app")
        .run()
        .await;
    f.assert_exit_code(0);
    assert_eq!(server.connections(), 1);
}

/// The postmaster's "could not fork new process for connection" (in its pre-3.0 form, to the
/// TLS request or to the startup packet) exited 3 "not a PostgreSQL server". It is transient:
/// `wait` retries it, `check` says not ready (1), and the server's text is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_failure_is_transient() {
    let server = FakeServer::start(Behavior::ForkFailure).await.unwrap();
    for sslmode in ["disable", "prefer"] {
        let target = format!(
            "postgresql://app@127.0.0.1:{}/db?sslmode={sslmode}",
            server.port()
        );
        let f = TestCommand::new(["check", &target, "--timeout", "5s"])
            .run()
            .await;
        f.assert_exit_code(1);
        assert!(
            f.stderr
                .contains("could not fork new process for connection"),
            "{sslmode}: {f:#?}"
        );
        let before = server.connections();
        let f = TestCommand::new(["wait", &target, "--timeout", "2s"])
            .run()
            .await;
        f.assert_exit_code(1);
        assert!(server.connections() >= before + 2, "retried: {f:#?}");
    }
    // Negative control: garbage in place of the answer is still "not a PostgreSQL server".
    let http = FakeServer::start(Behavior::Http).await.unwrap();
    TestCommand::new(["check", &http.url("app", "db"), "--timeout", "5s"])
        .run()
        .await
        .assert_exit_code(3);
}

/// `keepalives_interval=99999999999` exited 1 "cannot set socket options" after retrying:
/// Linux refuses it on every socket, so it is a configuration error (2) before connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_values_the_kernel_refuses_exit_2() {
    let server = FakeServer::start(Behavior::Hang).await.unwrap();
    let target = format!(
        "host=127.0.0.1 port={} user=app sslmode=disable keepalives_interval=99999999999",
        server.port()
    );
    let f = TestCommand::new(["wait", &target, "--timeout", "5s"])
        .run()
        .await;
    f.assert_exit_code(2);
    assert!(f.stderr.contains("keepalives_interval"), "{f:#?}");
    assert_eq!(server.connections(), 0);
}

/// A NUL byte in a migration file looped "connection lost... reconnecting" and exited 1:
/// now a configuration error naming the file (2), before connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_byte_in_a_migration_exits_2_naming_the_file() {
    let server = FakeServer::start(Behavior::Hang).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_one.sql"), "SELECT 1;\nSELECT '\0';").unwrap();
    let f = TestCommand::new([
        "migrate",
        &server.url("app", "db"),
        "--dir",
        &dir.path().display().to_string(),
        "--timeout",
        "5s",
    ])
    .run()
    .await;
    f.assert_exit_code(2);
    assert!(
        f.stderr.contains("0001_one.sql") && f.stderr.contains("NUL byte (line 2)"),
        "{f:#?}"
    );
}

/// When the deadline cuts the last attempt short, its timeout ("timed out after 0.0s") hid
/// the real reason. Deterministic: the first connection answers false, every later one hangs,
/// so the second attempt can only end by the deadline, with less than its full budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_informative_error_is_reported_when_the_deadline_runs_out() {
    let server = FakeServer::start(Behavior::Sequence(vec![
        rows(&[Some(b"false")], 1),
        Behavior::Hang,
    ]))
    .await
    .unwrap();
    let f = TestCommand::new([
        "wait",
        &server.url("app", "db"),
        "--timeout",
        "2s",
        "--attempt-timeout",
        "30s",
        "--query",
        "SELECT x",
    ])
    .run()
    .await;
    f.assert_exit_code(1);
    assert_eq!(server.connections(), 2, "{f:#?}");
    let last = f.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("not ready after") && last.contains("last error: the query returned false"),
        "{f:#?}"
    );
}

/// `serve` exited on SIGHUP (the default action): it stays up and keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stays_up_on_sighup() {
    let mut serve =
        TestCommand::new(["serve", "host=127.0.0.1 port=1", "--listen", "127.0.0.1:0"]).spawn();
    let addr = listen_addr(&mut serve).await;
    let pid = nix::unistd::Pid::from_raw(serve.child.id().unwrap() as i32);
    for _ in 0..3 {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(http_status(&addr, "/livez").await, Some(200));
    }
    assert!(serve.child.try_wait().unwrap().is_none(), "serve exited");
    stop(serve).await;
}
