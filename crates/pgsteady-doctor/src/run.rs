//! One doctor run over the host list: every host's layers within the overall bound, then the
//! rules across hosts and the Patroni layers.

use std::time::Duration;

use pgsteady::{Config, Reason};
use tokio::time::Instant;

use crate::finding::Layer;
use crate::host::{self, Bounds};
use crate::patroni;
use crate::report::{self, HostReport, Report};

/// How a run is bounded, and what else it checks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound on each step (name lookup, TCP connect, handshake) and on each of the server's
    /// queries. Default: 3 s.
    pub timeout: Duration,
    /// Bound on the whole run, over every host; hosts not reached by then are reported as
    /// not checked. Default: 60 s.
    pub max_time: Duration,
    /// Patroni REST API addresses (`http://HOST:PORT`, see [`parse_patroni_url`]) whose view
    /// is compared with each member's own. Default: none.
    pub patroni: Vec<String>,
    /// The longest message accepted from a server. Default: 16 MiB.
    pub max_message_len: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(3),
            max_time: Duration::from_secs(60),
            patroni: Vec::new(),
            max_message_len: 16 << 20,
        }
    }
}

/// The longest bound of one step that doctor uses: a day.
const MAX_STEP: Duration = Duration::from_secs(24 * 3600);

pub use crate::patroni::parse_url as parse_patroni_url;

/// Checks every host of `config` in order until `options.max_time` runs out. `target` is
/// the connection string as given (to say where a password was looked for). The report's
/// `exit_code` is left 0 for the caller to set.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> pgsteady::Result<()> {
/// let config = pgsteady::Config::resolve(Some("postgresql://app@db/app"))?;
/// let report = pgsteady_doctor::run(&config, None, &pgsteady_doctor::Options::default()).await;
/// if let Some(broken) = &report.broken {
///     println!("first broken layer: {}: {}", broken.layer, broken.detail);
/// }
/// # Ok(()) }
/// ```
pub async fn run(config: &Config, target: Option<&str>, options: &Options) -> Report {
    // A bound too large for the clock is no bound.
    let deadline = Instant::now().checked_add(options.max_time);
    // A step's bound past any real wait is capped, so no deadline built from it overflows
    // the clock.
    let bounds = Bounds {
        timeout: options.timeout.min(MAX_STEP),
        max_message_len: options.max_message_len,
    };
    let mut hosts = Vec::new();
    let mut not_checked = 0;
    for host in &config.hosts {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            not_checked += 1;
            continue;
        }
        let check = host::check_host(config, target, host, bounds);
        let outcome = match left {
            Some(left) => tokio::time::timeout(left, check).await.ok(),
            None => Some(check.await),
        };
        let (layers, state) = outcome.unwrap_or_else(|| {
            let layer = Layer::fail(
                "deadline",
                format!(
                    "not finished when --max-time ({:.1}s) ran out",
                    options.max_time.as_secs_f64()
                ),
                Reason::TimedOut,
            );
            (vec![layer], None)
        });
        hosts.push(HostReport {
            host: host.to_string(),
            layers,
            state,
        });
    }
    report::session_type_fixes(&mut hosts, config.target_session_attrs);
    let libpq_pick = report::libpq_pick(
        &hosts,
        config.target_session_attrs,
        config.load_balance_hosts,
    );
    // After libpq's pick: the Patroni layers add no host a client would try.
    if !options.patroni.is_empty() {
        patroni::check(config, &options.patroni, bounds.timeout, &mut hosts).await;
    }
    let broken = report::first_broken(&hosts);
    let healthy = hosts.iter().any(HostReport::works);
    Report {
        config: config.to_string(),
        ok: broken.is_none() && healthy,
        exit_code: 0,
        broken,
        hosts,
        libpq_pick,
        not_checked,
    }
}
