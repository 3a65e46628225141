//! A resilient connect: every host tried in order under one timeout per host that covers the
//! whole handshake, `target_session_attrs` checked from what the server reported at startup
//! (PostgreSQL 14+) or else by query, an error that lists every host, per-attempt events,
//! back-off between passes, and a monitor on the connection's task that also follows the
//! server's `in_hot_standby` / `default_transaction_read_only` during the session.

mod auth;
mod bind;
mod checks;
mod frame;
mod monitor;
mod session;
mod stream;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;

// The `probe` feature: items a diagnostic tool needs below the connect path; applications
// use the connector and the pool.
#[cfg(feature = "probe")]
pub use checks::{MAX_OWN_BYTES, MAX_OWN_ROWS, bounded_simple_query};
pub use frame::DEFAULT_MAX_MESSAGE_LEN;
pub use monitor::{CloseReason, ConnectionMonitor};
pub use session::SessionState;
#[cfg(feature = "probe")]
pub use stream::{SslAnswer, request_ssl};

/// The rustls crypto provider pgsteady's TLS uses (*ring*, chosen and silenced in one place:
/// see `tls.rs`), for code that builds its own TLS client beside pgsteady's, such as
/// `pgsteady doctor`'s certificate probe (feature `probe`).
#[cfg(feature = "probe")]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    crate::tls::provider()
}

use checks::{Phase, check_session, combine};

use crate::backoff::{Attempt, Backoff, Decision, Retryable, Sleeper, TokioSleeper};
use crate::classify::{self, Action, Classification, FailFastClass, Reason};
use crate::config::{ChannelBinding, Config, Host, HostSpec, SslMode, TargetSessionAttrs};
use crate::error::HostFailure;
use crate::tls::Tls;
use crate::{Error, ErrorKind};

/// The per-host timeout when the configuration has no `connect_timeout`.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// An established session.
#[derive(Debug)]
pub struct Connected {
    /// The client.
    pub client: Client,
    /// Watches the connection's background task; tells why it closed.
    pub monitor: ConnectionMonitor,
    /// The host that accepted.
    pub host: HostSpec,
    /// Whether the session is encrypted.
    pub tls: bool,
}

/// What happened in one connection attempt (one pass over the host list).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum AttemptOutcome<'a> {
    /// A host accepted.
    Connected {
        /// Which one.
        host: &'a HostSpec,
    },
    /// Every host failed.
    Failed {
        /// The error (lists each host).
        error: &'a Error,
        /// The verdict after applying the opt-in retry classes.
        class: Classification,
        /// The delay before the next attempt; `None` when giving up.
        next_delay: Option<Duration>,
    },
}

/// An event for logging: one per attempt.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ConnectEvent<'a> {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Time since [`Connector::connect`] started.
    pub elapsed: Duration,
    /// What happened.
    pub outcome: AttemptOutcome<'a>,
}

type Observer = Arc<dyn Fn(&ConnectEvent<'_>) + Send + Sync>;

/// Connects to the servers of a [`Config`], retrying transient failures.
///
/// # Default
///
/// - per-host timeout: the config's `connect_timeout`, else 10 s
///   ([`DEFAULT_ATTEMPT_TIMEOUT`]);
/// - back-off: [`Backoff::new`] limited to 30 s in total;
/// - retried classes: transient ones only (see [`classify::connect`]);
/// - no observer.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> pgsteady::Result<()> {
/// use std::time::Duration;
/// use pgsteady::{Backoff, Config, Connector};
///
/// let config = Config::resolve(Some("postgresql://app@db:5432/app"))?;
/// let connector = Connector::new(config)?
///     .with_backoff(Backoff::new().with_max_elapsed(Duration::from_secs(60)))
///     .with_observer(|event| eprintln!("{event:?}"));
/// let connected = connector.connect().await?;
/// connected.client.simple_query("SELECT 1").await.ok();
/// if let Some(why) = connected.monitor.close_reason() {
///     eprintln!("closed: {why}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connector {
    config: Arc<Config>,
    tls: Tls,
    attempt_timeout: Duration,
    backoff: Backoff,
    retry_on: Vec<FailFastClass>,
    observer: Option<Observer>,
    sleeper: Arc<dyn Sleeper>,
    max_message_len: usize,
    ready_check: bool,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("backoff", &self.backoff)
            .field("retry_on", &self.retry_on)
            .field("observer", &self.observer.is_some())
            .field("max_message_len", &self.max_message_len)
            .field("ready_check", &self.ready_check)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for `config`. Fails if the TLS settings cannot be loaded (e.g. a missing
    /// `sslrootcert` file for `verify-full`).
    pub fn new(config: Config) -> Result<Self, Error> {
        let tls = Tls::new(&config.tls)?;
        let attempt_timeout = config.attempt_timeout(DEFAULT_ATTEMPT_TIMEOUT);
        Ok(Connector {
            config: Arc::new(config),
            tls,
            attempt_timeout,
            backoff: Backoff::new().with_max_elapsed(Duration::from_secs(30)),
            retry_on: Vec::new(),
            observer: None,
            sleeper: Arc::new(TokioSleeper),
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            ready_check: false,
        })
    }

    /// Caps the length of one data-carrying message from the server (a row, an error, a
    /// notice); a longer one, or any message libpq would refuse, closes the connection with a
    /// permanent "protocol violation" error. Default: [`DEFAULT_MAX_MESSAGE_LEN`] (1 GiB - 1,
    /// the most a PostgreSQL server can send). A tool that reads only its own small results
    /// should set far less (the CLI uses 16 MiB).
    #[must_use]
    pub fn with_max_message_len(mut self, bytes: usize) -> Self {
        self.max_message_len = bytes;
        self
    }

    /// Whether a new session must answer a query (an empty one, one round trip) inside the
    /// attempt timeout before it counts as connected, when nothing else would run one (the
    /// `target_session_attrs` check reads the server's startup report on PostgreSQL 14+). A
    /// server that authenticates and then never answers is then a timed-out attempt, not a
    /// connection. Off by default so a connect costs no extra round trip; the CLI
    /// and `pgsteady serve` turn it on (`PoolConfig::ready_check` for a pool). Default: false.
    #[must_use]
    pub fn with_ready_check(mut self, on: bool) -> Self {
        self.ready_check = on;
        self
    }

    /// Asks the server to cancel what the session of `token` is running (PostgreSQL's
    /// CancelRequest on a new connection to `host`, bounded by the attempt timeout). For a
    /// caller giving up on a long statement, e.g. on SIGINT: dropping the client alone leaves
    /// the statement running until the server next writes to the socket.
    ///
    /// Take the token with [`Client::cancel_token`] before handing the client to the work
    /// that may need cancelling.
    pub async fn cancel(
        &self,
        token: &tokio_postgres::CancelToken,
        host: &HostSpec,
    ) -> Result<(), Error> {
        let send = async {
            let socket = match &host.host {
                Host::Unix(dir) => stream::dial_unix(dir, host.port).await?,
                Host::Tcp(_) => {
                    let addr = *stream::resolve(host).await?.first().ok_or_else(|| {
                        Error::new(
                            ErrorKind::Connect,
                            "no address to send the cancel request to",
                        )
                    })?;
                    stream::dial_tcp(addr, &self.config).await?
                }
            };
            token
                .cancel_query_raw(socket, tokio_postgres::NoTls)
                .await
                .map_err(|e| Error::from_pg(e, "cancel request failed"))
        };
        match tokio::time::timeout(self.attempt_timeout, send).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(ErrorKind::Timeout, "cancel request timed out")
                .with_reason(Reason::TimedOut)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the back-off between attempts; its `max_elapsed` is the total deadline.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the timeout of one host's whole handshake (TCP, TLS, startup, authentication,
    /// session check).
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Retries a fail-fast class too (e.g. [`FailFastClass::MissingDb`] while an init script
    /// creates the database).
    #[must_use]
    pub fn with_retry_on(mut self, class: FailFastClass) -> Self {
        if !self.retry_on.contains(&class) {
            self.retry_on.push(class);
        }
        self
    }

    /// Calls `observer` after every attempt.
    #[must_use]
    pub fn with_observer(
        mut self,
        observer: impl Fn(&ConnectEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Replaces the sleeper used between attempts (tests).
    #[must_use]
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The per-host timeout.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The verdict on a connect error, after applying the opt-in classes.
    pub fn classify(&self, err: &Error) -> Classification {
        let mut c = classify::connect(err);
        if c.action == Action::FailFast
            && c.reason
                .opt_in_class()
                .is_some_and(|class| self.retry_on.contains(&class))
        {
            c.action = Action::Retry;
        }
        c
    }

    /// Connects, retrying transient failures under the back-off policy and its deadline.
    pub async fn connect(&self) -> Result<Connected, Error> {
        let start = Instant::now();
        let hosts = self.config.hosts.len().max(1) as u32;
        let pass_timeout = self.attempt_timeout.saturating_mul(hosts);
        // The last failure worth reporting, and the budget of the last attempt: an attempt
        // the deadline cut short that then timed out says only that time ran out ("timed out
        // after 0.0s"), so it does not replace what an earlier attempt learned (only a
        // standby answered, starting up, refused).
        let informative: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
        let last_budget = std::sync::Mutex::new(pass_timeout);
        let record = |slot: &std::sync::Mutex<Option<Error>>, err: &Error| {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(err.clone());
            }
        };
        let result = (|attempt: Attempt| {
            if let Ok(mut budget) = last_budget.lock() {
                *budget = attempt.timeout;
            }
            // The pass's deadline is taken here, before the retry starts this attempt's own
            // timer, so the pass always ends first: when the retry's timer ended the attempt,
            // what the pass learned (and the hosts it tried) would be lost.
            self.connect_until(deadline_within(attempt.timeout))
        })
        .retry(&self.backoff)
        .sleep(&*self.sleeper)
        .attempt_timeout(pass_timeout)
        .when(|err: &Error| match self.classify(err).action {
            Action::Retry => Decision::Retry,
            Action::FailFast => Decision::Stop,
        })
        .notify(|attempt, err, delay| {
            if let Some(err) = err
                && !cut_short(attempt.timeout, pass_timeout, Some(err))
            {
                record(&informative, err);
            }
            if let (Some(observer), Some(err)) = (&self.observer, err) {
                observer(&ConnectEvent {
                    attempt: attempt.number,
                    elapsed: start.elapsed(),
                    outcome: AttemptOutcome::Failed {
                        error: err,
                        class: self.classify(err),
                        next_delay: Some(delay),
                    },
                });
            }
        })
        .run()
        .await;
        match result {
            Ok(connected) => {
                if let Some(observer) = &self.observer {
                    observer(&ConnectEvent {
                        attempt: 0,
                        elapsed: start.elapsed(),
                        outcome: AttemptOutcome::Connected {
                            host: &connected.host,
                        },
                    });
                }
                Ok(connected)
            }
            Err(mut e) => {
                let budget = last_budget.lock().map_or(pass_timeout, |b| *b);
                if !e.stopped
                    && cut_short(budget, pass_timeout, e.last.as_ref())
                    && let Some(earlier) = informative.lock().ok().and_then(|mut i| i.take())
                {
                    e.last = Some(earlier);
                }
                let err = self.give_up(e);
                if let Some(observer) = &self.observer {
                    observer(&ConnectEvent {
                        attempt: err.attempts(),
                        elapsed: start.elapsed(),
                        outcome: AttemptOutcome::Failed {
                            error: &err,
                            class: self.classify(&err),
                            next_delay: None,
                        },
                    });
                }
                Err(err)
            }
        }
    }

    fn give_up(&self, e: crate::backoff::RetryError<Error>) -> Error {
        match e.last {
            Some(last) if e.stopped => last.with_attempts(e.attempts, e.elapsed),
            Some(last) => {
                let reason = last.reason().unwrap_or(Reason::Other);
                Error::new(ErrorKind::Timeout, "gave up connecting")
                    .with_reason(reason)
                    .with_hosts(last.hosts().to_vec())
                    .with_source(last)
                    .with_attempts(e.attempts, e.elapsed)
            }
            None => Error::new(
                ErrorKind::Timeout,
                "gave up connecting: the last attempt timed out",
            )
            .with_reason(Reason::TimedOut)
            .with_attempts(e.attempts, e.elapsed),
        }
    }

    /// One pass over the host list with no retry, each host bounded by the per-host timeout.
    pub async fn connect_once(&self) -> Result<Connected, Error> {
        let hosts = self.config.hosts.len().max(1) as u32;
        self.connect_within(self.attempt_timeout.saturating_mul(hosts))
            .await
    }

    /// One pass over the host list with no retry that ends within `budget` (each host still
    /// bounded by the per-host timeout). Building block for callers with their own retry loop.
    ///
    /// The deadline is taken when this is called, not when the future is first polled, so a
    /// caller's own timer started after the call always ends after the pass.
    pub fn connect_within(
        &self,
        budget: Duration,
    ) -> impl Future<Output = Result<Connected, Error>> + Send + '_ {
        self.connect_until(deadline_within(budget))
    }

    async fn connect_until(&self, deadline: Instant) -> Result<Connected, Error> {
        let want = self.config.target_session_attrs;
        let first = if want == TargetSessionAttrs::PreferStandby {
            TargetSessionAttrs::Standby
        } else {
            want
        };
        match self.pass(first, deadline).await {
            Err(e)
                if want == TargetSessionAttrs::PreferStandby
                    && e.hosts()
                        .iter()
                        .any(|h| h.reason == Reason::WrongSessionType) =>
            {
                // libpq: no standby found, so try again accepting any server.
                self.pass(TargetSessionAttrs::Any, deadline).await
            }
            other => other,
        }
    }

    async fn pass(&self, want: TargetSessionAttrs, deadline: Instant) -> Result<Connected, Error> {
        let mut hosts: Vec<&HostSpec> = self.config.hosts.iter().collect();
        if self.config.load_balance_hosts {
            use rand::seq::SliceRandom;
            hosts.shuffle(&mut rand::rng());
        }
        let mut failures = Vec::new();
        let mut errors = Vec::new();
        let mut cut = Vec::new();
        for host in hosts {
            let now = Instant::now();
            let until = now
                .checked_add(self.attempt_timeout)
                .map_or(deadline, |t| t.min(deadline));
            let timeout = until.saturating_duration_since(now);
            match self.connect_host(host, want, timeout, until).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    cut.push(cut_short(timeout, self.attempt_timeout, Some(&e)));
                    failures.push(HostFailure {
                        host: host.to_string(),
                        reason: e.reason().unwrap_or(Reason::Other),
                        message: format!("{e:#}"),
                    });
                    errors.push(e);
                }
            }
        }
        Err(combine(failures, errors, &cut))
    }

    async fn connect_host(
        &self,
        host: &HostSpec,
        want: TargetSessionAttrs,
        timeout: Duration,
        until: Instant,
    ) -> Result<Connected, Error> {
        let phase = AtomicU8::new(Phase::Resolve as u8);
        // At an instant, not after a duration: a timer started a little later (a loaded
        // machine's scheduling) would end after the pass's deadline.
        match tokio::time::timeout_at(until, self.handshake(host, want, &phase)).await {
            Ok(result) => result,
            Err(_) => {
                let phase = Phase::from(phase.load(Ordering::Relaxed));
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "timed out after {:.1}s during {}",
                        timeout.as_secs_f64(),
                        phase.as_str()
                    ),
                )
                .with_reason(Reason::TimedOut))
            }
        }
    }

    async fn handshake(
        &self,
        host: &HostSpec,
        want: TargetSessionAttrs,
        phase: &AtomicU8,
    ) -> Result<Connected, Error> {
        if self.tls.mode == SslMode::Allow {
            // libpq: plain text first; TLS if the server rejects that session.
            match self.handshake_once(host, want, phase, false).await {
                Err(e)
                    if matches!(&host.host, Host::Tcp(_))
                        && e.code().is_some()
                        && classify::connect(&e).action == Action::FailFast =>
                {
                    self.handshake_once(host, want, phase, true).await
                }
                other => other,
            }
        } else {
            self.handshake_once(host, want, phase, true).await
        }
    }

    async fn handshake_once(
        &self,
        host: &HostSpec,
        want: TargetSessionAttrs,
        phase: &AtomicU8,
        try_tls: bool,
    ) -> Result<Connected, Error> {
        let set = |p: Phase| phase.store(p as u8, Ordering::Relaxed);
        set(Phase::Resolve);
        let (socket, server_name) = match &host.host {
            Host::Unix(dir) => {
                set(Phase::Connect);
                (stream::dial_unix(dir, host.port).await?, None)
            }
            Host::Tcp(name) => {
                let addrs = stream::resolve(host).await?;
                set(Phase::Connect);
                let mut last = None;
                let mut socket = None;
                // libpq tries every address of a name in turn (e.g. ::1 then 127.0.0.1).
                for addr in addrs {
                    match stream::dial_tcp(addr, &self.config).await {
                        Ok(s) => {
                            socket = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                match (socket, last) {
                    (Some(s), _) => (s, Some(name.as_str())),
                    (None, Some(e)) => return Err(e),
                    (None, None) => unreachable!("resolve returns at least one address"),
                }
            }
        };
        set(Phase::Tls);
        let stream = match server_name {
            Some(name) => stream::negotiate(socket, &self.tls, name, try_tls).await?,
            // libpq never uses TLS on a Unix socket.
            None => stream::negotiate(socket, &self.tls, "", false).await?,
        };
        let tls = matches!(stream, stream::Stream::Tls(_));
        // channel_binding=disable sends no hash, so tokio-postgres never binds.
        let hash = match self.config.channel_binding {
            ChannelBinding::Disable => None,
            _ => stream.end_point_hash(),
        };
        set(Phase::Startup);
        let seen = Arc::new(frame::Seen::default());
        let policy = auth::AuthPolicy {
            require_auth: self.config.require_auth,
            channel_binding: self.config.channel_binding,
            tls,
            can_bind: hash.is_some(),
        };
        let stream =
            frame::Guarded::new(stream, self.max_message_len, seen.clone()).with_auth(policy);
        let stream = bind::Bound::new(stream, hash);
        let mut pg = self.pg_config(host);
        pg.ssl_mode(stream.ssl_mode());
        let (client, connection) = match pg.connect_raw(stream, bind::AlreadyEncrypted).await {
            Ok(pair) => pair,
            Err(e) => {
                // The guard refused what the server asked for: that refusal is the answer,
                // whatever tokio-postgres made of the closed stream.
                if let Some(refusal) =
                    guard_verdict(&e).filter(|g| g.reason() == Some(Reason::AuthRequirement))
                {
                    return Err(refusal.clone());
                }
                // Protocol state, not message text: the server asked for a password and
                // there was none to send.
                if seen.password_requested.load(Ordering::Relaxed)
                    && self.config.password_for(host).is_none()
                {
                    return Err(self.no_password(host).with_source(e));
                }
                if seen.scram_failed()
                    && e.code().is_none()
                    && let Some(detail) = cause_text(&e)
                {
                    // As libpq: a SCRAM exchange that does not verify (a bad nonce or
                    // server signature, `e=invalid-proof`, a malformed or over-iterated
                    // server-first message) fails the connection; asking again would send a
                    // fresh proof to a server that cannot check it.
                    return Err(Error::new(
                        ErrorKind::Auth,
                        format!(
                            "scram authentication failed: {detail}: the server does not know \
                             the password, or is not the server it claims to be; not retried"
                        ),
                    )
                    .with_reason(Reason::Other)
                    .with_source(e));
                }
                if let Some(detail) = malformed(&e) {
                    return Err(Error::new(
                        ErrorKind::Connect,
                        format!(
                            "protocol violation: the server sent a malformed message \
                             ({detail}): it is not a PostgreSQL server, or a broken one"
                        ),
                    )
                    .with_reason(Reason::Other)
                    .with_source(e));
                }
                return Err(Error::from_pg(e, "startup failed"));
            }
        };
        let monitor = ConnectionMonitor::spawn(connection);
        set(Phase::SessionCheck);
        if let Err(e) =
            check_session(&client, want, monitor.session_state(), self.ready_check).await
        {
            // The client only sees "connection closed"; the connection task saw why (e.g. a
            // protocol violation: a ParameterStatus flood): that reason speaks. Any other
            // error (a server's, with its SQLSTATE) speaks for itself.
            if !e.is_closed() || e.code().is_some() {
                return Err(e);
            }
            let closed = tokio::time::timeout(Duration::from_millis(200), monitor.closed()).await;
            if let Ok(c) = closed
                && let (Some(cause), Some(reason)) = (c.error(), c.reason())
            {
                return Err(Error::new(
                    ErrorKind::Connect,
                    format!(
                        "session check failed: the connection closed: {}",
                        crate::text::sanitize_to(&error_chain(cause), 4096)
                    ),
                )
                .with_reason(reason));
            }
            return Err(e);
        }
        Ok(Connected {
            client,
            monitor,
            host: host.clone(),
            tls,
        })
    }

    /// "password required, none found", with where pgsteady looked.
    fn no_password(&self, host: &HostSpec) -> Error {
        let c = &self.config;
        let passfile = match (&c.passfile, &c.passfile_note) {
            (Some(f), _) => format!(
                "the password file \"{}\" has no line matching {}",
                f.path().display(),
                passfile_key(host, c)
            ),
            (None, Some(note)) => note.clone(),
            (None, None) => "no password file was looked for".to_owned(),
        };
        Error::new(
            ErrorKind::Auth,
            format!(
                "password required, none found: the server asked for a password for user `{}`; \
                 looked in the connection string (none), PGPASSWORD (unset or empty) and the \
                 password file: {passfile}",
                crate::text::sanitize_to(&c.user, 64)
            ),
        )
        .with_reason(Reason::InvalidPassword)
    }

    fn pg_config(&self, host: &HostSpec) -> tokio_postgres::Config {
        let c = &self.config;
        let mut pg = tokio_postgres::Config::new();
        pg.user(&c.user)
            .dbname(&c.dbname)
            .ssl_mode(tokio_postgres::config::SslMode::Disable)
            .channel_binding(match c.channel_binding {
                ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
                ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
                ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
            });
        if let Some(p) = c.password_for(host) {
            pg.password(p);
        }
        if let Some(o) = &c.options {
            pg.options(o);
        }
        if let Some(a) = &c.application_name {
            pg.application_name(a);
        }
        pg
    }
}

/// A message postgres-protocol could not parse: its parser fails with an `InvalidInput` I/O
/// error, which is how it is told from a socket error (a reset, our own framing guard's
/// `InvalidData`). The text is the parser's, shown, never matched.
/// Whether an attempt run under `budget` (less than the `full` one: the deadline clamped it)
/// ended in a timeout (`None`: the retry loop's own), which says only that time ran out.
/// The deadline of a pass that must end within `budget` from now: a millisecond short, so a
/// host timeout (which names the host and the phase) fires before the caller's own timeout.
/// A budget too large for an Instant (`--timeout 18446744073709551615s`) is a day: each host
/// is still bounded by its own attempt timeout.
fn deadline_within(budget: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(budget.saturating_sub(Duration::from_millis(1)))
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

fn cut_short(budget: Duration, full: Duration, err: Option<&Error>) -> bool {
    budget < full && err.is_none_or(|e| e.reason() == Some(Reason::TimedOut))
}

fn malformed(e: &tokio_postgres::Error) -> Option<String> {
    if e.code().is_some() || e.is_closed() {
        return None;
    }
    let io = std::error::Error::source(e)?.downcast_ref::<std::io::Error>()?;
    (io.kind() == std::io::ErrorKind::InvalidInput)
        .then(|| crate::text::sanitize_to(&io.to_string(), 256).into_owned())
}

/// The framing guard's own error inside a tokio-postgres error (it travels as the source of
/// an `InvalidData` I/O error).
fn guard_verdict(e: &tokio_postgres::Error) -> Option<&Error> {
    std::error::Error::source(e)?
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<Error>()
}

/// The text of a tokio-postgres error's cause (what postgres-protocol's SCRAM check said),
/// escaped and capped, for the message only. `None` when the cause is our own guard's
/// verdict, which then speaks for itself, or the socket's.
fn cause_text(e: &tokio_postgres::Error) -> Option<String> {
    use std::io::ErrorKind as K;
    if e.is_closed() {
        return None;
    }
    let cause = std::error::Error::source(e)?;
    if let Some(io) = cause.downcast_ref::<std::io::Error>()
        && (io.get_ref().is_some_and(|i| i.is::<Error>())
            // A write that failed (the server went away mid-exchange): transient.
            || matches!(
                io.kind(),
                K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted | K::NotConnected
                    | K::TimedOut
            ))
    {
        return None;
    }
    Some(crate::text::sanitize_to(&cause.to_string(), 256).into_owned())
}

/// An error and its sources, `: `-separated (tokio-postgres' text leaves its cause out).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// `host:port:dbname:user` as a password file line would match it.
fn passfile_key(host: &HostSpec, c: &Config) -> String {
    let name = match &host.host {
        Host::Tcp(h) => h.clone(),
        Host::Unix(_) => "localhost".to_owned(),
    };
    crate::text::sanitize_to(
        &format!("{name}:{}:{}:{}", host.port, c.dbname, c.user),
        256,
    )
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config = Config::parse("postgresql://u:S3cret-pw@h/db").unwrap();
        let connector = Connector::new(config).unwrap();
        let shown = format!("{connector:?}");
        assert!(!shown.contains("S3cret-pw"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}
