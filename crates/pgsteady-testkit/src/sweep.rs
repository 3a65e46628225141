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
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(base_dir()) else {
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
    });
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
