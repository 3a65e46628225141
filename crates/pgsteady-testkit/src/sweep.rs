//! Removing clusters left behind by test processes that were killed before they could clean up.
//!
//! Drop cleans up after a panicking test, and the kernel's parent-death signal stops the
//! server of a killed one, but nothing runs in a killed process to remove its directory. Each
//! cluster directory records the pid of the process that owns it; the first cluster created
//! by a process removes the directories (and any server still running in them) whose owner
//! is gone.

use std::path::{Path, PathBuf};
use std::sync::Once;

use nix::sys::signal::Signal;

use crate::process;

pub(crate) const DIR_PREFIX: &str = "pgsteady-";
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// Where cluster directories are created: `$PGSTEADY_TMPDIR`, else `/tmp` (the server's user
/// must be able to reach it, which `$TMPDIR` under a home directory often does not allow).
pub(crate) fn base_dir() -> PathBuf {
    std::env::var_os("PGSTEADY_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

pub(crate) fn sweep_stale_clusters() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| sweep_dir(&base_dir()));
}

/// Removes the stale cluster directories in `base` and stops what still runs in them.
fn sweep_dir(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(DIR_PREFIX));
        if is_ours && owner_is_gone(&path) {
            stop_leftover_server(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn owner_is_gone(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(OWNER_FILE))
        .ok()
        .and_then(|pid| pid.trim().parse::<i32>().ok())
        .is_some_and(|pid| !process::pid_exists(pid))
}

fn stop_leftover_server(dir: &Path) {
    // Every server process has the data directory as its working directory, and every helper
    // of a Patroni cluster (Patroni, etcd, HAProxy, and the servers Patroni starts) runs in a
    // directory below `dir`; a process that merely reused a pid does not.
    for pid in process::processes_under(dir) {
        let _ = process::signal_pid(pid, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// A helper left running in a subdirectory (as Patroni, etcd and HAProxy run in a
    /// Patroni cluster's node directories) is stopped and the directory removed once its
    /// owner is gone; a live owner's directory and process are left alone.
    #[test]
    fn stale_directories_lose_their_processes_and_live_ones_keep_them() {
        let base = tempfile::tempdir().unwrap();
        let spawn_in = |owner: u32, name: &str| {
            let dir = base.path().join(format!("{DIR_PREFIX}{name}"));
            std::fs::create_dir_all(dir.join("node1")).unwrap();
            std::fs::write(dir.join(OWNER_FILE), owner.to_string()).unwrap();
            let child = Command::new("sleep")
                .arg("30")
                .current_dir(dir.join("node1"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (dir, child)
        };
        let mut dead = Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        let (stale, mut stale_child) = spawn_in(dead.id(), "stale");
        let (live, mut live_child) = spawn_in(std::process::id(), "live");

        sweep_dir(base.path());

        let started = Instant::now();
        while stale_child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "helper survived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!stale.exists(), "stale directory kept");
        assert!(live.exists(), "a live owner's directory removed");
        assert!(
            live_child.try_wait().unwrap().is_none(),
            "a live owner's process killed"
        );
        live_child.kill().unwrap();
        live_child.wait().unwrap();
    }
}
