//! The herd's figures: connection attempts per 10 ms bucket, their peak and mean (the
//! table they are printed in is in `herd/mod.rs`, beside the report).

use std::time::{Duration, Instant};

const BUCKET: Duration = Duration::from_millis(10);

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// Attempts per bucket.
#[derive(Debug, PartialEq)]
pub(super) struct Rate {
    pub(super) buckets: Vec<usize>,
    pub(super) peak: usize,
    /// Mean per bucket over the buckets from the first attempt to the last.
    pub(super) mean: f64,
}

impl Rate {
    pub(super) fn peak_to_mean(&self) -> f64 {
        if self.mean > 0.0 {
            ((self.peak as f64 / self.mean) * 100.0).round() / 100.0
        } else {
            0.0
        }
    }
}

/// Buckets of 10 ms from `from`; the mean is taken over the span that had attempts (from the
/// first bucket with one to the last), so idle time before or after does not dilute it.
pub(super) fn rate(attempts: &[Instant], from: Instant, until: Instant) -> Rate {
    let count = (until.saturating_duration_since(from).as_nanos() / BUCKET.as_nanos()) as usize + 1;
    let mut buckets = vec![0usize; count];
    for at in attempts {
        let i = (at.saturating_duration_since(from).as_nanos() / BUCKET.as_nanos()) as usize;
        buckets[i.min(count - 1)] += 1;
    }
    let first = buckets.iter().position(|b| *b > 0);
    let last = buckets.iter().rposition(|b| *b > 0);
    let (peak, mean) = match (first, last) {
        (Some(first), Some(last)) => {
            let active = &buckets[first..=last];
            let total: usize = active.iter().sum();
            (
                *active.iter().max().unwrap_or(&0),
                total as f64 / active.len() as f64,
            )
        }
        _ => (0, 0.0),
    };
    Rate {
        buckets,
        peak,
        mean: (mean * 100.0).round() / 100.0,
    }
}

/// Buckets of 10 ms over the whole window `[from, until)` (whole buckets only); the mean is
/// over all of them, empty ones included.
pub(super) fn window_rate(attempts: &[Instant], from: Instant, until: Instant) -> Rate {
    let count = (until.saturating_duration_since(from).as_nanos() / BUCKET.as_nanos()) as usize;
    let mut buckets = vec![0usize; count];
    for at in attempts.iter().filter(|at| **at >= from) {
        let i = (at.saturating_duration_since(from).as_nanos() / BUCKET.as_nanos()) as usize;
        if let Some(b) = buckets.get_mut(i) {
            *b += 1;
        }
    }
    let peak = buckets.iter().copied().max().unwrap_or(0);
    let mean = if count > 0 {
        buckets.iter().sum::<usize>() as f64 / count as f64
    } else {
        0.0
    };
    Rate {
        buckets,
        peak,
        mean: (mean * 100.0).round() / 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_per_bucket_and_averages_over_the_active_span() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let attempts = [at(25), at(26), at(27), at(29), at(35), at(52)];
        let r = rate(&attempts, t, at(80));
        assert_eq!(r.buckets, vec![0, 0, 4, 1, 0, 1, 0, 0, 0]);
        assert_eq!(r.peak, 4);
        assert_eq!(r.mean, 1.5); // 6 attempts over buckets 2..=5
        assert_eq!(r.peak_to_mean(), 2.67);
    }

    #[test]
    fn window_rate_counts_every_bucket_of_the_window() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let attempts = [at(5), at(12), at(15), at(38), at(45)];
        let r = window_rate(&attempts, at(10), at(40));
        assert_eq!(r.buckets, vec![2, 0, 1]);
        assert_eq!((r.peak, r.mean), (2, 1.0));
    }

    #[test]
    fn no_attempts_means_no_rate() {
        let t = Instant::now();
        let r = rate(&[], t, t + Duration::from_millis(30));
        assert_eq!((r.peak, r.mean, r.peak_to_mean()), (0, 0.0, 0.0));
    }
}
