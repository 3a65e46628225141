//! HAProxy in front of the Patroni nodes: its configuration, its start, and what it routes
//! to (read from its stats socket).

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{POLL, PatroniCluster};
use crate::{Error, Result};

/// The most we read from HAProxy's stats socket: two servers' CSV lines take about 1 KB.
const STATS_CAP: u64 = 64 * 1024;

impl PatroniCluster {
    pub(super) fn start_haproxy(&self) -> Result<()> {
        let haproxy = self.haproxy.as_ref().expect("haproxy");
        let program = self.programs.haproxy.as_ref().expect("haproxy found");
        let dir = self.dir().join("haproxy");
        fs::create_dir(&dir)?;
        self.run_as.chown(&dir)?;
        let inter = haproxy.check_interval.as_millis().max(10);
        let mut config = format!(
            "# pgsteady-testkit: Patroni's documented HAProxy setup, with short checks.\n\
             global\n    maxconn 200\n    stats socket {socket} mode 600 level user\n\n\
             defaults\n    mode tcp\n    retries 2\n    timeout connect 2s\n    \
             timeout client 30m\n    timeout server 30m\n    timeout check 2s\n\n\
             listen primary\n    bind 127.0.0.1:{port}\n    \
             option httpchk GET /primary\n    http-check expect status 200\n    \
             default-server inter {inter}ms fall 2 rise 1 on-marked-down shutdown-sessions\n",
            socket = dir.join("stats.sock").display(),
            port = haproxy.port
        );
        for node in &self.nodes {
            config.push_str(&format!(
                "    server {name} 127.0.0.1:{pg} maxconn 100 check port {rest}\n",
                name = node.name,
                pg = node.pg_port,
                rest = node.rest_port
            ));
        }
        let path = dir.join("haproxy.cfg");
        fs::write(&path, config)?;
        let log = fs::File::create(dir.join("haproxy.log"))?;
        let mut cmd = self.run_as.daemon_command(program, &dir, Signal::SIGKILL);
        // -db: stay in the foreground, no daemon.
        cmd.arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(log.try_clone()?)
            .stderr(log);
        *haproxy.child.lock().expect("haproxy state") = Some(cmd.spawn()?);
        Ok(())
    }

    /// The nodes HAProxy currently routes new connections to: those its health checks mark
    /// up (status `UP`, including `UP 1/2`, one failed check from down), read from its
    /// stats socket (`show stat`). Empty when none is up. [`Error::State`] without HAProxy.
    ///
    /// HAProxy starts every server up before its first check; [`PatroniBuilder::start`]
    /// returns only once it routes to the leader alone.
    ///
    /// [`PatroniBuilder::start`]: super::PatroniBuilder::start
    pub async fn haproxy_routes_to(&self) -> Result<Vec<String>> {
        if self.haproxy.is_none() {
            return Err(Error::State("the cluster has no HAProxy".to_owned()));
        }
        let socket = self.dir().join("haproxy").join("stats.sock");
        let read = async {
            let mut stream = tokio::net::UnixStream::connect(&socket).await?;
            stream.write_all(b"show stat\n").await?;
            let mut text = String::new();
            stream.take(STATS_CAP).read_to_string(&mut text).await?;
            Ok::<_, std::io::Error>(text)
        };
        let text = tokio::time::timeout(Duration::from_secs(2), read)
            .await
            .map_err(|_| Error::State("HAProxy's stats socket did not answer in 2 s".into()))??;
        Ok(routed_servers(&text, &self.node_names()))
    }

    fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Waits until HAProxy routes to `node` alone.
    pub(super) async fn wait_haproxy_routes_to(&self, node: &str, deadline: Instant) -> Result<()> {
        loop {
            let routes = self.haproxy_routes_to().await;
            if routes.as_ref().is_ok_and(|r| r == &[node]) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    waited: Duration::ZERO,
                    log_tail: format!("HAProxy does not route to {node} alone: {routes:?}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The servers of `show stat` CSV (`# pxname,svname,...,status,...`) whose status is UP.
fn routed_servers(csv: &str, nodes: &[String]) -> Vec<String> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let (Some(name), Some(status)) = (
        columns.iter().position(|c| *c == "svname"),
        columns.iter().position(|c| *c == "status"),
    ) else {
        return Vec::new();
    };
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|fields| {
            fields
                .get(name)
                .is_some_and(|n| nodes.iter().any(|node| node == n))
                && fields.get(status).is_some_and(|s| s.starts_with("UP"))
        })
        .map(|fields| fields[name].to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_servers_from_show_stat() {
        let csv = "# pxname,svname,qcur,status,weight\n\
                   primary,FRONTEND,,OPEN,\n\
                   primary,node1,0,UP,1\n\
                   primary,node2,0,DOWN,1\n\
                   primary,BACKEND,0,UP,1\n";
        let nodes = vec!["node1".to_owned(), "node2".to_owned()];
        assert_eq!(routed_servers(csv, &nodes), vec!["node1"]);
        let going_down = csv.replace("node1,0,UP,", "node1,0,UP 1/2,");
        assert_eq!(routed_servers(&going_down, &nodes), vec!["node1"]);
        let none = csv.replace("node1,0,UP,", "node1,0,DOWN 1/2,");
        assert!(routed_servers(&none, &nodes).is_empty());
        assert!(routed_servers("", &nodes).is_empty());
    }
}
