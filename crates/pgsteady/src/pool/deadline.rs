//! Deadlines for the pool's hot paths: a waiting checkout's acquire timeout and the time limit
//! of each [`Pool::run`](super::Pool::run) attempt.
//!
//! Hand-written because tokio's timer is the wrong tool here: arming a `tokio::time::Sleep`
//! and dropping it before it fires (what every such deadline does: the checkout or the query
//! almost always finishes first) takes the runtime's single timer lock twice, and with two
//! cores busy the lock's cache line moves between them every time. In a microbenchmark of
//! 64 tasks sharing 16 semaphore permits on 2 worker threads, a tokio timeout added 300-370 ns
//! per waiting acquire; this module adds 60-90 ns.
//!
//! How: a deadline registers its waker in one of a few shards, picked per thread, so the lock
//! it takes is nearly always uncontended and its cache line stays on the core. One sweeper
//! task per pool sleeps (on a single tokio timer) until the earliest deadline it knows of and
//! wakes the deadlines that are due; a deadline earlier than the sweeper's next wake-up
//! wakes it, which does not happen while every deadline uses the same timeout. A deadline
//! fires no earlier than its instant, with the precision of a tokio timer.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::Notify;

const SHARDS: usize = 16;

/// A shard on cache lines of its own, so two cores never share one.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Slab<Entry>>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Slab<Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Entry {
    at: Instant,
    waker: Waker,
}

/// The registry of one pool's pending deadlines, and its sweeper's wake-up.
pub(crate) struct Deadlines {
    shards: [Shard; SHARDS],
    /// When the sweeper looks next, in nanoseconds after `epoch`; `u64::MAX` while it scans
    /// (then every new deadline wakes it).
    next_at: AtomicU64,
    epoch: Instant,
    sweeper: Arc<Notify>,
    /// The sweeper task is gone (its runtime shut down): deadlines use tokio timers.
    dead: AtomicBool,
}

impl fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadlines")
            .field("dead", &self.dead.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's shard, assigned round-robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|shard| {
        let mut i = shard.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(i);
        }
        i
    })
}

impl Deadlines {
    /// The registry and its sweeper task, spawned on the current runtime.
    pub(crate) fn start() -> Arc<Deadlines> {
        let deadlines = Arc::new(Deadlines {
            shards: Default::default(),
            next_at: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            sweeper: Arc::new(Notify::new()),
            dead: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&deadlines);
        tokio::spawn(sweep(
            weak.clone(),
            deadlines.sweeper.clone(),
            SweeperGuard(weak),
        ));
        deadlines
    }

    /// A future that resolves at `at`. `now` is a recent reading of the clock, which spares
    /// the first poll one.
    pub(crate) fn sleep_until(&self, now: Instant, at: Instant) -> Deadline<'_> {
        Deadline {
            deadlines: self,
            at,
            state: if at <= now { State::Due } else { State::New },
        }
    }

    /// `future`, or `None` if it is still pending `timeout` after its first poll, and how
    /// long it waited. The deadline is armed only if the first poll is pending: a future
    /// ready at once costs no clock read and waits `Duration::ZERO`. Unlike a timeout
    /// wrapped around a future already polled once, this never polls the future twice in a
    /// row (for a pool checkout that had just queued, a second poll would take the
    /// semaphore's lock again while every returning connection contends for it).
    pub(crate) async fn timeout_when_pending<F: Future>(
        &self,
        timeout: Duration,
        mut future: Pin<&mut F>,
    ) -> (Option<F::Output>, Duration) {
        let mut deadline = std::pin::pin!(None::<Deadline<'_>>);
        let mut started = None;
        let output = std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if deadline.is_none() {
                let now = Instant::now();
                started = Some(now);
                deadline.set(Some(self.sleep_until(now, after(now, timeout))));
            }
            match deadline.as_mut().as_pin_mut().map(|d| d.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await;
        (output, started.map_or(Duration::ZERO, |at| at.elapsed()))
    }

    /// Nanoseconds after `epoch`, below `u64::MAX` so that any deadline is earlier than
    /// "no wake-up planned".
    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX).min(u64::MAX - 1)
    }

    /// Wakes the deadlines that are due; returns when to look again: at the earliest
    /// deadline that is not due, or after [`IDLE_SCAN`] when there is none.
    fn scan(&self) -> Instant {
        // While scanning, every new deadline wakes the sweeper again: one registered in a
        // shard already scanned must not be missed.
        self.next_at.store(u64::MAX, Ordering::SeqCst);
        let now = Instant::now();
        let mut next = now + IDLE_SCAN;
        // Woken after the locks are released: a waker may run arbitrary code.
        let mut due = Vec::new();
        for shard in &self.shards {
            for (_, entry) in shard.lock().iter() {
                if entry.at <= now {
                    due.push(entry.waker.clone());
                } else if entry.at < next {
                    next = entry.at;
                }
            }
        }
        self.next_at.store(self.nanos(next), Ordering::SeqCst);
        due.into_iter().for_each(Waker::wake);
        next
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        // Let the sweeper see that the pool is gone.
        self.sweeper.notify_one();
    }
}

/// Marks the registry dead when the sweeper task ends for any reason (its runtime shut
/// down), and wakes every pending deadline so it falls back to a tokio timer.
struct SweeperGuard(Weak<Deadlines>);

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        if let Some(deadlines) = self.0.upgrade() {
            deadlines.dead.store(true, Ordering::SeqCst);
            let mut pending = Vec::new();
            for shard in &deadlines.shards {
                pending.extend(shard.lock().iter().map(|(_, entry)| entry.waker.clone()));
            }
            pending.into_iter().for_each(Waker::wake);
        }
    }
}

/// The sweeper's period when no deadline is pending. A new deadline wakes the sweeper only
/// if it is earlier than the sweeper's planned look, so this is also the shortest timeout
/// that never costs a wake-up: every default timeout is longer (30 s). When deadlines come
/// and go (each one is dropped long before it is due), the sweeper wakes about once per
/// timeout, or once per `IDLE_SCAN`, whichever is shorter.
const IDLE_SCAN: Duration = Duration::from_secs(5);

/// The sweeper task. `_guard` is an argument, not a local, so that it is dropped even if the
/// task never runs.
async fn sweep(deadlines: Weak<Deadlines>, wake: Arc<Notify>, _guard: SweeperGuard) {
    loop {
        let next = match deadlines.upgrade() {
            Some(deadlines) => deadlines.scan(),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = wake.notified() => {}
        }
    }
}

enum State {
    /// Not polled yet.
    New,
    /// Registered in `shard` under `key`, with the waker it was registered with.
    Registered {
        shard: usize,
        key: usize,
        waker: Waker,
    },
    /// The sweeper is gone: a tokio timer does the job.
    Fallback(Pin<Box<tokio::time::Sleep>>),
    Due,
}

/// Resolves at its instant; see [`Deadlines::sleep_until`].
pub(crate) struct Deadline<'a> {
    deadlines: &'a Deadlines,
    at: Instant,
    state: State,
}

impl fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline").field("at", &self.at).finish()
    }
}

impl Deadline<'_> {
    fn register(&mut self, cx: &Context<'_>) {
        let shard = shard_index();
        let key = self.deadlines.shards[shard].lock().insert(Entry {
            at: self.at,
            waker: cx.waker().clone(),
        });
        self.state = State::Registered {
            shard,
            key,
            waker: cx.waker().clone(),
        };
        // After the insert: either the sweeper's scan sees the entry, or this load sees
        // the scan's marker (or a later wake-up) and wakes the sweeper.
        if self.deadlines.nanos(self.at) < self.deadlines.next_at.load(Ordering::SeqCst) {
            self.deadlines.sweeper.notify_one();
        }
    }

    fn deregister(&mut self) {
        if let State::Registered { shard, key, .. } = self.state {
            let entry = self.deadlines.shards[shard].lock().try_remove(key);
            drop(entry);
        }
    }
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.deadlines.dead.load(Ordering::Relaxed)
            && matches!(this.state, State::New | State::Registered { .. })
        {
            this.deregister();
            this.state = State::Fallback(Box::pin(tokio::time::sleep_until(this.at.into())));
        }
        match &mut this.state {
            State::Due => return Poll::Ready(()),
            State::Fallback(sleep) => return sleep.as_mut().poll(cx),
            State::New => {
                this.register(cx);
                return Poll::Pending;
            }
            State::Registered { .. } => {}
        }
        // Polled again: woken by the sweeper, or by whatever this deadline guards.
        if Instant::now() >= this.at {
            this.deregister();
            this.state = State::Due;
            return Poll::Ready(());
        }
        if let State::Registered { shard, key, waker } = &mut this.state
            && !waker.will_wake(cx.waker())
        {
            *waker = cx.waker().clone();
            let old = this.deadlines.shards[*shard]
                .lock()
                .get_mut(*key)
                .map(|entry| std::mem::replace(&mut entry.waker, cx.waker().clone()));
            drop(old); // after the lock
        }
        Poll::Pending
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// `now + timeout`; a timeout too large to add counts as about 30 years, as in tokio.
pub(crate) fn after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// `future`, or `None` once `deadline` passes first (`future` is polled first, so one that
/// is ready at once wins even against a deadline already due).
pub(crate) async fn timeout<F: Future>(deadline: Deadline<'_>, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut deadline = std::pin::pin!(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        deadline.as_mut().poll(cx).map(|()| None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_fires_at_its_instant_not_before() {
        let deadlines = Deadlines::start();
        for ms in [30, 10, 50] {
            let now = Instant::now();
            let at = now + Duration::from_millis(ms);
            deadlines.sleep_until(now, at).await;
            let late = Instant::now().saturating_duration_since(at);
            assert!(Instant::now() >= at);
            assert!(late < Duration::from_millis(100), "{ms} ms: {late:?} late");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_deadline_wakes_the_sleeping_sweeper() {
        let deadlines = Deadlines::start();
        let now = Instant::now();
        let long = deadlines.sleep_until(now, now + Duration::from_secs(60));
        let short = deadlines.sleep_until(now, now + Duration::from_millis(20));
        let started = Instant::now();
        let fired = timeout(short, long).await;
        assert!(fired.is_none(), "the 60 s deadline cannot win");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_timeout_is_armed_only_once_the_future_waits() {
        let deadlines = Deadlines::start();
        let ready = std::pin::pin!(std::future::ready(7));
        let ready = deadlines
            .timeout_when_pending(Duration::from_millis(10), ready)
            .await;
        assert_eq!(ready, (Some(7), Duration::ZERO));
        let never = std::pin::pin!(std::future::pending::<()>());
        let (output, waited) = deadlines
            .timeout_when_pending(Duration::from_millis(30), never)
            .await;
        assert_eq!(output, None);
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn dropped_deadlines_leave_the_registry() {
        let deadlines = Deadlines::start();
        let now = Instant::now();
        let pending = timeout(
            deadlines.sleep_until(now, now + Duration::from_secs(60)),
            std::future::ready(1),
        )
        .await;
        assert_eq!(pending, Some(1));
        let mut d = Box::pin(deadlines.sleep_until(now, now + Duration::from_secs(60)));
        let waker = Waker::noop();
        assert!(
            d.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        let registered = |d: &Deadlines| d.shards.iter().map(|s| s.lock().len()).sum::<usize>();
        assert_eq!(registered(&deadlines), 1);
        drop(d);
        assert_eq!(registered(&deadlines), 0);
    }

    #[test]
    fn without_the_sweeper_deadlines_fall_back_to_tokio_timers() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let first = runtime();
        let deadlines = first.block_on(async { Deadlines::start() });
        drop(first); // the sweeper's runtime is gone
        runtime().block_on(async {
            let now = Instant::now();
            let at = now + Duration::from_millis(20);
            tokio::time::timeout(Duration::from_secs(5), deadlines.sleep_until(now, at))
                .await
                .expect("a tokio timer took over");
            assert!(Instant::now() >= at);
        });
    }
}
