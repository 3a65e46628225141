//! A `pgsteady` installed some other way than `cargo test` builds it (the wheel in a
//! fresh virtualenv, `cargo install`) reports its build and reaches a throwaway cluster.
//!
//! Ignored by default: it needs `PGSTEADY_INSTALLED_BIN`, the installed command. `.ci/run`
//! builds the wheel, installs it into a fresh virtualenv and runs
//! `PGSTEADY_INSTALLED_BIN=$venv/bin/pgsteady cargo test -p pgsteady-cli --test it installed:: -- --ignored`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgsteady_testkit::{Cluster, StopMode};

fn installed() -> PathBuf {
    let path = std::env::var_os("PGSTEADY_INSTALLED_BIN")
        .expect("set PGSTEADY_INSTALLED_BIN to the installed pgsteady (see this module's docs)");
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{} is not a file", path.display());
    assert_ne!(
        path.canonicalize().unwrap(),
        PathBuf::from(env!("CARGO_BIN_EXE_pgsteady"))
            .canonicalize()
            .unwrap(),
        "PGSTEADY_INSTALLED_BIN is the binary cargo test built, not an installed one"
    );
    path
}

/// Runs the installed binary with no connection environment (no `PG*`, no `DATABASE_URL`, an
/// empty `HOME`).
fn run(args: &[&str]) -> (Output, Duration) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(installed());
    cmd.args(args)
        .env("HOME", home.path())
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let out = cmd.output().expect("run the installed pgsteady");
    (out, started.elapsed())
}

fn git_head() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert!(out.status.success(), "this test runs in a git checkout");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
#[ignore = "needs PGSTEADY_INSTALLED_BIN; run by .ci/run on the wheel's pgsteady"]
fn version_names_the_release_and_the_commit() {
    let (out, _) = run(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let expected = format!(
        "pgsteady {} (commit {})\n",
        env!("CARGO_PKG_VERSION"),
        git_head()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[tokio::test]
#[ignore = "needs PGSTEADY_INSTALLED_BIN; run by .ci/run on the wheel's pgsteady"]
async fn wait_reaches_a_throwaway_cluster_and_times_out_once_it_is_gone() {
    let cluster = Cluster::start().await.unwrap();
    let url = cluster.url();
    let (out, took) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&["wait", &url, "--timeout", "30s"])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        took < Duration::from_secs(10),
        "ready server, wait took {took:?}"
    );
    assert!(!stderr.contains(cluster.password()), "{stderr}");

    // Negative control: with the server stopped the same command waits out its timeout and
    // exits 1, so the exit 0 above was the server answering.
    cluster.stop(StopMode::Fast).await.unwrap();
    let (out, took) =
        tokio::task::spawn_blocking(move || run(&["wait", &url, "--timeout", "1s", "--quiet"]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // `wait` gives up when its next attempt would start after the deadline: up to one polling
    // interval (~34 ms) early; 995 ms was seen.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
}
