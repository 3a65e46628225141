//! Installing missing Debian packages with apt-get, once per machine.
//!
//! The README promises that a fresh machine with only Rust and apt runs the drill and the
//! tests, so the kit installs what it needs (PostgreSQL; Patroni, etcd and HAProxy for
//! `PatroniCluster`) the first time it is missing, saying so on stderr.
//! `PGSTEADY_NO_INSTALL=1` turns that off.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};

/// Held while one thread of this process, and one process on this machine, installs.
#[derive(Debug)]
pub(crate) struct InstallLock {
    _thread: MutexGuard<'static, ()>,
    _machine: Option<Flock<std::fs::File>>,
}

/// Takes the install lock: one installer per process (the threads of a test binary wait for
/// it and search again), and one per machine (nextest runs every test in its own process).
/// The machine lock is released when the file closes, also when the process dies.
pub(crate) fn lock() -> InstallLock {
    static INSTALL: Mutex<()> = Mutex::new(());
    let thread = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let machine = std::fs::File::create(std::env::temp_dir().join("apt-install.pgsteady.lock"))
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    InstallLock {
        _thread: thread,
        _machine: machine,
    }
}

/// True unless `PGSTEADY_NO_INSTALL` is set (to anything but `0`).
pub(crate) fn allowed() -> bool {
    std::env::var_os("PGSTEADY_NO_INSTALL").is_none_or(|v| v == "0")
}

/// Installs `packages` with apt-get (as root, or with password-less `sudo`), after printing
/// `why` on stderr. Call it holding [`lock`]. The error says why it was not done or what
/// failed, ending with `by_hand`: what the user can do instead.
pub(crate) fn install(
    allowed: bool,
    packages: &[&str],
    why: &str,
    by_hand: &str,
) -> Result<(), String> {
    if !allowed {
        return Err(format!(
            "not installing (PGSTEADY_NO_INSTALL is set): {by_hand}"
        ));
    }
    if !Path::new("/usr/bin/apt-get").is_file() {
        return Err(format!("no apt-get on this machine: {by_hand}"));
    }
    let root = nix::unistd::Uid::effective().is_root();
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !root && !sudo {
        return Err(format!("not root and no password-less sudo: {by_hand}"));
    }
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        // Output goes to our stderr so the user sees what happens to their machine; a lock
        // held by another apt run is waited for instead of failing at once.
        let status = cmd
            .args(["-o", "DPkg::Lock::Timeout=600", "-y", "-q"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .map_err(|e| format!("apt-get could not run ({e}): {by_hand}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {} failed ({status}): {by_hand}",
                args.join(" ")
            ))
        }
    };
    eprintln!("pgsteady-testkit: {why} (set PGSTEADY_NO_INSTALL=1 to prevent this)");
    apt(&["update"])?;
    let mut args = vec!["install", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)
}

/// Finds a program on `$PATH`, then in `/usr/sbin` and `/usr/bin` (HAProxy lives in
/// `/usr/sbin`, which an unprivileged user's `$PATH` often lacks).
#[cfg_attr(not(feature = "patroni"), allow(dead_code))]
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_says_what_to_do_by_hand() {
        let why = install(false, &["haproxy"], "installing", "do it yourself").unwrap_err();
        assert!(why.contains("PGSTEADY_NO_INSTALL"), "{why}");
        assert!(why.ends_with("do it yourself"), "{why}");
    }

    #[test]
    fn finds_a_program_outside_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-pgsteady").is_none());
    }
}
