//! The migration runner against real servers: concurrent runners, a server restarted
//! or killed mid-migration, a failing file, an edited applied file, the lock of a dead runner.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgsteady::{Backoff, Config, Connector, Reason};
use pgsteady_migrate::{ErrorKind, Event, Failure, Migrator, State};
use pgsteady_testkit::{BackendFilter, Cluster, FaultProxy, ProxyMode, StopMode};
use tokio_postgres::{Client, NoTls};

/// A session for the test's own queries (the login user, over TCP).
async fn client(cluster: &Cluster) -> Client {
    let mut config = cluster.pg_config();
    config
        .connect_timeout(Duration::from_secs(5))
        .application_name("migrate-test");
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// A connector that waits up to `deadline` for the cluster, polling.
fn connector(cluster: &Cluster, deadline: Duration) -> Connector {
    Connector::new(Config::parse(&cluster.url()).unwrap())
        .unwrap()
        .with_backoff(Backoff::polling().with_max_elapsed(deadline))
        .with_attempt_timeout(Duration::from_secs(2))
}

/// Collects a migrator's events.
fn recorder() -> (
    Arc<Mutex<Vec<Event>>>,
    impl Fn(&Event) + Send + Sync + 'static,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    (events, move |e: &Event| {
        seen.lock().unwrap().push(e.clone())
    })
}

/// Writes `files` (name, SQL) into a new temporary directory.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).expect("write migration");
    }
    dir
}

/// `n` migrations: the first creates `effects`, each inserts its version there (so a double
/// apply shows as a duplicate row instead of failing) and creates its own table.
fn numbered(n: i64) -> Vec<(String, String)> {
    (1..=n)
        .map(|v| {
            let mut sql = String::new();
            if v == 1 {
                sql.push_str("CREATE TABLE effects (version int NOT NULL);\n");
            }
            sql.push_str(&format!(
                "CREATE TABLE t{v} (id int);\nINSERT INTO effects VALUES ({v});\n"
            ));
            (format!("{v:04}_step_{v}.sql"), sql)
        })
        .collect()
}

fn dir_of(files: &[(String, String)]) -> tempfile::TempDir {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    dir_with(&refs)
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

async fn table_exists(client: &Client, name: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Polls (every 20 ms, up to 10 s) until a backend runs a query containing `needle`.
async fn wait_for_query(cluster: &Cluster, needle: &str) -> i32 {
    let admin = cluster.admin().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 \
                 AND pid <> pg_backend_pid() LIMIT 1",
                &[&format!("%{needle}%")],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "no backend ran {needle:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_runners_apply_every_migration_exactly_once() {
    let cluster = Cluster::start().await.unwrap();
    let files = numbered(6);
    let dir = dir_of(&files);
    let migrator = Migrator::from_dir(dir.path()).unwrap();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(client(&cluster).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let migrator = migrator.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                migrator.run_on(&mut c).await
            })
        })
        .collect();
    let mut applied = Vec::new();
    let mut waits = Vec::new();
    for task in tasks {
        let report = task.await.unwrap().expect("every runner succeeds");
        applied.extend(report.applied.iter().map(|a| a.version));
        waits.push(report.lock_wait);
    }
    let elapsed = start.elapsed();
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6],
        "each version applied by exactly one runner"
    );
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1, 2, 3, 4, 5, 6]);
    let row = c
        .query_one("SELECT count(*), count(DISTINCT version) FROM effects", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (6, 6));
    eprintln!(
        "8 runners: all done in {elapsed:?}; lock waits {:?}",
        waits.iter().map(|w| w.as_millis()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn syntax_error_in_file_3_of_5_keeps_1_and_2_and_names_file_and_line() {
    let cluster = Cluster::start().await.unwrap();
    let mut files = numbered(5);
    // File 3: a table created, then a typo on line 4: all of file 3 must be rolled back.
    files[2].1 = "CREATE TABLE t3 (id int);\nINSERT INTO effects VALUES (3);\n\
                  -- the next line has a typo\nCREATE TABL oops (id int);\n"
        .into();
    let dir = dir_of(&files);
    let mut c = client(&cluster).await;
    let err = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Migration, "{err}");
    assert_eq!(err.code().map(|c| c.code()), Some("42601"));
    let failure = Failure::of(&err).expect("a failure with the file");
    assert_eq!(failure.version(), 3);
    let pos = failure.position().expect("the server gave a position");
    assert_eq!((pos.line, pos.column), (4, 8), "points at `TABL`");
    assert_eq!(pos.line_text, "CREATE TABL oops (id int);");
    let text = format!("{err:#}");
    assert!(text.contains("0003_step_3.sql:4:8"), "{text}");
    assert!(text.contains("syntax error"), "{text}");

    assert_eq!(versions(&c).await, [1, 2]);
    assert!(table_exists(&c, "t2").await);
    for t in ["t3", "t4", "t5"] {
        assert!(!table_exists(&c, t).await, "{t} must not exist");
    }
    let effects: i64 = c
        .query_one("SELECT count(*) FROM effects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(effects, 2);
}

/// A file that drops the history table fails in pgsteady's own history
/// update; the error says so and points at no position in the file (it once said
/// `0002_drop.sql:1:8`, the position of the table name in pgsteady's UPDATE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropping_the_history_table_is_blamed_on_the_history_update() {
    let cluster = Cluster::start().await.unwrap();
    let dir = dir_with(&[
        ("0001_one.sql", "CREATE TABLE one (id int);"),
        (
            "0002_drop.sql",
            "CREATE TABLE two (id int);\nDROP TABLE pgsteady_migrations;",
        ),
    ]);
    let mut c = client(&cluster).await;
    let err = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Migration, "{err}");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    let failure = Failure::of(&err).expect("the failure names the file");
    assert_eq!(failure.version(), 2);
    assert!(failure.position().is_none(), "{:?}", failure.position());
    let text = format!("{err:#}");
    assert!(
        text.contains("pgsteady's own history update failed"),
        "{text}"
    );
    assert!(text.contains("0002_drop.sql"), "{text}");
    let after = text.split("0002_drop.sql").nth(1).unwrap_or("");
    assert!(
        !after.starts_with(':') || !after[1..].starts_with(|c: char| c.is_ascii_digit()),
        "no line:column: {text}"
    );
    // Rolled back: the history and file 1 stay, file 2's table does not exist.
    assert_eq!(versions(&c).await, [1]);
    assert!(table_exists(&c, "one").await);
    assert!(!table_exists(&c, "two").await);
}

/// Runs a migrator whose file 2 sleeps; breaks the server with `fault` while it sleeps; checks
/// the migration is entirely applied or entirely absent; then reruns to completion.
async fn server_fault_during_long_migration(fault: StopMode) {
    let cluster = Cluster::start().await.unwrap();
    let dir = dir_with(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        (
            "0002_long.sql",
            "CREATE TABLE big AS SELECT g FROM generate_series(1, 100000) g;\n\
             SELECT pg_sleep(3);\n",
        ),
        ("0003_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let migrator = Migrator::from_dir(dir.path()).unwrap();
    let mut c = client(&cluster).await;
    let run = tokio::spawn({
        let migrator = migrator.clone();
        async move { migrator.run_on(&mut c).await }
    });
    wait_for_query(&cluster, "pg_sleep(3)").await;
    match fault {
        StopMode::Immediate => cluster.kill_postmaster().await.unwrap(),
        mode => cluster.stop(mode).await.unwrap(),
    }
    let err = run.await.unwrap().expect_err("the run loses its server");
    assert!(
        matches!(err.kind(), ErrorKind::Connect | ErrorKind::Closed),
        "a lost connection, not a failed migration: {:?} {err}",
        err.kind()
    );
    assert!(format!("{err:#}").contains("0002_long.sql"), "{err:#}");
    cluster.start_server().await.unwrap();

    let c = client(&cluster).await;
    let recorded = versions(&c).await.contains(&2);
    let big = table_exists(&c, "big").await;
    assert_eq!(
        recorded, big,
        "migration 2 is either fully applied or absent"
    );
    assert!(
        !recorded,
        "it was interrupted before COMMIT, so it is absent"
    );
    assert_eq!(versions(&c).await, [1]);

    let mut c2 = client(&cluster).await;
    let report = migrator.run_on(&mut c2).await.expect("rerun completes");
    let applied: Vec<i64> = report.applied.iter().map(|a| a.version).collect();
    assert_eq!(applied, [2, 3]);
    assert_eq!(versions(&c).await, [1, 2, 3]);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 100_000);
}

#[tokio::test]
async fn fast_restart_during_a_long_migration_leaves_it_absent_and_rerun_completes() {
    server_fault_during_long_migration(StopMode::Fast).await;
}

#[tokio::test]
async fn sigkill_during_a_long_migration_leaves_it_absent_and_rerun_completes() {
    // StopMode::Immediate stands for "SIGKILL the postmaster" here.
    server_fault_during_long_migration(StopMode::Immediate).await;
}

#[tokio::test]
async fn started_before_the_server_waits_then_migrates() {
    let cluster = Cluster::builder().init().await.unwrap();
    let dir = dir_of(&numbered(3));
    let migrator = Migrator::from_dir(dir.path()).unwrap();
    let connector = connector(&cluster, Duration::from_secs(30));
    let start = Instant::now();
    let run = tokio::spawn(async move { migrator.run(&connector).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!run.is_finished(), "still waiting for the server");
    cluster.start_server().await.unwrap();
    let ready = Instant::now();
    let report = run.await.unwrap().expect("migrates once the server is up");
    assert_eq!(report.applied.len(), 3);
    assert!(report.elapsed >= Duration::from_secs(2));
    eprintln!(
        "late start: done {:?} after the server was ready ({:?} in total)",
        ready.elapsed(),
        start.elapsed()
    );
    assert!(
        ready.elapsed() < Duration::from_secs(2),
        "{:?}",
        ready.elapsed()
    );
    assert_eq!(versions(&client(&cluster).await).await, [1, 2, 3]);
}

/// With [`Migrator::run`], a server restarted or killed mid-migration is waited for and the
/// run resumes on its own: the interrupted migration is applied once, after the restart.
async fn run_resumes_after(fault: StopMode) {
    let cluster = Cluster::start().await.unwrap();
    let dir = dir_with(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        (
            "0002_long.sql",
            "CREATE TABLE big AS SELECT g FROM generate_series(1, 100000) g;\n\
             INSERT INTO a VALUES (2);\nSELECT pg_sleep(2);\n",
        ),
        ("0003_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let (events, record) = recorder();
    let migrator = Migrator::from_dir(dir.path()).unwrap().on_event(record);
    let connector = connector(&cluster, Duration::from_secs(30));
    let run = tokio::spawn(async move { migrator.run(&connector).await });
    wait_for_query(&cluster, "pg_sleep(2)").await;
    match fault {
        StopMode::Immediate => cluster.kill_postmaster().await.unwrap(),
        mode => cluster.stop(mode).await.unwrap(),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start_server().await.unwrap();
    let report = run.await.unwrap().expect("the run resumes and completes");
    assert_eq!(report.resumes, 1);
    let applied: Vec<i64> = report.applied.iter().map(|a| a.version).collect();
    assert_eq!(applied, [1, 2, 3]);
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1, 2, 3]);
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM big), (SELECT count(*) FROM a)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (100_000, 1));
    let resumed: Vec<Event> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Resuming { .. }))
        .cloned()
        .collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let Event::Resuming { reason, .. } = &resumed[0] else {
        unreachable!()
    };
    eprintln!("{fault:?}: resumed after {reason:?}");
    match fault {
        // A fast shutdown ends the busy backend with 57P01.
        StopMode::Fast => assert_eq!(*reason, Some(Reason::AdminShutdown)),
        // SIGKILL: the socket just closes.
        _ => assert!(
            matches!(reason, Some(Reason::Closed | Reason::Reset)),
            "{reason:?}"
        ),
    }
}

#[tokio::test]
async fn run_resumes_after_a_fast_restart_mid_migration() {
    run_resumes_after(StopMode::Fast).await;
}

#[tokio::test]
async fn run_resumes_after_a_sigkill_mid_migration() {
    run_resumes_after(StopMode::Immediate).await;
}

#[tokio::test]
async fn a_lost_commit_is_resolved_from_the_history_not_replayed() {
    let cluster = Cluster::start().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    // Migration 2's COMMIT takes a second (a deferred constraint trigger sleeps), so the
    // reply to COMMIT can be swallowed while the server commits.
    let dir = dir_with(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        (
            "0002_slow_commit.sql",
            "CREATE TABLE s (id int);\n\
             CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS\n\
             $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;\n\
             CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON s DEFERRABLE INITIALLY DEFERRED\n\
             FOR EACH ROW EXECUTE FUNCTION slow();\n\
             INSERT INTO s VALUES (1);\n",
        ),
        ("0003_c.sql", "CREATE TABLE c (id int);"),
    ]);
    let (events, record) = recorder();
    let migrator = Migrator::from_dir(dir.path()).unwrap().on_event(record);
    let connector = Connector::new(Config::parse(&cluster.url_with_port(proxy.port())).unwrap())
        .unwrap()
        .with_backoff(Backoff::polling().with_max_elapsed(Duration::from_secs(20)));
    let run = tokio::spawn(async move { migrator.run(&connector).await });

    let watcher = client(&cluster).await; // direct, not through the proxy
    wait_for_query(&cluster, "COMMIT").await;
    proxy.set_mode(ProxyMode::DropReplies);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher
        .query_opt("SELECT 1 FROM pgsteady_migrations WHERE version = 2", &[])
        .await
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "COMMIT never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client never heard "COMMIT" back; now its connection is cut.
    proxy.reset_all();
    proxy.set_mode(ProxyMode::Pass);

    let report = run.await.unwrap().expect("resumes and completes");
    assert_eq!(report.resumes, 1);
    let applied: Vec<i64> = report.applied.iter().map(|a| a.version).collect();
    assert_eq!(applied, [1, 2, 3], "2 counted once, from the history");
    let events = events.lock().unwrap().clone();
    assert!(
        events.contains(&Event::CommitResolved {
            version: 2,
            committed: true
        }),
        "{events:?}"
    );
    let resumed = events
        .iter()
        .find_map(|e| match e {
            Event::Resuming { error, .. } => Some(error.clone()),
            _ => None,
        })
        .unwrap();
    assert!(resumed.contains("may or may not be applied"), "{resumed}");
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1, 2, 3]);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "applied once");
}

#[tokio::test]
async fn edited_applied_file_is_refused_with_its_name_and_repair_is_explicit() {
    let cluster = Cluster::start().await.unwrap();
    let dir = dir_with(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        ("0002_b.sql", "CREATE TABLE b (id int);"),
    ]);
    let mut c = client(&cluster).await;
    Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap();
    let before: Vec<String> = c
        .query(
            "SELECT checksum FROM pgsteady_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    std::fs::write(dir.path().join("0002_b.sql"), "CREATE TABLE b (id bigint);").unwrap();
    std::fs::write(dir.path().join("0003_c.sql"), "CREATE TABLE c (id int);").unwrap();
    let migrator = Migrator::from_dir(dir.path()).unwrap();
    let err = migrator.run_on(&mut c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HistoryMismatch);
    let text = err.to_string();
    assert!(
        text.contains("0002_b.sql` was changed after it was applied"),
        "{text}"
    );
    assert!(text.contains("repair"), "{text}");
    assert_eq!(versions(&c).await, [1, 2], "nothing applied");
    assert!(!table_exists(&c, "c").await);

    let status = migrator.status_on(&c).await.unwrap();
    let states: Vec<State> = status.entries.iter().map(|e| e.state).collect();
    assert_eq!(states, [State::Applied, State::Modified, State::Pending]);
    assert!(
        migrator.dry_run_on(&c).await.is_err(),
        "a dry run fails the same way"
    );

    let preview = migrator.repair_on(&mut c, true).await.unwrap();
    assert_eq!(preview.rewritten.len(), 1);
    let after_preview: Vec<String> = c
        .query(
            "SELECT checksum FROM pgsteady_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(after_preview, before, "a dry-run repair writes nothing");
    let repair = migrator.repair_on(&mut c, false).await.unwrap();
    assert_eq!(repair.rewritten[0].version, 2);
    let pending: Vec<i64> = migrator
        .dry_run_on(&c)
        .await
        .unwrap()
        .iter()
        .map(|m| m.version())
        .collect();
    assert_eq!(pending, [3]);
    let report = migrator.run_on(&mut c).await.unwrap();
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.already_applied, 2);

    // A removed applied file is "missing" (refused); a version beyond every file is "future".
    std::fs::remove_file(dir.path().join("0002_b.sql")).unwrap();
    let err = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("version 2 (`b`) was applied but no file"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("0003_c.sql")).unwrap();
    let status = Migrator::from_dir(dir.path())
        .unwrap()
        .status_on(&c)
        .await
        .unwrap();
    let states: Vec<State> = status.entries.iter().map(|e| e.state).collect();
    assert_eq!(states, [State::Applied, State::Future, State::Future]);
}

#[tokio::test]
async fn no_transaction_files_run_outside_and_transaction_misuse_is_caught() {
    let cluster = Cluster::start().await.unwrap();
    let dir = dir_with(&[
        ("0001_t.sql", "CREATE TABLE t (a int);"),
        (
            "0002_idx.sql",
            "-- pgsteady:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n",
        ),
    ]);
    let mut c = client(&cluster).await;
    let report = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap();
    assert!(!report.applied[1].transactional);
    assert!(table_exists(&c, "t_a").await);

    // Without the header: refused by the server (25001), and the message says what to do.
    std::fs::write(
        dir.path().join("0003_idx2.sql"),
        "CREATE INDEX CONCURRENTLY t_a2 ON t (a);",
    )
    .unwrap();
    let err = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Migration);
    assert_eq!(err.code().map(|c| c.code()), Some("25001"));
    assert!(
        err.to_string().contains("-- pgsteady:no-transaction"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("0003_idx2.sql")).unwrap();

    // A file that commits by itself is caught by its changed transaction id.
    std::fs::write(
        dir.path().join("0003_commits.sql"),
        "CREATE TABLE u (a int);\nCOMMIT;\nCREATE TABLE v (a int);\n",
    )
    .unwrap();
    let err = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Migration);
    assert!(
        format!("{err:#}").contains("ended its own transaction"),
        "{err}"
    );
    assert!(format!("{err:#}").contains("0003_commits.sql"), "{err:#}");
    // Its history row (inserted before the file ran) was committed by the file's own COMMIT,
    // so 3 now counts as applied; the error told the user to check.
    assert_eq!(versions(&c).await, [1, 2, 3]);

    // The server's error position counts characters, not bytes: `'x'` is at column 14 after
    // three two-byte characters (column 17 if bytes were counted).
    std::fs::write(
        dir.path().join("0005_utf8.sql"),
        "SELECT 1;\nSELECT 'ééé' 'x';\n",
    )
    .unwrap();
    let err = Migrator::from_dir(dir.path())
        .unwrap()
        .run_on(&mut c)
        .await
        .unwrap_err();
    let pos = Failure::of(&err)
        .and_then(Failure::position)
        .expect("a position");
    assert_eq!((pos.line, pos.column), (2, 14), "{err}");
}

#[tokio::test]
async fn a_dead_runners_lock_dies_with_its_session_and_lock_waits_are_bounded() {
    let cluster = Cluster::start().await.unwrap();
    let dir = dir_with(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        (
            "0002_slow.sql",
            "SELECT pg_sleep(30);\nCREATE TABLE slow (id int);",
        ),
    ]);
    let migrator = Migrator::from_dir(dir.path()).unwrap();
    let mut holder = client(&cluster).await;
    let first = tokio::spawn({
        let migrator = migrator.clone();
        async move { migrator.run_on(&mut holder).await }
    });
    let holder_pid = wait_for_query(&cluster, "pg_sleep(30)").await;

    // A second runner with a bounded wait gives up, naming the holder.
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let bounded = migrator
        .clone()
        .with_lock_timeout(Some(Duration::from_millis(300)))
        .on_event(move |e| seen.lock().unwrap().push(e.clone()));
    let mut c = client(&cluster).await;
    let start = Instant::now();
    let err = bounded.run_on(&mut c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        err.to_string().contains(&format!("pid {holder_pid}")),
        "{err}"
    );
    assert_eq!(
        events.lock().unwrap().first(),
        Some(&Event::LockWait {
            holder_pid: Some(holder_pid)
        })
    );

    // A third runner waits without bound; the holder's session is killed (a crashed
    // runner): the lock is released and the waiter applies migration 2 itself.
    let mut waiter = client(&cluster).await;
    let third = tokio::spawn({
        let migrator = migrator.clone();
        async move { migrator.run_on(&mut waiter).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = cluster
        .terminate_backends(BackendFilter::Pids(vec![holder_pid]))
        .await
        .unwrap();
    assert_eq!(killed, 1);
    assert!(first.await.unwrap().is_err());
    let started = Instant::now();
    // The waiter now runs pg_sleep(30) itself: cut it short the same way once it started.
    let waiter_pid = wait_for_query(&cluster, "pg_sleep(30)").await;
    assert_ne!(waiter_pid, holder_pid);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "lock handed over at once"
    );
    cluster
        .terminate_backends(BackendFilter::Pids(vec![waiter_pid]))
        .await
        .unwrap();
    assert!(third.await.unwrap().is_err());
    let c = client(&cluster).await;
    assert_eq!(versions(&c).await, [1], "2 never committed");
}

#[test]
fn bad_directory_contents_are_refused_before_connecting() {
    let dir = dir_with(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    std::fs::create_dir(dir.path().join("0002_unreadable.sql")).unwrap();
    let err = Migrator::from_dir(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("0002_unreadable.sql`: is a directory"),
        "{err}"
    );
    std::fs::remove_dir(dir.path().join("0002_unreadable.sql")).unwrap();
    std::fs::write(dir.path().join("V2__b.sql"), "SELECT 1;").unwrap();
    let err = Migrator::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("V2__b.sql`: Flyway-style"),
        "{err}"
    );
    let err = Migrator::from_dir(Path::new("/nonexistent/migrations")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "migrations directory `/nonexistent/migrations` does not exist"
    );
}
