//! Kernel-level packet loss in a private network namespace.
//!
//! The [`crate::FaultProxy`]'s blackhole stops forwarding, but the proxy's kernel still
//! acknowledges every segment and answers TCP keepalives, so only application timeouts can
//! notice it. To test TCP keepalives and `tcp_user_timeout`, packets must really vanish.
//!
//! [`isolate_thread`] moves the calling thread into a new network namespace with its own
//! loopback. Everything that thread creates afterwards (sockets, and processes it spawns, such
//! as a [`crate::Cluster`]'s server) lives there, so firewall rules added by
//! [`Blackhole::install`] touch nothing outside the test. Use it from a single-threaded
//! runtime (`#[tokio::test]`'s default), whose tasks all run on that thread.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), `ip` and `nft`; [`support`] says why not when
//! it cannot run, so tests can skip with that reason.

use std::process::{Command, Stdio};

use crate::{Error, Result};

/// `Ok(())` when namespaces and nftables can be used here, else the reason they cannot.
pub fn support() -> std::result::Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root for network namespaces and nftables".to_owned());
    }
    for (program, arg) in [("ip", "-V"), ("nft", "--version")] {
        let found = Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "`{program}` not found (install iproute2 / nftables)"
            ));
        }
    }
    // Try it on a throwaway thread, so a failure leaves the caller's thread untouched.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot create a network namespace: {e}"))
    })
    .join()
    .map_err(|_| "namespace probe panicked".to_owned())?
}

/// Moves the calling thread into a fresh network namespace and brings its loopback up.
pub fn isolate_thread() -> Result<()> {
    support().map_err(Error::Unsupported)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::Unsupported(format!("unshare(CLONE_NEWNET): {e}")))?;
    run("ip", &["link", "set", "lo", "up"], None)
}

/// Drops every packet to and from a TCP port on this namespace's loopback until healed or
/// dropped. Existing connections stay open on both ends and simply stop hearing from each
/// other; new connection attempts hang in SYN retransmission.
#[derive(Debug)]
pub struct Blackhole {
    table: String,
    healed: bool,
}

impl Blackhole {
    /// Starts dropping packets of `port`. Call from the thread that called
    /// [`isolate_thread`], or rules land in the namespace the thread is in.
    pub fn install(port: u16) -> Result<Blackhole> {
        let table = format!("pgsteady_blackhole_{port}");
        // Dropped on input, not output: a drop on output makes the sender's own syscall fail
        // with EPERM, which is not what a lost packet looks like.
        let rules = format!(
            "table inet {table} {{\n\
               chain input {{\n\
                 type filter hook input priority 0; policy accept;\n\
                 tcp dport {port} drop\n\
                 tcp sport {port} drop\n\
               }}\n\
             }}\n"
        );
        run("nft", &["-f", "-"], Some(&rules))?;
        Ok(Blackhole {
            table,
            healed: false,
        })
    }

    /// Lets packets through again.
    pub fn heal(mut self) -> Result<()> {
        self.remove()
    }

    fn remove(&mut self) -> Result<()> {
        if self.healed {
            return Ok(());
        }
        self.healed = true;
        run("nft", &["delete", "table", "inet", &self.table], None)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            program: format!("{program} {}", args.join(" ")),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
