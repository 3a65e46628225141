//! Counting connection attempts at the server's port.
//!
//! A [`FaultProxy`] in front of the server counts the connections it accepts, but it is not
//! transparent while the server is down: the proxy's own socket completes every TCP
//! handshake, then finds nothing upstream and resets the connection. Clients see "connection
//! reset" where, connecting directly, they would see "connection refused", and clients that
//! treat the two differently behave differently (sqlx retries a refused connect inside
//! `acquire` but surfaces a reset one to the caller at once). So by default the benchmark
//! connects directly and counts TCP SYNs to the server's port with an nftables counter, in a
//! private network namespace so that nothing outside the benchmark is touched
//! ([`pgsteady_testkit::netns::isolate_thread`]). The proxy stays available as an option.

use std::process::Stdio;

use pgsteady_testkit::FaultProxy;
use tokio::io::AsyncWriteExt;

use crate::subject::BoxError;

/// Where connection attempts are counted.
#[derive(Debug)]
pub enum AttemptCounter {
    /// SYNs to the server's port, counted by nftables.
    Syn(SynCounter),
    /// Connections accepted by a fault proxy the clients connect through.
    Proxy(FaultProxy),
    /// Not counted.
    None,
}

impl AttemptCounter {
    /// Attempts so far (since the counter was installed), if counted.
    pub async fn total(&self) -> Option<u64> {
        match self {
            AttemptCounter::Syn(counter) => counter.read().await.ok(),
            AttemptCounter::Proxy(proxy) => Some(proxy.stats().accepted),
            AttemptCounter::None => None,
        }
    }

    /// The proxy, when clients go through one.
    pub fn proxy(&self) -> Option<&FaultProxy> {
        match self {
            AttemptCounter::Proxy(proxy) => Some(proxy),
            _ => None,
        }
    }
}

/// An nftables counter of TCP SYNs (connection attempts) to one port, in the calling
/// thread's network namespace; removed on drop.
#[derive(Debug)]
pub struct SynCounter {
    table: String,
}

impl SynCounter {
    /// Installs the counter. Needs root and `nft`; call it inside a private network
    /// namespace.
    pub async fn install(port: u16) -> Result<SynCounter, BoxError> {
        let table = format!("pgsteady_bench_{port}");
        let rules = format!(
            "table inet {table} {{\n\
               counter syns {{ }}\n\
               chain input {{\n\
                 type filter hook input priority 0; policy accept;\n\
                 tcp dport {port} tcp flags & (syn | ack) == syn counter name \"syns\"\n\
               }}\n\
             }}\n"
        );
        nft(&["-f", "-"], Some(&rules)).await?;
        Ok(SynCounter { table })
    }

    /// SYNs counted so far.
    pub async fn read(&self) -> Result<u64, BoxError> {
        let out = nft(
            &["-j", "list", "counter", "inet", &self.table, "syns"],
            None,
        )
        .await?;
        packets(&out).ok_or_else(|| format!("no packet count in nft output: {out}").into())
    }
}

impl Drop for SynCounter {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The counter's packets in `nft -j list counter` output.
fn packets(json: &str) -> Option<u64> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    doc.get("nftables")?
        .as_array()?
        .iter()
        .find_map(|item| item.get("counter")?.get("packets")?.as_u64())
}

async fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, BoxError> {
    let mut child = tokio::process::Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(format!(
            "nft {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packet_count_is_read_from_nft_json() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"counter": {"family": "inet", "name": "syns", "table": "t", "handle": 2,
             "packets": 3, "bytes": 180}}]}"#;
        assert_eq!(packets(out), Some(3));
        assert_eq!(packets(r#"{"nftables": []}"#), None);
        assert_eq!(packets("not json"), None);
    }
}
