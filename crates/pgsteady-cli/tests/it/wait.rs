//! `pgsteady wait`: late start, never starts, wrong password, missing database, crash
//! recovery, hung server.

use std::time::{Duration, SystemTime};

use pgsteady_testkit::Cluster;

use crate::{TestCommand, url};

/// The server is started 0, 1.5 and 3 s after `wait`; `wait` reports "ready" soon after the
/// server's "ready" log line, polling at most ~30 times per second meanwhile.
///
/// The latency is timed to the moment `wait`'s own "ready" line reaches its stdout, read as it
/// comes by a task of its own: the process's exit, its reaping and the test's wake-up after
/// them are not `wait`'s latency, and under load they took hundreds of milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_start_exits_0_soon_after_ready() {
    let cluster = Cluster::builder().init().await.unwrap();
    for delay_ms in [0u64, 1500, 3000] {
        let mut running =
            TestCommand::new(["wait", &cluster.url(), "--timeout", "30s", "--json"]).spawn();
        let stdout = running.child.stdout.take().unwrap();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut out = String::new();
            let mut ready_line_at = None;
            while let Some(line) = lines.next_line().await.unwrap() {
                let is_ready = serde_json::from_str::<serde_json::Value>(&line)
                    .is_ok_and(|e| e["event"] == "ready");
                if is_ready && ready_line_at.is_none() {
                    ready_line_at = Some(SystemTime::now());
                }
                out.push_str(&line);
                out.push('\n');
            }
            (out, ready_line_at)
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        cluster.start_server().await.unwrap();
        let mut done = running.finish().await;
        let (out, ready_line_at) = reader.await.unwrap();
        done.stdout = out;
        done.assert_exit_code(0)
            .assert_no_secret(cluster.password());
        let ready = cluster.ready_at().unwrap();
        let reported = ready_line_at.expect("a ready event on stdout");
        let late = reported.duration_since(ready).unwrap_or_default();
        assert!(
            late < Duration::from_millis(500),
            "delay {delay_ms}: reported ready {late:?} after the server's ready line"
        );
        let events = done.events();
        let failed = events
            .iter()
            .filter(|e| e["event"] == "attempt_failed")
            .count();
        for e in events.iter().filter(|e| e["event"] == "attempt_failed") {
            let reason = e["reason"].as_str().unwrap();
            assert!(
                ["refused", "cannot_connect_now", "reset"].contains(&reason),
                "{e}"
            );
        }
        let per_sec = failed as f64 / done.elapsed.as_secs_f64();
        assert!(
            per_sec <= 31.0,
            "delay {delay_ms}: {failed} attempts in {:?}",
            done.elapsed
        );
        if delay_ms > 0 {
            assert!(failed > 0, "the server was down at first");
        }
        let ready_event = events.last().unwrap();
        assert_eq!(ready_event["event"], "ready", "{ready_event}");
        cluster
            .stop(pgsteady_testkit::StopMode::Fast)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn never_starts_exits_1_after_the_timeout_with_the_last_reason() {
    let cluster = Cluster::builder().init().await.unwrap();
    let done = TestCommand::new(["wait", &cluster.url(), "--timeout", "1s"])
        .run()
        .await;
    done.assert_exit_code(1)
        .assert_no_secret(cluster.password());
    // No attempt starts that could not finish before the deadline, so `wait` may give up up to
    // one polling delay (<= 36 ms) early.
    assert!(
        done.elapsed >= Duration::from_millis(950) && done.elapsed < Duration::from_millis(1800),
        "{:?}",
        done.elapsed
    );
    // Not a terminal: one line per state change (refused, all along) and the final error.
    assert_eq!(done.stderr().lines().count(), 2, "{}", done.stderr());
    let last = done.stderr().lines().last().unwrap();
    assert!(last.contains("not ready after"), "{last}");
    assert!(last.contains("Connection refused"), "{last}");
}

#[tokio::test]
async fn wrong_password_exits_3_at_once_without_retrying() {
    let cluster = Cluster::start().await.unwrap();
    let secret = "Wr0ng-Pa55word";
    let target = url(&cluster, cluster.user(), secret, cluster.dbname());
    for extra in [None, Some("--json")] {
        let mut args = vec!["wait", target.as_str(), "--timeout", "30s"];
        args.extend(extra);
        let done = TestCommand::new(args).run().await;
        done.assert_exit_code(3)
            .assert_no_secret(secret)
            .assert_no_secret(cluster.password());
        assert!(done.elapsed < Duration::from_secs(1), "{:?}", done.elapsed);
        if extra.is_some() {
            let events = done.events();
            assert_eq!(events.len(), 1, "one attempt, no retry: {events:?}");
            assert_eq!(events[0]["reason"], "invalid_password");
            assert_eq!(events[0]["exit_code"], 3);
        } else {
            assert!(
                done.stderr().contains("28P01")
                    || done.stderr().contains("password authentication failed"),
                "{}",
                done.stderr()
            );
        }
    }
    // Also when the password comes from the environment or a key=value target.
    let kv = format!(
        "host=127.0.0.1 port={} user={} dbname={}",
        cluster.port(),
        cluster.user(),
        cluster.dbname()
    );
    TestCommand::new(["wait", &kv, "--timeout", "30s"])
        .env("PGPASSWORD", secret)
        .run()
        .await
        .assert_exit_code(3)
        .assert_no_secret(secret);
}

#[tokio::test]
async fn missing_database_exits_3_unless_retried_until_created() {
    let cluster = Cluster::start().await.unwrap();
    let target = url(
        &cluster,
        cluster.user(),
        cluster.password(),
        "created_later",
    );
    let done = TestCommand::new(["wait", &target, "--timeout", "30s"])
        .run()
        .await;
    done.assert_exit_code(3)
        .assert_no_secret(cluster.password());
    assert!(done.stderr().contains("created_later"), "{}", done.stderr());

    let running = TestCommand::new([
        "wait",
        &target,
        "--timeout",
        "30s",
        "--retry-on",
        "missing-db",
    ])
    .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster
        .admin()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE DATABASE created_later OWNER {}",
            cluster.user()
        ))
        .await
        .unwrap();
    running.finish().await.assert_exit_code(0);
}

/// The server was SIGKILLed; `wait` runs through the crash recovery and exits 0.
#[tokio::test]
async fn crash_recovery_waits_then_exits_0() {
    let cluster = Cluster::start().await.unwrap();
    cluster
        .admin()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
        .await
        .unwrap();
    cluster.kill_postmaster().await.unwrap();
    let running = TestCommand::new(["wait", &cluster.url(), "--timeout", "30s", "--json"]).spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start_server().await.unwrap();
    let done = running.finish().await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    assert!(
        cluster.log().contains("database system was interrupted")
            || cluster.log().contains("not properly shut down")
    );
    assert!(done.events().iter().any(|e| e["event"] == "attempt_failed"));
}

/// A SIGSTOPped server accepts TCP connections and never answers. Every attempt is
/// cut at --attempt-timeout and the whole wait ends at --timeout.
#[tokio::test]
async fn hung_server_honours_attempt_timeout_and_deadline() {
    let cluster = Cluster::start().await.unwrap();
    cluster.pause().unwrap();
    let done = TestCommand::new([
        "wait",
        &cluster.url(),
        "--timeout",
        "2s",
        "--attempt-timeout",
        "500ms",
        "--json",
    ])
    .run()
    .await;
    cluster.resume().unwrap();
    done.assert_exit_code(1)
        .assert_no_secret(cluster.password());
    assert!(
        done.elapsed >= Duration::from_millis(1950) && done.elapsed < Duration::from_millis(2600),
        "{:?}",
        done.elapsed
    );
    let events = done.events();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "attempt_failed")
        .collect();
    // 2 s of 500 ms attempts plus short delays: 3 cut attempts reported before the last.
    assert!((2..=4).contains(&failed.len()), "{events:?}");
    for e in &failed {
        assert_eq!(e["reason"], "timed_out", "{e}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("timed out after 0.5s"), "{msg}");
    }
    let last = events.last().unwrap();
    assert_eq!(last["event"], "failed");
    assert_eq!(last["exit_code"], 1);
    // And after SIGCONT it is ready again.
    TestCommand::new(["wait", &cluster.url(), "--timeout", "10s"])
        .run()
        .await
        .assert_exit_code(0);
}

#[tokio::test]
async fn usage_errors_exit_2_before_any_io() {
    for args in [
        vec!["wait", "postgresql://u:Secr3tX@h:notaport/db"],
        vec!["wait", "db.example.com"],
        vec!["wait", "host=h", "--timeout", "soon"],
        vec!["wait", "host=h", "--retry-on", "everything"],
        vec!["wait", "host=h bogus=1"],
        vec!["wait", "host=h connect_timeout=10s"],
    ] {
        let done = TestCommand::new(&args).run().await;
        done.assert_exit_code(2).assert_no_secret("Secr3tX");
        assert!(done.elapsed < Duration::from_secs(1));
    }
    let done = TestCommand::new(["wait"])
        .env("DATABASE_URL", "postgres://u:Secr3tX@h:99999/db")
        .run()
        .await;
    done.assert_exit_code(2).assert_no_secret("Secr3tX");
    assert!(
        // Placed, not shown (a URL missing `@host` puts the password there).
        done.stderr()
            .contains("DATABASE_URL: invalid port for host 1 of 1"),
        "{}",
        done.stderr()
    );
}

#[tokio::test]
async fn quiet_success_prints_nothing_and_lines_mode_logs_state_changes() {
    let cluster = Cluster::start().await.unwrap();
    let done = TestCommand::new(["wait", &cluster.url(), "--quiet"])
        .run()
        .await;
    done.assert_exit_code(0);
    assert_eq!((done.stdout(), done.stderr()), ("", ""));
    let done = TestCommand::new(["wait", &cluster.url()]).run().await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    assert!(
        done.stderr().contains("ready: postgresql://app:***@"),
        "{}",
        done.stderr()
    );
}

/// On a terminal, progress is one status line rewritten in place (`\r` + clear line), not a
/// line per attempt. `script` gives the command a pseudo-terminal.
#[tokio::test]
async fn tty_keeps_a_single_updating_status_line() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let cluster = Cluster::builder().init().await.unwrap();
    let inner = format!(
        "{} wait '{}' --timeout 600ms",
        env!("CARGO_BIN_EXE_pgsteady"),
        cluster.url()
    );
    let out = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .env("COLUMNS", "200")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains(cluster.password()), "{text}");
    let rewrites = text.matches("\r\x1b[2K").count();
    assert!(rewrites >= 5, "status line rewritten per attempt: {text:?}");
    // Only the final error ends with a newline.
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    assert!(
        text.contains("attempt ") && text.contains("not ready after"),
        "{text:?}"
    );
}
