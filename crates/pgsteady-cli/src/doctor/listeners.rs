//! Listening TCP sockets on loopback, from /proc/net/tcp{,6}, and which of them answer
//! PostgreSQL's SSLRequest (a PostgreSQL server answers a single `S` or `N`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Listening sockets reachable on loopback (bound to loopback or to every address).
pub(crate) fn loopback_listeners() -> Vec<SocketAddr> {
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

/// Parses a /proc/net/tcp table: `sl local_address rem_address st ...`, state 0A = LISTEN.
pub(crate) fn parse(text: &str, v6: bool) -> Vec<SocketAddr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
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
            reachable.then_some(SocketAddr::new(dial, port))
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
        s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .ok()?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.ok()?;
        Some(matches!(b[0], b'S' | b'N'))
    };
    tokio::time::timeout(timeout, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Loopback listeners that look like PostgreSQL, at most `limit` probed, concurrently.
pub(crate) async fn postgres_listeners(skip_port: u16, limit: usize) -> Vec<SocketAddr> {
    let candidates: Vec<SocketAddr> = loopback_listeners()
        .into_iter()
        .filter(|a| a.port() != skip_port)
        .take(limit)
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
        assert_eq!(
            parse(v4, false),
            vec![
                "127.0.0.1:5432".parse().unwrap(),
                "127.0.0.1:5433".parse().unwrap()
            ]
        );
        let v6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000000000000:1539 00000000000000000000000000000000:0000 0A
";
        assert_eq!(
            parse(v6, true),
            vec!["[::1]:5432".parse().unwrap(), "[::1]:5433".parse().unwrap()]
        );
    }
}
