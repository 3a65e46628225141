//! Tests of the test kit itself, against real PostgreSQL servers: every control is observed
//! from a tokio-postgres client.

mod blackhole;
mod cleanup;
mod cluster;
mod faults;
mod pgbouncer;
mod proxy;
mod replication;
mod workload;

use std::time::Duration;

use std::task::Poll;

use tokio_postgres::error::SqlState;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Error, NoTls, Socket};

/// How a connection ended, as seen by the task driving it.
#[derive(Debug)]
pub struct Ended {
    /// The error the connection ended with (`Ok` for a clean close).
    pub result: Result<(), Error>,
    /// The code of the last notice received: a session ended because another backend crashed
    /// (57P02) or by an immediate shutdown is told so by a WARNING notice, then the socket
    /// closes without an error message.
    pub last_notice: Option<SqlState>,
}

impl Ended {
    /// The server's reason: the error's code, else the last notice's.
    pub fn code(&self) -> Option<SqlState> {
        match &self.result {
            Err(e) if e.code().is_some() => e.code().cloned(),
            _ => self.last_notice.clone(),
        }
    }
}

/// The single value of a one-row, one-column query; panics on any error.
pub async fn scalar<T: tokio_postgres::types::FromSqlOwned>(client: &Client, sql: &str) -> T {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Connects and drives the connection on a task that reports how it ended.
pub async fn connect(config: &Config) -> Result<(Client, tokio::task::JoinHandle<Ended>), Error> {
    let (client, mut connection) = connect_raw(config).await?;
    let driver = tokio::spawn(async move {
        let mut last_notice = None;
        let result = std::future::poll_fn(|cx| {
            loop {
                match connection.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notice(notice)))) => {
                        last_notice = Some(notice.code().clone());
                    }
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        Ended {
            result,
            last_notice,
        }
    });
    Ok((client, driver))
}

async fn connect_raw(config: &Config) -> Result<(Client, Connection<Socket, NoTlsStream>), Error> {
    config.connect(NoTls).await
}

/// A config with a connect timeout, so a test never hangs on a dead server.
pub fn with_timeout(mut config: Config) -> Config {
    config.connect_timeout(Duration::from_secs(5));
    config
}

/// The io::ErrorKind somewhere in an error's source chain.
pub fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// Pids of live processes running in `dir` or below it (every server process runs in its
/// data directory, backends included, whose command lines do not name it).
pub fn processes_in(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            !zombie && cwd.is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}
