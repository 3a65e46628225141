//! The connections the pool shares between callers of its pipelined statements
//! ([`Pool::query`](super::Pool::query) and the like): each is a checkout held for as long as
//! statements are in flight on it, so deadpool's slot accounting stays whole and a shared
//! connection is never handed out exclusively at the same time. Up to `depth` statements run
//! on one at once; tokio-postgres pipelines the requests polled concurrently on one client,
//! each connection keeping its own task (no single writer for the pool).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::pooled::PooledConnection;
use crate::Error;

/// One shared connection and the statements in flight on it.
pub(crate) struct Lane {
    pub(crate) conn: PooledConnection,
    /// Changed under the lanes' lock only; read without it for metrics.
    in_flight: AtomicUsize,
}

/// The pool's shared connections.
pub(crate) struct Lanes {
    state: Mutex<State>,
    /// Woken when a lane gains room or a slot to open one frees up.
    room: Notify,
    depth: usize,
    max: usize,
    in_flight: AtomicUsize,
    /// Callers waiting for room: each place taken or given back passes the word on while
    /// any wait, so one wake-up never strands the others.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct State {
    lanes: Vec<Arc<Lane>>,
    /// Checkouts under way to open another lane.
    opening: usize,
}

/// A statement's place on a lane; gives it back when dropped.
pub(crate) struct Lease<'a> {
    lanes: &'a Lanes,
    lane: Arc<Lane>,
}

impl Lease<'_> {
    pub(crate) fn conn(&self) -> &PooledConnection {
        &self.lane.conn
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.lanes.release(&self.lane);
    }
}

/// Gives back an opening slot if the checkout that took it is dropped midway.
struct Opening<'a> {
    lanes: &'a Lanes,
    done: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.lanes.lock().opening -= 1;
            self.lanes.room.notify_one();
        }
    }
}

/// Whether a lane may take new statements: not known dead, not to be retired.
fn usable(lane: &Lane) -> bool {
    let conn = &lane.conn.obj;
    !conn.is_closed()
        && !conn.is_retired()
        && conn.expires.is_none_or(|at| at > std::time::Instant::now())
}

impl Lanes {
    pub(crate) fn new(depth: usize, max: usize) -> Self {
        Lanes {
            state: Mutex::new(State::default()),
            room: Notify::new(),
            depth,
            max,
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shared connections now, and statements in flight on them.
    pub(crate) fn load(&self) -> (usize, usize) {
        let lanes = self.lock().lanes.len();
        (lanes, self.in_flight.load(Ordering::Relaxed))
    }

    /// A place on the least busy usable lane with room; else another lane opened with
    /// `open` (a checkout) while fewer than `max` are shared or opening; else waits for
    /// room, up to `wait`. `None` when `wait` ran out.
    pub(crate) async fn acquire<'a, F, Fut>(
        &'a self,
        wait: Duration,
        open: F,
    ) -> Option<Result<Lease<'a>, Error>>
    where
        F: Fn(Duration) -> Fut,
        Fut: Future<Output = Result<PooledConnection, Error>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let open_one = {
                let mut state = self.lock();
                // A lane that died or is to be retired takes nothing more; it goes back to
                // the pool (and is evicted there) once its last statement ends.
                state.lanes.retain(|lane| usable(lane));
                let best = state
                    .lanes
                    .iter()
                    .filter(|lane| lane.in_flight.load(Ordering::Relaxed) < self.depth)
                    .min_by_key(|lane| lane.in_flight.load(Ordering::Relaxed))
                    .cloned();
                if let Some(lane) = best {
                    let now = lane.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                    self.in_flight.fetch_add(1, Ordering::Relaxed);
                    drop(state);
                    if now < self.depth && self.waiting.load(Ordering::Relaxed) > 0 {
                        self.room.notify_one();
                    }
                    return Some(Ok(Lease { lanes: self, lane }));
                }
                let open_one = state.lanes.len() + state.opening < self.max;
                if open_one {
                    state.opening += 1;
                } else {
                    // Under the lock: a place given back after it sees this waiter.
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                }
                open_one
            };
            if open_one {
                let mut opening = Opening {
                    lanes: self,
                    done: false,
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return None;
                }
                let conn = open(left).await;
                opening.done = true;
                let mut state = self.lock();
                state.opening -= 1;
                match conn {
                    Ok(conn) => {
                        let lane = Arc::new(Lane {
                            conn,
                            in_flight: AtomicUsize::new(1),
                        });
                        state.lanes.push(lane.clone());
                        drop(state);
                        self.in_flight.fetch_add(1, Ordering::Relaxed);
                        // The new lane has room for others who wait.
                        self.room.notify_one();
                        return Some(Ok(Lease { lanes: self, lane }));
                    }
                    Err(e) => {
                        drop(state);
                        self.room.notify_one();
                        return Some(Err(e));
                    }
                }
            }
            let woken = tokio::time::timeout_at(deadline, notified).await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            if woken.is_err() {
                return None;
            }
        }
    }

    fn release(&self, lane: &Arc<Lane>) {
        let mut state = self.lock();
        let was = lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let idle = was == 1;
        if idle {
            // An idle lane goes back to the pool at once: exclusive checkouts get it, idle
            // and lifetime eviction apply as to any connection.
            state.lanes.retain(|l| !Arc::ptr_eq(l, lane));
        }
        drop(state);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify_one();
        }
    }
}
