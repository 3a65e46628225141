//! Single-flight reconnection: while the server is unreachable, one background task (the
//! healer) makes connection attempts with jittered back-off, and every caller that needs a
//! new connection waits for it instead of making attempts of its own.
//!
//! deadpool calls `Manager::create` once per caller that finds no idle connection. Left
//! alone, that makes the connection attempt rate during an outage grow with the number of
//! callers, and each caller's own back-off grows with the length of the outage, so recovery
//! is slow exactly when the outage was long. Here the attempt rate is the healer's alone
//! (bounded, never growing past its short cap), and its first success releases everyone.
//!
//! The first attempt after the server or the network closed a connection waits a random part
//! of a short window (`Spread`): a restart closes the sessions of every client at once,
//! and N pools reconnecting the instant they notice would hit the server as one burst, then
//! stay in step, since their back-offs start together.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};

use crate::classify::{Action, Reason};
use crate::{Backoff, Error, ErrorKind};

use super::conn::Conn;
use super::spread::Spread;

/// What the gate knows about the server's reachability.
#[derive(Debug, Clone)]
pub(crate) enum GateState {
    /// Connection attempts succeed (or nothing says otherwise).
    Open,
    /// Attempts fail with a transient error; the healer is retrying.
    Down { since: Instant, last: Error },
    /// Attempts fail with a permanent error (authentication, missing database...): callers
    /// fail fast with it while the healer keeps checking, slowly.
    Failed { since: Instant, last: Error },
}

impl GateState {
    pub(crate) fn last_error(&self) -> Option<&Error> {
        match self {
            GateState::Open => None,
            GateState::Down { last, .. } | GateState::Failed { last, .. } => Some(last),
        }
    }
}

/// Opens connections: the pool's [`crate::Connector`], or a stand-in in unit tests.
pub(crate) trait Open: Send + Sync + 'static {
    fn open(&self) -> impl Future<Output = Result<Conn, Error>> + Send;
    fn classify(&self, err: &Error) -> Action;
}

#[derive(Debug)]
struct Shared {
    healer_running: bool,
    /// A connection the healer made while callers were waiting: the next caller takes it.
    spare: Option<Conn>,
    waiters: usize,
}

/// The reconnection gate of one pool.
#[derive(Debug)]
pub(crate) struct Gate {
    state: watch::Sender<GateState>,
    shared: Mutex<Shared>,
    /// Caps concurrent connection attempts while the server is reachable (herd control).
    attempts: Semaphore,
    /// Wakes a healer sleeping a slow delay when a caller starts waiting.
    waiter_arrived: Notify,
    reconnect: Backoff,
    idle_recheck: Duration,
    spread: Arc<Spread>,
}

impl Gate {
    pub(crate) fn new(
        max_connecting: usize,
        reconnect: Backoff,
        idle_recheck: Duration,
        spread: Duration,
    ) -> Self {
        Gate {
            state: watch::channel(GateState::Open).0,
            shared: Mutex::new(Shared {
                healer_running: false,
                spare: None,
                waiters: 0,
            }),
            attempts: Semaphore::new(max_connecting.max(1)),
            waiter_arrived: Notify::new(),
            reconnect,
            idle_recheck,
            spread: Arc::new(Spread::new(spread)),
        }
    }

    /// The spread of the first attempt after a server-side close (see [`Spread`]).
    pub(crate) fn spread(&self) -> Arc<Spread> {
        self.spread.clone()
    }

    pub(crate) fn state(&self) -> GateState {
        self.state.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<GateState> {
        self.state.subscribe()
    }

    pub(crate) fn waiters(&self) -> usize {
        self.lock().waiters
    }

    /// Closes the gate for good: waiting callers get [`ErrorKind::PoolClosed`].
    pub(crate) fn close(&self) {
        self.attempts.close();
        self.lock().spare = None;
        // Dropping every receiver's sender is not possible while we hold it; instead wake
        // everyone, and they see the closed semaphore.
        self.state.send_modify(|_| {});
    }

    fn is_closed(&self) -> bool {
        self.attempts.is_closed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection: made now while the server is reachable, else the healer's first one.
    /// Waits while the server is down (the caller bounds the wait); fails fast on a permanent
    /// error.
    pub(crate) async fn connect<O: Open>(self: &Arc<Self>, opener: &Arc<O>) -> Result<Conn, Error> {
        let mut state = self.subscribe();
        loop {
            if self.is_closed() {
                return Err(pool_closed());
            }
            if let Some(conn) = self.take_spare() {
                return Ok(conn);
            }
            let current = state.borrow_and_update().clone();
            match current {
                GateState::Open => {
                    if let Some(wait) = self.spread.remaining() {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let Ok(_permit) = self.attempts.acquire().await else {
                        return Err(pool_closed());
                    };
                    if !matches!(*self.state.borrow(), GateState::Open) {
                        continue;
                    }
                    match opener.open().await {
                        Ok(conn) => return Ok(conn),
                        Err(e) => {
                            let action = opener.classify(&e);
                            self.report_failure(e, action, opener);
                            // Waiters for a transient failure; a permanent one is returned by
                            // the next turn of the loop, from the state it set.
                        }
                    }
                }
                GateState::Down { .. } => {
                    let _waiting = self.wait_guard();
                    self.ensure_healer(opener);
                    if state.changed().await.is_err() {
                        return Err(pool_closed());
                    }
                }
                GateState::Failed { last, .. } => {
                    self.ensure_healer(opener);
                    return Err(last);
                }
            }
        }
    }

    /// Records a failed attempt made outside the healer and hands over to it.
    fn report_failure<O: Open>(self: &Arc<Self>, err: Error, action: Action, opener: &Arc<O>) {
        self.state.send_modify(|h| {
            let since = match h {
                GateState::Down { since, .. } | GateState::Failed { since, .. } => *since,
                GateState::Open => Instant::now(),
            };
            *h = match action {
                Action::Retry => GateState::Down { since, last: err },
                Action::FailFast => GateState::Failed { since, last: err },
            }
        });
        self.ensure_healer(opener);
    }

    fn take_spare(&self) -> Option<Conn> {
        let spare = self.lock().spare.take()?;
        (!spare.is_closed()).then_some(spare)
    }

    fn wait_guard(self: &Arc<Self>) -> WaitGuard {
        self.lock().waiters += 1;
        self.waiter_arrived.notify_one();
        WaitGuard(self.clone())
    }

    fn ensure_healer<O: Open>(self: &Arc<Self>, opener: &Arc<O>) {
        {
            let mut shared = self.lock();
            if shared.healer_running || self.is_closed() {
                return;
            }
            shared.healer_running = true;
        }
        tokio::spawn(reconnect_until_open(Arc::downgrade(self), opener.clone()));
    }
}

struct WaitGuard(Arc<Gate>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut shared = self.0.lock();
        shared.waiters = shared.waiters.saturating_sub(1);
    }
}

/// The healer: attempts with the reconnect back-off while callers wait, slowly otherwise,
/// until one succeeds.
async fn reconnect_until_open<O: Open>(gate: Weak<Gate>, opener: Arc<O>) {
    let Some(reconnect) = gate.upgrade().map(|g| g.reconnect) else {
        return;
    };
    // The back-off restarts whenever callers start waiting again, so a long quiet outage
    // does not leave the next caller behind a grown delay; the cap keeps it short anyway.
    let mut delays = reconnect
        .without_max_attempts()
        .without_max_elapsed()
        .build();
    loop {
        let Some(g) = gate.upgrade() else { return };
        let failed = matches!(*g.state.borrow(), GateState::Failed { .. });
        let delay = if g.waiters() > 0 && !failed {
            delays.next().unwrap_or(reconnect.cap())
        } else {
            g.idle_recheck
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = g.waiter_arrived.notified(), if delay > reconnect.cap() => {
                delays = reconnect.without_max_attempts().without_max_elapsed().build();
            }
        }
        if g.is_closed() {
            return;
        }
        drop(g);
        let result = opener.open().await;
        let Some(g) = gate.upgrade() else { return };
        match result {
            Ok(conn) => {
                {
                    let mut shared = g.lock();
                    if shared.waiters > 0 {
                        shared.spare = Some(conn);
                    }
                    // Cleared before opening the gate: a caller that fails right after the
                    // gate opens must be able to start a new healer.
                    shared.healer_running = false;
                }
                g.state.send_replace(GateState::Open);
                return;
            }
            Err(e) => {
                let action = opener.classify(&e);
                let since = match &*g.state.borrow() {
                    GateState::Down { since, .. } | GateState::Failed { since, .. } => *since,
                    GateState::Open => Instant::now(),
                };
                let last = e;
                g.state.send_replace(match action {
                    Action::Retry => GateState::Down { since, last },
                    Action::FailFast => GateState::Failed { since, last },
                });
            }
        }
    }
}

fn pool_closed() -> Error {
    Error::new(ErrorKind::PoolClosed, "the pool is closed").with_reason(Reason::Closed)
}
