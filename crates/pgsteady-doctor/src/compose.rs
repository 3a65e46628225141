//! Published ports from a Docker Compose file in the working directory, to explain "connection
//! refused" when the container's 5432 is published on another host port (the 5433:5432 case).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

/// File names Docker Compose looks for, in its order of preference.
pub(crate) const FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// One service's view of PostgreSQL's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    /// Service name.
    pub(crate) name: String,
    /// Whether it looks like PostgreSQL (image or name contains "postgres", or it publishes
    /// container port 5432).
    pub(crate) postgres: bool,
    /// Published ports: (host ip, host port, container port).
    pub(crate) ports: Vec<(Option<String>, u16, u16)>,
}

/// The compose files present in `dir`.
pub(crate) fn find(dir: &Path) -> Vec<PathBuf> {
    FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// Parses the services of a compose file. Errors are returned as text for the report.
pub(crate) fn parse(text: &str) -> Result<Vec<Service>, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let services = match doc.get("services").and_then(Value::as_mapping) {
        Some(s) => s,
        None => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for (name, spec) in services {
        let name = match name.as_str() {
            Some(n) => n.to_owned(),
            None => continue,
        };
        let image = spec.get("image").and_then(Value::as_str).unwrap_or("");
        let mut ports = Vec::new();
        if let Some(list) = spec.get("ports").and_then(Value::as_sequence) {
            for entry in list {
                if let Some(p) = port_entry(entry) {
                    ports.push(p);
                }
            }
        }
        let postgres = image.contains("postgres")
            || name.contains("postgres")
            || ports.iter().any(|(_, _, c)| *c == 5432);
        out.push(Service {
            name,
            postgres,
            ports,
        });
    }
    Ok(out)
}

/// `"5433:5432"`, `"127.0.0.1:5433:5432/tcp"`, `"[::1]:5433:5432"`, `5432` (no host port:
/// an ephemeral one, unknown here) or the long syntax `{target, published, host_ip}`.
fn port_entry(v: &Value) -> Option<(Option<String>, u16, u16)> {
    if let Some(map) = v.as_mapping() {
        let get_port = |k: &str| {
            let v = map.get(k)?;
            v.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .or_else(|| v.as_str()?.parse().ok())
        };
        let target = get_port("target")?;
        let published = get_port("published")?;
        let ip = map
            .get("host_ip")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Some((ip, published, target));
    }
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let text = text.split('/').next()?;
    // Split off a bracketed IPv6 host ip first.
    let (ip, rest) = match text.strip_prefix('[') {
        Some(r) => {
            let (ip, rest) = r.split_once("]:")?;
            (Some(ip.to_owned()), rest)
        }
        None => (None, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [container] => (ip, None, *container),
        [host, container] => (ip, Some(*host), *container),
        [ip, host, container] => (Some((*ip).to_owned()), Some(*host), *container),
        _ => return None,
    };
    // Ranges ("5432-5434") are rare for a database: take their first port.
    let first = |s: &str| s.split('-').next()?.trim().parse::<u16>().ok();
    let container = first(container)?;
    let host = first(host?)?;
    Some((ip, host, container))
}

/// `docker compose port <service> 5432`, when a docker CLI and an engine answer within 3 s.
pub(crate) async fn docker_port(dir: &Path, service: &str) -> Option<String> {
    let child = tokio::process::Command::new("docker")
        .args(["compose", "port", service, "5432"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(3), child)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_syntax() {
        let yaml = r#"
services:
  db:
    image: postgres:16
    ports:
      - "5433:5432"
      - "127.0.0.1:6000:5432/tcp"
      - "[::1]:6001:5432"
      - 5432
      - target: 5432
        published: "6002"
        host_ip: 127.0.0.1
  web:
    image: nginx
    ports: ["8080:80"]
  cache:
    image: redis
"#;
        let services = parse(yaml).unwrap();
        assert_eq!(services.len(), 3);
        let db = &services[0];
        assert_eq!(db.name, "db");
        assert!(db.postgres);
        assert_eq!(
            db.ports,
            vec![
                (None, 5433, 5432),
                (Some("127.0.0.1".into()), 6000, 5432),
                (Some("::1".into()), 6001, 5432),
                (Some("127.0.0.1".into()), 6002, 5432),
            ]
        );
        assert!(!services[1].postgres);
        assert_eq!(services[1].ports, vec![(None, 8080, 80)]);
        assert!(services[2].ports.is_empty());
    }

    #[test]
    fn bad_yaml_is_reported_not_panicked() {
        assert!(parse("services: [").unwrap_err().contains("not valid YAML"));
        assert_eq!(parse("version: '3'").unwrap(), vec![]);
    }
}
