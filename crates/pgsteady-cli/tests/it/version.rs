//! `pgsteady --version` names the release and the commit it was built from.

use crate::TestCommand;

#[tokio::test]
async fn version_names_the_release_and_this_checkouts_commit() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert!(head.status.success(), "the tests run in a git checkout");
    let head = String::from_utf8(head.stdout).unwrap();
    let expected = format!(
        "pgsteady {} (commit {})\n",
        env!("CARGO_PKG_VERSION"),
        head.trim()
    );
    for flag in ["--version", "-V"] {
        let done = TestCommand::new([flag]).run().await;
        done.assert_exit_code(0);
        assert_eq!(done.stdout(), expected, "{flag}");
    }
}
