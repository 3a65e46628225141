//! `pgsteady slot`, `slot --all`, doctor's slots section and `serve --slot` against one real
//! cluster with `wal_level = logical` and 1 MB WAL segments. Every state is
//! produced for real: `missing` after pg_drop_replication_slot, `inactive` with its retained
//! WAL, `ok` with a consumer (pg_recvlogical) attached, `gap` after the slot was dropped and
//! recreated (and the recreated slot shown not to deliver the skipped rows), `ahead`,
//! `extended`, `unreserved` and `lost` (decoding it fails with 55000). One test function runs
//! the cases in sequence on one cluster, which takes well under 60 s.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgsteady::SqlState;
use pgsteady_slot::Lsn;
use pgsteady_testkit::Cluster;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use pgsteady_testkit::http::{self, poll_status};

use crate::serve::announced_addr;
use crate::{Finished, TestCommand};

/// A superuser session on the login user's database (logical slots belong to a database).
async fn admin_app(cluster: &Cluster) -> Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user("postgres")
        .dbname(cluster.dbname());
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn scalar(client: &Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn lsn(client: &Client, sql: &str) -> Lsn {
    scalar(client, sql).await.parse().unwrap()
}

async fn int(client: &Client, sql: &str) -> u64 {
    scalar(client, sql).await.parse().unwrap()
}

/// Runs `pgsteady slot ARGS...`; the password is never printed.
async fn slot(cluster: &Cluster, args: &[&str]) -> Finished {
    let mut argv = vec!["slot"];
    argv.extend_from_slice(args);
    let done = TestCommand::new(argv.clone()).run().await;
    done.assert_no_secret(cluster.password());
    // Shown with --nocapture, and when the test fails.
    eprintln!(
        "{:?} -> {:?}\n{}{}",
        &argv[1..],
        done.code,
        done.stdout,
        done.stderr
    );
    done
}

/// `pgsteady slot NAME URL [extra] --json`: the exit code and the one JSON object printed.
async fn verdict(cluster: &Cluster, name: &str, extra: &[&str]) -> (i32, Value) {
    let url = cluster.url();
    let mut args = vec![name, url.as_str()];
    args.extend_from_slice(extra);
    args.push("--json");
    let done = slot(cluster, &args).await;
    (done.code.unwrap(), one_json(&done))
}

#[track_caller]
fn one_json(done: &Finished) -> Value {
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout: {done:#?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {done:#?}"))
}

fn states(v: &Value) -> Vec<&str> {
    v["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn json_lsn(v: &Value, key: &str) -> Lsn {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .parse()
        .unwrap()
}

async fn write_rows(client: &Client, tag: &str, n: u32) {
    client
        .batch_execute(&format!(
            "INSERT INTO t (pad) SELECT '{tag}-' || g FROM generate_series(1, {n}) g"
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_for_real_with_exit_codes_and_json() {
    let started = Instant::now();
    let cluster = Cluster::builder()
        .initdb_arg("--wal-segsize=1")
        .setting("wal_level", "logical")
        .setting("max_wal_size", "4MB")
        .setting("min_wal_size", "2MB")
        .setting("max_replication_slots", "16")
        // The kit keeps 64 MB of WAL for its standbys; here only the slots may keep WAL, so
        // that a slot past max_slot_wal_keep_size really loses it.
        .setting("wal_keep_size", "0")
        .start()
        .await
        .unwrap();
    let admin = admin_app(&cluster).await;
    admin
        .batch_execute("CREATE TABLE t (id serial PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let create = |name: &str| {
        format!("SELECT pg_create_logical_replication_slot('{name}', 'test_decoding')")
    };
    let url = cluster.url();
    eprintln!("cluster ready after {:?}", started.elapsed());

    // Usage: a bad LSN is exit 2 with one message naming it, before any connection.
    for (bad, named) in [
        ("16/ZZ", "`16/ZZ` is not an LSN"),
        ("abc", "`abc` is not an LSN"),
        ("", "an empty string is not an LSN"),
    ] {
        let done = slot(&cluster, &["debezium", &url, "--offset", bad]).await;
        done.assert_exit_code(2);
        let lines: Vec<&str> = done.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one message: {done:#?}");
        assert!(
            lines[0].contains("--offset") && lines[0].contains(named),
            "{done:#?}"
        );
        assert!(done.stdout.is_empty(), "{done:#?}");
    }
    let (code, v) = verdict(&cluster, "debezium", &["--offset", "16/ZZ"]).await;
    assert_eq!(code, 2);
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["state"], Value::Null);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("`16/ZZ` is not an LSN"),
        "{v}"
    );
    // A bad slot name, and the target where the name belongs: exit 2, the password not shown.
    slot(&cluster, &["Debezium", &url])
        .await
        .assert_exit_code(2);
    let done = slot(&cluster, &[&url]).await;
    done.assert_exit_code(2);
    assert!(
        done.stderr.contains("looks like a connection string"),
        "{done:#?}"
    );

    // missing: never created, then created and dropped.
    let (code, v) = verdict(&cluster, "nosuch", &[]).await;
    assert_eq!((code, states(&v)), (6, vec!["missing"]), "{v}");
    assert_eq!(v["exists"], false);
    assert_eq!(v["slot"], "nosuch");
    assert_eq!(
        (v["timeline"].as_u64(), v["in_recovery"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(v["note"], Value::Null, "never promoted: no note");
    scalar(&admin, &create("dropme")).await;
    let (code, v) = verdict(&cluster, "dropme", &[]).await;
    assert_eq!((code, v["state"].as_str()), (0, Some("inactive")), "{v}");
    scalar(&admin, "SELECT pg_drop_replication_slot('dropme')::text").await;
    let done = slot(&cluster, &["dropme", &url]).await;
    done.assert_exit_code(6);
    assert!(done.stdout.contains("slot dropme: missing"), "{done:#?}");
    assert!(
        done.stderr.contains("missing: no slot `dropme`"),
        "{done:#?}"
    );

    // inactive: no consumer; the WAL it retains, within one segment of what SQL says.
    scalar(&admin, &create("idle")).await;
    write_rows(&admin, "idle", 2000).await;
    let (code, v) = verdict(&cluster, "idle", &[]).await;
    let sql_retained = int(
        &admin,
        "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint::text FROM pg_replication_slots WHERE slot_name = 'idle'",
    )
    .await;
    assert_eq!((code, states(&v)), (0, vec!["inactive"]), "{v}");
    assert_eq!(v["active"], false);
    let retained = v["retained_bytes"].as_u64().unwrap();
    assert!(retained > 100_000, "2000 rows were written since: {v}");
    assert!(
        sql_retained.abs_diff(retained) <= 1024 * 1024,
        "retained {retained}, SQL says {sql_retained}"
    );
    assert_eq!(
        retained,
        json_lsn(&v, "position").bytes_after(json_lsn(&v, "restart_lsn"))
    );
    let (code, v) = verdict(&cluster, "idle", &["--strict"]).await;
    assert_eq!((code, v["exit_code"].as_u64()), (8, Some(8)), "{v}");

    // A physical slot: it delivers from restart_lsn, so an offset below that is a gap.
    scalar(
        &admin,
        "SELECT pg_create_physical_replication_slot('standby1', true)::text",
    )
    .await;
    let (code, v) = verdict(&cluster, "standby1", &[]).await;
    assert_eq!((code, states(&v)), (0, vec!["inactive"]), "{v}");
    assert_eq!(
        (v["slot_type"].as_str(), v["plugin"].as_str()),
        (Some("physical"), None)
    );
    let restart = json_lsn(&v, "restart_lsn");
    assert_eq!(
        v["lag_bytes"].as_u64(),
        Some(json_lsn(&v, "position").bytes_after(restart))
    );
    let below = Lsn::from_u64(restart.as_u64() - 1);
    let (code, v) = verdict(&cluster, "standby1", &["--offset", &below.to_string()]).await;
    assert_eq!((code, states(&v)), (7, vec!["inactive", "gap"]), "{v}");
    assert_eq!(v["gap_bytes"].as_u64(), Some(1));
    scalar(&admin, "SELECT pg_drop_replication_slot('standby1')::text").await;

    // ok: a consumer attached (pg_recvlogical, then stopped so that it confirms nothing
    // more), rows written after its confirmed position, an offset between the two.
    scalar(&admin, &create("okslot")).await;
    let mut consumer = tokio::process::Command::new(cluster.bin().tool("pg_recvlogical"))
        .args(["-h", cluster.socket_dir().to_str().unwrap()])
        .args(["-p", &cluster.port().to_string(), "-U", "postgres"])
        .args([
            "-d",
            cluster.dbname(),
            "-S",
            "okslot",
            "--start",
            "-f",
            "/dev/null",
        ])
        .args(["-s", "3600", "-F", "3600", "--no-loop"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let attach = Instant::now();
    while scalar(
        &admin,
        "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'okslot'",
    )
    .await
        != "true"
    {
        assert!(
            attach.elapsed() < Duration::from_secs(10),
            "pg_recvlogical did not attach"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = Pid::from_raw(consumer.id().unwrap() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let confirmed_sql =
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'okslot'";
    let confirmed = lsn(&admin, confirmed_sql).await;
    write_rows(&admin, "ok", 500).await;
    let current = lsn(&admin, "SELECT pg_current_wal_lsn()::text").await;
    assert!(
        current.bytes_after(confirmed) > 1000,
        "{confirmed} {current}"
    );
    let offset = Lsn::from_u64(confirmed.as_u64() + current.bytes_after(confirmed) / 2);
    let (code, v) = verdict(&cluster, "okslot", &["--offset", &offset.to_string()]).await;
    assert_eq!((code, states(&v)), (0, vec!["ok"]), "{v}");
    assert_eq!(v["active"], true);
    assert_eq!(v["offset_usable"], true);
    assert_eq!(json_lsn(&v, "confirmed_flush_lsn"), confirmed);
    let position = json_lsn(&v, "position");
    assert!(position >= current, "{position} {current}");
    assert_eq!(
        v["lag_bytes"].as_u64(),
        Some(position.bytes_after(offset)),
        "lag to the byte: {v}"
    );
    let done = slot(
        &cluster,
        &["okslot", &url, "--offset", &offset.to_string(), "--strict"],
    )
    .await;
    done.assert_exit_code(0);
    assert!(done.stdout.starts_with("slot okslot: ok"), "{done:#?}");
    // Negative control: the stopped consumer really confirmed nothing meanwhile.
    assert_eq!(lsn(&admin, confirmed_sql).await, confirmed);
    kill(pid, Signal::SIGKILL).unwrap();
    let _ = kill(pid, Signal::SIGCONT);
    consumer.wait().await.unwrap();

    // gap: an offset taken, rows written, the slot dropped and recreated.
    scalar(&admin, &create("cdc")).await;
    let taken = lsn(
        &admin,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'",
    )
    .await;
    write_rows(&admin, "skipped", 300).await;
    // Negative control: before the slot is recreated the same offset is fine.
    let (code, v) = verdict(&cluster, "cdc", &["--offset", &taken.to_string()]).await;
    assert_eq!((code, states(&v)), (0, vec!["inactive"]), "{v}");
    scalar(&admin, "SELECT pg_drop_replication_slot('cdc')::text").await;
    scalar(&admin, &create("cdc")).await;
    let (code, v) = verdict(&cluster, "cdc", &["--offset", &taken.to_string()]).await;
    assert_eq!((code, states(&v)), (7, vec!["inactive", "gap"]), "{v}");
    assert_eq!(v["state"], "gap");
    assert_eq!(v["offset_usable"], false);
    let start = lsn(
        &admin,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'",
    )
    .await;
    assert_eq!(json_lsn(&v, "offset"), taken);
    assert_eq!(json_lsn(&v, "confirmed_flush_lsn"), start);
    assert_eq!(
        v["gap_bytes"].as_u64(),
        Some(start.bytes_after(taken)),
        "{v}"
    );
    let done = slot(&cluster, &["cdc", &url, "--offset", &taken.to_string()]).await;
    done.assert_exit_code(7);
    assert!(
        done.stderr.contains(&taken.to_string()) && done.stderr.contains(&start.to_string()),
        "both LSNs named: {done:#?}"
    );
    // What the check protects against: the recreated slot does not deliver those rows.
    let delivered = int(
        &admin,
        "SELECT count(*)::text FROM pg_logical_slot_peek_changes('cdc', NULL, NULL) WHERE data LIKE '%skipped-%'",
    )
    .await;
    assert_eq!(
        delivered, 0,
        "the recreated slot skips the rows written before it"
    );

    // ahead: an offset 16 MB past the current position.
    let current = lsn(&admin, "SELECT pg_current_wal_lsn()::text").await;
    let beyond = current.checked_add(16 * 1024 * 1024).unwrap();
    let (code, v) = verdict(&cluster, "idle", &["--offset", &beyond.to_string()]).await;
    assert_eq!((code, states(&v)), (7, vec!["inactive", "ahead"]), "{v}");
    let ahead = v["ahead_bytes"].as_u64().unwrap();
    assert_eq!(ahead, beyond.bytes_after(json_lsn(&v, "position")));
    assert!(
        ahead <= 16 * 1024 * 1024 && ahead > 15 * 1024 * 1024,
        "{ahead}"
    );

    // --all: a table, or an array; exit code of the worst slot.
    let done = slot(&cluster, &["--all", &url, "--json"]).await;
    done.assert_exit_code(0);
    let all = one_json(&done);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["slot"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cdc", "idle", "okslot"]);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "inactive"),
        "{all}"
    );
    slot(&cluster, &["--all", &url, "--strict"])
        .await
        .assert_exit_code(8);
    let done = slot(&cluster, &["--all", &url]).await;
    done.assert_exit_code(0);
    assert!(done.stdout.starts_with("SLOT"), "{done:#?}");
    assert!(
        done.stdout
            .lines()
            .any(|l| l.starts_with("idle ") && l.contains("inactive")),
        "{done:#?}"
    );

    // doctor: a replication-slots section warning about the inactive slots.
    let done = TestCommand::new(["doctor", &url, "--json"]).run().await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    let report: Value = serde_json::from_str(&done.stdout).unwrap();
    let layer = report["hosts"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "slots")
        .unwrap_or_else(|| panic!("no slots layer: {report}"))
        .clone();
    assert_eq!(layer["status"], "warn", "{layer}");
    let detail = layer["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("3 slots") && detail.contains("`idle` inactive"),
        "{layer}"
    );

    let done = TestCommand::new(["doctor", &url]).run().await;
    done.assert_exit_code(0)
        .assert_no_secret(cluster.password());
    eprintln!("{}", done.stdout);
    assert!(
        done.stdout
            .lines()
            .any(|l| l.starts_with("  slots     WARN  3 slots")),
        "{done:#?}"
    );

    serve_exports_slot_metrics(&cluster, &admin).await;

    // extended, then unreserved, then lost: a small max_slot_wal_keep_size, pg_switch_wal()
    // and CHECKPOINT on 1 MB segments.
    cluster.set("max_slot_wal_keep_size", "16MB").await.unwrap();
    scalar(&admin, &create("doomed")).await;
    for _ in 0..8 {
        write_rows(&admin, "switch", 10).await;
        scalar(&admin, "SELECT pg_switch_wal()::text").await;
    }
    admin.batch_execute("CHECKPOINT").await.unwrap();
    let (code, v) = verdict(&cluster, "doomed", &[]).await;
    assert_eq!((code, states(&v)), (0, vec!["inactive", "extended"]), "{v}");
    assert_eq!(v["wal_status"], "extended");
    assert!(v["safe_wal_size"].as_i64().unwrap() > 0, "{v}");
    let (code, _) = verdict(&cluster, "doomed", &["--strict"]).await;
    assert_eq!(code, 8);
    cluster.set("max_slot_wal_keep_size", "2MB").await.unwrap();
    let (code, v) = verdict(&cluster, "doomed", &[]).await;
    assert_eq!(
        (code, states(&v)),
        (0, vec!["inactive", "unreserved"]),
        "{v}"
    );
    assert!(v["safe_wal_size"].as_i64().unwrap() <= 0, "{v}");
    scalar(&admin, "SELECT pg_switch_wal()::text").await;
    admin.batch_execute("CHECKPOINT").await.unwrap();
    let (code, v) = verdict(&cluster, "doomed", &[]).await;
    assert_eq!((code, v["state"].as_str()), (7, Some("lost")), "{v}");
    assert_eq!(v["wal_status"], "lost");
    let err = admin
        .simple_query("SELECT count(*) FROM pg_logical_slot_get_changes('doomed', NULL, NULL)")
        .await
        .expect_err("decoding a lost slot fails");
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err}"
    );
    let done = slot(&cluster, &["doomed", &url]).await;
    done.assert_exit_code(7);
    assert!(done.stderr.contains("lost"), "{done:#?}");

    // 3: a permanent connection error; 1: nothing answers before the timeout.
    let bad = crate::url(&cluster, cluster.user(), "nope-Pw-123", cluster.dbname());
    let done = slot(&cluster, &["idle", &bad]).await;
    done.assert_exit_code(3).assert_no_secret("nope-Pw-123");
    let (code, v) = verdict(&cluster, "idle", &[]).await;
    assert_eq!(code, 7, "idle was invalidated with the rest: {v}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = format!(
        "postgresql://app:{}@127.0.0.1:{port}/app",
        cluster.password()
    );
    let done = slot(
        &cluster,
        &["idle", &nowhere, "--timeout", "300ms", "--json"],
    )
    .await;
    done.assert_exit_code(1);
    assert!(done.elapsed < Duration::from_secs(3), "{:?}", done.elapsed);
    let v = one_json(&done);
    assert_eq!(
        (v["exit_code"].as_u64(), v["reason"].as_str()),
        (Some(1), Some("refused")),
        "{v}"
    );

    // missing on a standby, then on a promoted server: the verdict says why. The same
    // cluster restarted with standby.signal (in recovery, nothing to replay), then promoted
    // for real with pg_promote() (timeline 2).
    admin
        .batch_execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
        .await
        .unwrap();
    drop(admin);
    cluster
        .stop(pgsteady_testkit::StopMode::Fast)
        .await
        .unwrap();
    std::fs::write(cluster.data_dir().join("standby.signal"), "").unwrap();
    cluster.start_server().await.unwrap();
    let (code, v) = verdict(&cluster, "debezium", &[]).await;
    assert_eq!((code, v["state"].as_str()), (6, Some("missing")), "{v}");
    assert_eq!(
        (v["in_recovery"].as_bool(), v["timeline"].as_u64()),
        (Some(true), None),
        "{v}"
    );
    assert!(v["note"].as_str().unwrap().contains("standby"), "{v}");
    let admin = cluster.admin().await.unwrap();
    let replayed = lsn(&admin, "SELECT pg_last_wal_replay_lsn()::text").await;
    assert_eq!(
        json_lsn(&v, "position"),
        replayed,
        "a standby's position is its replay LSN"
    );
    scalar(&admin, "SELECT pg_promote(true, 30)::text").await;
    let (code, v) = verdict(&cluster, "debezium", &[]).await;
    assert_eq!((code, v["state"].as_str()), (6, Some("missing")), "{v}");
    assert_eq!(
        (v["in_recovery"].as_bool(), v["timeline"].as_u64()),
        (Some(false), Some(2)),
        "{v}"
    );
    assert!(v["note"].as_str().unwrap().contains("promoted"), "{v}");
    let done = slot(&cluster, &["debezium", &url]).await;
    done.assert_exit_code(6);
    assert!(done.stderr.contains("timeline 2"), "{done:#?}");

    let took = started.elapsed();
    eprintln!("the slot test set took {took:?} on one cluster");
    assert!(took < Duration::from_secs(60), "{took:?}");
}

/// `serve --slot`: per-slot metrics refreshed on their own timer, `--slot-ready`.
async fn serve_exports_slot_metrics(cluster: &Cluster, admin: &Client) {
    let mut running = TestCommand::new([
        "serve",
        &cluster.url(),
        "--listen",
        "127.0.0.1:0",
        "--slot",
        "idle",
        "--slot",
        "later",
        "--slot-interval",
        "200ms",
        "--slot-ready",
    ])
    .spawn();
    let mut stderr = BufReader::new(running.child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let addr = announced_addr(&mut stderr, &mut log).await;
    let http = http::client();
    let (readyz, metrics) = (
        format!("http://{addr}/readyz"),
        format!("http://{addr}/metrics"),
    );
    let read_metrics = || async {
        http.get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // `later` does not exist yet: not ready, and the metrics say why.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = read_metrics().await;
        if text.contains("pgsteady_slot_state{") {
            break text;
        }
        assert!(Instant::now() < deadline, "no slot metrics: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        r#"pgsteady_slot_state{slot="idle",state="inactive"} 1"#,
        r#"pgsteady_slot_state{slot="idle",state="ok"} 0"#,
        r#"pgsteady_slot_state{slot="later",state="missing"} 1"#,
        r#"pgsteady_slot_active{slot="idle"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    assert!(
        text.contains(r#"pgsteady_slot_retained_bytes{slot="idle"} "#),
        "{text}"
    );
    let response = http.get(&readyz).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        (body["reason"].as_str(), body["slot"].as_str()),
        (Some("slot_missing"), Some("later"))
    );

    // One query per interval, not per scrape: 40 scrapes move the refresh counter only as
    // far as the clock does.
    let refreshes = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("pgsteady_slot_refreshes_total "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (first, since) = (refreshes(&read_metrics().await), Instant::now());
    for _ in 0..40 {
        read_metrics().await;
    }
    let last = refreshes(&read_metrics().await);
    let bound = since.elapsed().as_millis() as u64 / 200 + 2;
    assert!(
        last - first <= bound,
        "{} refreshes for 40 scrapes in {:?}",
        last - first,
        since.elapsed()
    );

    // The slot appears: ready within a few intervals; dropped: not ready again.
    scalar(
        admin,
        "SELECT pg_create_logical_replication_slot('later', 'test_decoding')::text",
    )
    .await;
    poll_status(&http, &readyz, 200, Duration::from_secs(3)).await;
    scalar(admin, "SELECT pg_drop_replication_slot('later')::text").await;
    poll_status(&http, &readyz, 503, Duration::from_secs(3)).await;

    kill(
        Pid::from_raw(running.child.id().unwrap() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), running.child.wait())
        .await
        .unwrap()
        .unwrap();
    while let Ok(Some(line)) = stderr.next_line().await {
        log.push_str(&line);
        log.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{log}");
    for line in [
        "pgsteady: slot idle inactive",
        "pgsteady: slot later missing",
    ] {
        assert!(log.lines().any(|l| l == line), "{line} in {log}");
    }
    assert!(!log.contains(cluster.password()));
}
