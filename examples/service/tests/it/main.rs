//! The example service as a real process against real PostgreSQL servers: start-up
//! before the database, graceful SIGTERM under load, logs that never show a password.

mod drain;
mod logs;
mod startup;

pub use pgsteady_testkit::http::{client as http, poll_status, status, text};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// A running `pgsteady-example-service`, its stdout and stderr collected line by line.
pub struct Service {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Starts the service for `database_url` on a free loopback port, with extra `env`, in a
    /// clean environment (no `PG*`, no `~/.pgpass`).
    pub fn spawn(database_url: &str, env: &[(&str, &str)]) -> Service {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgsteady-example-service"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PG") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", "/nonexistent")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env(
                "MIGRATIONS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the example service");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let readers = vec![
            collect(child.stdout.take().unwrap(), log.clone(), ""),
            collect(child.stderr.take().unwrap(), log.clone(), "stderr: "),
        ];
        Service {
            child,
            log,
            readers,
        }
    }

    /// Every line logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains every one of `needles`; returns that line.
    pub async fn wait_log(&self, needles: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} within {within:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The address the service listens on (from its `listening` log line).
    pub async fn addr(&self) -> String {
        let line = self
            .wait_log(&["\"listening\""], Duration::from_secs(10))
            .await;
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        json["fields"]["addr"].as_str().unwrap().to_owned()
    }

    pub async fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr().await)
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id().unwrap() as i32), signal).unwrap();
    }

    /// Waits for the process to exit (at most `within`), then for its output to end.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {within:?}:\n{}", self.logs()))
            .unwrap();
        // The readers finish once the pipes close.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status
    }

    /// Every stdout line is one JSON object.
    pub fn assert_json_lines(&self) {
        for line in self.log.lock().unwrap().iter() {
            assert!(!line.starts_with("stderr: "), "unexpected stderr: {line}");
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        }
    }
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    prefix: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push(format!("{prefix}{line}"));
        }
    })
}

/// docs/example-service.md shows the compose file and the Deployment exactly as they are in this directory.
#[test]
fn readme_shows_the_deployment_files_verbatim() {
    let readme = include_str!("../../../../docs/example-service.md");
    for (name, text) in [
        ("compose.yaml", include_str!("../../compose.yaml")),
        ("deployment.yaml", include_str!("../../deployment.yaml")),
    ] {
        assert!(
            readme.contains(&format!("```yaml\n{text}```")),
            "docs/example-service.md does not show examples/service/{name} as it is"
        );
    }
}
