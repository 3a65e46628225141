//! `pgsteady doctor --patroni URL`: does Patroni's view of the cluster agree with the
//! servers' own? For each Patroni REST address, `GET /patroni` (that node's own name, role
//! and state) and, from the first that answers, `GET /cluster` (every member's role, host and
//! port); then each member's server is asked `pg_is_in_recovery()` with the target's
//! credentials. A leader must not be in recovery, a replica must be: a disagreement (a
//! promotion in progress, a server started by hand, a split brain) is a failing `patroni`
//! layer with a fix.

use std::time::Duration;

use pgsteady::config::{Host, HostSpec, TargetSessionAttrs};
use pgsteady::{Config, Connector};
use serde::Deserialize;

use crate::finding::{Layer, Status};
use crate::query::{self, MAX_QUERY_BYTES, QueryError};
use crate::report::HostReport;

/// `--patroni`: an `http://host:port` address of a Patroni REST API (trailing `/` removed).
///
/// An error never repeats credentials given in the address (`http://user:password@...`):
/// the text is shown with them redacted.
pub fn parse_url(text: &str) -> Result<String, String> {
    let shown = redacted(text);
    let rest = text.strip_prefix("http://").ok_or_else(|| {
        format!("{shown}: must start with http:// (Patroni's REST API, e.g. http://db1:8008)")
    })?;
    if rest.contains('@') {
        return Err(format!(
            "{shown}: expected http://HOST:PORT, without credentials (doctor reads Patroni's \
             REST API without authentication)"
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{shown}: expected http://HOST:PORT"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// `text` escaped, with everything between the scheme and the LAST `@` anywhere in it (a
/// user and password) replaced. Not the last `@` of the authority: a password may hold `/`,
/// `?`, `#` or `@` itself, and where the authority ends cannot be known before the
/// credentials are gone. An `@` in a path hides the path's start too, which only shows less.
fn redacted(text: &str) -> String {
    let joined = match text.rfind('@') {
        None => text.to_owned(),
        Some(at) => {
            // The scheme is kept only when it looks like one: `u:pw@h://x` has none.
            let scheme = text[..at].find("://").map(|i| &text[..i + 3]).filter(|s| {
                s[..s.len() - 3]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            });
            format!("{}<redacted>@{}", scheme.unwrap_or(""), &text[at + 1..])
        }
    };
    pgsteady::text::sanitize(&joined).into_owned()
}

#[derive(Debug, Deserialize)]
struct ClusterJson {
    members: Vec<MemberJson>,
}

#[derive(Debug, Clone, Deserialize)]
struct MemberJson {
    name: String,
    role: String,
    #[serde(default)]
    state: String,
    host: Option<String>,
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct NodeJson {
    #[serde(default)]
    role: String,
    #[serde(default)]
    state: String,
    patroni: Option<NodeName>,
}

#[derive(Debug, Deserialize)]
struct NodeName {
    name: Option<String>,
}

/// What Patroni says a member's server should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Leader: read-write, not in recovery.
    Primary,
    /// Replica, sync standby, standby leader: in recovery.
    Standby,
    /// Anything else (uninitialized, ...): nothing to compare.
    Unknown,
}

fn expect(role: &str) -> Expect {
    match role {
        "leader" | "master" | "primary" => Expect::Primary,
        "replica" | "sync_standby" | "standby_leader" | "standby" => Expect::Standby,
        _ => Expect::Unknown,
    }
}

/// The most bytes of one REST reply doctor reads.
const MAX_REPLY: usize = 1 << 20;

async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e:#}"))?;
    // Patroni answers /patroni with 503 when its server is not running, body included. The
    // client's timeout bounds the wait; this cap bounds the memory (a Patroni reply is a few
    // KB; something else answering on that port may stream without end).
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e:#}"))?
    {
        if body.len() + chunk.len() > MAX_REPLY {
            return Err(format!(
                "GET {url}: the reply exceeds {MAX_REPLY} bytes: not Patroni's REST API"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not Patroni's JSON: {e:#}"))
}

/// Runs the check and adds a `patroni` layer per member to `hosts` (to the target host of
/// the same address, else as a host of its own) and one per unreachable REST address.
pub(crate) async fn check(
    config: &Config,
    urls: &[String],
    timeout: Duration,
    hosts: &mut Vec<HostReport>,
) {
    let http = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            push(
                hosts,
                "patroni",
                fail(format!("cannot build an HTTP client: {e:#}"), vec![]),
            );
            return;
        }
    };
    // Each node's own view, then the cluster's.
    let mut own: Vec<(String, NodeJson)> = Vec::new();
    let mut members: Option<Vec<MemberJson>> = None;
    for url in urls {
        match get::<NodeJson>(&http, &format!("{url}/patroni")).await {
            Ok(node) => own.push((url.clone(), node)),
            Err(e) => push(
                hosts,
                url,
                fail(
                    e,
                    vec![format!(
                        "check the address (Patroni's restapi.listen, port 8008 by default) and that Patroni runs there: curl {url}/patroni"
                    )],
                ),
            ),
        }
        if members.is_none() {
            members = get::<ClusterJson>(&http, &format!("{url}/cluster"))
                .await
                .ok()
                .map(|c| c.members);
        }
    }
    let Some(members) = members else {
        if !own.is_empty() {
            push(
                hosts,
                "patroni",
                fail(
                    "no Patroni REST address answered GET /cluster".to_owned(),
                    vec![],
                ),
            );
        }
        return;
    };
    // Patroni's JSON is text from outside: escaped before any layer shows it.
    let clean = |s: &str| pgsteady::text::sanitize_to(s, 200).into_owned();
    let members: Vec<MemberJson> = members
        .into_iter()
        .map(|m| MemberJson {
            name: clean(&m.name),
            role: clean(&m.role),
            state: clean(&m.state),
            host: m.host.as_deref().map(clean),
            port: m.port,
        })
        .collect();
    for (_, node) in &mut own {
        node.role = clean(&node.role);
        node.state = clean(&node.state);
    }
    for member in &members {
        // A node's own answer wins over the cluster's record of it.
        let (role, state, source) = match own.iter().find(|(_, n)| {
            n.patroni.as_ref().and_then(|p| p.name.as_deref()) == Some(member.name.as_str())
        }) {
            Some((url, n)) => (n.role.clone(), n.state.clone(), format!("{url}/patroni")),
            None => (
                member.role.clone(),
                member.state.clone(),
                "/cluster".to_owned(),
            ),
        };
        let (Some(host), Some(port)) = (member.host.clone(), member.port) else {
            push(
                hosts,
                &member.name,
                warn(format!("{}: Patroni reports no host and port", member.name)),
            );
            continue;
        };
        let addr = format!("{host}:{port}");
        let server = in_recovery(config, &host, port, timeout).await;
        let layer = compare(&member.name, &role, &state, &source, server);
        push(hosts, &addr, layer);
    }
}

/// Asks the member's server whether it is in recovery, with the target's credentials.
async fn in_recovery(
    config: &Config,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<bool, String> {
    let mut single = config.clone();
    single.hosts = vec![HostSpec {
        host: Host::Tcp(host.to_owned()),
        hostaddr: None,
        port,
    }];
    single.target_session_attrs = TargetSessionAttrs::Any;
    let connector = Connector::new(single)
        .map_err(|e| format!("{e:#}"))?
        .with_attempt_timeout(timeout);
    let connected = connector
        .connect_once()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let sql = "SELECT pg_is_in_recovery()::text AS in_recovery";
    let rows = query::rows(&connected.client, sql, 1, MAX_QUERY_BYTES, timeout)
        .await
        .map_err(|e| match e {
            QueryError::TimedOut(_) => {
                format!("no answer to SELECT pg_is_in_recovery() within {timeout:?}")
            }
            other => other.to_string(),
        })?;
    let row = rows
        .first()
        .ok_or_else(|| "SELECT pg_is_in_recovery() returned no row".to_owned())?;
    Ok(query::required(row, "in_recovery")? == "true")
}

/// The `patroni` layer of one member: Patroni's role against its server's recovery state.
fn compare(
    name: &str,
    role: &str,
    state: &str,
    source: &str,
    server: Result<bool, String>,
) -> Layer {
    let said = format!("Patroni ({source}) says {name} is {role} ({state})");
    match (expect(role), server) {
        (Expect::Primary, Ok(false)) => ok(format!(
            "{name}: leader; its server is a primary (not in recovery)"
        )),
        (Expect::Standby, Ok(true)) => ok(format!(
            "{name}: {role}; its server is a standby (in recovery)"
        )),
        (Expect::Unknown, Ok(r)) => warn(format!(
            "{said}; its server is {}",
            if r { "in recovery" } else { "a primary" }
        )),
        (Expect::Primary, Ok(true)) => fail(
            format!(
                "{said}, but its server is in recovery (a standby): writes sent to the leader fail"
            ),
            vec![format!(
                "a promotion may be in progress: run doctor again after Patroni's loop_wait; if it persists, look at `patronictl list` and {name}'s Patroni log, and never start or promote PostgreSQL by hand on a Patroni node"
            )],
        ),
        (Expect::Standby, Ok(false)) => fail(
            format!("{said}, but its server is not in recovery: a second primary (split brain)"),
            vec![format!(
                "keep clients off {name} (HAProxy's GET /primary check does), find who promoted it outside Patroni, then let Patroni rejoin it as a replica: patronictl reinit <cluster> {name}"
            )],
        ),
        (expected, Err(e)) => {
            let layer = format!("{said}, but its server cannot be asked: {e:#}");
            if expected == Expect::Primary {
                fail(
                    layer,
                    vec![format!(
                        "the leader's server is down while Patroni still holds the key: Patroni restarts it or fails over within ttl; if not, read {name}'s Patroni log"
                    )],
                )
            } else {
                warn(layer)
            }
        }
    }
}

fn ok(detail: String) -> Layer {
    Layer {
        layer: "patroni",
        status: Status::Ok,
        detail,
        ms: None,
        hints: Vec::new(),
        reason: None,
        cause: None,
        fix: None,
    }
}

/// A failing `patroni` layer; `fixes[0]` is its fix. No classification reason: the exit
/// code is 1 (doctor's "transient" code), as for any layer without one.
fn fail(detail: String, fixes: Vec<String>) -> Layer {
    Layer {
        status: Status::Fail,
        fix: fixes.into_iter().next(),
        ..ok(detail)
    }
}

fn warn(detail: String) -> Layer {
    Layer {
        status: Status::Warn,
        ..ok(detail)
    }
}

/// Appends `layer` to the report of `host` (a target host prints as `HOST:PORT`), or adds
/// a host report for it.
fn push(hosts: &mut Vec<HostReport>, host: &str, layer: Layer) {
    match hosts.iter_mut().find(|h| h.host == host) {
        Some(h) => h.layers.push(layer),
        None => hosts.push(HostReport {
            host: host.to_owned(),
            layers: vec![layer],
            state: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_addresses_are_taken() {
        assert_eq!(parse_url("http://db1:8008/").unwrap(), "http://db1:8008");
        assert!(
            parse_url("https://db1:8008")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_url("db1:8008").is_err());
        assert!(parse_url("http://").is_err());
        // Credentials are refused and never repeated.
        for url in [
            "http://u:Secr3tPw@db1:8008",
            "https://u:Secr3tPw@db1:8008/x",
            "u:Secr3tPw@db1",
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(!e.contains("Secr3tPw"), "{e}");
            assert!(e.contains("<redacted>@db1"), "{e}");
        }
        assert_eq!(redacted("http://a@b@c:1/p@q"), "http://<redacted>@q");
        assert_eq!(redacted("http://c:1/p"), "http://c:1/p");
        // A password holding what ends an authority, or an address without `//`.
        for (url, shown) in [
            ("http://u:Sec/r3t@db1:8008/", "http://<redacted>@db1:8008/"),
            ("http://u:Sec?r3t@db1:8008", "http://<redacted>@db1:8008"),
            ("http://u:Sec#r3t@db1:8008", "http://<redacted>@db1:8008"),
            ("http://u:Sec@r3t@db1:8008", "http://<redacted>@db1:8008"),
            ("http:/u:Sec/r3t@db1", "<redacted>@db1"),
            ("u:Sec://r3t@db1", "<redacted>@db1"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
            let e = parse_url(url).unwrap_err();
            assert!(!e.contains("Sec") && !e.contains("r3t"), "{url}: {e}");
        }
        assert_eq!(redacted("http://db1\x1b[2J"), "http://db1\\u{1b}[2J");
    }

    #[test]
    fn roles_are_compared_with_the_recovery_state() {
        let c = |role: &str, server| compare("node1", role, "running", "/cluster", server);
        assert_eq!(c("leader", Ok(false)).status, Status::Ok);
        assert_eq!(c("master", Ok(false)).status, Status::Ok);
        assert_eq!(c("replica", Ok(true)).status, Status::Ok);
        assert_eq!(c("sync_standby", Ok(true)).status, Status::Ok);
        let split = c("replica", Ok(false));
        assert_eq!(split.status, Status::Fail);
        assert!(split.detail.contains("split brain"), "{}", split.detail);
        assert!(split.fix.as_deref().unwrap().contains("patronictl reinit"));
        let behind = c("leader", Ok(true));
        assert_eq!(behind.status, Status::Fail);
        assert_eq!(c("leader", Err("refused".into())).status, Status::Fail);
        assert_eq!(c("replica", Err("refused".into())).status, Status::Warn);
        assert_eq!(c("uninitialized", Ok(true)).status, Status::Warn);
    }
}
