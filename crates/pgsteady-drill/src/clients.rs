//! The two clients the drill compares, each looping reads and writes with unique keys:
//! tokio-postgres as people write it today, and `pgsteady::Pool`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgsteady::{Pool, TransactionError};
use pgsteady_testkit::workload::{ErrorClass, NaiveClient, Operation};
use tokio::sync::watch;

/// The table every write goes to. No unique constraint on (client, key): a duplicated write
/// must show up as two rows, not as an error.
pub(crate) const SCHEMA: &str = "\
    CREATE TABLE drill_writes (\
        id bigserial PRIMARY KEY, \
        client text NOT NULL, \
        key bigint NOT NULL, \
        written_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
    CREATE INDEX drill_writes_client_key ON drill_writes (client, key)";
const INSERT: &str = "INSERT INTO drill_writes (client, key) VALUES ($1, $2)";
const READ: &str = "SELECT count(*) FROM drill_writes WHERE client = $1 AND key = $2";
/// The `client` column of pgsteady's rows.
const PGSTEADY: &str = Side::Pgsteady.name();
/// One call in this many is a write.
const WRITE_EVERY: u64 = 3;

/// Which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Side {
    Naive,
    Pgsteady,
}

impl Side {
    pub(crate) const BOTH: [Side; 2] = [Side::Naive, Side::Pgsteady];

    /// The name in tables, JSON and the `client` column.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Side::Naive => "naive",
            Side::Pgsteady => "pgsteady",
        }
    }

    /// The `application_name` its sessions carry, so faults can pick them.
    pub(crate) const fn application_name(self) -> &'static str {
        match self {
            Side::Naive => "pgsteady-drill-naive",
            Side::Pgsteady => "pgsteady-drill-pool",
        }
    }
}

/// What the caller was told about one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Told {
    /// Committed (the call returned Ok).
    Acknowledged,
    /// Certainly not committed: the call failed before COMMIT was sent, or (pgsteady) the
    /// transaction was rolled back.
    NotCommitted,
    /// Unknown: COMMIT was sent and no answer came (naive), or `OutcomeUnknown` (pgsteady).
    Unknown,
}

/// One write as the caller saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write {
    pub(crate) key: i64,
    pub(crate) end: Instant,
    pub(crate) told: Told,
}

/// Every write a client made, and its running totals for the progress line.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    writes: Mutex<Vec<Write>>,
    ok: AtomicU64,
    err: AtomicU64,
    /// The first message seen per error class (at most [`EXAMPLES`] classes).
    examples: Mutex<BTreeMap<String, String>>,
}

/// How many error classes keep an example message.
const EXAMPLES: usize = 32;

impl Ledger {
    /// Keeps `message` as the example of `class` if it is the first of its class.
    fn example(&self, class: &ErrorClass, message: impl FnOnce() -> String) {
        let mut examples = self.examples.lock().unwrap_or_else(|e| e.into_inner());
        if examples.len() < EXAMPLES && !examples.contains_key(class.as_str()) {
            examples.insert(class.as_str().to_owned(), message());
        }
    }

    /// The first message seen per error class.
    pub(crate) fn examples(&self) -> BTreeMap<String, String> {
        self.examples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_write(&self, key: i64, told: Told) {
        let write = Write {
            key,
            end: Instant::now(),
            told,
        };
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(write);
    }

    fn count(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.err };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls that succeeded and failed so far.
    pub(crate) fn progress(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.err.load(Ordering::Relaxed),
        )
    }

    /// Every write so far.
    pub(crate) fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Lets the drill pause all traffic (to let connections sit idle) and paces each worker.
#[derive(Debug)]
pub(crate) struct TrafficControl {
    paused: watch::Sender<bool>,
    pace: Duration,
}

impl TrafficControl {
    pub(crate) fn new(pace: Duration) -> Self {
        TrafficControl {
            paused: watch::channel(false).0,
            pace,
        }
    }

    pub(crate) fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub(crate) fn resume(&self) {
        self.paused.send_replace(false);
    }

    fn gate(&self) -> Traffic {
        Traffic {
            paused: self.paused.subscribe(),
            pace: self.pace,
        }
    }
}

/// A worker's view of [`TrafficControl`].
#[derive(Debug)]
struct Traffic {
    paused: watch::Receiver<bool>,
    pace: Duration,
}

impl Traffic {
    /// Waits while traffic is paused, then the pacing interval: each worker makes one call
    /// per interval at most, as requests arriving at an application would, whatever the
    /// outcome of the last one.
    async fn before_call(&mut self) {
        while *self.paused.borrow_and_update() {
            if self.paused.changed().await.is_err() {
                break;
            }
        }
        tokio::time::sleep(self.pace).await;
    }
}

/// Per-worker key allocation: worker `w` writes keys `w * 10^9 + 1, + 2, ...`.
#[derive(Debug)]
struct Keys {
    worker: i64,
    calls: u64,
    written: i64,
}

impl Keys {
    fn new(worker: usize) -> Self {
        Keys {
            worker: worker as i64,
            calls: 0,
            written: 0,
        }
    }

    /// `Some(new key)` when this call is a write, `None` for a read.
    fn next(&mut self) -> Option<i64> {
        self.calls += 1;
        if !self.calls.is_multiple_of(WRITE_EVERY) {
            return None;
        }
        self.written += 1;
        Some(self.worker * 1_000_000_000 + self.written)
    }

    /// A key this worker wrote (or tried to): what a read looks up.
    fn last(&self) -> i64 {
        self.worker * 1_000_000_000 + self.written
    }
}

/// The naive client: the test kit's [`NaiveClient`] (one tokio-postgres connection per
/// worker, connected on first use and again at once after any error: no back-off, no
/// timeouts, the connection task's result ignored) with the drill's read and insert
/// prepared; writes between `BEGIN` and `COMMIT`, as `client.transaction()` sends them.
#[derive(Debug)]
pub(crate) struct NaiveWorker {
    naive: NaiveClient,
    keys: Keys,
    traffic: Traffic,
    ledger: Arc<Ledger>,
}

/// Where a naive call failed.
enum Failed {
    BeforeCommit(tokio_postgres::Error),
    Commit(tokio_postgres::Error),
}

impl NaiveWorker {
    pub(crate) fn new(
        worker: usize,
        config: tokio_postgres::Config,
        control: &TrafficControl,
        ledger: Arc<Ledger>,
    ) -> Self {
        NaiveWorker {
            naive: NaiveClient::with_statements(config, [READ, INSERT]),
            keys: Keys::new(worker),
            traffic: control.gate(),
            ledger,
        }
    }

    async fn attempt(&mut self, write: Option<i64>) -> Result<(), Failed> {
        let last = self.keys.last();
        let (client, statements) = self.naive.session().await.map_err(Failed::BeforeCommit)?;
        let (read, insert) = (&statements[0], &statements[1]);
        let name = Side::Naive.name();
        match write {
            None => {
                client
                    .query_one(read, &[&name, &last])
                    .await
                    .map_err(Failed::BeforeCommit)?;
            }
            Some(key) => {
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(Failed::BeforeCommit)?;
                client
                    .execute(insert, &[&name, &key])
                    .await
                    .map_err(Failed::BeforeCommit)?;
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(Failed::Commit)?;
            }
        }
        Ok(())
    }
}

impl Operation for NaiveWorker {
    type Error = ErrorClass;

    async fn call(&mut self) -> Result<(), ErrorClass> {
        self.traffic.before_call().await;
        let write = self.keys.next();
        let result = self.attempt(write).await;
        self.ledger.count(result.is_ok());
        let (told, err) = match result {
            Ok(()) => (Told::Acknowledged, None),
            Err(Failed::BeforeCommit(e)) => (Told::NotCommitted, Some(e)),
            Err(Failed::Commit(e)) => (Told::Unknown, Some(e)),
        };
        if let Some(key) = write {
            self.ledger.record_write(key, told);
        }
        match err {
            None => Ok(()),
            Some(e) => {
                // As most code does: forget the connection, connect again on the next call.
                self.naive.reset();
                let class = ErrorClass::of(&e);
                self.ledger
                    .example(&class, || match std::error::Error::source(&e) {
                        Some(source) => format!("{e}: {source}"),
                        None => e.to_string(),
                    });
                Err(class)
            }
        }
    }
}

/// A worker calling `pgsteady::Pool`: reads through `run`, writes through `transaction`.
#[derive(Debug)]
pub(crate) struct PoolWorker {
    pool: Pool,
    keys: Keys,
    traffic: Traffic,
    ledger: Arc<Ledger>,
}

impl PoolWorker {
    pub(crate) fn new(
        worker: usize,
        pool: Pool,
        control: &TrafficControl,
        ledger: Arc<Ledger>,
    ) -> Self {
        PoolWorker {
            pool,
            keys: Keys::new(worker),
            traffic: control.gate(),
            ledger,
        }
    }
}

/// The class of an error pgsteady returned: its SQLSTATE, else its reason.
fn class_of(err: &pgsteady::Error) -> ErrorClass {
    if let Some(code) = err.code() {
        return ErrorClass::sqlstate(code.code());
    }
    match err.reason() {
        Some(reason) => ErrorClass::new(reason.as_str()),
        None => ErrorClass::OTHER,
    }
}

/// A read through `run` (retried: it is idempotent).
///
/// The closures capture only owned, `'static` values (`key`, not a `&str`): capturing a
/// reference makes the call's future fail to prove `Send` for every lifetime (a compiler
/// limitation with async closures).
async fn read(pool: Pool, key: i64) -> Result<(), pgsteady::Error> {
    pool.run(async move |conn| {
        let stmt = conn.prepare_cached(READ).await?;
        conn.query_one(&stmt, &[&PGSTEADY, &key]).await?;
        Ok(())
    })
    .await
}

/// A write through `transaction`: replayed only when it certainly did not commit.
async fn write(pool: Pool, key: i64) -> Result<(), TransactionError> {
    pool.transaction(async move |tx| {
        let stmt = tx.prepare_cached(INSERT).await?;
        tx.execute(&stmt, &[&PGSTEADY, &key]).await?;
        Ok(())
    })
    .await
}

impl Operation for PoolWorker {
    type Error = ErrorClass;

    async fn call(&mut self) -> Result<(), ErrorClass> {
        self.traffic.before_call().await;
        let ledger = self.ledger.clone();
        let seen = |e: &pgsteady::Error| {
            let class = class_of(e);
            ledger.example(&class, || format!("{e:#}"));
            class
        };
        let result = match self.keys.next() {
            None => read(self.pool.clone(), self.keys.last())
                .await
                .map_err(|e| seen(&e)),
            Some(key) => {
                let (told, class) = match write(self.pool.clone(), key).await {
                    Ok(()) => (Told::Acknowledged, None),
                    Err(TransactionError::NotCommitted(e)) => (Told::NotCommitted, Some(seen(&e))),
                    Err(TransactionError::OutcomeUnknown(e)) => {
                        let class = ErrorClass::new("outcome-unknown");
                        self.ledger.example(&class, || format!("{e:?}"));
                        (Told::Unknown, Some(class))
                    }
                };
                self.ledger.record_write(key, told);
                class.map_or(Ok(()), Err)
            }
        };
        self.ledger.count(result.is_ok());
        result
    }
}
