//! `pgsteady completions` and `pgsteady man` produce what bash and man accept.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::TestCommand;

/// `bash -n` on `script`: (accepted, stderr).
fn bash_n(script: &str) -> (bool, String) {
    let mut child = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bash_completion_passes_bash_n_and_completes_every_command() {
    let done = TestCommand::new(["completions", "bash"]).run().await;
    done.assert_exit_code(0);
    let script = done.stdout();
    let (ok, stderr) = bash_n(script);
    assert!(ok, "bash -n rejects the completion: {stderr}");
    for sub in [
        "wait",
        "check",
        "doctor",
        "migrate",
        "serve",
        "run",
        "completions",
        "man",
    ] {
        assert!(script.contains(sub), "no {sub} in the completion");
    }
    // Negative control: bash -n does reject a broken script.
    let broken = script.replacen("esac", "", 1);
    assert!(
        !bash_n(&broken).0,
        "bash -n accepted a script missing an esac"
    );
}

#[tokio::test]
async fn zsh_and_fish_completions_are_generated_and_unknown_shells_are_usage_errors() {
    let zsh = TestCommand::new(["completions", "zsh"]).run().await;
    zsh.assert_exit_code(0);
    assert!(zsh.stdout().starts_with("#compdef pgsteady"), "{zsh:?}");
    let fish = TestCommand::new(["completions", "fish"]).run().await;
    fish.assert_exit_code(0);
    assert!(fish.stdout().contains("complete -c pgsteady"), "{fish:?}");
    let bad = TestCommand::new(["completions", "tcsh"]).run().await;
    bad.assert_exit_code(2);
    assert!(bad.stderr().contains("tcsh"), "{bad:?}");
}

/// Renders a man page with `man -l`; the rendered text and man's warnings.
fn man_l(page: &std::path::Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man (apt-get install man-db)");
    assert!(out.status.success(), "man -l {}: {out:?}", page.display());
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn man_pages_render_with_man_l() {
    let dir = tempfile::tempdir().unwrap();
    // To stdout: the main page.
    let done = TestCommand::new(["man"]).run().await;
    done.assert_exit_code(0);
    assert!(done.stdout().starts_with(".ie"), "not roff: {done:?}");
    let main_page = dir.path().join("stdout.1");
    std::fs::write(&main_page, done.stdout()).unwrap();
    let (text, warnings) = man_l(&main_page);
    assert!(text.contains("pgsteady-wait(1)"), "{text}");
    assert!(
        text.contains("EXAMPLES") || text.contains("Examples:"),
        "{text}"
    );
    assert_eq!(warnings, "", "man --warnings");

    // --out DIR: one page per command, each renders.
    let out = dir.path().join("man1");
    let done = TestCommand::new(["man", "--out", out.to_str().unwrap()])
        .run()
        .await;
    done.assert_exit_code(0);
    let mut pages: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    for expected in [
        "pgsteady.1",
        "pgsteady-wait.1",
        "pgsteady-migrate.1",
        "pgsteady-migrate-status.1",
        "pgsteady-completions.1",
    ] {
        assert!(
            pages.iter().any(|p| p == expected),
            "{expected} not in {pages:?}"
        );
        assert!(done.stderr().contains(expected), "{done:?}");
    }
    let (text, warnings) = man_l(&out.join("pgsteady-wait.1"));
    assert!(text.contains("--timeout"), "{text}");
    assert!(
        text.contains("pgsteady wait postgresql://"),
        "no example: {text}"
    );
    assert_eq!(warnings, "", "man --warnings");
}

#[tokio::test]
async fn man_out_into_an_unwritable_place_exits_74_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let target = file.join("man1");
    let done = TestCommand::new(["man", "--out", target.to_str().unwrap()])
        .run()
        .await;
    done.assert_exit_code(74);
    assert!(done.stderr().contains(target.to_str().unwrap()), "{done:?}");
}
