//! The soak's workload: unique-key inserts and bank transfers through `Pool::transaction`,
//! reads of the bank's total through `Pool::run`, each call recorded in the history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pgsteady::{Error, Pool, TransactionError};

use super::history::{Line, Op, Outcome, Recorder};
use super::nemesis::Rng;

/// The bank: accounts 1..=ACCOUNTS with this balance each at the start.
pub(crate) const ACCOUNTS: i64 = 8;
pub(crate) const INITIAL_BALANCE: i64 = 1000;

pub(crate) const SCHEMA: &str = "
    CREATE TABLE soak_writes (id bigserial PRIMARY KEY, key text NOT NULL);
    CREATE TABLE soak_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
    CREATE TABLE soak_transfers (id bigserial PRIMARY KEY, key text NOT NULL,
        from_id bigint NOT NULL, to_id bigint NOT NULL, amount bigint NOT NULL);
";

/// A worker's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Insert,
    Transfer,
    Read,
}

/// A switch for the end-to-end negative control: every `PLANT_EVERY`th insert of worker 0
/// is made to fail (its transaction is rolled back) and recorded as acknowledged, the way a
/// resolution that settled "unknown" as "committed" would. The checker must catch it.
pub(crate) const PLANT_EVERY: u64 = 25;

/// Shared by every worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) history: Recorder,
    pub(crate) stop: AtomicBool,
    pub(crate) calls: AtomicU64,
    pub(crate) pace: Duration,
    pub(crate) plant: bool,
}

/// Runs one worker until `shared.stop` is set.
pub(crate) async fn worker(shared: Arc<Shared>, id: u32, kind: Kind, seed: u64) {
    let mut rng = Rng::new(seed ^ (u64::from(id) << 32));
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        let call = shared.calls.fetch_add(1, Ordering::Relaxed);
        let op = match kind {
            Kind::Insert => Op::Insert {
                key: format!("w{id}-{seq}"),
            },
            Kind::Transfer => {
                let from = rng.range(1, ACCOUNTS as u64) as i64;
                let to = (from + rng.range(1, ACCOUNTS as u64 - 1) as i64 - 1) % ACCOUNTS + 1;
                Op::Transfer {
                    key: format!("t{id}-{seq}"),
                    from,
                    to,
                    amount: rng.range(1, 100) as i64,
                }
            }
            Kind::Read => Op::Read,
        };
        let (t, wall) = shared.history.now();
        shared.history.record(Line::Invoke {
            t,
            wall,
            call,
            worker: id,
            op: op.clone(),
        });
        let planted = shared.plant && id == 0 && seq.is_multiple_of(PLANT_EVERY);
        let done = run(&shared.pool, op, planted).await;
        let (t, wall) = shared.history.now();
        shared.history.record(Line::Complete {
            t,
            wall,
            call,
            result: done.result,
            kind: done.kind,
            code: done.code,
            xid: done.xid,
            read: done.read,
        });
        tokio::time::sleep(shared.pace).await;
    }
}

#[derive(Debug)]
struct Done {
    result: Outcome,
    kind: Option<String>,
    code: Option<String>,
    xid: Option<i64>,
    read: Option<(i64, i64)>,
}

impl Done {
    fn ok(read: Option<(i64, i64)>) -> Done {
        Done {
            result: Outcome::Ok,
            kind: None,
            code: None,
            xid: None,
            read,
        }
    }

    fn failed(result: Outcome, e: &Error, xid: Option<i64>) -> Done {
        Done {
            result,
            kind: Some(format!("{:?}", e.kind())),
            code: e.code().map(|c| c.code().to_owned()),
            xid,
            read: None,
        }
    }

    fn of(r: Result<(), TransactionError>) -> Done {
        match r {
            Ok(()) => Done::ok(None),
            Err(TransactionError::NotCommitted(e)) => Done::failed(Outcome::NotCommitted, &e, None),
            Err(TransactionError::OutcomeUnknown(u)) => {
                Done::failed(Outcome::Unknown, &u.error, Some(u.xid))
            }
        }
    }
}

async fn run(pool: &Pool, op: Op, planted: bool) -> Done {
    match op {
        Op::Insert { key } => {
            let r = pool
                .transaction(async move |tx| {
                    tx.execute("INSERT INTO soak_writes (key) VALUES ($1)", &[&key])
                        .await?;
                    if planted {
                        // Division by zero (22012): a permanent error, rolled back.
                        tx.query_one("SELECT 1 / (random() * 0)::int", &[]).await?;
                    }
                    Ok(())
                })
                .await;
            if planted && matches!(r, Err(TransactionError::NotCommitted(_))) {
                return Done::ok(None);
            }
            Done::of(r)
        }
        Op::Transfer {
            key,
            from,
            to,
            amount,
        } => Done::of(
            pool.transaction(async move |tx| {
                // In account order, so that two transfers never deadlock.
                let (first, second) = if from < to {
                    ((from, -amount), (to, amount))
                } else {
                    ((to, amount), (from, -amount))
                };
                for (account, delta) in [first, second] {
                    tx.execute(
                        "UPDATE soak_accounts SET balance = balance + $2 WHERE id = $1",
                        &[&account, &delta],
                    )
                    .await?;
                }
                tx.execute(
                    "INSERT INTO soak_transfers (key, from_id, to_id, amount) \
                     VALUES ($1, $2, $3, $4)",
                    &[&key, &from, &to, &amount],
                )
                .await?;
                Ok(())
            })
            .await,
        ),
        Op::Read => match pool
            .run(async move |conn| {
                let row = conn
                    .query_one(
                        "SELECT sum(balance)::bigint, count(*) FROM soak_accounts",
                        &[],
                    )
                    .await?;
                Ok((row.get::<_, i64>(0), row.get::<_, i64>(1)))
            })
            .await
        {
            Ok(read) => Done::ok(Some(read)),
            Err(e) => Done::failed(Outcome::Error, &e, None),
        },
    }
}
