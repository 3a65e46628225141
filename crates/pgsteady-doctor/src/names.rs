//! A host name that does not resolve: close names from `/etc/hosts` and the compose services
//! of the working directory.

use std::path::Path;

use crate::compose;

/// How different a name may be (Damerau-Levenshtein edits) to be offered as "did you mean".
fn max_edits(name: &str) -> usize {
    (name.chars().count() / 4).clamp(1, 3)
}

/// The names in a hosts file (`ip name alias...`, `#` comments).
fn hosts_names(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().take(10_000) {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next() else { continue };
        for name in fields {
            out.push((name.to_owned(), ip.to_owned()));
        }
    }
    out
}

/// The fix for `name` not resolving, looking at `hosts_file` and the compose files in `dir`.
pub(crate) fn dns_fix(name: &str, hosts_file: &Path, dir: &Path) -> String {
    let lower = name.to_ascii_lowercase();
    let close = |candidate: &str| {
        let c = candidate.to_ascii_lowercase();
        c != lower && strsim::damerau_levenshtein(&c, &lower) <= max_edits(&lower)
    };
    let mut tips = Vec::new();
    for file in compose::find(dir) {
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(services) = std::fs::read_to_string(&file)
            .map_err(|e| format!("{e:#}"))
            .and_then(|t| compose::parse(&t))
        else {
            continue;
        };
        for svc in services {
            let exact = svc.name.eq_ignore_ascii_case(name);
            if !exact && !close(&svc.name) {
                continue;
            }
            let published = svc
                .ports
                .iter()
                .find(|(_, _, c)| *c == 5432)
                .map(|(_, h, _)| *h);
            let from_host = match published {
                Some(p) => format!("from this machine use host=127.0.0.1 port={p} (published)"),
                None => "from this machine publish its port first (ports: [\"5432:5432\"])".into(),
            };
            tips.push(if exact {
                format!(
                    "`{name}` is a service in {file_name}: its name resolves only inside the \
                     compose network (from another container); {from_host}"
                )
            } else {
                format!(
                    "did you mean `{}`, a service in {file_name}? use host={} from another \
                     container; {from_host}",
                    svc.name, svc.name
                )
            });
        }
    }
    if let Ok(text) = std::fs::read_to_string(hosts_file) {
        let mut seen = Vec::new();
        for (candidate, ip) in hosts_names(&text) {
            if close(&candidate) && !seen.contains(&candidate) {
                tips.push(format!(
                    "did you mean `{candidate}` ({ip} in {})? use host={candidate}",
                    hosts_file.display()
                ));
                seen.push(candidate);
            }
        }
    }
    if tips.is_empty() {
        format!(
            "`{name}` does not resolve and no close name is in {} or a compose file here: check \
             the spelling, the DNS server (/etc/resolv.conf), or use the server's IP address",
            hosts_file.display()
        )
    } else {
        tips.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_from_hosts_and_compose() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1 localhost\n# 10.0.0.1 localhast\n10.0.0.2 db-primary db1\n",
        )
        .unwrap();
        assert_eq!(
            dns_fix("locahost", &hosts, dir.path()),
            format!(
                "did you mean `localhost` (127.0.0.1 in {})? use host=localhost",
                hosts.display()
            )
        );
        assert!(dns_fix("db-primray", &hosts, dir.path()).contains("`db-primary`"));
        assert!(dns_fix("zzzz", &hosts, dir.path()).contains("no close name"));
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  postgres:\n    image: postgres:16\n    ports: [\"5433:5432\"]\n",
        )
        .unwrap();
        assert_eq!(
            dns_fix("postgress", &hosts, dir.path()),
            "did you mean `postgres`, a service in compose.yaml? use host=postgres from another \
             container; from this machine use host=127.0.0.1 port=5433 (published)"
        );
        assert!(
            dns_fix("postgres", &hosts, dir.path())
                .starts_with("`postgres` is a service in compose.yaml: its name resolves only")
        );
    }
}
