//! Reading Patroni's REST API: who is leader (`GET /cluster`) and when the leader changed
//! (`GET /history`).

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::PatroniCluster;
use crate::{Error, Result};

/// A member's role as Patroni reports it in `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Holds the leader key: the primary.
    Leader,
    /// A replica.
    Replica,
    /// The synchronous replica ([`super::PatroniBuilder::synchronous_mode`]).
    SyncStandby,
    /// Any other role Patroni names (`standby_leader`...).
    Other(String),
}

/// One member of the cluster as Patroni's REST API reports it (`GET /cluster`). This is
/// Patroni's view, stored in etcd: a node that just died is still listed, in the role it
/// had, until its key expires (`ttl`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The member name (`node1`, `node2`).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its state as Patroni last wrote it (`running`, `starting`, `stopped`,
    /// `crashed`, `creating replica`...).
    pub state: String,
    /// Its PostgreSQL port.
    pub pg_port: Option<u16>,
    /// Its timeline, when reported.
    pub timeline: Option<u64>,
    /// For a replica, how many bytes of WAL it is behind the leader, when known.
    pub lag: Option<u64>,
}

impl Member {
    /// True for the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// One leader change as Patroni records it in `GET /history`: a promotion, which started a
/// new timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderChange {
    /// The timeline the promotion started (Patroni's entry names the one it ended, one less).
    pub timeline: u64,
    /// Where the old timeline ended (a WAL position as a byte offset).
    pub lsn: u64,
    /// PostgreSQL's reason from the timeline history file (`no recovery target specified`).
    pub reason: String,
    /// When the promotion happened: the modification time of the new timeline's history
    /// file, which PostgreSQL writes while it promotes and Patroni copies into `/history`
    /// (microseconds). `None` when Patroni did not record it.
    pub at: Option<SystemTime>,
    /// The member that was promoted, when Patroni recorded it.
    pub new_leader: Option<String>,
}

#[derive(Deserialize)]
struct ClusterJson {
    members: Vec<MemberJson>,
}

#[derive(Deserialize)]
struct MemberJson {
    name: String,
    role: String,
    #[serde(default)]
    state: String,
    port: Option<u16>,
    timeline: Option<u64>,
    lag: Option<serde_json::Value>,
}

impl From<MemberJson> for Member {
    fn from(m: MemberJson) -> Member {
        Member {
            name: m.name,
            role: match m.role.as_str() {
                "leader" => Role::Leader,
                "replica" => Role::Replica,
                "sync_standby" => Role::SyncStandby,
                other => Role::Other(other.to_owned()),
            },
            state: m.state,
            pg_port: m.port,
            timeline: m.timeline,
            // "unknown" when the replica has not reported a position.
            lag: m.lag.and_then(|v| v.as_u64()),
        }
    }
}

impl PatroniCluster {
    /// Every member as Patroni reports it (`GET /cluster` from the first node whose REST API
    /// answers), sorted by name.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let cluster: ClusterJson = self.rest_get("/cluster").await?;
        Ok(cluster.members.into_iter().map(Member::from).collect())
    }

    /// The member holding the leader key, or an [`Error::State`] when there is none (during
    /// a failover).
    pub async fn leader(&self) -> Result<Member> {
        self.members()
            .await?
            .into_iter()
            .find(Member::is_leader)
            .ok_or_else(|| Error::State("the Patroni cluster has no leader".to_owned()))
    }

    /// Every leader change Patroni recorded (`GET /history`), oldest first. The bootstrap is
    /// not one: a fresh cluster has none.
    pub async fn history(&self) -> Result<Vec<LeaderChange>> {
        let lines: Vec<Vec<serde_json::Value>> = self.rest_get("/history").await?;
        Ok(lines
            .iter()
            .filter_map(|line| parse_history_line(line))
            .collect())
    }

    /// GET `path` from each node's REST API in turn; the first answer wins.
    async fn rest_get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let mut errors = Vec::new();
        for node in &self.nodes {
            let url = format!("{}{path}", node.rest_url());
            match self.http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    // Patroni's answers are a few kilobytes; reqwest's `json` feature is off.
                    match resp.bytes().await.map(|b| serde_json::from_slice::<T>(&b)) {
                        Ok(Ok(value)) => return Ok(value),
                        Ok(Err(e)) => errors.push(format!("{url}: {e}")),
                        Err(e) => errors.push(format!("{url}: {e}")),
                    }
                }
                Ok(resp) => errors.push(format!("{url}: HTTP {}", resp.status())),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(Error::State(format!(
            "no Patroni REST API answered: {}",
            errors.join("; ")
        )))
    }

    /// The HTTP status of `GET path` on one node's REST API (e.g. `/primary`: 200 on the
    /// leader, 503 elsewhere, which is what HAProxy checks).
    pub async fn rest_status(&self, node: &str, path: &str) -> Result<u16> {
        let node = self.node(node)?;
        let resp = self
            .http
            .get(format!("{}{path}", node.rest_url()))
            .send()
            .await
            .map_err(|e| Error::State(format!("{}: {e}", node.rest_url())))?;
        Ok(resp.status().as_u16())
    }
}

/// `[timeline, lsn, reason, timestamp, new_leader]`; the last two may be missing.
fn parse_history_line(line: &[serde_json::Value]) -> Option<LeaderChange> {
    Some(LeaderChange {
        timeline: line.first()?.as_u64()? + 1,
        lsn: line.get(1)?.as_u64()?,
        reason: line.get(2)?.as_str().unwrap_or_default().to_owned(),
        at: line.get(3).and_then(|v| v.as_str()).and_then(parse_iso8601),
        new_leader: line.get(4).and_then(|v| v.as_str()).map(str::to_owned),
    })
}

/// Python's `isoformat()`: `2026-12-05T14:03:01.123456+00:00` (the offset optional, the
/// fraction absent when zero). humantime reads the date and time as UTC; the offset is
/// applied here.
fn parse_iso8601(text: &str) -> Option<SystemTime> {
    let (local, offset) = match text.len().checked_sub(6).map(|i| text.split_at(i)) {
        Some((local, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes()[3] == b':' =>
        {
            let hours: u64 = offset[1..3].parse().ok()?;
            let minutes: u64 = offset[4..6].parse().ok()?;
            let secs = Duration::from_secs(hours * 3600 + minutes * 60);
            (local, Some((offset.starts_with('+'), secs)))
        }
        _ => (text.trim_end_matches('Z'), None),
    };
    let utc_as_if = humantime::parse_rfc3339_weak(local).ok()?;
    Some(match offset {
        // 14:00+02:00 is 12:00 UTC.
        Some((true, secs)) => utc_as_if.checked_sub(secs)?,
        Some((false, secs)) => utc_as_if.checked_add(secs)?,
        None => utc_as_if,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn parses_python_isoformat_with_offsets() {
        let at = UNIX_EPOCH + Duration::from_micros(1_764_943_381_123_456);
        assert_eq!(parse_iso8601("2025-12-05T14:03:01.123456+00:00"), Some(at));
        assert_eq!(parse_iso8601("2025-12-05T16:03:01.123456+02:00"), Some(at));
        assert_eq!(parse_iso8601("2025-12-05T13:33:01.123456-00:30"), Some(at));
        assert_eq!(
            parse_iso8601("2025-12-05T14:03:01+00:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_764_943_381))
        );
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn parses_history_lines_old_and_new() {
        let line: Vec<serde_json::Value> = serde_json::from_str(
            r#"[1, 50331808, "no recovery target specified", "2025-12-05T14:03:01.123456+00:00", "node2"]"#,
        )
        .unwrap();
        let change = parse_history_line(&line).unwrap();
        assert_eq!(change.timeline, 2);
        assert_eq!(change.lsn, 50_331_808);
        assert_eq!(change.new_leader.as_deref(), Some("node2"));
        assert!(change.at.is_some());
        let old: Vec<serde_json::Value> =
            serde_json::from_str(r#"[3, 100, "no recovery target specified"]"#).unwrap();
        let change = parse_history_line(&old).unwrap();
        assert_eq!(
            (change.timeline, change.at, change.new_leader),
            (4, None, None)
        );
    }

    #[test]
    fn reads_members_from_cluster_json() {
        let json = r#"{"members": [
            {"name": "node1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:1/patroni", "host": "127.0.0.1", "port": 5432, "timeline": 2},
            {"name": "node2", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 5433, "timeline": 2, "lag": 0},
            {"name": "node3", "role": "replica", "state": "starting", "lag": "unknown"}
        ]}"#;
        let cluster: ClusterJson = serde_json::from_str(json).unwrap();
        let members: Vec<Member> = cluster.members.into_iter().map(Member::from).collect();
        assert!(members[0].is_leader());
        assert_eq!(members[1].role, Role::Replica);
        assert_eq!(members[1].lag, Some(0));
        assert_eq!(members[2].lag, None);
        assert_eq!(members[0].pg_port, Some(5432));
    }
}
