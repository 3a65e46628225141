//! [`SlotWatch`]: slots read on a timer of their own, for metrics and readiness that must not
//! query the database on every scrape or probe.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgsteady::Pool;

use crate::error::Error;
use crate::read::{read_all, validate_name};
use crate::{Verdict, classify};

/// What the last refresh of a [`SlotWatch`] found. A consistent snapshot: every verdict was
/// drawn from the same round trip.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WatchSnapshot {
    /// One verdict per watched slot, in the order given; empty until the first success.
    pub verdicts: Vec<Verdict>,
    /// When the verdicts were read (`None`: never).
    pub refreshed_at: Option<Instant>,
    /// Successful refreshes so far (one query each).
    pub refreshes: u64,
    /// Failed refreshes so far (checkout or query failed, or timed out).
    pub failures: u64,
    /// The last failure's message (no password: pgsteady errors never hold one), cleared by
    /// the next success.
    pub last_error: Option<String>,
}

/// Watches named slots: one query through a [`Pool`] per interval (however many slots and
/// however many readers), the latest verdicts readable at any time without a round trip.
/// The refresh task stops when the last clone is dropped or the pool is closed.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady_slot::Error> {
/// use std::time::Duration;
/// use pgsteady_slot::SlotWatch;
///
/// let watch = SlotWatch::spawn(pool, vec!["debezium".into()], Duration::from_secs(10))?;
/// for verdict in &watch.snapshot().verdicts {
///     println!("{}: {}", verdict.slot, verdict.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SlotWatch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    names: Vec<String>,
    every: Duration,
    snapshot: Arc<Mutex<Arc<WatchSnapshot>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlotWatch {
    /// Starts refreshing `names` every `every` (at least 100 ms) through `pool`, the first
    /// time at once. Fails with [`Error::InvalidName`] for a name PostgreSQL would
    /// reject, or no name. Must be called within a tokio runtime.
    pub fn spawn(pool: &Pool, names: Vec<String>, every: Duration) -> Result<SlotWatch, Error> {
        if names.is_empty() {
            return Err(Error::InvalidName("no slot to watch".to_owned()));
        }
        for name in &names {
            validate_name(name)?;
        }
        let every = every.max(Duration::from_millis(100));
        let snapshot: Arc<Mutex<Arc<WatchSnapshot>>> = Arc::default();
        let task = tokio::spawn(refresh_loop(
            pool.clone(),
            names.clone(),
            every,
            snapshot.clone(),
        ))
        .abort_handle();
        Ok(SlotWatch {
            inner: Arc::new(Inner {
                names,
                every,
                snapshot,
                task,
            }),
        })
    }

    /// The watched slots' names.
    pub fn names(&self) -> &[String] {
        &self.inner.names
    }

    /// The refresh interval.
    pub fn interval(&self) -> Duration {
        self.inner.every
    }

    /// The latest snapshot (a pointer copy; no round trip).
    pub fn snapshot(&self) -> Arc<WatchSnapshot> {
        lock(&self.inner.snapshot).clone()
    }
}

async fn refresh_loop(
    pool: Pool,
    names: Vec<String>,
    every: Duration,
    snapshot: Arc<Mutex<Arc<WatchSnapshot>>>,
) {
    // Each refresh is bounded by the interval (at least 1 s, at most 10 s), so a hung server
    // delays the next one by that much at most.
    let bound = every.clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if pool.is_closed() {
            return;
        }
        let result = tokio::time::timeout(bound, async {
            let conn = pool.get().await.map_err(Error::Query)?;
            // The slot readers take a tokio-postgres client: their catalogue queries run
            // named, and a lost connection is not marked, which costs this watcher one failed
            // tick at most (the connection's task sees the close before the next one).
            read_all(conn.raw_client_unguarded()).await
        })
        .await;
        let mut next = (**lock(&snapshot)).clone();
        match result {
            Ok(Ok((position, facts))) => {
                next.verdicts = names
                    .iter()
                    .map(|name| {
                        let f = facts.iter().find(|f| &f.name == name).cloned();
                        classify(name, f, position, None)
                    })
                    .collect();
                next.refreshed_at = Some(Instant::now());
                next.refreshes += 1;
                next.last_error = None;
            }
            Ok(Err(e)) => {
                next.failures += 1;
                next.last_error = Some(format!("{e:#}"));
            }
            Err(_) => {
                next.failures += 1;
                next.last_error = Some(format!(
                    "reading the slots took longer than {:.1}s",
                    bound.as_secs_f64()
                ));
            }
        }
        *lock(&snapshot) = Arc::new(next);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
