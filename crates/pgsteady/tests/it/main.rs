//! The resilient connect against real PostgreSQL servers, one module per failure mode.

mod auth;
mod auth_methods;
mod deadline;
mod failover;
mod health;
mod hung;
mod keepalive;
mod monitor;
mod multihost;
mod patroni;
mod pool;
mod standby;
mod startup;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgsteady::connect::{AttemptOutcome, ConnectEvent};
use pgsteady::{Backoff, Config, Connector, Reason};

/// What an observer saw: (attempt, reason, retried?) per failed attempt.
#[derive(Debug, Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<(u32, Reason, bool)>>>);

impl Seen {
    pub fn observer(&self) -> impl Fn(&ConnectEvent<'_>) + Send + Sync + 'static {
        let seen = self.0.clone();
        move |event: &ConnectEvent<'_>| {
            if let AttemptOutcome::Failed {
                class, next_delay, ..
            } = event.outcome
            {
                seen.lock()
                    .unwrap()
                    .push((event.attempt, class.reason, next_delay.is_some()));
            }
        }
    }

    pub fn failures(&self) -> Vec<(u32, Reason, bool)> {
        self.0.lock().unwrap().clone()
    }
}

/// A connector for `url` with a short polling back-off and a total deadline.
pub fn connector(url: &str, deadline: Duration) -> Connector {
    let config = Config::parse(url).expect("test url parses");
    Connector::new(config)
        .expect("connector")
        .with_backoff(Backoff::polling().with_max_elapsed(deadline))
        .with_attempt_timeout(Duration::from_secs(2))
}
