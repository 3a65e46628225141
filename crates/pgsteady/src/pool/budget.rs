//! The live state of a [`RetryBudget`]: a token bucket shared by a pool's calls.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::retry::RetryBudget;

/// Milli-tokens, so deposits of a fraction of a retry stay exact.
const MILLI: i64 = 1000;

/// The live state of a [`RetryBudget`].
#[derive(Debug)]
pub(crate) struct Budget {
    config: RetryBudget,
    tokens: AtomicI64,
    refilled_at_ms: AtomicU64,
    epoch: Instant,
}

impl Budget {
    pub(crate) fn new(config: RetryBudget) -> Self {
        Budget {
            config,
            tokens: AtomicI64::new(i64::from(config.burst) * MILLI),
            refilled_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn cap(&self) -> i64 {
        i64::from(self.config.burst) * MILLI
    }

    /// A call started: earn `ratio` of a retry.
    pub(crate) fn deposit(&self) {
        let earned = (self.config.ratio * MILLI as f64) as i64;
        // Every call lands here, from every core. While nothing fails the bucket is full:
        // reading first leaves the shared word unwritten, instead of two read-modify-writes
        // (add, then clamp) per call.
        if earned <= 0 || self.tokens.load(Ordering::Relaxed) >= self.cap() {
            return;
        }
        if self.tokens.fetch_add(earned, Ordering::Relaxed) + earned > self.cap() {
            self.tokens.fetch_min(self.cap(), Ordering::Relaxed);
        }
    }

    /// Takes one retry from the bucket if there is one.
    pub(crate) fn withdraw(&self) -> bool {
        self.refill();
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= MILLI).then_some(t - MILLI)
            })
            .is_ok()
    }

    fn refill(&self) {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.refilled_at_ms.swap(now_ms, Ordering::Relaxed);
        let earned = now_ms.saturating_sub(last) as i64 * i64::from(self.config.min_per_second);
        if earned > 0 {
            self.tokens.fetch_add(earned, Ordering::Relaxed);
            self.tokens.fetch_min(self.cap(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_full_at_start_and_deposits_never_exceed_the_burst() {
        let budget = Budget::new(RetryBudget {
            ratio: 0.5,
            min_per_second: 0,
            burst: 2,
        });
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw());
        assert!(!budget.withdraw(), "the burst is 2");
        budget.deposit();
        assert!(!budget.withdraw(), "half a retry earned");
        budget.deposit();
        assert!(budget.withdraw(), "two calls earn one retry");
    }
}
