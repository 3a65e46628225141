//! Where PostgreSQL's Unix sockets really are, and who may use one.
//!
//! Sources, read-only: the bound Unix sockets the kernel lists in `/proc/net/unix` (every
//! server on this machine, wherever its `unix_socket_directories` points), the
//! `postmaster.pid` of each running server this user may inspect (the postmaster's working
//! directory is its data directory; lines 4 and 5 are its port and first socket directory;
//! some sandboxes, e.g. gVisor, list no paths in `/proc/net/unix`), then the usual
//! directories (`/var/run/postgresql`, `/run/postgresql`, `/tmp`) and the directories named in
//! the configuration or `PGHOST`.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The usual socket directories (Debian/Ubuntu, RHEL, the PostgreSQL default).
const USUAL_DIRS: [&str; 3] = ["/var/run/postgresql", "/run/postgresql", "/tmp"];
/// Most entries read from `/proc/net/unix` (a busy machine has thousands).
const MAX_PROC_LINES: usize = 100_000;

/// The PostgreSQL sockets found: `(path, port)`.
pub(crate) fn find(extra_dirs: &[PathBuf]) -> Vec<(PathBuf, u16)> {
    let mut found = BTreeSet::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/unix") {
        for line in text.lines().skip(1).take(MAX_PROC_LINES) {
            // Num RefCount Protocol Flags Type St Inode Path
            if let Some(path) = line.split_whitespace().nth(7)
                && let Some(port) = port_of(Path::new(path))
            {
                found.insert((PathBuf::from(path), port));
            }
        }
    }
    for (dir, port) in running_servers() {
        let path = dir.join(format!(".s.PGSQL.{port}"));
        found.insert((path, port));
    }
    let dirs = USUAL_DIRS
        .iter()
        .map(PathBuf::from)
        .chain(extra_dirs.iter().cloned());
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten().take(10_000) {
            let path = entry.path();
            if let Some(port) = port_of(&path) {
                found.insert((path, port));
            }
        }
    }
    // /var/run is usually a link to /run: keep one spelling of each socket.
    let mut seen = BTreeSet::new();
    found
        .into_iter()
        .filter(|(p, _)| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
        .filter(|(p, _)| p.exists())
        .collect()
}

/// (socket directory, port) of each running postmaster whose working directory is readable.
fn running_servers() -> Vec<(PathBuf, u16)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten().take(100_000) {
        let pid = entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !matches!(comm.trim(), "postgres" | "postmaster") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cwd/postmaster.pid")) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().take(6).collect();
        if let (Some(port), Some(dir)) = (lines.get(3), lines.get(4))
            && let Ok(port) = port.trim().parse()
            && dir.starts_with('/')
        {
            out.push((PathBuf::from(dir.trim()), port));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `.s.PGSQL.5432` -> 5432 (not the `.lock` file next to it).
fn port_of(path: &Path) -> Option<u16> {
    path.file_name()?
        .to_str()?
        .strip_prefix(".s.PGSQL.")?
        .parse()
        .ok()
}

/// The fix when `dir` has no `.s.PGSQL.<port>` (or does not exist).
pub(crate) async fn missing_fix(dir: &Path, port: u16, extra_dirs: &[PathBuf]) -> String {
    let found = find(extra_dirs);
    let same_port: Vec<&PathBuf> = found
        .iter()
        .filter(|(_, p)| *p == port)
        .map(|(path, _)| path)
        .collect();
    let dir_of = |p: &Path| {
        p.parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    };
    if let Some(first) = same_port.first() {
        let others = same_port.len() - 1;
        return format!(
            "the server's socket for port {port} is {}: use host={}{}",
            first.display(),
            dir_of(first),
            if others > 0 {
                format!(
                    " (also found: {})",
                    same_port[1..]
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
    }
    if !found.is_empty() {
        let list = found
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let (p, other_port) = &found[0];
        return format!(
            "no socket for port {port} on this machine; PostgreSQL sockets found: {list}: use \
             host={} port={other_port}",
            dir_of(p)
        );
    }
    let tcp = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let over_tcp = if crate::listeners::looks_like_postgres(
        tcp,
        std::time::Duration::from_millis(500),
    )
    .await
    {
        format!("; a PostgreSQL server answers on TCP {tcp}: use host=127.0.0.1")
    } else {
        String::new()
    };
    let exists = if dir.is_dir() {
        "holds no socket"
    } else {
        "does not exist"
    };
    format!(
        "{} {exists} and no PostgreSQL socket exists on this machine (looked in /proc/net/unix, \
         {}): the server is not running here or listens on TCP only{over_tcp}",
        dir.display(),
        USUAL_DIRS.join(", ")
    )
}

/// The fix when the socket cannot be reached for lack of permission (EACCES on connect, or a
/// directory on the way that this user may not search): who may.
pub(crate) fn permission_fix(path: &Path) -> String {
    let me = user_name(nix::unistd::geteuid().as_raw());
    // The socket and every directory above it that others may not enter, as far as this
    // user can see them.
    let mut blocking = Vec::new();
    for p in path.ancestors() {
        let Ok(m) = std::fs::metadata(p) else {
            continue;
        };
        let mode = m.permissions().mode() & 0o7777;
        let closed = if p == path {
            mode & 0o002 == 0
        } else {
            mode & 0o001 == 0
        };
        if closed {
            blocking.push((p.to_owned(), user_name(m.uid()), group_name(m.gid()), mode));
        }
    }
    let Some((_, owner, group, _)) = blocking.last().cloned() else {
        return format!(
            "{} refuses `{me}` (permission denied): run as the server's user or a member of \
             its group, or have the server set unix_socket_permissions (e.g. 0777)",
            path.display()
        );
    };
    let list = blocking
        .iter()
        .rev()
        .map(|(p, u, g, m)| format!("{} is {u}:{g} mode {m:04o}", p.display()))
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "{list}; this process runs as `{me}`: run as `{owner}` or a member of group `{group}` \
         (usermod -aG {group} {me}, then log in again), or open the socket to others on the \
         server (unix_socket_permissions = 0777, unix_socket_group, and a socket directory \
         others may enter)"
    )
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names() {
        assert_eq!(port_of(Path::new("/tmp/.s.PGSQL.5432")), Some(5432));
        assert_eq!(port_of(Path::new("/tmp/.s.PGSQL.5432.lock")), None);
        assert_eq!(port_of(Path::new("/tmp/other")), None);
    }
}
