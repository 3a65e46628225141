//! Running server programs as an unprivileged user and signalling process groups.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::{Error, Result};

/// Who the server programs run as.
///
/// `initdb` and `postgres` refuse to run as root. When the test process is root we drop to
/// the `postgres` user (or `$PGSTEADY_PG_USER`) for them; otherwise they run as ourselves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    ids: Option<(Uid, Gid)>,
}

impl RunAs {
    pub(crate) fn detect() -> Result<RunAs> {
        if !Uid::effective().is_root() {
            return Ok(RunAs { ids: None });
        }
        let name = std::env::var("PGSTEADY_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
        match User::from_name(&name) {
            Ok(Some(user)) => Ok(RunAs {
                ids: Some((user.uid, user.gid)),
            }),
            _ => Err(Error::Unsupported(format!(
                "running as root, and initdb refuses root; no user `{name}` to run the server as \
                 (create one, or set PGSTEADY_PG_USER)"
            ))),
        }
    }

    /// Gives a path we created to the server's user.
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            nix::unistd::chown(path, Some(uid), Some(gid)).map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// A command for a server program with a clean environment (no PG* variables).
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("LC_ALL", "C").stdin(Stdio::null());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// Like [`RunAs::command`], for the postmaster: it leads its own process group (so the
    /// whole server can be paused or killed at once, and a Ctrl-C at the terminal does not
    /// reach it), and it gets SIGQUIT (immediate shutdown) if the thread that started it
    /// dies, so a test process killed by its harness does not leave a server behind. A
    /// non-zero `nice` is set on it (and so on every process it forks).
    pub(crate) fn postmaster_command(&self, program: &Path, nice: i32) -> Command {
        let mut cmd = self.command(program);
        cmd.process_group(0);
        // SAFETY: the closure runs between fork and exec and makes only the prctl(2) and
        // setpriority(2) system calls; it allocates nothing and touches no lock. (nix has no
        // wrapper for setpriority.)
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                if nice != 0 && nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT).map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Like [`RunAs::command`], for a long-running helper (Patroni, etcd, HAProxy): it leads
    /// its own process group, runs in `dir` (so [`processes_under`] finds it and whatever it
    /// forks), and gets `death_signal` if the thread that started it dies.
    #[cfg_attr(not(feature = "patroni"), allow(dead_code))]
    pub(crate) fn daemon_command(
        &self,
        program: &Path,
        dir: &Path,
        death_signal: Signal,
    ) -> Command {
        let mut cmd = self.command(program);
        cmd.process_group(0).current_dir(dir);
        // SAFETY: the closure runs between fork and exec and makes only the prctl(2) system
        // call; it allocates nothing and touches no lock.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(death_signal).map_err(std::io::Error::from)
            });
        }
        cmd
    }
}

/// Sends `sig` to one process. A process that no longer exists is not an error.
pub(crate) fn signal_pid(pid: i32, sig: Signal) -> Result<()> {
    match signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(std::io::Error::from(e).into()),
    }
}

/// The live (non-zombie) processes of one server, found by their working directory.
///
/// Neither the process group nor the parent pid will do: every server child calls
/// `setsid()`, and children orphaned by a dead postmaster are reparented. But the postmaster
/// changes into its data directory before it forks anything, and its children inherit that.
/// Zombies are left out: they may never be reaped under a PID 1 that does not reap.
pub(crate) fn server_processes(data_dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let data_dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_owned());
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data_dir)
                && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

/// The live (non-zombie) processes whose working directory is `dir` or below it: every
/// server of a cluster directory and every helper started with [`RunAs::daemon_command`].
pub(crate) fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
                && !is_zombie(*pid)
        })
        .collect()
}

/// Sends `sig` to every process of the server in `data_dir`.
pub(crate) fn signal_server(data_dir: &Path, sig: Signal) -> Result<()> {
    for pid in server_processes(data_dir) {
        signal_pid(pid, sig)?;
    }
    Ok(())
}

/// True when process `pid` exists (zombies included).
pub(crate) fn pid_exists(pid: i32) -> bool {
    !matches!(
        signal::kill(Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}
