//! The harness of the crate's fuzz targets (tests only): property tests that feed a parser
//! or a decoder what a hostile server, file or environment could, and fail on a panic.
//!
//! A few hundred cases each by default, so `cargo test` stays quick; `PGSTEADY_FUZZ_CASES=N`
//! runs N per target, `PGSTEADY_FUZZ_SECS=S` runs each for S seconds. Each target prints
//! its rate (`--nocapture` shows it).

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per target unless `PGSTEADY_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 256;

/// Runs `target` over `cases` values of `strategy`; panics (failing the test) with the
/// smallest failing input when `target` fails or panics. With `PGSTEADY_FUZZ_SECS=S` it
/// runs batches of that many cases, each from a fresh random seed, until S seconds passed.
pub(crate) fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    target: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = env_number("PGSTEADY_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let budget = env_number("PGSTEADY_FUZZ_SECS").map(|s| Duration::from_secs(s.into()));
    let start = Instant::now();
    let mut total: u64 = 0;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, &target);
        total += u64::from(cases);
        if let Err(e) = result {
            panic!("fuzz {name}: {e}");
        }
        if budget.is_none_or(|b| start.elapsed() >= b) {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {total} cases in {secs:.1}s ({:.0} cases/s)",
        total as f64 / secs.max(1e-9)
    );
}

fn env_number(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|n| n.parse().ok())
}

mod tests {
    use proptest::prelude::*;

    #[test]
    fn a_target_that_panics_fails_the_test() {
        // Negative control for every fuzz target: the harness reports a panic in the code
        // under test as a failure, not a pass.
        let planted = std::panic::catch_unwind(|| {
            super::fuzz("planted panic", any::<u8>(), |b| {
                assert!(b < 200, "planted");
                Ok(())
            })
        });
        assert!(planted.is_err());
        super::fuzz("no panic", any::<u8>(), |_| Ok(()));
    }
}
