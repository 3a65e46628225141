//! Listening TCP sockets on loopback, from /proc/net/tcp{,6}, and which of them answer
//! PostgreSQL's SSLRequest (a PostgreSQL server answers a single `S` or `N`).
//!
//! Only plausible candidates are probed, so doctor does not poke unrelated services: sockets
//! owned by a `postgres` process or by `docker-proxy` (a published container port), ports the
//! compose file publishes, and 5432-5439 when the owner cannot be seen.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pgsteady::connect::{SslAnswer, request_ssl};

/// A listening socket: where to dial it and its inode (to find the owning process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    pub(crate) inode: u64,
}

/// Listening sockets reachable on loopback (bound to loopback or to every address).
pub(crate) fn loopback_listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse(&text, v6));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The command name (`/proc/<pid>/comm`) of the process owning each socket inode, for the
/// processes this user may inspect.
fn owners() -> HashMap<u64, String> {
    let mut map = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in procs.flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
            {
                map.insert(inode, comm.clone());
            }
        }
    }
    map
}

/// Parses a /proc/net/tcp table: `sl local_address rem_address st ... inode`, state 0A =
/// LISTEN.
pub(crate) fn parse(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = *fields.get(1)?;
            let state = *fields.get(3)?;
            let inode = fields.get(9).and_then(|i| i.parse().ok()).unwrap_or(0);
            if state != "0A" {
                return None;
            }
            let (ip_hex, port_hex) = local.split_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let ip = if v6 {
                parse_v6(ip_hex)?
            } else {
                parse_v4(ip_hex)?
            };
            let reachable = ip.is_loopback() || ip.is_unspecified();
            let dial = match ip {
                IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                other => other,
            };
            reachable.then_some(Listener {
                addr: SocketAddr::new(dial, port),
                inode,
            })
        })
        .collect()
}

/// The kernel prints each 32-bit word in host byte order (little-endian here).
fn parse_v4(hex: &str) -> Option<IpAddr> {
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(n.swap_bytes())))
}

fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for word in 0..4 {
        let w = u32::from_str_radix(&hex[word * 8..word * 8 + 8], 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&w.swap_bytes().to_be_bytes());
    }
    let v6 = Ipv6Addr::from(bytes);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

/// Whether `addr` answers the SSLRequest like PostgreSQL, within `timeout`.
pub(crate) async fn looks_like_postgres(addr: SocketAddr, timeout: Duration) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let answer = request_ssl(&mut s).await.ok()?;
        Some(matches!(answer, SslAnswer::Offered | SslAnswer::Declined))
    };
    tokio::time::timeout(timeout, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Loopback listeners that answer like PostgreSQL, among the plausible candidates (see the
/// module docs; `published` are the host ports a compose file publishes), probed concurrently.
pub(crate) async fn postgres_listeners(skip_port: u16, published: &[u16]) -> Vec<SocketAddr> {
    let owners = owners();
    let candidates: Vec<SocketAddr> = loopback_listeners()
        .into_iter()
        .filter(|l| l.addr.port() != skip_port)
        .filter(|l| {
            let port = l.addr.port();
            published.contains(&port)
                || match owners.get(&l.inode) {
                    Some(comm) => {
                        matches!(comm.as_str(), "postgres" | "postmaster" | "docker-proxy")
                    }
                    None => (5432..=5439).contains(&port),
                }
        })
        .map(|l| l.addr)
        .take(64)
        .collect();
    let probes = candidates.iter().map(|a| {
        let a = *a;
        async move { (a, looks_like_postgres(a, Duration::from_millis(500)).await) }
    });
    let mut found: Vec<SocketAddr> = futures_util::future::join_all(probes)
        .await
        .into_iter()
        .filter_map(|(a, yes)| yes.then_some(a))
        .collect();
    // One line per port: prefer the IPv4 address.
    found.sort_by_key(|a| (a.port(), a.is_ipv6()));
    found.dedup_by_key(|a| a.port());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:1539 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1538 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   104        0 3 1 0000000000000000 100 0 0 10 0
   3: 0A00000A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 4 1 0000000000000000 100 0 0 10 0
";
        let addrs = |v: Vec<Listener>| v.into_iter().map(|l| l.addr).collect::<Vec<_>>();
        assert_eq!(
            addrs(parse(v4, false)),
            vec![
                "127.0.0.1:5432".parse().unwrap(),
                "127.0.0.1:5433".parse().unwrap()
            ]
        );
        assert_eq!(parse(v4, false)[1].inode, 2);
        let v6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000000000000:1539 00000000000000000000000000000000:0000 0A
";
        assert_eq!(
            addrs(parse(v6, true)),
            vec!["[::1]:5432".parse().unwrap(), "[::1]:5433".parse().unwrap()]
        );
    }
}
