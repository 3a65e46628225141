//! Behind a real PgBouncer 1.18 in transaction pooling mode, in front of a real server.
//! Its own test target, every test `#[ignore]`d: the set takes minutes, so the
//! default `cargo test` stays quick; `.ci/run` runs it with
//! `cargo test -p pgsteady --test pgbouncer -- --ignored`. Each test skips, printing why,
//! where PgBouncer cannot run.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pgsteady::{Config, Pool, RetryPolicy, StatementCache, StatementMode};
use pgsteady_testkit::{Cluster, Error as KitError, PgBouncer, PoolMode, StopMode};
use tokio_postgres::types::{ToSql, Type};

/// Starts PgBouncer in transaction mode or prints why not.
async fn bouncer(
    cluster: &Cluster,
    tune: impl FnOnce(pgsteady_testkit::PgBouncerBuilder) -> pgsteady_testkit::PgBouncerBuilder,
) -> Option<PgBouncer> {
    match tune(PgBouncer::builder().pool_mode(PoolMode::Transaction))
        .start(cluster)
        .await
    {
        Ok(b) => Some(b),
        Err(KitError::Unsupported(why)) => {
            eprintln!("skipped: PgBouncer cannot run here: {why}");
            None
        }
        Err(e) => panic!("PgBouncer did not start: {e}"),
    }
}

fn url(bouncer: &PgBouncer, mode: StatementCache) -> String {
    format!("{}?statement_cache={mode}", bouncer.url())
}

// ---------------------------------------------------------------------------------------
// 2 processes x 8 tasks x N seconds of parameterised calls through Pool::run and
// Pool::transaction, every statement method of the pooled connection in turn.

const SQL: &str = "SELECT $1::int8 + 1";
const CHILD_ENV: &str = "PGSTEADY_PGBOUNCER_LOAD";

/// What one process saw: calls that succeeded, errors by SQLSTATE (or reason), and whether
/// its pool switched to unnamed statements (`statement_cache=auto`).
#[derive(Debug, Default)]
struct Counts {
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Pools that ended in `StatementMode::UnnamedAfterPoolerDetected`.
    switched: u64,
    /// The slowest process's load time, for ops/s.
    seconds: f64,
}

impl Counts {
    fn ops_per_second(&self) -> f64 {
        self.ok as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

/// One call of kind `n % 5`: `prepare_cached` + `query_one`, `query` with SQL text,
/// `query_typed`, `execute`, or a `Pool::transaction`; each checks its answer.
async fn call(pool: &Pool, n: i64) -> Result<i64, pgsteady::Error> {
    match n % 5 {
        0 => {
            pool.run(async move |conn| {
                let stmt = conn.prepare_cached(SQL).await?;
                Ok(conn.query_one(&stmt, &[&n]).await?.get::<_, i64>(0))
            })
            .await
        }
        1 => {
            pool.run(async move |conn| Ok(conn.query(SQL, &[&n]).await?[0].get::<_, i64>(0)))
                .await
        }
        2 => {
            pool.run(async move |conn| {
                let rows = conn.query_typed(SQL, &[(&n, Type::INT8)]).await?;
                Ok(rows[0].get::<_, i64>(0))
            })
            .await
        }
        3 => {
            pool.run(async move |conn| {
                let affected = conn.execute(SQL, &[&n]).await?;
                assert_eq!(affected, 1, "a SELECT of one row");
                Ok(n + 1)
            })
            .await
        }
        _ => Ok(pool
            .transaction(async move |tx| {
                let stmt = tx.prepare_cached(SQL).await?;
                let got: i64 = tx.query_one(&stmt, &[&n]).await?.get(0);
                tx.execute("SELECT $1::int8", &[&got]).await?;
                Ok(got)
            })
            .await?),
    }
}

/// Three statements at once on one connection, with SQL texts from a set larger than the
/// pool's type cache, so that parameter types are learned again and again while other
/// statements of the same connection are in flight.
async fn concurrent_call(pool: &Pool, n: i64) -> Result<i64, pgsteady::Error> {
    pool.run(async move |conn| {
        let k = n % 3000;
        let plus = format!("SELECT $1::int8 + {k}");
        let minus = format!("SELECT $1::int8 - {k}");
        let params: [&(dyn ToSql + Sync); 1] = [&n];
        let (a, b, c) = tokio::join!(
            conn.query_one(&plus, &params),
            conn.query_one(&minus, &params),
            conn.execute("SELECT $1::int8", &params),
        );
        let (a, b): (i64, i64) = (a?.get(0), b?.get(0));
        assert_eq!((a, b, c?), (n + k, n - k, 1), "a wrong answer");
        Ok(n + 1)
    })
    .await
}

/// Runs `tasks` workers for `secs` seconds through one pool, each call a [`call`] (or a
/// [`concurrent_call`]).
async fn load(url: &str, tasks: usize, secs: u64, concurrent: bool) -> Counts {
    let pool = Pool::builder(Config::parse(url).unwrap())
        .max_size(tasks)
        .build()
        .unwrap();
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut counts = Counts::default();
            let mut i = 0i64;
            while Instant::now() < until {
                let n = task as i64 * 1_000_000_000 + i;
                i += 1;
                let result = match concurrent {
                    true => concurrent_call(&pool, n).await,
                    false => call(&pool, n).await,
                };
                match result {
                    Ok(got) => {
                        assert_eq!(got, n + 1, "a wrong answer");
                        counts.ok += 1;
                    }
                    Err(e) => {
                        let key = e
                            .code()
                            .map_or_else(|| format!("{:?}", e.reason()), |c| c.code().to_owned());
                        *counts.errors.entry(key).or_default() += 1;
                    }
                }
            }
            counts
        }));
    }
    let mut total = Counts::default();
    for h in handles {
        let c = h.await.unwrap();
        total.ok += c.ok;
        for (k, v) in c.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.switched =
        u64::from(pool.health().statement_mode == StatementMode::UnnamedAfterPoolerDetected);
    pool.close(Duration::from_secs(5)).await;
    total
}

/// The child half of the two-process load: runs only when the parent started it.
#[tokio::test]
#[ignore = "the child process of the two-process load tests"]
async fn child_load() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(4, ' ');
    let tasks: usize = parts.next().unwrap().parse().unwrap();
    let secs: u64 = parts.next().unwrap().parse().unwrap();
    let concurrent = parts.next().unwrap() == "concurrent";
    let url = parts.next().unwrap();
    let counts = load(url, tasks, secs, concurrent).await;
    let errors: Vec<String> = counts
        .errors
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "LOAD ok={} switched={} seconds={:.3} {}",
        counts.ok,
        counts.switched,
        counts.seconds,
        errors.join(" ")
    );
}

/// Runs the load in two processes at once (this test binary, re-run as `child_load`):
/// tokio-postgres numbers its statements per process, so two processes name different
/// statements alike, as two services behind one PgBouncer do.
async fn two_processes(url: &str, tasks: usize, secs: u64) -> Counts {
    two_processes_of(url, tasks, secs, "mix").await
}

/// [`two_processes`] with `kind` `mix` ([`call`]) or `concurrent` ([`concurrent_call`]).
async fn two_processes_of(url: &str, tasks: usize, secs: u64, kind: &str) -> Counts {
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for _ in 0..2 {
        let child = tokio::process::Command::new(&exe)
            .args([
                "child_load",
                "--exact",
                "--ignored",
                "--nocapture",
                "--quiet",
            ])
            .env(CHILD_ENV, format!("{tasks} {secs} {kind} {url}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        children.push(child);
    }
    let mut total = Counts::default();
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
            .await
            .expect("a load process did not finish within 10 min")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "load process failed: {stdout}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("LOAD "))
            .unwrap_or_else(|| panic!("no LOAD line in: {stdout}"));
        for field in line["LOAD ".len()..].split_whitespace() {
            let (k, v) = field.split_once('=').unwrap();
            match k {
                "ok" => total.ok += v.parse::<u64>().unwrap(),
                "switched" => total.switched += v.parse::<u64>().unwrap(),
                "seconds" => total.seconds = total.seconds.max(v.parse().unwrap()),
                _ => *total.errors.entry(k.to_owned()).or_default() += v.parse::<u64>().unwrap(),
            }
        }
    }
    total
}

/// The number of statement errors (26000, 42P05) among `counts`.
fn statement_errors(counts: &Counts) -> u64 {
    counts.errors.get("26000").copied().unwrap_or(0)
        + counts.errors.get("42P05").copied().unwrap_or(0)
}

/// The `url` for `mode`, or PgBouncer's own URL when `mode` is `None` (no setting).
fn url_for(bouncer: &PgBouncer, mode: Option<StatementCache>) -> String {
    match mode {
        Some(mode) => url(bouncer, mode),
        None => bouncer.url(),
    }
}

/// Runs 2 processes x 8 workers x `secs` through a fresh transaction-pooling PgBouncer.
async fn transaction_pooling_run(mode: Option<StatementCache>, secs: u64) -> Option<Counts> {
    let cluster = Cluster::start().await.unwrap();
    let bouncer = bouncer(&cluster, |b| b.default_pool_size(4)).await?;
    let counts = two_processes(&url_for(&bouncer, mode), 8, secs).await;
    // Every server connection was shared: the load did go through transaction pooling.
    let servers = bouncer.show("SERVERS").await.unwrap();
    assert!(servers.len() <= 4, "{servers:?}");
    Some(counts)
}

/// Done when: no setting (`statement_cache=auto`), transaction pooling, 2 processes x 8
/// workers x 10 s of every statement method through `run` and `transaction`: no error
/// surfaced, and each pool switched to unnamed statements once (the switch is one-way).
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn no_setting_detects_transaction_pooling_and_surfaces_no_error() {
    let Some(counts) = transaction_pooling_run(None, 10).await else {
        return;
    };
    eprintln!(
        "auto through transaction pooling: {counts:?}, {:.0} ops/s",
        counts.ops_per_second()
    );
    assert_eq!(
        counts.errors,
        BTreeMap::new(),
        "errors through run/transaction"
    );
    assert!(counts.ok > 0);
    // Named statements cannot last 10 s of 16 clients over 4 shared server connections: both
    // pools saw the sign and switched.
    assert_eq!(counts.switched, 2, "{counts:?}");
}

/// Done when: `statement_cache=off`, the same load: no error at all (in particular none with
/// 26000 or 42P05), and no switch (`off` is not `auto`).
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn pooler_safe_mode_runs_two_processes_without_statement_errors() {
    let Some(counts) = transaction_pooling_run(Some(StatementCache::Off), 10).await else {
        return;
    };
    eprintln!(
        "pooler-safe: {counts:?}, {:.0} ops/s through PgBouncer (transaction pooling)",
        counts.ops_per_second()
    );
    assert_eq!(
        counts.errors,
        BTreeMap::new(),
        "errors through run/transaction"
    );
    assert!(counts.ok > 0);
    assert_eq!(counts.switched, 0);
}

/// Done when: `statement_cache=off`, concurrent calls on one connection while parameter
/// types are learned (with a named statement inside a transaction): nothing named outlives
/// its transaction, or the other process, which names its statements alike, would meet it
/// (42P05) or lose one of its own (26000).
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn pooler_safe_mode_with_concurrent_calls_on_one_connection_leaks_nothing() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, |b| b.default_pool_size(4)).await else {
        return;
    };
    let url = url(&bouncer, StatementCache::Off);
    let counts = two_processes_of(&url, 8, 10, "concurrent").await;
    eprintln!("pooler-safe, concurrent calls: {counts:?}");
    assert_eq!(counts.errors, BTreeMap::new(), "errors through run");
    assert!(counts.ok > 0);
}

/// Done when: `statement_cache=off` on a PgBouncer whose server connections hold named
/// statements left by earlier clients (here a `statement_cache=on` load; in production any
/// client that named statements, or an `auto` pool before its switch): PgBouncer keeps server
/// connections, and what is prepared on them, for `server_lifetime`. A name pgsteady picks
/// for learning parameter types may be one of them (42P05): the leftovers are deallocated and
/// the statement prepared again, and no call fails.
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn pooler_safe_mode_survives_statements_left_by_other_clients() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, |b| b.default_pool_size(4)).await else {
        return;
    };
    let named = two_processes(&url(&bouncer, StatementCache::On), 8, 3).await;
    assert!(statement_errors(&named) > 0, "{named:?}");
    // The control: named statements are left on the server connections.
    let config = bouncer.pg_config();
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(connection);
    let mut left = 0i64;
    for _ in 0..20 {
        // The simple protocol: a named statement of this client would meet the leftovers.
        let messages = client
            .simple_query("SELECT count(*) FROM pg_prepared_statements")
            .await
            .unwrap();
        for message in messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                left = left.max(row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0));
            }
        }
    }
    drop(client);
    let _ = task.await;
    assert!(
        left > 0,
        "no statement was left behind: the test would prove nothing"
    );

    let counts = two_processes(&url(&bouncer, StatementCache::Off), 8, 10).await;
    eprintln!("pooler-safe after {left}+ leftovers per server connection: {counts:?}");
    assert_eq!(
        counts.errors,
        BTreeMap::new(),
        "errors through run/transaction"
    );
    assert!(counts.ok > 0);
}

/// The negative control: the same load with `statement_cache=on` fails with 26000
/// (prepared statement does not exist) or 42P05 (already exists), and never switches.
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn named_statements_through_transaction_pooling_fail() {
    let Some(counts) = transaction_pooling_run(Some(StatementCache::On), 3).await else {
        return;
    };
    eprintln!("named statements: {counts:?}");
    assert!(
        statement_errors(&counts) > 0,
        "named statements went through transaction pooling unharmed: {counts:?}"
    );
    assert_eq!(counts.switched, 0, "on never switches");
}

/// Done when: a direct connection with no setting never switches, at the throughput of
/// `statement_cache=on` (printed, not asserted: a loaded machine makes any bound flaky).
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn direct_connection_with_auto_never_switches() {
    let cluster = Cluster::start().await.unwrap();
    let base = cluster.url();
    let auto = two_processes(&base, 8, 10).await;
    let on = two_processes(&format!("{base}?statement_cache=on"), 8, 10).await;
    eprintln!(
        "direct: auto {:.0} ops/s {auto:?}; on {:.0} ops/s {on:?}",
        auto.ops_per_second(),
        on.ops_per_second()
    );
    assert_eq!(auto.errors, BTreeMap::new());
    assert_eq!(on.errors, BTreeMap::new());
    assert_eq!(auto.switched, 0, "auto switched on a direct connection");
}

/// Done when: session pooling with `server_reset_query = DISCARD ALL` (pgsteady's named
/// statements vanish between checkouts) and no setting: 0 errors, the pools switched.
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn session_pooling_with_discard_all_recovers_with_auto() {
    let cluster = Cluster::start().await.unwrap();
    let started = PgBouncer::builder()
        .pool_mode(PoolMode::Session)
        .default_pool_size(16)
        .setting("server_reset_query", "DISCARD ALL")
        .setting("server_reset_query_always", "1")
        .start(&cluster)
        .await;
    let bouncer = match started {
        Ok(b) => b,
        Err(KitError::Unsupported(why)) => {
            eprintln!("skipped: PgBouncer cannot run here: {why}");
            return;
        }
        Err(e) => panic!("PgBouncer did not start: {e}"),
    };
    let counts = two_processes(&bouncer.url(), 8, 10).await;
    eprintln!("auto through session pooling with DISCARD ALL: {counts:?}");
    assert_eq!(
        counts.errors,
        BTreeMap::new(),
        "errors through run/transaction"
    );
    assert!(counts.ok > 0);
}

/// The repetitions of the "done when" runs: `PGSTEADY_PGBOUNCER_RUNS` (default 10) runs of
/// the load with no setting and twice as many with `statement_cache=off`, each on a fresh
/// PgBouncer; prints one line per run and the totals, and fails on any error.
#[tokio::test]
#[ignore = "PgBouncer repetitions (minutes): cargo test -p pgsteady --test pgbouncer -- --ignored repeated"]
async fn repeated_runs_surface_no_error() {
    if std::env::var_os("PGSTEADY_PGBOUNCER_RUNS").is_none() {
        eprintln!("skipped: set PGSTEADY_PGBOUNCER_RUNS (e.g. 10) to run the repetitions");
        return;
    }
    let runs: usize = std::env::var("PGSTEADY_PGBOUNCER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut failed = Vec::new();
    for (mode, n) in [(None, runs), (Some(StatementCache::Off), 2 * runs)] {
        let (mut clean, mut ops) = (0, Vec::new());
        for run in 0..n {
            let Some(counts) = transaction_pooling_run(mode, 10).await else {
                return;
            };
            eprintln!(
                "run {run} {mode:?}: ok={} errors={:?} switched={} {:.0} ops/s",
                counts.ok,
                counts.errors,
                counts.switched,
                counts.ops_per_second()
            );
            ops.push(counts.ops_per_second());
            let max_switches = if mode.is_none() { 2 } else { 0 };
            if counts.errors.is_empty() && counts.switched <= max_switches {
                clean += 1;
            } else {
                failed.push(format!("{mode:?} run {run}: {counts:?}"));
            }
        }
        ops.sort_by(f64::total_cmp);
        eprintln!(
            "REPEAT {mode:?}: {clean} of {n} runs without error, median {:.0} ops/s",
            ops[ops.len() / 2]
        );
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

// ---------------------------------------------------------------------------------------
// A fast restart of the server behind PgBouncer, under load.

/// Done when: `pg_ctl restart -m fast` behind PgBouncer (`server_login_retry = 1`) under
/// reads through `run` and writes through `transaction`: no error, the first success within
/// 3 s of the server being ready, no write duplicated (nor any acknowledged write lost).
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn fast_restart_behind_pgbouncer_under_load() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, |b| b.default_pool_size(4).server_login_retry(1)).await
    else {
        return;
    };
    let pool = Pool::builder(Config::parse(&url(&bouncer, StatementCache::Off)).unwrap())
        .max_size(8)
        .build()
        .unwrap();
    pool.run(async |conn| {
        conn.batch_execute("CREATE TABLE writes (worker int, seq int)")
            .await?;
        Ok(())
    })
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for worker in 0..8i32 {
        let (pool, stop) = (pool.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut successes: Vec<SystemTime> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            let mut acked = 0i32;
            let mut seq = 0i32;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let ok = if worker % 2 == 0 {
                    pool.run(async move |conn| {
                        Ok(conn
                            .query_one("SELECT $1::int4", &[&seq])
                            .await?
                            .get::<_, i32>(0))
                    })
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
                } else {
                    let r = pool
                        .transaction(async move |tx| {
                            tx.execute("INSERT INTO writes VALUES ($1, $2)", &[&worker, &seq])
                                .await?;
                            Ok(())
                        })
                        .await;
                    if r.is_ok() {
                        acked += 1;
                    }
                    r.map_err(|e| e.to_string())
                };
                match ok {
                    Ok(()) => successes.push(SystemTime::now()),
                    Err(e) => errors.push(e),
                }
            }
            (worker, successes, errors, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = SystemTime::now();
    cluster.restart(StopMode::Fast).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let ready = cluster.ready_at().expect("ready line");
    assert!(ready > before);

    let mut errors = Vec::new();
    let mut first_after_ready: Option<SystemTime> = None;
    let mut acked_by_worker = BTreeMap::new();
    for h in handles {
        let (worker, successes, errs, acked) = h.await.unwrap();
        errors.extend(errs);
        if let Some(t) = successes.into_iter().find(|t| *t > ready) {
            first_after_ready = Some(first_after_ready.map_or(t, |f| f.min(t)));
        }
        if worker % 2 == 1 {
            acked_by_worker.insert(worker, acked);
        }
    }
    assert!(
        errors.is_empty(),
        "errors through run/transaction: {errors:?}"
    );
    let first = first_after_ready.expect("no success after the restart");
    let gap = first.duration_since(ready).unwrap();
    eprintln!("first success {gap:?} after the server was ready");
    assert!(
        gap <= Duration::from_secs(3),
        "first success {gap:?} after ready"
    );

    let rows = pool
        .run(async |conn| {
            Ok(conn
                .query(
                    "SELECT worker, count(*)::int4, count(DISTINCT seq)::int4 FROM writes GROUP BY worker",
                    &[],
                )
                .await?)
        })
        .await
        .unwrap();
    for row in rows {
        let (worker, all, distinct): (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(all, distinct, "worker {worker}: a write was duplicated");
        assert!(
            all >= acked_by_worker[&worker],
            "worker {worker}: {all} rows for {} acknowledged writes",
            acked_by_worker[&worker]
        );
    }
}

// ---------------------------------------------------------------------------------------
// The server down for longer than query_wait_timeout.

/// Done when: the server behind PgBouncer down longer than `query_wait_timeout = 5`: `get()`
/// and `run` return a typed error within their bounds, never hang; readiness answers 503
/// with a reason naming the pooler.
#[tokio::test]
#[ignore = "PgBouncer set (slow): cargo test -p pgsteady --test pgbouncer -- --ignored"]
async fn server_down_behind_pgbouncer_is_a_bounded_typed_error() {
    let cluster = Cluster::start().await.unwrap();
    let Some(bouncer) = bouncer(&cluster, |b| b.query_wait_timeout(5).server_login_retry(1)).await
    else {
        return;
    };
    let pool = Pool::builder(Config::parse(&url(&bouncer, StatementCache::Off)).unwrap())
        .max_size(4)
        .acquire_timeout(Duration::from_secs(8))
        .retry({
            let mut retry = RetryPolicy::default();
            retry.deadline = Duration::from_secs(10);
            retry
        })
        .build()
        .unwrap();
    let readiness = pgsteady::Readiness::builder()
        .pool(&pool)
        .grace(Duration::from_secs(1))
        .build();
    pool.run(async |conn| Ok(conn.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)))
        .await
        .unwrap();
    assert_eq!(readiness.check().http_status(), 200);

    cluster.stop(StopMode::Fast).await.unwrap();

    let started = Instant::now();
    let err = pool
        .run(async |conn| Ok(conn.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("run: {err} after {took:?}");
    assert!(took < Duration::from_secs(10 + 3), "run took {took:?}");
    // Either the pooler's error itself, or the deadline's timeout naming it as the last
    // error seen.
    let reason = err.reason().expect("a reason");
    assert!(
        reason.is_pooler() || reason == pgsteady::Reason::TimedOut,
        "{reason:?}: {err}"
    );
    assert!(format!("{err:#}").contains("PgBouncer"), "{err:#}");

    // A checkout: the pool's connections to PgBouncer are gone (PgBouncer closed them with
    // its error); a new one cannot be had while the server is down.
    let started = Instant::now();
    let got = pool.get().await;
    let took = started.elapsed();
    match got {
        Ok(conn) => {
            // A connection PgBouncer still holds open: its first statement gets the error.
            let e = conn.query_one("SELECT 1", &[]).await.unwrap_err();
            assert!(pgsteady::classify::reason_of(&e).is_pooler(), "{e}");
            assert!(took < Duration::from_secs(1), "{took:?}");
        }
        Err(e) => {
            eprintln!("get: {e} after {took:?}");
            assert!(took < Duration::from_secs(8 + 3), "get took {took:?}");
            assert!(e.is_transient(), "{e}");
        }
    }

    let report = readiness.check();
    eprintln!("readiness: {report:?}");
    assert_eq!(report.http_status(), 503, "{report:?}");
    assert!(
        report.reason.is_some_and(|r| r.starts_with("pooler_")),
        "{report:?}"
    );
}
