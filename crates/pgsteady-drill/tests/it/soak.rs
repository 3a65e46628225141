//! `pgsteady-drill soak`: a short soak against a real server holds, and the same soak with
//! a planted wrong acknowledgement (a rolled-back write reported ok, as a commit resolution
//! that settled "unknown" as "committed" would) fails: the checker is not vacuous.

use crate::TestCommand;

/// A few seconds of crashes, restarts and lost replies: every call recorded, the checker
/// passes, and the history file checks again to the same verdict.
#[tokio::test]
async fn a_short_soak_holds_and_its_history_checks_again() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let done = TestCommand::new([
        "soak",
        "--topology",
        "single",
        "--duration",
        "8s",
        "--seed",
        "11",
        "--faults",
        "crash,fast-restart,terminate,lost-commit,blackhole",
        "--history",
        history.to_str().unwrap(),
    ])
    .run()
    .await;
    done.assert_exit_code(0);
    let out = done.stdout();
    assert!(out.contains("anomalies: 0"), "{done:#?}");
    assert!(out.contains("HELD"), "{done:#?}");
    assert!(
        done.stderr()
            .contains("replay: pgsteady drill soak --topology single --duration 8s --seed 11"),
        "{done:#?}"
    );
    // Faults happened and calls went through them.
    assert!(!out.contains("faults applied: 0\n"), "{out}");
    assert!(out.contains("insert    ok"), "{out}");
    let chart = dir.path().join("soak.svg");
    let again = TestCommand::new([
        "soak",
        "--check",
        history.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
    ])
    .run()
    .await;
    again.assert_exit_code(0);
    assert!(again.stdout().contains("HELD"), "{again:#?}");
    // The chart: an SVG naming the faults of the run and the outcomes.
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("seed 11"), "{svg}");
    let history_text = std::fs::read_to_string(&history).unwrap();
    let applied = [
        "crash",
        "fast-restart",
        "terminate",
        "lost-commit",
        "blackhole",
    ]
    .into_iter()
    .filter(|f| history_text.contains(&format!("\"fault\":\"{f}\"")))
    .collect::<Vec<_>>();
    assert!(!applied.is_empty(), "no fault in the history");
    for fault in applied {
        assert!(
            svg.contains(&format!(">\n{fault}\n<")),
            "{fault} is not labelled"
        );
    }
    // Not an SVG file name: a usage error, nothing written.
    let png = dir.path().join("soak.png");
    let wrong = TestCommand::new([
        "soak",
        "--check",
        history.to_str().unwrap(),
        "--chart",
        png.to_str().unwrap(),
    ])
    .run()
    .await;
    wrong.assert_exit_code(2);
    assert!(wrong.stderr().contains("must end in .svg"), "{wrong:#?}");
    assert!(!png.exists());
}

/// The negative control: acknowledged writes that are not in the table are caught, named,
/// and shown with the calls and pool events around them.
#[tokio::test]
async fn a_planted_wrong_acknowledgement_fails_the_soak() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let done = TestCommand::new([
        "soak",
        "--topology",
        "single",
        "--duration",
        "4s",
        "--seed",
        "12",
        "--faults",
        "terminate",
        "--plant-bug",
        "--history",
        history.to_str().unwrap(),
    ])
    .run()
    .await;
    done.assert_exit_code(9);
    let out = done.stdout();
    assert!(
        out.contains("ANOMALY acknowledged write lost: w0-25: acknowledged, 0 rows"),
        "{done:#?}"
    );
    assert!(out.contains("BROKEN"), "{out}");
    // No other kind of anomaly: only the planted one.
    let kinds: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("anomalies:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(kinds.len(), 1, "{out}");
    let again = TestCommand::new(["soak", "--check", history.to_str().unwrap()])
        .run()
        .await;
    again.assert_exit_code(9);
}
