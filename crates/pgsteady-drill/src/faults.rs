//! The faults a drill applies, each named, timed and short.

use std::time::{Duration, Instant};

use pgsteady_testkit::workload::Clock;
use pgsteady_testkit::{BackendFilter, Cluster, Fault, FaultProxy, ProxyMode, StopMode};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::clients::{Side, TrafficControl};

/// How long the server stays down at the start of `late-start`.
const LATE_START: Duration = Duration::from_millis(1500);
/// `idle_session_timeout` during `idle-timeout`, and how long traffic pauses.
const IDLE_SESSION_TIMEOUT: &str = "250ms";
const LULL: Duration = Duration::from_millis(1000);
/// How long the hog holds every free slot.
const SLOTS_HOLD: Duration = Duration::from_millis(1500);
/// How long the server is SIGSTOPped.
const HUNG: Duration = Duration::from_millis(2000);
/// How long the network silently drops everything.
const SILENT_DROP: Duration = Duration::from_millis(3000);
/// How long replies are dropped once a COMMIT went through.
const LOST_COMMIT_HOLD: Duration = Duration::from_millis(1000);
/// How long to wait for a COMMIT to arm the lost-commit fault.
const LOST_COMMIT_ARM: Duration = Duration::from_secs(3);

/// A step of the drill, in the order it applies them: a server fault of the test kit's
/// ([`Fault`]), or one that also needs the drill's traffic or proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub(crate) enum Step {
    /// The server is down when the clients start and comes up 1.5 s later.
    LateStart,
    /// Fast shutdown (SIGINT: sessions end with 57P01), then start again.
    FastRestart,
    /// SIGKILL of the postmaster, then a start with crash recovery.
    Crash,
    /// pg_terminate_backend of every client session (57P01).
    Terminate,
    /// idle_session_timeout = 250ms while traffic pauses for 1 s (57P05), then traffic resumes.
    IdleTimeout,
    /// Traffic pauses, the clients' sessions are terminated and a hog takes every free
    /// connection slot; traffic resumes and new connections get 53300 until the hog lets go
    /// 1.5 s later.
    SlotsExhausted,
    /// The whole server is SIGSTOPped for 2 s, then SIGCONTed.
    Hung,
    /// The network between clients and server drops everything silently for 3 s.
    SilentDrop,
    /// A COMMIT reaches the server but its reply (and every reply for 1 s) is lost.
    LostCommit,
}

impl Step {
    pub(crate) const ALL: [Step; 9] = [
        Step::LateStart,
        Step::FastRestart,
        Step::Crash,
        Step::Terminate,
        Step::IdleTimeout,
        Step::SlotsExhausted,
        Step::Hung,
        Step::SilentDrop,
        Step::LostCommit,
    ];

    /// The name `--faults` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::LateStart => "late-start",
            Step::FastRestart => "fast-restart",
            Step::Crash => "crash",
            Step::Terminate => "terminate",
            Step::IdleTimeout => "idle-timeout",
            Step::SlotsExhausted => "slots-exhausted",
            Step::Hung => "hung",
            Step::SilentDrop => "silent-drop",
            Step::LostCommit => "lost-commit",
        }
    }

    /// What it does, for `--list`, the report and JSON.
    pub(crate) fn summary(self) -> &'static str {
        match self {
            Step::LateStart => "server down when the clients start, up 1.5 s later",
            Step::FastRestart => "fast shutdown (sessions end with 57P01), start again",
            Step::Crash => "SIGKILL of the postmaster, start with crash recovery",
            Step::Terminate => "pg_terminate_backend of every client session (57P01)",
            Step::IdleTimeout => {
                "idle_session_timeout 250ms, traffic pauses 1 s (57P05), traffic resumes"
            }
            Step::SlotsExhausted => {
                "sessions terminated, a hog takes every free slot for 1.5 s: reconnecting gets 53300"
            }
            Step::Hung => "SIGSTOP of every server process for 2 s, then SIGCONT",
            Step::SilentDrop => "the network drops everything silently for 3 s (fault proxy)",
            Step::LostCommit => {
                "a COMMIT is executed but its reply, and all replies for 1 s, is lost"
            }
        }
    }

    /// Whether the naive client's calls may hang forever afterwards (it has no timeouts).
    pub(crate) fn may_hang_naive(self) -> bool {
        matches!(self, Step::SilentDrop | Step::LostCommit)
    }
}

/// One applied fault on the drill's clock.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// The fault's name (`--faults`) and what it does.
    pub(crate) name: &'static str,
    pub(crate) summary: &'static str,
    /// When the fault began.
    pub(crate) start: Instant,
    /// When it was over (the server started, the network came back...).
    pub(crate) end: Instant,
    /// When the server said it was ready (its log line), for faults that stop it; else the
    /// moment the fault was lifted.
    pub(crate) ready: Instant,
    /// Where "no success" is measured from: the start, except for `idle-timeout`, whose
    /// traffic pause is on purpose.
    pub(crate) traffic_from: Instant,
    /// What happened, for the reader.
    pub(crate) notes: Vec<String>,
}

/// What a fault acts on.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) cluster: &'a Cluster,
    /// The naive client's proxy and pgsteady's, in [`Side::BOTH`] order.
    pub(crate) proxies: [&'a FaultProxy; 2],
    pub(crate) traffic: &'a TrafficControl,
    pub(crate) clock: Clock,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl Target<'_> {
    /// When the server logged it was ready, if that was after `since`; else now.
    fn ready_since(&self, since: Instant) -> Instant {
        self.cluster
            .ready_at()
            .map(|at| self.clock.instant_of(at))
            .filter(|at| *at >= since)
            .unwrap_or_else(Instant::now)
    }

    fn set_proxies(&self, mode: ProxyMode) {
        for proxy in self.proxies {
            proxy.set_mode(mode);
        }
    }

    /// Applies `fault`. `late-start` expects the server stopped and `began` to be when the
    /// clients started; the others ignore `began`.
    pub(crate) async fn apply(&self, fault: Step, began: Instant) -> Result<Window> {
        let mut notes = Vec::new();
        let start = if fault == Step::LateStart {
            began
        } else {
            Instant::now()
        };
        let mut traffic_from = start;
        let (end, ready) = match fault {
            Step::LateStart => {
                tokio::time::sleep_until((start + LATE_START).into()).await;
                let started = Instant::now();
                self.cluster.start_server().await?;
                (Instant::now(), self.ready_since(started))
            }
            Step::FastRestart => {
                self.server(Fault::Restart(StopMode::Fast), start, &mut notes)
                    .await?
            }
            Step::Crash => {
                self.server(Fault::KillPostmaster, start, &mut notes)
                    .await?
            }
            Step::Terminate => {
                let all = Fault::Terminate(BackendFilter::ClientBackends);
                self.server(all, start, &mut notes).await?
            }
            Step::IdleTimeout => {
                self.cluster
                    .set("idle_session_timeout", IDLE_SESSION_TIMEOUT)
                    .await?;
                self.traffic.pause();
                tokio::time::sleep(LULL).await;
                self.traffic.resume();
                let resumed = Instant::now();
                traffic_from = resumed;
                self.cluster.set("idle_session_timeout", "0").await?;
                (resumed, resumed)
            }
            Step::SlotsExhausted => {
                let (held, resumed, released) = self.exhaust_slots().await?;
                traffic_from = resumed;
                notes.push(format!("the hog held {held} connections (every free slot)"));
                (released, released)
            }
            Step::Hung => self.server(Fault::Hang(HUNG), start, &mut notes).await?,
            Step::SilentDrop => {
                self.set_proxies(ProxyMode::Blackhole);
                tokio::time::sleep(SILENT_DROP).await;
                self.set_proxies(ProxyMode::Pass);
                let end = Instant::now();
                (end, end)
            }
            Step::LostCommit => {
                let fired = self.lose_a_commit().await;
                for (side, fired) in Side::BOTH.iter().zip(fired) {
                    if !fired {
                        notes.push(format!("no COMMIT from {} to lose", side.name()));
                    }
                }
                let end = Instant::now();
                (end, end)
            }
        };
        Ok(Window {
            name: fault.name(),
            summary: fault.summary(),
            start,
            end,
            ready,
            traffic_from,
            notes,
        })
    }

    /// Inflicts a server fault of the test kit's; returns when it was over and when the
    /// server was ready again (its log line, for a fault that starts it; else the end).
    async fn server(
        &self,
        fault: Fault,
        start: Instant,
        notes: &mut Vec<String>,
    ) -> Result<(Instant, Instant)> {
        let applied = fault.apply(self.cluster).await?;
        if let Some(n) = applied.terminated {
            notes.push(format!("{n} sessions terminated"));
        }
        let end = Instant::now();
        let ready = if fault.starts_the_server() {
            self.ready_since(start)
        } else {
            end
        };
        Ok((end, ready))
    }

    /// Arms both proxies to drop replies from the next COMMIT on, holds that for a while
    /// after the later one fired, and restores both. Returns which proxies fired.
    async fn lose_a_commit(&self) -> [bool; 2] {
        for proxy in self.proxies {
            proxy.set_mode_on_query("COMMIT", ProxyMode::DropReplies);
        }
        let armed = Instant::now();
        let fired = |p: &FaultProxy| p.mode() == ProxyMode::DropReplies;
        while !self.proxies.iter().all(|p| fired(p)) && armed.elapsed() < LOST_COMMIT_ARM {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let result = self.proxies.map(fired);
        if result.iter().any(|f| *f) {
            tokio::time::sleep(LOST_COMMIT_HOLD).await;
        }
        for proxy in self.proxies {
            // Disarm a trigger that did not fire: a message no client sends replaces it.
            proxy.set_mode_on_query("-- pgsteady drill: disarmed", ProxyMode::Pass);
            proxy.set_mode(ProxyMode::Pass);
        }
        result
    }

    /// Pauses traffic, terminates the clients' sessions and fills every free connection
    /// slot with the hog's connections, then resumes traffic: every reconnection gets 53300
    /// until the hog lets go. Returns how many connections the hog held and when traffic
    /// resumed and when the hog let go.
    ///
    /// Traffic pauses so that the hog, not the clients, takes the slots the terminated
    /// sessions free; otherwise the outcome is a race the clients often win.
    async fn exhaust_slots(&self) -> Result<(usize, Instant, Instant)> {
        let mut config = self.cluster.pg_config();
        config.application_name("pgsteady-drill-hog");
        self.traffic.pause();
        let mut hog = Hog::default();
        let result = async {
            for side in Side::BOTH {
                self.cluster
                    .terminate_backends(BackendFilter::ApplicationName(
                        side.application_name().to_owned(),
                    ))
                    .await?;
            }
            // Every slot, including those of sessions still exiting: retry 53300 briefly.
            let mut refused_in_a_row = 0;
            while refused_in_a_row < 10 {
                match hog.take(&config).await {
                    Ok(()) => refused_in_a_row = 0,
                    Err(e) if e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) => {
                        refused_in_a_row += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                }
            }
            Ok(())
        }
        .await;
        self.traffic.resume();
        result?;
        let resumed = Instant::now();
        tokio::time::sleep(SLOTS_HOLD).await;
        let held = hog.sessions.len();
        drop(hog);
        Ok((held, resumed, Instant::now()))
    }
}

/// Connections held open to use up slots. Dropping it closes them.
#[derive(Debug, Default)]
struct Hog {
    sessions: Vec<(tokio_postgres::Client, JoinHandle<()>)>,
}

impl Hog {
    async fn take(
        &mut self,
        config: &tokio_postgres::Config,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sessions.push((client, task));
        Ok(())
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        for (_, task) in &self.sessions {
            task.abort();
        }
    }
}
