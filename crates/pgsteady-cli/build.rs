//! Records the git commit the binary is built from, for `pgsteady --version`.
//!
//! Sets `PGSTEADY_GIT_COMMIT` for the crate to, in order:
//! 1. `$PGSTEADY_BUILD_GIT_COMMIT` when set (a container build or a distribution package that
//!    has no `.git`, e.g. `docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD)`);
//! 2. `unknown` when this is a packaged crate (`cargo install pgsteady-cli` from crates.io, a
//!    `cargo package` verify build, a vendored copy): `.cargo_vcs_info.json` marks those, and
//!    any git repository around them is someone else's;
//! 3. `git rev-parse HEAD` in a checkout of this repository;
//! 4. `unknown` when git is missing or this is not a checkout.
//!
//! Hand-written rather than `vergen`/`built`: both would add a dozen build dependencies for
//! one `git rev-parse`, and neither tells a packaged crate that happens to sit inside another
//! repository (a vendored dependency) from a checkout of this one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PGSTEADY_BUILD_GIT_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let commit = std::env::var("PGSTEADY_BUILD_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| {
            if manifest_dir.join(".cargo_vcs_info.json").exists() {
                None
            } else {
                git_head(&manifest_dir)
            }
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=PGSTEADY_GIT_COMMIT={commit}");
}

/// The commit checked out in the repository holding `dir`, and tells cargo to run this script
/// again when HEAD moves (a commit, a checkout, a rebase).
fn git_head(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"])?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // HEAD names a branch whose ref file (or packed-refs) changes on commit; a detached HEAD
    // holds the commit itself. Only existing paths: cargo reruns every time for a missing one.
    let mut watch = Vec::new();
    if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
        watch.push(PathBuf::from(git_dir).join("HEAD"));
    }
    if let Some(common) = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    ) {
        let common = PathBuf::from(common);
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
        watch.push(common.join("packed-refs"));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    Some(commit)
}

/// `git ARGS` in `dir`: its trimmed stdout on success, `None` otherwise (no git, not a
/// repository, ...).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned())
}
