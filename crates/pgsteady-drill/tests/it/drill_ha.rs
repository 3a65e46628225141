//! `pgsteady drill --ha`: the drill's clients against a real Patroni cluster.
//! Each test boots one (etcd, two nodes, HAProxy) and waits out real switchovers and
//! failovers, so they are `#[ignore]`d: `.ci/run` runs them in its Patroni step
//! (`cargo test -p pgsteady-drill --test it drill_ha:: -- --ignored`).

use std::time::Duration;

use serde_json::Value;

use crate::{Finished, TestCommand};

/// How long one `drill --ha` may take (cluster start ~15 s, each fault 5-25 s, two paths).
const LIMIT: Duration = Duration::from_secs(300);

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {v}"))
}

/// Runs `drill --ha ARGS --json`; `None` (after printing why) where Patroni cannot run.
async fn drill_ha(args: &[&str]) -> Option<(Finished, Value)> {
    let mut all = vec!["--ha", "--json"];
    all.extend_from_slice(args);
    let done = TestCommand::new(&all).spawn().finish_within(LIMIT).await;
    if done.code == Some(10) && done.stderr.contains("cannot run a Patroni cluster here") {
        eprintln!(
            "skipped: {}",
            done.stderr.lines().last().unwrap_or_default()
        );
        return None;
    }
    eprintln!("{}", done.stderr);
    let report: Value =
        serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    Some((done, report))
}

/// A switchover and a leader postmaster kill (Patroni fails over:
/// primary_start_timeout 0), through the multi-host string and through HAProxy: pgsteady
/// surfaces 0 errors through run / transaction, every acknowledged write is on the new
/// leader exactly once, and its writes resume within 1 s of Patroni's leader change
/// (switchover) or of the new leader being writable (crash). The naive client must have
/// seen errors, or the faults hurt nobody.
#[tokio::test]
#[ignore = "boots a Patroni cluster: run in .ci/run's Patroni step"]
async fn ha_drill_pgsteady_surfaces_no_error_and_resumes_within_1s_of_the_leader_change() {
    let Some((done, report)) = drill_ha(&["--faults", "switchover,leader-crash"]).await else {
        return;
    };
    done.assert_exit_code(0);
    assert_eq!(report["held"], Value::Bool(true), "{report:#}");
    assert_eq!(num(&report, &["deadline_ms"]), 30_000.0);
    assert_eq!(num(&report, &["patroni", "primary_start_timeout"]), 0.0);
    let passes = report["passes"].as_array().unwrap();
    let paths: Vec<&str> = passes.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["multi-host", "haproxy"]);
    let mut naive_errors = 0.0;
    for pass in passes {
        let path = pass["path"].as_str().unwrap();
        let target = pass["target"].as_str().unwrap();
        assert!(target.contains("app:***@"), "password redacted: {target}");
        let pg = &pass["report"]["totals"]["pgsteady"];
        assert_eq!(num(pg, &["errors"]), 0.0, "{path}: {pg:#}");
        let acknowledged = num(pg, &["writes", "acknowledged"]);
        assert!(acknowledged > 50.0, "{path}: {pg:#}");
        assert_eq!(
            num(pg, &["writes", "present"]),
            acknowledged,
            "{path}: lost: {pg:#}"
        );
        assert_eq!(num(pg, &["writes", "duplicated"]), 0.0, "{path}: {pg:#}");
        assert_eq!(num(pg, &["writes", "unknown"]), 0.0, "{path}: {pg:#}");
        assert_eq!(num(pg, &["writes", "not_committed_present"]), 0.0, "{path}");
        naive_errors += num(&pass["report"]["totals"]["naive"], &["errors"]);

        let engine = pass["engine"].as_array().unwrap();
        let faults: Vec<&str> = engine
            .iter()
            .map(|e| e["fault"].as_str().unwrap())
            .collect();
        assert_eq!(faults, ["switchover", "leader-crash"], "{path}");
        for e in engine {
            let fault = e["fault"].as_str().unwrap();
            eprintln!(
                "{path} {fault}: {} -> {}, change {:?} ms, writable {} ms after the fault; \
                 write gap naive {:?} pgsteady {:?} ms; pgsteady's first write {:?} ms after the \
                 change, {:?} ms after writable",
                e["old_leader"],
                e["new_leader"],
                e["fault_to_change_ms"].as_f64(),
                num(e, &["fault_to_writable_ms"]),
                e["naive"]["write_gap_ms"].as_f64(),
                e["pgsteady"]["write_gap_ms"].as_f64(),
                e["pgsteady"]["after_change_ms"].as_f64(),
                e["pgsteady"]["after_writable_ms"].as_f64(),
            );
            // Patroni failed over (primary_start_timeout 0) or switched over: a new leader,
            // recorded in /history.
            assert_ne!(e["old_leader"], e["new_leader"], "{path} {fault}: {e:#}");
            assert!(e["leader_change_ms"].is_number(), "{path} {fault}: {e:#}");
            let gap = e["pgsteady"]["write_gap_ms"].as_f64();
            assert!(gap.is_some_and(|g| g > 0.0), "{path} {fault}: {e:#}");
            let after = if fault == "switchover" {
                num(e, &["pgsteady", "after_change_ms"])
            } else {
                num(e, &["pgsteady", "after_writable_ms"])
            };
            assert!(
                after <= 1000.0,
                "{path} {fault}: pgsteady's first write {after} ms after the leader change: {e:#}"
            );
        }
    }
    assert!(naive_errors > 0.0, "the faults hurt nobody: {report:#}");
}

/// A failover that takes longer than pgsteady's deadline is a typed, bounded
/// error. The leader's node is killed (Patroni waits out the 10 s ttl before promoting) and
/// the deadline is 3 s: pgsteady's callers get timeouts (reason `timed_out`, or
/// `wrong_session_type` when no host matched), and no call takes much longer than 3 s; the guarantees are reported broken (exit 9).
/// Acknowledged writes are
/// still all present once.
#[tokio::test]
#[ignore = "boots a Patroni cluster: run in .ci/run's Patroni step"]
async fn ha_drill_a_failover_longer_than_the_deadline_is_a_typed_bounded_error() {
    let Some((done, report)) = drill_ha(&[
        "--faults",
        "leader-lost",
        "--paths",
        "multi-host",
        "--deadline",
        "3s",
    ])
    .await
    else {
        return;
    };
    done.assert_exit_code(9);
    assert_eq!(report["held"], Value::Bool(false));
    assert_eq!(num(&report, &["deadline_ms"]), 3000.0);
    let pass = &report["passes"][0];
    let pg = &pass["report"]["totals"]["pgsteady"];
    assert!(num(pg, &["errors"]) > 0.0, "{pg:#}");
    for (class, n) in pg["errors_by_class"].as_object().unwrap() {
        eprintln!("pgsteady past its deadline: {class} {n}");
        assert!(
            ["timed_out", "wrong_session_type"].contains(&class.as_str()),
            "not a typed timeout: {class} ({n}): {pg:#}"
        );
    }
    let e = &pass["engine"][0];
    assert!(
        num(e, &["fault_to_change_ms"]) > 5000.0,
        "the failover must outlast the deadline: {e:#}"
    );
    let longest = num(e, &["pgsteady", "longest_call_ms"]);
    assert!(
        longest < 3000.0 + 1500.0,
        "bounded by the 3 s deadline: longest call {longest} ms"
    );
    assert_eq!(
        num(pg, &["writes", "present"]),
        num(pg, &["writes", "acknowledged"]),
        "{pg:#}"
    );
    assert_eq!(num(pg, &["writes", "duplicated"]), 0.0, "{pg:#}");
    let violations = report["passes"][0]["report"]["guarantees"]["violations"]
        .as_array()
        .unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.as_str().unwrap().contains("errors surfaced")),
        "{violations:?}"
    );
}

/// Ctrl-C while the leader's node is dead and Patroni waits out its ttl: the drill exits
/// 130, no process of the cluster (etcd, Patroni, PostgreSQL, HAProxy) is left, and its
/// directory is gone.
#[tokio::test]
#[ignore = "boots a Patroni cluster: run in .ci/run's Patroni step"]
async fn ha_drill_ctrl_c_stops_every_process_and_removes_the_directory() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut running =
        TestCommand::new(["--ha", "--faults", "leader-lost", "--paths", "multi-host"]).spawn();
    let stderr = running.child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut dir = None;
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if line.contains("cannot run a Patroni cluster here") {
                return None;
            }
            if let Some(rest) = line.strip_prefix("cluster: Patroni in ") {
                dir = rest
                    .split_once(' ')
                    .map(|(d, _)| std::path::PathBuf::from(d));
            }
            if line.contains("] leader-lost (1/1)") {
                return Some(true);
            }
        }
        Some(false)
    })
    .await
    .unwrap_or_else(|_| panic!("no fault within 120 s: {seen:#?}"));
    let Some(found) = found else {
        eprintln!("skipped: {}", seen.last().unwrap());
        return;
    };
    assert!(found, "{seen:#?}");
    let dir = dir.unwrap_or_else(|| panic!("no cluster line: {seen:#?}"));
    assert!(
        !crate::drill::processes_using(&dir).is_empty(),
        "no process seen for {}",
        dir.display()
    );
    // Into the ttl wait: the node is dead, the replica not yet promoted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = running.child.id().unwrap() as i32;
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), running.child.wait())
        .await
        .expect("the drill exits within 20 s of SIGINT")
        .unwrap();
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await
    {
        rest.push(line);
    }
    assert_eq!(status.code(), Some(130), "{rest:#?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:#?}");
    assert_eq!(crate::drill::processes_using(&dir), Vec::<String>::new());
    assert!(!dir.exists(), "{} still exists", dir.display());
}
