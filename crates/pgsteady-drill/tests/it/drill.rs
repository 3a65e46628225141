//! `pgsteady drill`: a short drill against a real throwaway cluster, pgsteady's
//! column checked; Ctrl-C stops the cluster and removes its directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::TestCommand;

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {v}"))
}

/// A short drill (two faults) with pgsteady's column asserted: 0 errors surfaced,
/// every acknowledged write present exactly once, and service back soon after ready. The
/// naive client must have seen errors, or the faults did not really happen.
#[tokio::test]
async fn short_drill_pgsteady_surfaces_no_error_and_loses_no_write() {
    let done = TestCommand::new(["--faults", "fast-restart,terminate", "--json"])
        .run()
        .await;
    done.assert_exit_code(0);
    let report: Value =
        serde_json::from_str(done.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    let faults = report["faults"].as_array().unwrap();
    let names: Vec<&str> = faults.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fast-restart", "terminate"]);
    let mut naive_errors = 0;
    for f in faults {
        let name = f["name"].as_str().unwrap();
        assert_eq!(u(f, &["pgsteady", "errors"]), 0, "{name}: {f:#}");
        assert!(u(f, &["pgsteady", "calls_ok"]) > 0, "{name}: {f:#}");
        let first = f["pgsteady"]["ready_to_first_success_ms"].as_f64();
        assert!(
            first.is_some_and(|ms| ms < 2000.0),
            "{name}: first success {first:?} ms after ready"
        );
        naive_errors += u(f, &["naive", "errors"]);
    }
    assert!(naive_errors > 0, "the faults hurt nobody: {report:#}");

    let pg = &report["totals"]["pgsteady"];
    assert_eq!(u(pg, &["errors"]), 0, "{pg:#}");
    let acknowledged = u(pg, &["writes", "acknowledged"]);
    assert!(acknowledged > 20, "{pg:#}");
    assert_eq!(
        u(pg, &["writes", "present"]),
        acknowledged,
        "lost writes: {pg:#}"
    );
    assert_eq!(u(pg, &["writes", "lost"]), 0, "{pg:#}");
    assert_eq!(u(pg, &["writes", "duplicated"]), 0, "{pg:#}");
    assert_eq!(u(pg, &["writes", "unknown"]), 0, "{pg:#}");
    assert_eq!(u(pg, &["writes", "not_committed_present"]), 0, "{pg:#}");
    assert_eq!(report["guarantees"]["held"], Value::Bool(true));
    assert!(
        report["duration_ms"].as_f64().unwrap() < 20_000.0,
        "{}",
        report["duration_ms"]
    );
    // Both clients drew a timeline.
    for side in ["naive", "pgsteady"] {
        let ok: u64 = report["timeline"][side]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[0].as_u64().unwrap())
            .sum();
        assert!(ok > 0, "{side}");
    }
}

#[tokio::test]
async fn list_names_every_fault_and_bad_input_is_a_usage_error() {
    let done = TestCommand::new(["--list"]).run().await;
    done.assert_exit_code(0);
    for name in [
        "late-start",
        "fast-restart",
        "crash",
        "terminate",
        "idle-timeout",
        "slots-exhausted",
        "hung",
        "silent-drop",
    ] {
        assert!(
            done.stdout().lines().any(|l| l.starts_with(name)),
            "{name}: {}",
            done.stdout()
        );
    }
    let done = TestCommand::new(["--faults", "crash,meteor"]).run().await;
    done.assert_exit_code(2);
    assert!(done.stderr().contains("meteor"), "{}", done.stderr());
    let done = TestCommand::new(["--report", "/tmp/drill.png"]).run().await;
    done.assert_exit_code(2);
    assert!(done.stderr().contains(".svg or .html"), "{}", done.stderr());
    let done = TestCommand::new(["--pg-bin", "/no/such/dir"]).run().await;
    done.assert_exit_code(2);
    assert!(done.stderr().contains("/no/such/dir"), "{}", done.stderr());
}

/// `--report FILE.html`: a self-contained page with the SVG chart inline, naming the fault.
/// (`.svg` writes the same chart alone: see the unit tests of `Format`.)
#[tokio::test]
async fn report_is_a_page_with_the_svg_chart_and_the_fault_windows() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("drill.html");
    let done = TestCommand::new(["--faults", "terminate", "--report", html.to_str().unwrap()])
        .run()
        .await;
    done.assert_exit_code(0);
    assert!(done.stdout().contains("terminate"), "{}", done.stdout());
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.starts_with("<!DOCTYPE html>"));
    assert!(text.contains("<svg"), "{text}");
    assert!(text.contains(">terminate<"), "{text}");
    assert!(text.contains("guarantees held"), "{text}");
}

/// Where the drill says its cluster lives: `cluster: ADDR in DIR (PostgreSQL ...`.
fn cluster_dir(line: &str) -> Option<PathBuf> {
    let rest = line.strip_prefix("cluster: ")?;
    let (_, rest) = rest.split_once(" in ")?;
    let (dir, _) = rest.split_once(" (")?;
    Some(PathBuf::from(dir))
}

/// Live (non-zombie) processes whose command line or working directory names `dir`.
pub(crate) fn processes_using(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if cmdline.contains(dir) || cwd.to_string_lossy().starts_with(dir) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Ctrl-C in the middle of a fault (here the server is SIGSTOPped, the worst moment): the
/// drill exits 130, no server process of its cluster is left, and its directory is gone.
#[tokio::test]
async fn ctrl_c_stops_the_cluster_and_removes_its_directory() {
    let mut running = TestCommand::new(["--faults", "terminate,hung"]).spawn();
    let stderr = running.child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut dir = None;
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if let Some(d) = cluster_dir(&line) {
                dir = Some(d);
            }
            if line.contains("] hung (2/2)") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen:#?}");
    let dir = dir.unwrap_or_else(|| panic!("no cluster line: {seen:#?}"));
    assert!(dir.is_dir(), "{}", dir.display());
    assert!(
        !processes_using(&dir).is_empty(),
        "no server seen for {}",
        dir.display()
    );
    // Into the SIGSTOP window.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = running.child.id().unwrap() as i32;
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), running.child.wait())
        .await
        .expect("the drill exits within 15 s of SIGINT")
        .unwrap();
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await
    {
        rest.push(line);
    }
    assert_eq!(status.code(), Some(130), "{rest:#?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:#?}");
    assert_eq!(processes_using(&dir), Vec::<String>::new());
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// `--herd`: after one fast restart every pgsteady pool serves again, its callers saw no
/// error and no 53300; the fixed-interval loops surfaced errors (the restart was real). Peak
/// and mean attempts are reported, not asserted (they measure the machine's scheduler too).
#[tokio::test]
async fn herd_pgsteady_callers_see_no_error_and_all_serve_again() {
    let done = TestCommand::new(["--herd", "20", "--json"]).run().await;
    done.assert_exit_code(0);
    let report: Value =
        serde_json::from_str(done.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    let herds = report["herds"].as_array().unwrap();
    assert_eq!(herds.len(), 2);
    let (pg, fixed) = (&herds[0], &herds[1]);
    assert_eq!(pg["client"], "pgsteady");
    assert_eq!(u(pg, &["errors"]), 0, "{pg:#}");
    assert_eq!(u(pg, &["too_many_connections"]), 0, "{pg:#}");
    for h in herds {
        assert!(u(h, &["attempts"]) >= 20, "every client reconnected: {h:#}");
        assert!(u(h, &["peak_per_10ms"]) >= 1, "{h:#}");
        let all = h["ready_to_all_serving_ms"].as_f64();
        assert!(all.is_some_and(|ms| ms < 30_000.0), "{h:#}");
    }
    assert!(
        u(fixed, &["errors"]) > 0,
        "the restart hurt nobody: {fixed:#}"
    );
    assert_eq!(report["guarantees_held"], Value::Bool(true));
}
