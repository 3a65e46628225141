//! A fleet of pools losing their sessions to one event: the first
//! reconnection after a server-side or network close is spread over `reconnect_spread`
//! instead of following the close at once.

use std::time::{Duration, Instant};

use pgsteady::Pool;
use pgsteady_testkit::{Cluster, FaultProxy};

use super::pool;

const TRIALS: usize = 30;

/// A pool of one connection kept warm through its own proxy.
struct Member {
    proxy: FaultProxy,
    pool: Pool,
    /// Milliseconds from each reset to the reconnection the proxy saw.
    delays: Vec<f64>,
}

impl Member {
    async fn new(cluster: &Cluster, spread: Duration) -> Member {
        let proxy = FaultProxy::start_on_own_thread(cluster.addr())
            .await
            .unwrap();
        let pool = pool(cluster, Some(proxy.port()), |b| {
            b.max_size(1).min_idle(1).reconnect_spread(spread)
        });
        let member = Member {
            proxy,
            pool,
            delays: Vec::new(),
        };
        member.wait_for_creates(1).await;
        member
    }

    async fn wait_for_creates(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pool.metrics().creates < n || self.pool.metrics().open < 1 {
            assert!(Instant::now() < deadline, "no reconnection within 5 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Resets the connection (the network fails, the server stays up) and records how long
    /// after the reset the pool's new connection reached the proxy.
    async fn trial(&mut self) {
        let creates = self.pool.metrics().creates;
        let accepted = self.proxy.accept_times().len();
        let t0 = Instant::now();
        self.proxy.reset_all();
        self.wait_for_creates(creates + 1).await;
        let at = self.proxy.accept_times()[accepted];
        self.delays.push((at - t0).as_secs_f64() * 1e3);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut d = self.delays.clone();
        d.sort_by(f64::total_cmp);
        d
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_spreads_its_first_reconnection_after_a_close_over_the_window() {
    let cluster = Cluster::start().await.unwrap();
    let mut spread = Member::new(&cluster, Duration::from_millis(40)).await;
    let mut prompt = Member::new(&cluster, Duration::ZERO).await;
    for _ in 0..TRIALS {
        spread.trial().await;
        prompt.trial().await;
    }
    let (with, without) = (spread.sorted(), prompt.sorted());
    eprintln!("ms from reset to reconnection: spread {with:.1?}, not {without:.1?}");
    let median = |v: &[f64]| v[TRIALS / 2];
    // Without: as soon as the pool notices. With: a random delay uniform over 40 ms on top,
    // so the median moves by about 20 ms (12-28 ms for 30 draws but for 1 in 10,000) and
    // the delays spread over most of the window.
    assert!(median(&without) < 10.0, "{without:.1?}");
    let shift = median(&with) - median(&without);
    assert!(
        (10.0..=32.0).contains(&shift),
        "median moved by {shift:.1} ms"
    );
    let spread_ms = with[TRIALS * 9 / 10] - with[TRIALS / 10];
    assert!(
        spread_ms >= 20.0,
        "10th to 90th percentile: {spread_ms:.1} ms"
    );
    // And never much past it: the window plus the slowest prompt reconnection.
    assert!(
        with[TRIALS - 1] <= 40.0 + without[TRIALS - 1] + 10.0,
        "{with:.1?}"
    );
}
