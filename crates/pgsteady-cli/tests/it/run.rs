//! `pgsteady run -- CMD`: waits, migrates, runs the command as a child, forwards
//! SIGTERM/SIGINT/SIGHUP, serves the health endpoints meanwhile, and exits with the child's
//! code (128+N when signal N killed it).

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgsteady_testkit::Cluster;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::TestCommand;
use crate::serve::{announced_addr, http, poll_status, status};

fn run(cluster: &Cluster, script: &str) -> TestCommand {
    TestCommand::new(["run", &cluster.url(), "--quiet", "--", "sh", "-c", script])
}

#[tokio::test]
async fn exit_codes_pass_through() {
    let cluster = Cluster::start().await.unwrap();
    for code in [0, 1, 42] {
        run(&cluster, &format!("exit {code}"))
            .run()
            .await
            .assert_exit_code(code)
            .assert_no_secret(cluster.password());
    }
    // Killed by a signal: 128 + N, as a shell reports it.
    run(&cluster, "kill -KILL $$")
        .run()
        .await
        .assert_exit_code(137);
    run(&cluster, "kill -TERM $$")
        .run()
        .await
        .assert_exit_code(143);
    TestCommand::new(["run", &cluster.url(), "--quiet", "--", "/nonexistent/cmd"])
        .run()
        .await
        .assert_exit_code(127);
    // Not ready: the command does not run.
    let down = Cluster::builder().init().await.unwrap();
    let done = TestCommand::new([
        "run",
        &down.url(),
        "--timeout",
        "300ms",
        "--",
        "sh",
        "-c",
        "echo ran",
    ])
    .run()
    .await;
    done.assert_exit_code(1).assert_no_secret(down.password());
    assert!(!done.stdout().contains("ran"), "{done:#?}");
    assert!(
        done.stderr().contains("pgsteady run: not ready"),
        "{done:#?}"
    );
}

/// SIGHUP, SIGINT, SIGQUIT and SIGTERM sent to pgsteady reach the child; pgsteady stays the
/// parent.
#[tokio::test]
async fn signals_are_forwarded_to_the_child() {
    let cluster = Cluster::start().await.unwrap();
    let script = "trap 'echo got-hup' HUP; trap 'echo got-int' INT; trap 'echo got-quit' QUIT; \
                  trap 'echo got-term; exit 42' TERM; echo started; \
                  while true; do sleep 0.05; done";
    let mut running = run(&cluster, script).spawn();
    let mut lines = BufReader::new(running.child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line within 10 s")
            .unwrap()
    };
    assert_eq!(next().await.as_deref(), Some("started"));
    let pid = running.child.id().unwrap() as i32;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "pgsteady", "pgsteady stays the parent");
    kill(Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    assert_eq!(next().await.as_deref(), Some("got-hup"));
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    assert_eq!(next().await.as_deref(), Some("got-int"));
    kill(Pid::from_raw(pid), Signal::SIGQUIT).unwrap();
    assert_eq!(next().await.as_deref(), Some("got-quit"));
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    assert_eq!(next().await.as_deref(), Some("got-term"));
    let status = tokio::time::timeout(Duration::from_secs(5), running.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(42));

    // A child that does not handle SIGTERM dies of it: 143.
    let mut running = run(&cluster, "echo started; exec sleep 30").spawn();
    let mut lines = BufReader::new(running.child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    assert_eq!(first.unwrap().unwrap().as_deref(), Some("started"));
    kill(
        Pid::from_raw(running.child.id().unwrap() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), running.child.wait())
        .await
        .expect("forwarded at once, not after the child's 30 s")
        .unwrap();
    assert_eq!(status.code(), Some(143));

    // SIGQUIT likewise: pgsteady exits with the child (131), which is gone, not orphaned.
    let mut running = run(&cluster, "echo started; exec sleep 30").spawn();
    let mut lines = BufReader::new(running.child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    assert_eq!(first.unwrap().unwrap().as_deref(), Some("started"));
    let pid = running.child.id().unwrap() as i32;
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let child: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGQUIT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), running.child.wait())
        .await
        .expect("forwarded at once")
        .unwrap();
    assert_eq!(status.code(), Some(131));
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists()
            || std::fs::read_to_string(format!("/proc/{child}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the child {child} outlived pgsteady"
    );
}

/// The child starts with SIGPIPE and SIGTERM at their default disposition, as if a shell had
/// started it. (The blocked-signal set is inherited from whoever started pgsteady, as with
/// any fork and exec; `signals_are_forwarded_to_the_child` covers delivery.)
#[tokio::test]
async fn child_starts_with_default_signal_state() {
    let cluster = Cluster::start().await.unwrap();
    let done = run(&cluster, "grep -E '^(SigIgn|SigBlk)' /proc/$$/status")
        .run()
        .await;
    done.assert_exit_code(0);
    let mask = |name: &str| {
        let line = done.stdout().lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let (sigpipe, sigterm) = (1u64 << (13 - 1), 1u64 << (15 - 1));
    assert_eq!(mask("SigIgn") & (sigpipe | sigterm), 0, "{}", done.stdout());
}

/// `--migrate DIR` applies the files before the command starts; `--health-listen` serves
/// the endpoints while it runs and `/readyz` turns `draining` on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_then_runs_with_health_endpoints() {
    let cluster = Cluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_create_marker.sql"),
        "CREATE TABLE run_marker (id int);",
    )
    .unwrap();
    // On SIGTERM the child takes a moment to stop, during which `/readyz` says `draining`.
    let script = "trap 'echo got-term; sleep 0.5; exit 0' TERM; echo started; \
                  while true; do sleep 0.05; done";
    let mut running = TestCommand::new([
        "run",
        &cluster.url(),
        "--migrate",
        dir.path().to_str().unwrap(),
        "--health-listen",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        script,
    ])
    .spawn();
    let mut stderr = BufReader::new(running.child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let addr = announced_addr(&mut stderr, &mut log).await;
    let mut stdout = BufReader::new(running.child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("the child starts within 10 s")
            .unwrap()
            .expect("stdout open");
        out.push_str(&line);
        out.push('\n');
        if line == "started" {
            break;
        }
    }
    let (client, conn) = cluster
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let exists: bool = client
        .query_one("SELECT to_regclass('run_marker') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    assert!(exists, "the migration ran before the command");

    let http = http();
    let readyz = format!("http://{addr}/readyz");
    poll_status(&http, &readyz, 200, Duration::from_secs(5)).await;
    assert_eq!(
        status(&http, &format!("http://{addr}/livez")).await,
        Some(200)
    );
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pgsteady_readiness_state{state=\"ready\"} 1"),
        "{metrics}"
    );

    kill(
        Pid::from_raw(running.child.id().unwrap() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(5), stdout.next_line()).await;
    assert_eq!(line.unwrap().unwrap().as_deref(), Some("got-term"));
    let body = http.get(&readyz).send().await.unwrap();
    assert_eq!(body.status().as_u16(), 503);
    let body = body.text().await.unwrap();
    assert!(body.contains(r#""state":"draining""#), "{body}");
    let status = tokio::time::timeout(Duration::from_secs(5), running.child.wait())
        .await
        .unwrap()
        .unwrap();
    while let Ok(Some(line)) = stdout.next_line().await {
        out.push_str(&line);
        out.push('\n');
    }
    while let Ok(Some(line)) = stderr.next_line().await {
        log.push_str(&line);
        log.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{out}{log}");
    assert!(!out.contains(cluster.password()) && !log.contains(cluster.password()));
}
