//! Hostile input and hostile servers. Fake servers from `pgsteady_testkit::fake`
//! misbehave where a real PostgreSQL cannot (authenticate then hang, stream rows forever,
//! announce 2 GB, send control characters, speak HTTP); real servers where they can
//! (SIGINT during a long migration). Each test asserts the exit code, the time bound and,
//! where memory was the failure, the peak RSS of the pgsteady process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use pgsteady_testkit::Cluster;
use pgsteady_testkit::fake::{Behavior, FakeServer};

use crate::{Finished, Running, TestCommand};

fn migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_one.sql"), "SELECT 1;").unwrap();
    dir
}

/// Every command that connects, with `target` and the bounds that must hold.
fn commands(target: &str, dir: &Path) -> Vec<(&'static str, TestCommand)> {
    let d = dir.display().to_string();
    vec![
        (
            "check",
            TestCommand::new(["check", target, "--timeout", "2s"]),
        ),
        (
            "wait",
            TestCommand::new([
                "wait",
                target,
                "--timeout",
                "2s",
                "--attempt-timeout",
                "500ms",
            ]),
        ),
        (
            "doctor",
            TestCommand::new(["doctor", target, "--timeout", "1s", "--max-time", "5s"]),
        ),
        (
            "migrate",
            TestCommand::new([
                "migrate",
                target,
                "--dir",
                &d,
                "--timeout",
                "2s",
                "--attempt-timeout",
                "500ms",
            ]),
        ),
    ]
}

/// Runs each command; asserts `code` and that it ended within `bound`.
async fn all_exit(target: &str, code: i32, bound: Duration) -> Vec<(&'static str, Finished)> {
    let dir = migrations();
    let mut out = Vec::new();
    for (name, cmd) in commands(target, dir.path()) {
        let f = cmd.run().await;
        assert_eq!(f.code, Some(code), "{name}: {f:#?}");
        assert!(f.elapsed < bound, "{name} took {:?}: {f:#?}", f.elapsed);
        out.push((name, f));
    }
    out
}

/// The peak memory of a running process, sampled every 5 ms until it exits: the larger of
/// its resident high-water mark (VmHWM) and its peak virtual size (VmPeak) beyond a 1 GiB
/// allowance for thread stacks and allocator arenas, so a 2 GB reservation that was never
/// touched still counts.
pub(crate) fn watch_peak_rss(pid: u32) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0u64;
        loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return peak;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
                    .map(|kb| kb * 1024)
            };
            match (field("VmHWM:"), field("VmPeak:")) {
                (Some(rss), Some(virt)) => {
                    peak = peak.max(rss).max(virt.saturating_sub(1 << 30));
                }
                _ => return peak,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

pub(crate) async fn run_measured(cmd: TestCommand) -> (Finished, u64) {
    let running: Running = cmd.spawn();
    let peak = watch_peak_rss(running.child.id().unwrap());
    let finished = running.finish().await;
    let peak = peak.await.unwrap();
    // A process that ended before the first sample cannot have waited on a 2 GB message
    // (before the fix it held one until its timeout), so only such a quick exit may go
    // unmeasured.
    assert!(
        peak > 0 || finished.elapsed < Duration::from_millis(100),
        "never measured: {finished:#?}"
    );
    eprintln!(
        "peak RSS {:.1} MB, exit {:?} after {:?}",
        peak as f64 / MB as f64,
        finished.code,
        finished.elapsed
    );
    (finished, peak)
}

pub(crate) const MB: u64 = 1 << 20;

/// Item 7: a server that authenticates and then never answers a query. Before: doctor ran
/// past 60 s, migrate blocked forever, serve reported ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_authenticates_then_hangs_is_not_ready_in_bounded_time() {
    let server = FakeServer::start(Behavior::Hang).await.unwrap();
    let target = server.url("app", "db");
    let runs = all_exit(&target, 1, Duration::from_secs(8)).await;
    for (name, f) in &runs {
        if *name != "doctor" {
            assert!(
                f.stderr.contains("timed out") || f.stdout.contains("timed out"),
                "{name}: {f:#?}"
            );
        }
    }
    assert!(server.connections() >= 4, "the fake server was reached");

    // serve: /readyz never says ready while every session hangs.
    let mut serve = TestCommand::new([
        "serve",
        &target,
        "--listen",
        "127.0.0.1:0",
        "--grace",
        "200ms",
    ])
    .spawn();
    let addr = listen_addr(&mut serve).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let status = http_status(&addr, "/readyz").await;
        assert_ne!(status, Some(200), "ready while every query hangs");
        seen.push(status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen.contains(&Some(503)), "{seen:?}");
    stop(serve).await;
}

pub(crate) async fn listen_addr(running: &mut Running) -> String {
    use tokio::io::AsyncBufReadExt;
    let stderr = running.child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening on http://") {
                return line;
            }
        }
        panic!("serve exited without listening");
    })
    .await
    .expect("serve listens within 10 s");
    // Keep draining stderr so serve never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let rest = line.split("http://").nth(1).unwrap();
    rest.split_whitespace().next().unwrap().to_owned()
}

pub(crate) async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

pub(crate) async fn stop(running: Running) {
    let pid = nix::unistd::Pid::from_raw(running.child.id().unwrap() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = tokio::time::timeout(Duration::from_secs(10), running.finish()).await;
}

/// Item 8: endless DataRows. Before: up to 2 GB buffered per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_rows_are_bounded_in_memory_and_time() {
    let server = FakeServer::start(Behavior::EndlessRows).await.unwrap();
    let target = server.url("app", "db");
    let (f, peak) = run_measured(TestCommand::new([
        "check",
        &target,
        "--timeout",
        "5s",
        "--query",
        "SELECT x",
    ]))
    .await;
    f.assert_exit_code(1);
    // 1,000-byte rows: the 4 MiB cap on values comes before the 10,000-row cap.
    assert!(f.stderr.contains("more than 4194304 bytes"), "{f:#?}");
    assert!(f.elapsed < Duration::from_secs(6), "{f:#?}");
    assert!(peak < 100 * MB, "peak RSS {} MB", peak / MB);

    // doctor's own queries are bounded the same way.
    let (f, peak) = run_measured(TestCommand::new(["doctor", &target, "--timeout", "2s"])).await;
    f.assert_exit_code(3);
    assert!(f.elapsed < Duration::from_secs(10), "{f:#?}");
    assert!(peak < 100 * MB, "peak RSS {} MB", peak / MB);
}

/// Item 8: a 2 GB length, at startup and in answer to a query. Before: gigabytes reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_gigabyte_length_is_refused_like_libpq_does() {
    let server = FakeServer::start(Behavior::HugeLength {
        length: 0x8000_0000,
        at_startup: true,
    })
    .await
    .unwrap();
    let target = server.url("app", "db");
    for (name, _) in all_exit(&target, 3, Duration::from_secs(5)).await {
        assert!(!name.is_empty());
    }
    let (f, peak) = run_measured(TestCommand::new(["check", &target])).await;
    f.assert_exit_code(3);
    assert!(f.stderr.contains("protocol violation"), "{f:#?}");
    assert!(peak < 100 * MB, "peak RSS {} MB", peak / MB);

    let server = FakeServer::start(Behavior::HugeLength {
        length: 0x7fff_ff00,
        at_startup: false,
    })
    .await
    .unwrap();
    let (f, peak) = run_measured(TestCommand::new([
        "check",
        &server.url("app", "db"),
        "--timeout",
        "3s",
    ]))
    .await;
    f.assert_exit_code(1);
    assert!(f.stderr.contains("protocol violation"), "{f:#?}");
    assert!(peak < 100 * MB, "peak RSS {} MB", peak / MB);
}

/// Item 4: control characters and a huge message from the server are escaped and capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_text_is_escaped_and_capped() {
    let message = format!(
        "boom\x1b]0;pwned\x07\x1b[2J\r\nFORGED: ready\u{202e}{}",
        "A".repeat(200_000)
    );
    let server = FakeServer::start(Behavior::StartupError {
        code: "28000".into(),
        message,
    })
    .await
    .unwrap();
    let target = server.url("app", "db");
    for (name, f) in all_exit(&target, 3, Duration::from_secs(5)).await {
        for text in [&f.stdout, &f.stderr] {
            assert!(!text.contains('\x1b'), "{name}: ESC printed");
            assert!(!text.contains('\r'), "{name}: CR printed");
            assert!(!text.contains('\u{202e}'), "{name}: bidi override printed");
            assert!(
                !text.lines().any(|l| l.starts_with("FORGED")),
                "{name}: forged line"
            );
            assert!(text.len() < 80_000, "{name}: {} bytes printed", text.len());
        }
        assert!(
            f.stderr.contains("boom\\u{1b}") || f.stdout.contains("boom\\u{1b}"),
            "{name}: {f:#?}"
        );
    }
    let f = TestCommand::new(["check", &target, "--json"]).run().await;
    assert!(
        !f.stdout.contains("\\u001b"),
        "{}",
        &f.stdout[..200.min(f.stdout.len())]
    );
}

/// Items 12 and 14: one meaning, one code. 42704 at startup (`options=-c bogus_guc=1`) and a
/// non-PostgreSQL server are permanent (3) in every command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_options_and_non_postgres_servers_exit_3_everywhere() {
    let server = FakeServer::start(Behavior::StartupError {
        code: "42704".into(),
        message: "unrecognized configuration parameter \"bogus_guc\"".into(),
    })
    .await
    .unwrap();
    all_exit(&server.url("app", "db"), 3, Duration::from_secs(5)).await;
    let http = FakeServer::start(Behavior::Http).await.unwrap();
    all_exit(&http.url("app", "db"), 3, Duration::from_secs(5)).await;
    // Also with the TLS request first (sslmode=prefer): doctor reads the answer itself.
    let target = format!("postgresql://app@127.0.0.1:{}/db", http.port());
    all_exit(&target, 3, Duration::from_secs(5)).await;
}

/// Item 12 against a real server: `options=-c bogus_guc=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_42704_at_startup_is_permanent() {
    let cluster = Cluster::start().await.unwrap();
    let target = format!("{}?options=-c%20bogus_guc%3D1", cluster.url());
    let runs = all_exit(&target, 3, Duration::from_secs(5)).await;
    for (name, f) in runs {
        assert!(
            f.stdout.contains("bogus_guc") || f.stderr.contains("bogus_guc"),
            "{name}: {f:#?}"
        );
    }
}

/// Item 11: no password found is 3 in every command, says where pgsteady looked, and why the
/// password file was skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_found_is_3_and_says_where_it_looked() {
    let server = FakeServer::start(Behavior::PasswordRequest).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, "*:*:*:*:Pa55word-in-0644\n").unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = migrations();
    for (name, cmd) in commands(&server.url("app", "db"), dir.path()) {
        let f = cmd.env("HOME", home.path().to_str().unwrap()).run().await;
        f.assert_exit_code(3).assert_no_secret("Pa55word-in-0644");
        let text = format!("{}{}", f.stdout, f.stderr);
        // doctor (#18) words it as its auth layer: "... and none was found; looked in: ...".
        assert!(
            text.contains("password required, none found") || text.contains("none was found"),
            "{name}: {f:#?}"
        );
        assert!(text.contains("group or world access"), "{name}: {f:#?}");
        assert!(text.contains(".pgpass"), "{name}: {f:#?}");
    }
    // Missing password file, empty PGPASSWORD: the same code, and it says so.
    let f = TestCommand::new(["check", &server.url("app", "db")])
        .env("PGPASSWORD", "")
        .run()
        .await;
    f.assert_exit_code(3);
    assert!(f.stderr.contains("does not exist"), "{f:#?}");
}

/// Item 13: over-long startup fields are a usage error before connecting.
#[tokio::test]
async fn over_long_startup_fields_are_2_before_connecting() {
    let server = FakeServer::start(Behavior::Hang).await.unwrap();
    let long = "u".repeat(100_000);
    let target = format!("host=127.0.0.1 port={} user={long}", server.port());
    let runs = all_exit(&target, 2, Duration::from_secs(3)).await;
    for (name, f) in runs {
        let text = format!("{}{}", f.stdout, f.stderr);
        assert!(text.contains("over PostgreSQL's limit"), "{name}: {f:#?}");
        assert!(!text.contains("uuuuuuuu"), "{name}");
    }
    assert_eq!(server.connections(), 0, "nothing was tried");
}

/// Items 5 and 6: FIFOs and devices as sslrootcert, PGSSLROOTCERT or a migration file are
/// refused at once with exit 2, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_and_devices_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("root.crt");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let fifo = fifo.display().to_string();
    for cert in [fifo.as_str(), "/dev/zero"] {
        let target = format!("host=127.0.0.1 port=1 sslmode=verify-full sslrootcert={cert}");
        for (name, f) in all_exit(&target, 2, Duration::from_secs(3)).await {
            let text = format!("{}{}", f.stdout, f.stderr);
            assert!(text.contains(cert), "{name}: {f:#?}");
            assert!(text.contains("not a regular file"), "{name}: {f:#?}");
        }
        let f = TestCommand::new(["check", "host=127.0.0.1 port=1 sslmode=verify-full"])
            .env("PGSSLROOTCERT", cert)
            .run()
            .await;
        f.assert_exit_code(2);
        assert!(f.stderr.contains(cert), "{f:#?}");
        let f = TestCommand::new(["serve", &target, "--listen", "127.0.0.1:0"])
            .run()
            .await;
        f.assert_exit_code(2);
        assert!(f.elapsed < Duration::from_secs(3), "{f:#?}");
    }

    let migrations = migrations();
    nix::unistd::mkfifo(
        &migrations.path().join("0002_fifo.sql"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", migrations.path().join("0003_zero.sql")).unwrap();
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec![
            "migrate".to_owned(),
            "host=127.0.0.1 port=1".to_owned(),
            "--dir".to_owned(),
            migrations.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let f = TestCommand::new(args).run().await;
        f.assert_exit_code(2);
        assert!(f.elapsed < Duration::from_secs(3), "{f:#?}");
        assert!(f.stderr.contains("0002_fifo.sql`: is a FIFO"), "{f:#?}");
        assert!(f.stderr.contains("0003_zero.sql`: is a device"), "{f:#?}");
    }
}

/// Item 9: idle and half-sent connections are closed; over the cap, closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bounds_idle_and_partial_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut serve = TestCommand::new([
        "serve",
        "host=127.0.0.1 port=1",
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "10",
    ])
    .spawn();
    let addr = listen_addr(&mut serve).await;
    let mut held = Vec::new();
    for i in 0..10 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            // Partial headers, never finished.
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 11th is over the cap: closed at once.
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Within the 5 s header timeout (+ slack) every held connection is closed.
    let started = Instant::now();
    for mut s in held {
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        let r = tokio::time::timeout(left, s.read(&mut buf)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "still open: {r:?}");
    }
    // And a real probe is answered again.
    assert_eq!(http_status(&addr, "/livez").await, Some(200));
    stop(serve).await;
}

/// Item 10: doctor over 5,000 refused hosts ends within --max-time, saying what it skipped.
#[tokio::test]
async fn doctor_has_an_overall_bound() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hosts = vec!["127.0.0.1"; 5000].join(",");
    let target = format!("host={hosts} port={port} user=u");
    let f = TestCommand::new(["doctor", &target, "--timeout", "1s", "--max-time", "2s"])
        .run()
        .await;
    f.assert_exit_code(1);
    assert!(f.elapsed < Duration::from_secs(6), "{:?}", f.elapsed);
    assert!(
        f.stdout.contains("not checked: --max-time ran out"),
        "{}",
        &f.stdout[f.stdout.len().saturating_sub(500)..]
    );
}

/// SIGINT, SIGTERM, SIGQUIT or SIGHUP during a long migration cancels the statement on the
/// server and releases the lock at once (before: ~10 s more of the statement and the lock on
/// SIGINT; on SIGQUIT and SIGHUP the process died and left both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_long_migration_cancels_it_on_the_server() {
    use nix::sys::signal::Signal;
    let cluster = Cluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_fast.sql"),
        "CREATE TABLE fast (id int);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_slow.sql"),
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);",
    )
    .unwrap();
    // The migration's own database (the admin connection may use another one).
    let (admin, connection) = cluster
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Every signal whose default action ends the process: SIGQUIT and SIGHUP used to leave
    // the statement running and the lock held.
    for (signal, code) in [
        (Signal::SIGINT, 130),
        (Signal::SIGTERM, 143),
        (Signal::SIGQUIT, 131),
        (Signal::SIGHUP, 129),
    ] {
        let running = TestCommand::new([
            "migrate",
            &cluster.url(),
            "--dir",
            &dir.path().display().to_string(),
        ])
        .spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' \
                     AND state = 'active' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{signal}: the slow migration never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = nix::unistd::Pid::from_raw(running.child.id().unwrap() as i32);
        let signalled = Instant::now();
        nix::sys::signal::kill(pid, signal).unwrap();
        let f = running.finish().await;
        f.assert_exit_code(code);
        assert!(f.stderr.contains("interrupted"), "{signal}: {f:#?}");
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "{signal}: {:?}",
            signalled.elapsed()
        );
        // Right away: no statement left running, no advisory lock held, 0002 rolled back.
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' \
                 AND state = 'active' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            running, 0,
            "{signal}: the statement still runs on the server"
        );
        let locks: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(locks, 0, "{signal}: the migration lock is still held");
        let slow: bool = admin
            .query_one("SELECT to_regclass('slow') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!slow, "{signal}: 0002 was rolled back");
        let fast: bool = admin
            .query_one("SELECT to_regclass('fast') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert!(fast, "{signal}: 0001 stays applied");
    }
}

/// Items 1-3 through the real binary: malformed targets holding a password, given as the
/// target or as DATABASE_URL, to every command, in text and JSON. The exhaustive check is the
/// in-process property test `a_password_inserted_anywhere_never_leaks`; this is its sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_malformed_target_never_appears_in_any_output() {
    const PW: &str = "Zq9pWs3cr3tX";
    let targets = [
        format!("postgresql:/app:{PW}@host/db"),
        format!("host 127.0.0.1 password {PW}"),
        format!("postgresql://app:{PW}/app"),
        format!("host=x {PW}"),
        format!("{PW}=1"),
        format!("host=h {PW}=1"),
        format!("postgresql://app:{PW}@h:port/db"),
        format!("postgresql://app:{PW}@[::1/db"),
        format!("host=h password='{PW}"),
        format!("postgresql://app:{PW}@h/db?{PW}"),
        format!("postgresql://h/db?sslmode={PW}"),
        format!("{PW}://h/db"),
        format!("host=h port={PW}"),
        format!("host=h sslmode={PW}"),
        format!("host=h connect_timeout={PW}"),
        format!("postgresql://h/db?password={PW}%zz"),
    ];
    let dir = migrations();
    let d = dir.path().display().to_string();
    let commands: [&[&str]; 8] = [
        &["check"],
        &["check", "--json"],
        &["wait", "--json"],
        &["doctor"],
        &["doctor", "--json"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["migrate", "--dir", &d],
        &["migrate", "--dir", &d, "--json"],
    ];
    let mut runs = 0;
    for target in &targets {
        for args in commands {
            for via_env in [false, true] {
                let mut argv: Vec<&str> = vec![args[0]];
                if !via_env {
                    argv.push(target);
                }
                argv.extend_from_slice(&args[1..]);
                let mut cmd = TestCommand::new(&argv);
                if via_env {
                    cmd = cmd.env("DATABASE_URL", target);
                }
                let f = cmd.run().await;
                f.assert_exit_code(2).assert_no_secret(PW);
                assert!(f.elapsed < Duration::from_secs(3), "{argv:?}: {f:#?}");
                runs += 1;
            }
        }
    }
    assert_eq!(runs, targets.len() * 16);
}

/// Item 7, past the session check: a server that answers the empty query but never a real
/// one (this fake ignores the extended protocol) holds `migrate` no longer than its bound on
/// pgsteady's own statements (max(--attempt-timeout, 10 s)).
#[tokio::test]
async fn migrate_bounds_its_own_statements() {
    let server = FakeServer::start(Behavior::EndlessRows).await.unwrap();
    let dir = migrations();
    let f = TestCommand::new([
        "migrate",
        &server.url("app", "db"),
        "--dir",
        &dir.path().display().to_string(),
        "--timeout",
        "2s",
        "--attempt-timeout",
        "500ms",
    ])
    .run()
    .await;
    f.assert_exit_code(1);
    assert!(f.stderr.contains("did not answer pgsteady's"), "{f:#?}");
    assert!(f.elapsed < Duration::from_secs(15), "{:?}", f.elapsed);
}

/// Class 53 at start-up, by SQLSTATE: out of disk (53100), out of memory (53200) or
/// resources in general (53000) while the server sets up the session is transient (`check`:
/// not ready, 1; `wait` retries until its deadline, 1); 53400 configuration_limit_exceeded
/// stays permanent (3, `wait` stops at once). They were all permanent, so a server short of
/// memory for a moment failed every command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_53_at_startup_is_classified_by_code() {
    for (code, exit, transient) in [
        ("53000", 1, true),
        ("53100", 1, true),
        ("53200", 1, true),
        ("53400", 3, false),
    ] {
        let server = FakeServer::start(Behavior::StartupError {
            code: code.into(),
            message: "out of something".into(),
        })
        .await
        .unwrap();
        let target = server.url("app", "db");
        let f = TestCommand::new(["check", &target, "--timeout", "2s"])
            .run()
            .await;
        assert_eq!(f.code, Some(exit), "{code} check: {f:#?}");
        assert!(
            f.stderr.contains("out of something"),
            "{code} check: {f:#?}"
        );
        let before = server.connections();
        let f = TestCommand::new([
            "wait",
            &target,
            "--timeout",
            "2s",
            "--attempt-timeout",
            "500ms",
        ])
        .run()
        .await;
        assert_eq!(f.code, Some(exit), "{code} wait: {f:#?}");
        let tries = server.connections() - before;
        assert_eq!(
            tries > 1,
            transient,
            "{code} wait: {tries} connections: {f:#?}"
        );
    }
}
