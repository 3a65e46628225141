//! `pgsteady drill ...` hands over to the `pgsteady-drill` binary, as git and cargo run their
//! external subcommands: the one next to `pgsteady` first, else the first on PATH, with every
//! argument and its exit code untouched; without one it says how to install it (127). The
//! drill itself is tested where its binary is built (crates/pgsteady-drill/tests/it).
//!
//! Each test runs its own copy of `pgsteady` from a scratch directory, with a small script as
//! `pgsteady-drill` that prints its arguments and exits with its own code.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::TestCommand;

/// A scratch directory holding a copy of `pgsteady`.
struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new() -> Install {
        // Under the target directory, so that a hard link works (one file system).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let exe = dir.path().join("pgsteady");
        let built = env!("CARGO_BIN_EXE_pgsteady");
        if std::fs::hard_link(built, &exe).is_err() {
            std::fs::copy(built, &exe).unwrap();
        }
        Install { dir }
    }

    fn pgsteady(&self) -> PathBuf {
        self.dir.path().join("pgsteady")
    }
}

/// Writes a `pgsteady-drill` into `dir` that prints `who`, then each argument on a line, and
/// exits `code`; `executable` false leaves it without any execute bit.
fn stub(dir: &Path, who: &str, code: u8, executable: bool) {
    let path = dir.join("pgsteady-drill");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho {who}\nprintf '%s\\n' \"$@\"\nexit {code}\n"),
    )
    .unwrap();
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const ARGS: [&str; 6] = [
    "drill",
    "--faults",
    "crash",
    "--help",
    "--json",
    "two words",
];

#[tokio::test]
async fn drill_runs_the_pgsteady_drill_next_to_pgsteady_before_the_one_on_path() {
    let install = Install::new();
    stub(install.dir.path(), "beside", 9, true);
    let path = tempfile::tempdir().unwrap();
    stub(path.path(), "on-path", 8, true);
    let done = TestCommand::program(&install.pgsteady(), ARGS)
        .env("PATH", path.path().to_str().unwrap())
        .run()
        .await;
    done.assert_exit_code(9);
    assert_eq!(
        done.stdout(),
        "beside\n--faults\ncrash\n--help\n--json\ntwo words\n",
        "{done:#?}"
    );
}

#[tokio::test]
async fn drill_runs_the_pgsteady_drill_on_path_with_every_argument_and_its_exit_code() {
    let install = Install::new();
    let path = tempfile::tempdir().unwrap();
    for code in [0, 10, 130] {
        stub(path.path(), "on-path", code, true);
        let done = TestCommand::program(&install.pgsteady(), ARGS)
            .env("PATH", path.path().to_str().unwrap())
            .run()
            .await;
        done.assert_exit_code(i32::from(code));
        assert_eq!(
            done.stdout(),
            "on-path\n--faults\ncrash\n--help\n--json\ntwo words\n",
            "{done:#?}"
        );
    }
    // Nothing after `drill` is read by pgsteady: `drill --version` is the drill's.
    let done = TestCommand::program(&install.pgsteady(), ["drill", "--version"])
        .env("PATH", path.path().to_str().unwrap())
        .run()
        .await;
    assert_eq!(done.stdout(), "on-path\n--version\n", "{done:#?}");
}

#[tokio::test]
async fn drill_without_pgsteady_drill_says_how_to_install_it_and_exits_127() {
    let install = Install::new();
    let empty = tempfile::tempdir().unwrap();
    let done = TestCommand::program(&install.pgsteady(), ["drill", "--list"])
        .env("PATH", empty.path().to_str().unwrap())
        .run()
        .await;
    done.assert_exit_code(127);
    assert_eq!(done.stdout(), "");
    assert!(
        done.stderr().contains("cargo install pgsteady-drill"),
        "{done:#?}"
    );
}

#[tokio::test]
async fn drill_with_a_pgsteady_drill_that_cannot_be_executed_exits_126() {
    let install = Install::new();
    stub(install.dir.path(), "beside", 9, false);
    let empty = tempfile::tempdir().unwrap();
    let done = TestCommand::program(&install.pgsteady(), ["drill", "--list"])
        .env("PATH", empty.path().to_str().unwrap())
        .run()
        .await;
    done.assert_exit_code(126);
    assert!(done.stderr().contains("pgsteady-drill"), "{done:#?}");
}
