//! `--via pgbouncer`: the drill's clients through a real PgBouncer in transaction pooling
//! mode. Skipped, with the reason printed, where PgBouncer cannot run.

use crate::TestCommand;

/// `pgsteady drill --via pgbouncer`: the drill's clients go through PgBouncer in transaction
/// mode; pgsteady (statement_cache=off) surfaces no error and loses or duplicates no write,
/// while the naive client's named statements fail there (26000).
#[tokio::test]
async fn drill_via_pgbouncer_holds_the_guarantees() {
    if let Err(why) = pgsteady_testkit::PgBouncer::builder().check_available() {
        return eprintln!("skipped: PgBouncer cannot run here: {why}");
    }
    let done = TestCommand::new([
        "--via",
        "pgbouncer",
        "--faults",
        "fast-restart,terminate",
        "--json",
    ])
    .run()
    .await;
    done.assert_exit_code(0);
    let report: serde_json::Value =
        serde_json::from_str(done.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    assert!(
        report["pgsteady_config"]
            .to_string()
            .contains("via PgBouncer"),
        "{report:#}"
    );
    let pg = &report["totals"]["pgsteady"];
    assert_eq!(pg["errors"], 0, "{pg:#}");
    assert_eq!(pg["writes"]["duplicated"], 0, "{pg:#}");
    assert_eq!(pg["writes"]["lost"], 0, "{pg:#}");
    assert_eq!(report["guarantees"]["held"], true, "{report:#}");
    let naive = report["totals"]["naive"].to_string();
    assert!(
        naive.contains("26000"),
        "named statements went through unharmed: {naive}"
    );
}
