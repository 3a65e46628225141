//! `pgsteady wait -- CMD`: the command replaces pgsteady, so its exit code and signals are
//! its own.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgsteady_testkit::Cluster;
use tokio::io::AsyncBufReadExt;

use crate::TestCommand;

#[tokio::test]
async fn child_exit_code_is_passed_through() {
    let cluster = Cluster::start().await.unwrap();
    for code in [0, 7, 42] {
        TestCommand::new([
            "wait",
            &cluster.url(),
            "--quiet",
            "--",
            "sh",
            "-c",
            &format!("exit {code}"),
        ])
        .run()
        .await
        .assert_exit_code(code);
    }
    TestCommand::new(["wait", &cluster.url(), "--quiet", "--", "/nonexistent/cmd"])
        .run()
        .await
        .assert_exit_code(127);
    // Not ready: the command does not run.
    let cluster_down = Cluster::builder().init().await.unwrap();
    let done = TestCommand::new([
        "wait",
        &cluster_down.url(),
        "--timeout",
        "300ms",
        "--",
        "sh",
        "-c",
        "echo ran",
    ])
    .run()
    .await;
    done.assert_exit_code(1);
    assert!(!done.stdout().contains("ran"));
}

#[tokio::test]
async fn sigterm_reaches_the_child() {
    let cluster = Cluster::start().await.unwrap();
    let script =
        "trap 'echo got-term; exit 42' TERM; echo started; while true; do sleep 0.05; done";
    let mut running =
        TestCommand::new(["wait", &cluster.url(), "--quiet", "--", "sh", "-c", script]).spawn();
    let stdout = running.child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("started"));
    // The pid we started is now the shell: exec replaced pgsteady.
    let pid = running.child.id().unwrap() as i32;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sh");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.as_deref(), Some("got-term"));
    let status = tokio::time::timeout(Duration::from_secs(5), running.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(42));
}

/// Rust ignores SIGPIPE; the exec'd command must start with SIGPIPE (and SIGTERM) at their
/// default disposition, as if its parent had started it directly. (The blocked-signal set is
/// inherited from the parent, as with any exec; `sigterm_reaches_the_child` covers delivery.)
#[tokio::test]
async fn child_starts_with_default_signal_state() {
    let cluster = Cluster::start().await.unwrap();
    let script = "grep -E '^(SigIgn|SigBlk)' /proc/$$/status";
    let done = TestCommand::new(["wait", &cluster.url(), "--quiet", "--", "sh", "-c", script])
        .run()
        .await;
    done.assert_exit_code(0);
    let mask = |name: &str| {
        let line = done.stdout().lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let sigpipe = 1u64 << (13 - 1);
    assert_eq!(
        mask("SigIgn") & sigpipe,
        0,
        "SIGPIPE ignored: {}",
        done.stdout()
    );
    let sigterm = 1u64 << (15 - 1);
    assert_eq!(
        mask("SigIgn") & sigterm,
        0,
        "SIGTERM ignored: {}",
        done.stdout()
    );
}
