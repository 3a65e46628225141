//! A TCP proxy in front of a server that fails on command.
//!
//! Hand-written rather than taken from a crate: the proxies on crates.io forward bytes, but
//! none can swallow one direction only (the lost-COMMIT case) or hold sockets open while
//! forwarding nothing, which is exactly what the tests need.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// What the proxy does with traffic. Change it at any time with [`FaultProxy::set_mode`];
/// open connections follow the new mode from their next chunk of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyMode {
    /// Forward everything both ways.
    Pass,
    /// Stop listening: new connections are refused (ECONNREFUSED); open ones keep working.
    Refuse,
    /// Forward everything, each chunk delayed by this much in each direction.
    Delay(Duration),
    /// Keep every socket open and forward nothing: a silent network partition. New
    /// connections are accepted and then hear nothing either.
    Blackhole,
    /// Forward client to server, swallow server to client: the server executes what it
    /// gets (a COMMIT included) but the client never hears back.
    DropReplies,
}

/// The proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted since the proxy started.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes forwarded from clients to the server.
    pub bytes_up: u64,
    /// Bytes forwarded from the server to clients.
    pub bytes_down: u64,
    /// Bytes read and thrown away (blackhole, drop_replies).
    pub bytes_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    /// A mode to switch to when a client sends a given message (bytes of the message).
    trigger: Mutex<Option<(Vec<u8>, ProxyMode)>>,
    accepted: AtomicU64,
    open: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    bytes_dropped: AtomicU64,
    accept_times: Mutex<Vec<Instant>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(cluster: &pgsteady_testkit::Cluster) -> pgsteady_testkit::Result<()> {
/// use pgsteady_testkit::{FaultProxy, ProxyMode};
///
/// let proxy = FaultProxy::start(cluster.addr()).await?;
/// let url = cluster.url_with_port(proxy.port());
/// // ... connect through `url`, then:
/// proxy.set_mode(ProxyMode::Blackhole);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<ProxyMode>>,
    resets: watch::Sender<u64>,
    counters: Arc<Counters>,
    accept_task: tokio::task::JoinHandle<()>,
    /// The proxy's own runtime, for [`FaultProxy::start_on_own_thread`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `upstream`, in
    /// [`ProxyMode::Pass`].
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(ProxyMode::Pass);
        let mode = Arc::new(mode);
        let (resets, resets_rx) = watch::channel(0);
        let counters = Arc::new(Counters::default());
        let accept_task = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            (mode.clone(), mode_rx),
            resets_rx,
            counters.clone(),
        ));
        Ok(FaultProxy {
            addr,
            mode,
            resets,
            counters,
            accept_task,
            runtime: None,
        })
    }

    /// Like [`FaultProxy::start`], but the proxy runs on a thread of its own (a one-worker
    /// runtime) instead of the caller's runtime. Its [`accept_times`](Self::accept_times)
    /// are then stamped as the kernel queues each connection, even while the caller's runtime
    /// is busy with hundreds of clients (or is a single-threaded test runtime), which would
    /// otherwise run the accept loop late and stamp attempts in batches.
    pub async fn start_on_own_thread(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let mut proxy = runtime
            .spawn(FaultProxy::start(upstream))
            .await
            .map_err(io::Error::other)??;
        proxy.runtime = Some(runtime);
        Ok(proxy)
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// Switches mode.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Switches to `mode` at the moment a client sends the simple query `sql` (e.g.
    /// `"COMMIT"`), before that message is forwarded: with [`ProxyMode::DropReplies`] the
    /// server executes it and the client never hears back; with [`ProxyMode::Blackhole`] it
    /// never reaches the server. Fires once. Matches a whole simple-protocol Query message
    /// within one read from the client, which is how clients send short queries.
    pub fn set_mode_on_query(&self, sql: &str, mode: ProxyMode) {
        let len = i32::try_from(4 + sql.len() + 1).expect("a short query");
        let mut message = vec![b'Q'];
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(sql.as_bytes());
        message.push(0);
        *self.counters.trigger.lock().expect("trigger") = Some((message, mode));
    }

    /// Resets every open connection: both of its sockets are closed with an RST (SO_LINGER 0),
    /// so the client sees ECONNRESET. The mode is unchanged; new connections are served.
    pub fn reset_all(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            bytes_dropped: c.bytes_dropped.load(Ordering::Relaxed),
        }
    }

    /// When each connection was accepted, oldest first: the connection attempt rate a
    /// server behind the proxy would see.
    pub fn accept_times(&self) -> Vec<Instant> {
        self.counters
            .accept_times
            .lock()
            .expect("accept times")
            .clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it closes them all.
        self.accept_task.abort();
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which is not allowed inside another runtime.
            runtime.shutdown_background();
        }
    }
}

type ModeChannel = (Arc<watch::Sender<ProxyMode>>, watch::Receiver<ProxyMode>);

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    (mode_tx, mut mode): ModeChannel,
    resets: watch::Receiver<u64>,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    let mut listener = Some(listener);
    loop {
        let current = *mode.borrow_and_update();
        match (current, listener.is_some()) {
            (ProxyMode::Refuse, true) => listener = None,
            (ProxyMode::Refuse, false) => {}
            (_, false) => match rebind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    // The port is briefly unavailable; try again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            (_, true) => {}
        }
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            accepted = accept(listener.as_ref()) => {
                if let Ok((client, _)) = accepted {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    counters.accept_times.lock().expect("accept times").push(Instant::now());
                    connections.spawn(serve(
                        client,
                        upstream,
                        (mode_tx.clone(), mode.clone()),
                        resets.clone(),
                        counters.clone(),
                    ));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Decrements the open-connection counter however the connection task ends.
struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    (mode_tx, mode): ModeChannel,
    mut resets: watch::Receiver<u64>,
    counters: Arc<Counters>,
) {
    counters.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(counters.clone());
    resets.borrow_and_update();
    let _ = client.set_nodelay(true);
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(_) if *mode.borrow() == ProxyMode::Blackhole => {
            // Nothing to forward to, and nothing would be forwarded anyway: hold the client.
            let sock = SockRef::from(&client).try_clone();
            let (mut read, _write) = client.into_split();
            let mut sink = [0u8; 8192];
            tokio::select! {
                _ = async { while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
                _ = resets.changed() => {
                    if let Ok(sock) = sock {
                        let _ = sock.set_linger(Some(Duration::ZERO));
                    }
                }
            }
            return;
        }
        Err(_) => {
            // Upstream is down: a client of a proxy sees the proxy reset the connection.
            let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let (mut client, mut server) = (client, server);
    // Borrowed halves: tokio's owned write half sends a FIN when dropped, which would turn
    // the RST below into an orderly close.
    let reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(
            client_read,
            server_write,
            Direction::Up,
            (mode_tx.clone(), mode.clone()),
            counters.clone(),
        );
        let down = pump(
            server_read,
            client_write,
            Direction::Down,
            (mode_tx, mode),
            counters,
        );
        tokio::select! {
            _ = up => false,
            _ = down => false,
            _ = resets.changed() => true,
        }
    };
    if reset {
        // Closing with SO_LINGER 0 sends an RST instead of a FIN.
        let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
        let _ = SockRef::from(&server).set_linger(Some(Duration::ZERO));
    }
}

/// Forwards one direction until either side closes. Data is read as soon as it arrives and
/// written after the mode's delay, so a delay adds latency without limiting throughput.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    direction: Direction,
    (mode_tx, mode): ModeChannel,
    counters: Arc<Counters>,
) {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader_mode = mode.clone();
    let reader_counters = counters.clone();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if direction == Direction::Up {
                        fire_trigger(&buf[..n], &reader_counters, &mode_tx);
                    }
                    let delay = match *reader_mode.borrow() {
                        ProxyMode::Delay(d) => d,
                        _ => Duration::ZERO,
                    };
                    if queue
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due.into()).await;
            let forward = match *mode.borrow() {
                ProxyMode::Blackhole => false,
                ProxyMode::DropReplies => direction == Direction::Up,
                _ => true,
            };
            if !forward {
                counters
                    .bytes_dropped
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                continue;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            let counter = match direction {
                Direction::Up => &counters.bytes_up,
                Direction::Down => &counters.bytes_down,
            };
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    };
    // The reader ending (EOF) closes the queue; the writer drains it and then ends too.
    tokio::join!(reader, writer);
}

/// Switches mode if `chunk` holds the armed message.
fn fire_trigger(chunk: &[u8], counters: &Counters, mode: &watch::Sender<ProxyMode>) {
    let mut trigger = counters.trigger.lock().expect("trigger");
    let hit = trigger
        .as_ref()
        .is_some_and(|(message, _)| chunk.windows(message.len()).any(|w| w == message));
    if hit && let Some((_, new_mode)) = trigger.take() {
        mode.send_replace(new_mode);
    }
}
