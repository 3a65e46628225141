//! `pgsteady migrate` against real servers: eight runners at once, a late server, a
//! failing file, an edited applied file, bad directories; exit codes and messages.

use std::path::Path;
use std::time::{Duration, Instant};

use pgsteady_testkit::Cluster;
use tokio_postgres::{Client, NoTls};

use crate::{TestCommand, url};

async fn client(cluster: &Cluster) -> Client {
    let mut config = cluster.pg_config();
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).unwrap();
}

/// `n` files: the first creates `effects`; each inserts its version there (a double apply
/// shows as a duplicate row) and creates its own table.
fn numbered(n: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for v in 1..=n {
        let mut sql = String::new();
        if v == 1 {
            sql.push_str("CREATE TABLE effects (version int NOT NULL);\n");
        }
        sql.push_str(&format!(
            "CREATE TABLE t{v} (id int);\nINSERT INTO effects VALUES ({v});\n"
        ));
        write(dir.path(), &format!("{v:04}_step_{v}.sql"), &sql);
    }
    dir
}

async fn versions(client: &Client) -> Vec<i64> {
    client
        .query(
            "SELECT version FROM pgsteady_migrations ORDER BY version",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

async fn history_exists(client: &Client) -> bool {
    client
        .query_one("SELECT to_regclass('pgsteady_migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}

fn migrate(cluster: &Cluster, dir: &Path, extra: &[&str]) -> TestCommand {
    let mut args = vec![
        "migrate".to_owned(),
        cluster.url(),
        "--dir".to_owned(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    TestCommand::new(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_runners_started_at_once_all_exit_0_and_apply_each_migration_once() {
    let cluster = Cluster::start().await.unwrap();
    let dir = numbered(6);
    let start = Instant::now();
    let running: Vec<_> = (0..8)
        .map(|_| migrate(&cluster, dir.path(), &["--json"]).spawn())
        .collect();
    let mut applied = Vec::new();
    let mut slowest = Duration::ZERO;
    for r in running {
        let done = r.finish().await;
        done.assert_exit_code(0)
            .assert_no_secret(cluster.password());
        slowest = slowest.max(done.elapsed);
        let end = done.events().into_iter().last().expect("a final event");
        assert_eq!(end["event"], "done", "{end}");
        applied.extend(
            end["applied"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["version"].as_i64().unwrap()),
        );
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6],
        "each applied by exactly one runner"
    );
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1, 2, 3, 4, 5, 6]);
    let row = c
        .query_one("SELECT count(*), count(DISTINCT version) FROM effects", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (6, 6));
    eprintln!(
        "8 CLI runners: slowest process {slowest:?}, all done {:?} after the first spawn",
        start.elapsed()
    );
}

#[tokio::test]
async fn started_2s_before_the_server_waits_then_applies() {
    let cluster = Cluster::builder().init().await.unwrap();
    let dir = numbered(2);
    let running = migrate(&cluster, dir.path(), &["--timeout", "30s"]).spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_server().await.unwrap();
    let done = running.finish().await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    assert!(done.stderr().contains("applied "), "{done:#?}");
    assert!(done.stderr().contains("done: 2 applied"), "{done:#?}");
    assert_eq!(versions(&client(&cluster).await).await, [1, 2]);
}

#[tokio::test]
async fn syntax_error_in_file_3_of_5_exits_4_naming_file_and_line() {
    let cluster = Cluster::start().await.unwrap();
    let dir = numbered(5);
    write(
        dir.path(),
        "0003_step_3.sql",
        "CREATE TABLE t3 (id int);\nINSERT INTO effects VALUES (3);\n\n  CREATE TABL oops (id int);\n",
    );
    let done = migrate(&cluster, dir.path(), &[]).run().await;
    done.assert_exit_code(4)
        .assert_no_secret(cluster.password());
    let err = done.stderr();
    assert!(err.contains("0003_step_3.sql:4:10"), "{err}");
    assert!(err.contains("syntax error at or near \"TABL\""), "{err}");
    assert!(err.contains("4 |   CREATE TABL oops (id int);"), "{err}");
    assert!(
        err.contains("  |          ^"),
        "caret under column 10: {err}"
    );
    assert!(
        err.contains("was rolled back, and the 2 migrations after it"),
        "{err}"
    );
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1, 2]);
    let t3: bool = c
        .query_one("SELECT to_regclass('t3') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!t3, "nothing of file 3 remains");

    let json = migrate(&cluster, dir.path(), &["--json"]).run().await;
    json.assert_exit_code(4);
    let failed = json.events().into_iter().last().unwrap();
    assert_eq!(failed["event"], "failed");
    assert_eq!(
        (failed["line"].as_u64(), failed["column"].as_u64()),
        (Some(4), Some(10))
    );
    assert_eq!(failed["code"], "42601");
}

#[tokio::test]
async fn edited_applied_file_exits_5_naming_it_until_an_explicit_repair() {
    let cluster = Cluster::start().await.unwrap();
    let dir = numbered(2);
    migrate(&cluster, dir.path(), &[])
        .run()
        .await
        .assert_exit_code(0);
    write(
        dir.path(),
        "0002_step_2.sql",
        "CREATE TABLE t2 (id bigint);\n",
    );
    write(dir.path(), "0003_more.sql", "CREATE TABLE t3 (id int);\n");

    let done = migrate(&cluster, dir.path(), &[]).run().await;
    done.assert_exit_code(5);
    assert!(
        done.stderr()
            .contains("0002_step_2.sql` was changed after it was applied"),
        "{done:#?}"
    );
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1, 2], "nothing applied");

    assert!(
        done.stderr()
            .contains("`pgsteady migrate repair` records the files"),
        "{done:#?}"
    );
    let dry = migrate(&cluster, dir.path(), &["--dry-run"]).run().await;
    dry.assert_exit_code(5);

    let status = TestCommand::new([
        "migrate",
        "status",
        &cluster.url(),
        "--dir",
        &dir.path().display().to_string(),
    ])
    .run()
    .await;
    status.assert_exit_code(5);
    let lines: Vec<&str> = status.stdout().lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{status:#?}");
    assert!(lines[1].starts_with("1        applied"), "{status:#?}");
    assert!(lines[2].starts_with("2        modified"), "{status:#?}");
    assert!(lines[3].starts_with("3        pending"), "{status:#?}");

    let repair = |extra: &'static [&'static str]| {
        let mut args = vec![
            "migrate".to_owned(),
            "repair".to_owned(),
            cluster.url(),
            "--dir".to_owned(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        TestCommand::new(args)
    };
    let preview = repair(&["--dry-run"]).run().await;
    preview.assert_exit_code(0);
    assert!(preview.stderr().contains("would record"), "{preview:#?}");
    migrate(&cluster, dir.path(), &[])
        .run()
        .await
        .assert_exit_code(5);
    repair(&[]).run().await.assert_exit_code(0);

    let dry = migrate(&cluster, dir.path(), &["--dry-run"]).run().await;
    dry.assert_exit_code(0);
    assert_eq!(
        dry.stdout().trim(),
        dir.path().join("0003_more.sql").display().to_string()
    );
    assert_eq!(versions(&c).await, [1, 2], "a dry run applies nothing");
    migrate(&cluster, dir.path(), &[])
        .run()
        .await
        .assert_exit_code(0);
    assert_eq!(versions(&c).await, [1, 2, 3]);
}

#[tokio::test]
async fn bad_directories_and_files_exit_2_with_a_clear_message_and_change_nothing() {
    let cluster = Cluster::start().await.unwrap();
    let dir = numbered(1);
    migrate(&cluster, dir.path(), &[])
        .run()
        .await
        .assert_exit_code(0);
    let c = client(&cluster).await;

    let missing = dir.path().join("nope");
    let done = migrate(&cluster, &missing, &[]).run().await;
    done.assert_exit_code(2);
    assert!(
        done.stderr().contains(&format!(
            "migrations directory `{}` does not exist",
            missing.display()
        )),
        "{done:#?}"
    );

    write(dir.path(), "V2__users.sql", "CREATE TABLE users (id int);");
    write(dir.path(), "0003_ok.sql", "CREATE TABLE ok (id int);");
    let done = migrate(&cluster, dir.path(), &[]).run().await;
    done.assert_exit_code(2);
    assert!(
        done.stderr().contains(
            "V2__users.sql`: Flyway-style names are not supported: rename \
                                it to `0002_users.sql`"
        ),
        "{done:#?}"
    );
    std::fs::remove_file(dir.path().join("V2__users.sql")).unwrap();

    // Unreadable: a directory where a file should be (root reads any file)...
    std::fs::create_dir(dir.path().join("0002_dir.sql")).unwrap();
    let done = migrate(&cluster, dir.path(), &[]).run().await;
    done.assert_exit_code(2);
    assert!(
        done.stderr().contains("0002_dir.sql`: is a directory"),
        "{done:#?}"
    );
    std::fs::remove_dir(dir.path().join("0002_dir.sql")).unwrap();

    // ... and a mode-000 file read by an unprivileged user, when we can switch to one.
    match unprivileged_user() {
        Some((uid, gid)) => {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join("0002_secret.sql");
            write(dir.path(), "0002_secret.sql", "SELECT 1;");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let done = migrate(&cluster, dir.path(), &[]).uid(uid, gid).run().await;
            done.assert_exit_code(2);
            assert!(
                done.stderr()
                    .contains("0002_secret.sql`: cannot read: Permission denied"),
                "{done:#?}"
            );
            std::fs::remove_file(&file).unwrap();
        }
        None => eprintln!("skipped the mode-000 case: not root, or no `postgres` user"),
    }

    assert_eq!(versions(&c).await, [1], "nothing changed");
    let ok: bool = c
        .query_one("SELECT to_regclass('ok') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!ok);
    assert!(history_exists(&c).await);
}

/// The `postgres` user's ids, when this process is root and may switch to it.
fn unprivileged_user() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres").ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

#[tokio::test]
async fn wrong_password_exits_3_at_once_and_never_creates_the_history() {
    let cluster = Cluster::start().await.unwrap();
    let dir = numbered(1);
    let bad = url(&cluster, cluster.user(), "wrong-password", cluster.dbname());
    let done = TestCommand::new(["migrate", &bad, "--dir", &dir.path().display().to_string()])
        .run()
        .await;
    done.assert_exit_code(3).assert_no_secret("wrong-password");
    assert!(done.elapsed < Duration::from_secs(2), "{:?}", done.elapsed);
    assert!(!history_exists(&client(&cluster).await).await);
}

/// A history table made by hand with other column types (`version integer`, as an older tool
/// or a DBA might have): `status`, the dry run and apply panicked in tokio-postgres'
/// `Row::get` (exit 101). Now exit 3 naming the table and the column, for text and JSON.
#[tokio::test]
async fn a_history_table_of_other_column_types_exits_3_naming_the_column() {
    let cluster = Cluster::start().await.unwrap();
    let c = client(&cluster).await;
    c.batch_execute(
        "CREATE TABLE pgsteady_migrations (version integer PRIMARY KEY, name text NOT NULL, \
         checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), \
         execution_ms bigint); \
         INSERT INTO pgsteady_migrations (version, name, checksum) VALUES (1, 'step_1', 'x')",
    )
    .await
    .unwrap();
    let dir = numbered(2);
    let path = dir.path().display().to_string();
    let url = cluster.url();
    let runs: [Vec<&str>; 4] = [
        vec!["migrate", "status", &url, "--dir", &path],
        vec!["migrate", "status", &url, "--dir", &path, "--json"],
        vec!["migrate", &url, "--dir", &path, "--dry-run"],
        vec!["migrate", &url, "--dir", &path],
    ];
    for args in runs {
        let done = TestCommand::new(&args).run().await;
        done.assert_exit_code(3);
        let all = format!("{}{}", done.stdout(), done.stderr());
        assert!(
            all.contains("pgsteady_migrations") && all.contains("version bigint"),
            "{args:?}: {done:#?}"
        );
        assert!(!all.contains("panicked"), "{args:?}: {done:#?}");
    }
    // Nothing was applied.
    assert!(
        c.query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'effects'", &[])
            .await
            .unwrap()
            .is_none()
    );
    // Negative control: the table as pgsteady makes it reads fine.
    c.batch_execute("ALTER TABLE pgsteady_migrations ALTER version TYPE bigint")
        .await
        .unwrap();
    let done = TestCommand::new(["migrate", "status", &url, "--dir", &path])
        .run()
        .await;
    // (1 applied with another checksum than the file's: "modified", exit 5.)
    done.assert_exit_code(5);
}
