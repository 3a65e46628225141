//! The spread of the first reconnection after a server-side close, shared by a pool's gate
//! and its connections (which tell it when a statement finds the connection gone).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngExt;

/// Spreads the first connection attempt after a server-side close over a random delay in
/// `[0, window]` (full jitter), shared by every caller of the pool: the pools of a fleet that
/// lost their sessions to the same restart then reconnect evenly spread instead of in one
/// burst, and their back-offs do not start in step. The price is paid once per incident: 20 ms
/// on average (with the default 40 ms window) before a pool replaces a session that
/// `pg_terminate_backend` ended while the server stayed up.
#[derive(Debug)]
pub(crate) struct Spread {
    window: Duration,
    /// No attempt before this instant; `None` once it has passed.
    not_before: Mutex<Option<Instant>>,
}

impl Spread {
    pub(super) fn new(window: Duration) -> Self {
        Spread {
            window,
            not_before: Mutex::new(None),
        }
    }

    /// The server or the network closed a connection of this pool (not the pool itself):
    /// the next attempt waits a random part of the window, unless a wait is already set.
    pub(crate) fn server_closed(&self) {
        let now = Instant::now();
        let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        if not_before.is_none_or(|at| at <= now) {
            let wait = self.window.mul_f64(rand::rng().random_range(0.0..=1.0));
            *not_before = Some(now + wait);
        }
    }

    /// How long an attempt must still wait.
    pub(super) fn remaining(&self) -> Option<Duration> {
        let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        let wait = not_before.and_then(|at| at.checked_duration_since(Instant::now()));
        if wait.is_none() {
            *not_before = None;
        }
        wait.filter(|w| !w.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn not_before(spread: &Spread) -> Option<Instant> {
        *spread.not_before.lock().unwrap()
    }

    #[test]
    fn a_server_side_close_delays_the_next_attempt_by_a_random_part_of_the_window() {
        let waits: Vec<Duration> = (0..500)
            .map(|_| {
                let spread = Spread::new(ms(40));
                assert_eq!(spread.remaining(), None, "no wait before any close");
                spread.server_closed();
                spread.remaining().unwrap_or_default()
            })
            .collect();
        assert!(waits.iter().all(|w| *w <= ms(40)), "{waits:?}");
        // Spread over the window, not bunched at one end.
        let early = waits.iter().filter(|w| **w < ms(10)).count();
        let late = waits.iter().filter(|w| **w > ms(30)).count();
        assert!(early > 50 && late > 50, "{early} early, {late} late of 500");
    }

    #[test]
    fn later_closes_join_the_pending_wait_and_a_passed_wait_is_forgotten() {
        let spread = Spread::new(ms(40));
        spread.server_closed();
        let first = not_before(&spread);
        spread.server_closed();
        assert_eq!(not_before(&spread), first, "one incident, one wait");

        let short = Spread::new(ms(1));
        short.server_closed();
        std::thread::sleep(ms(3));
        assert_eq!(short.remaining(), None);
        assert_eq!(not_before(&short), None);
    }

    #[test]
    fn a_zero_window_never_waits() {
        let spread = Spread::new(Duration::ZERO);
        spread.server_closed();
        assert_eq!(spread.remaining(), None);
    }
}
