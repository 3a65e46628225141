//! Fake servers on loopback that misbehave in ways a real PostgreSQL cannot be made to: they
//! speak just enough of the protocol to get a client to where the misbehaviour matters.
//!
//! Each [`FakeServer`] listens on a free `127.0.0.1` port, serves every connection with one
//! [`Behavior`], counts connections, and stops (its task aborted, its sockets closed) when
//! dropped, so nothing outlives a test even when it panics.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use pgsteady_testkit::fake::{Behavior, FakeServer};
//! let server = FakeServer::start(Behavior::Hang).await?;
//! let url = server.url("app", "db");
//! // a client now authenticates, and then no query is ever answered
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a [`FakeServer`] does with each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// Authenticates (trust), then never answers anything: a server whose backends hang
    /// after startup.
    Hang,
    /// Accepts and reads, and never writes a byte: a server (or a middlebox) that takes the
    /// connection and then says nothing, not even to the startup packet.
    Silent,
    /// Authenticates; answers an empty query normally, and every other query with one row
    /// description and then `DataRow`s forever.
    EndlessRows,
    /// Authenticates, then announces a message of this many bytes (type `D`, a data row,
    /// when answering a query; type `E` right after startup when `at_startup`) and sends
    /// nothing more.
    HugeLength {
        /// The announced length (the 4-byte length field, which counts itself).
        length: u32,
        /// Announce it in place of the startup reply instead of in answer to a query.
        at_startup: bool,
    },
    /// Answers the startup packet with an ErrorResponse (severity FATAL) and closes.
    StartupError {
        /// The SQLSTATE.
        code: String,
        /// The message, sent as given (control characters included).
        message: String,
    },
    /// Asks for a cleartext password; answers a password with 28P01.
    PasswordRequest,
    /// Speaks HTTP: whatever arrives, answers `400 Bad Request` and closes.
    Http,
    /// Authenticates (trust); answers an empty query normally, and each other query with
    /// the first [`Table`] whose `when` its text contains (none: an empty result). For a
    /// server that answers a tool's catalog queries with other columns, types or sizes.
    Tables(Vec<Table>),
    /// Authenticates; answers an empty query normally, and every other query with one text
    /// column per value and `rows` data rows holding `values` (as given: not UTF-8, fewer
    /// columns than asked for, megabytes...), then CommandComplete and ReadyForQuery.
    Rows {
        /// One row's values (`None`: NULL).
        values: Vec<Option<Vec<u8>>>,
        /// How many times the row is sent.
        rows: usize,
    },
    /// Answers the first packet (TLS request or startup) as the postmaster does when it cannot
    /// fork a backend: `E`, the text, a newline (the pre-3.0 form), and closes.
    ForkFailure,
    /// Connection N is served with the Nth behavior, every later one with the last (e.g. one
    /// answer, then a hang).
    Sequence(Vec<Behavior>),
    /// Asks for SCRAM-SHA-256 and breaks the exchange the given way (it never accepts).
    Scram(ScramFault),
    /// Sends messages of one kind without end, during start-up (after AuthenticationOk, no
    /// ReadyForQuery ever) or after it (after ReadyForQuery, never answering a query).
    Flood {
        /// What is sent.
        message: Flood,
        /// Before ReadyForQuery.
        at_startup: bool,
    },
}

/// How a [`Behavior::Scram`] server breaks the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScramFault {
    /// A server signature that does not verify (an impostor that does not know the password).
    BadSignature,
    /// A server nonce that does not start with the client's.
    BadNonce,
    /// `e=invalid-proof` in the server-final message.
    InvalidProof,
    /// A server-first message that does not parse.
    MalformedFirst,
    /// An iteration count of 0 (libpq refuses it).
    ZeroIterations,
    /// An iteration count over what postgres-protocol computes.
    TooManyIterations,
}

/// What a [`Behavior::Flood`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flood {
    /// NoticeResponses of about 1 KB each.
    Notices,
    /// ParameterStatus messages, each with a new parameter name.
    Parameters,
}

/// One canned answer of [`Behavior::Tables`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Answers a query whose text contains this.
    pub when: String,
    /// The column names (text columns).
    pub columns: Vec<String>,
    /// One row's values (`None`: NULL), sent as given: as many or as few as wanted.
    pub row: Vec<Option<String>>,
    /// How many times the row is sent.
    pub rows: usize,
}

impl Table {
    /// One row answering queries that contain `when`, with `(column, value)` pairs.
    pub fn one(when: &str, pairs: &[(&str, &str)]) -> Self {
        Table {
            when: when.to_owned(),
            columns: pairs.iter().map(|(c, _)| (*c).to_owned()).collect(),
            row: pairs.iter().map(|(_, v)| Some((*v).to_owned())).collect(),
            rows: 1,
        }
    }
}

/// A fake server; stops when dropped.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    passwords: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Listens on a free loopback port and serves every connection with `behavior`.
    pub async fn start(behavior: Behavior) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let passwords = Arc::new(AtomicUsize::new(0));
        let password_count = passwords.clone();
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::Relaxed);
                let behavior = match &behavior {
                    Behavior::Sequence(list) => match list.get(n).or(list.last()) {
                        Some(b) => b.clone(),
                        None => continue,
                    },
                    other => other.clone(),
                };
                let passwords = password_count.clone();
                tasks.spawn(async move {
                    let _ = serve(stream, behavior, &passwords).await;
                });
                while tasks.try_join_next().is_some() {}
            }
        });
        Ok(FakeServer {
            addr,
            connections,
            passwords,
            task,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `postgresql://user@127.0.0.1:port/db?sslmode=disable`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!(
            "postgresql://{user}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port()
        )
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Password messages received so far by a [`Behavior::PasswordRequest`] server: a client
    /// that refuses the cleartext request must leave this at 0.
    pub fn passwords(&self) -> usize {
        self.passwords.load(Ordering::Relaxed)
    }
}

const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 5);
    m.push(kind);
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn error_response(code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', text)] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(b'E', &body)
}

fn authenticated() -> Vec<u8> {
    let mut out = message(b'R', &0u32.to_be_bytes());
    out.extend(message(b'S', b"server_version\x0015.0\x00"));
    out.extend(message(b'S', b"client_encoding\x00UTF8\x00"));
    out.extend(message(b'K', &[0, 0, 0, 42, 0, 0, 0, 7]));
    out.extend(message(b'Z', b"I"));
    out
}

/// Reads the startup packet (answering SSL and GSS requests with `N`). `None`: a cancel
/// request or a closed connection.
async fn startup(stream: &mut TcpStream) -> std::io::Result<Option<()>> {
    loop {
        let len = stream.read_u32().await? as usize;
        let code = stream.read_u32().await?;
        let mut rest = vec![0u8; len.saturating_sub(8).min(1 << 20)];
        stream.read_exact(&mut rest).await?;
        match code {
            SSL_REQUEST | GSS_REQUEST => stream.write_all(b"N").await?,
            CANCEL_REQUEST => return Ok(None),
            _ => return Ok(Some(())),
        }
    }
}

/// Reads one frontend message: (type, body).
async fn read_message(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let kind = stream.read_u8().await?;
    let len = stream.read_u32().await? as usize;
    let mut body = vec![0u8; len.saturating_sub(4).min(1 << 20)];
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// A RowDescription of text columns and `t.rows` DataRows, written in batches.
async fn answer_table(stream: &mut TcpStream, t: &Table) -> std::io::Result<()> {
    let mut desc = (t.columns.len() as u16).to_be_bytes().to_vec();
    for name in &t.columns {
        desc.extend_from_slice(name.as_bytes());
        desc.push(0);
        desc.extend_from_slice(&[0; 6]);
        desc.extend_from_slice(&25u32.to_be_bytes());
        desc.extend_from_slice(&(-1i16).to_be_bytes());
        desc.extend_from_slice(&(-1i32).to_be_bytes());
        desc.extend_from_slice(&0u16.to_be_bytes());
    }
    stream.write_all(&message(b'T', &desc)).await?;
    let mut row = (t.row.len() as u16).to_be_bytes().to_vec();
    for value in &t.row {
        match value {
            Some(v) => {
                row.extend_from_slice(&(v.len() as u32).to_be_bytes());
                row.extend_from_slice(v.as_bytes());
            }
            None => row.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let row = message(b'D', &row);
    let per_batch = (64 * 1024 / row.len()).max(1);
    let mut left = t.rows;
    while left > 0 {
        let n = left.min(per_batch);
        let batch: Vec<u8> = row.iter().copied().cycle().take(row.len() * n).collect();
        stream.write_all(&batch).await?;
        left -= n;
    }
    Ok(())
}

async fn serve(
    mut stream: TcpStream,
    behavior: Behavior,
    passwords: &AtomicUsize,
) -> std::io::Result<()> {
    if behavior == Behavior::Http {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await?;
        stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    }
    if behavior == Behavior::Silent {
        // Read and never answer, until the client goes away.
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await? > 0 {}
        return Ok(());
    }
    if behavior == Behavior::ForkFailure {
        let len = stream.read_u32().await? as usize;
        let mut rest = vec![0u8; len.saturating_sub(4).min(1 << 20)];
        stream.read_exact(&mut rest).await?;
        stream
            .write_all(
                b"Ecould not fork new process for connection: Resource temporarily unavailable\n",
            )
            .await?;
        return stream.shutdown().await;
    }
    if startup(&mut stream).await?.is_none() {
        return Ok(());
    }
    match behavior {
        Behavior::Hang => {
            stream.write_all(&authenticated()).await?;
            // Read and never answer, until the client goes away.
            let mut buf = [0u8; 4096];
            while stream.read(&mut buf).await? > 0 {}
        }
        Behavior::EndlessRows => {
            stream.write_all(&authenticated()).await?;
            loop {
                let (kind, body) = read_message(&mut stream).await?;
                match kind {
                    b'X' => return Ok(()),
                    b'Q' if body.first() == Some(&0) => {
                        stream.write_all(&message(b'I', b"")).await?;
                        stream.write_all(&message(b'Z', b"I")).await?;
                    }
                    b'Q' => {
                        let mut desc = 1u16.to_be_bytes().to_vec();
                        desc.extend_from_slice(b"x\x00");
                        desc.extend_from_slice(&[0; 6]);
                        desc.extend_from_slice(&25u32.to_be_bytes());
                        desc.extend_from_slice(&(-1i16).to_be_bytes());
                        desc.extend_from_slice(&(-1i32).to_be_bytes());
                        desc.extend_from_slice(&0u16.to_be_bytes());
                        stream.write_all(&message(b'T', &desc)).await?;
                        let mut row = 1u16.to_be_bytes().to_vec();
                        row.extend_from_slice(&1000u32.to_be_bytes());
                        row.extend_from_slice(&[b'x'; 1000]);
                        let row = message(b'D', &row);
                        let batch: Vec<u8> =
                            row.iter().copied().cycle().take(row.len() * 64).collect();
                        loop {
                            stream.write_all(&batch).await?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Behavior::HugeLength { length, at_startup } => {
            if at_startup {
                let mut head = vec![b'E'];
                head.extend_from_slice(&length.to_be_bytes());
                stream.write_all(&head).await?;
            } else {
                stream.write_all(&authenticated()).await?;
                loop {
                    let (kind, body) = read_message(&mut stream).await?;
                    if kind == b'Q' && body.first() == Some(&0) {
                        stream.write_all(&message(b'I', b"")).await?;
                        stream.write_all(&message(b'Z', b"I")).await?;
                    } else if kind == b'Q' {
                        let mut head = vec![b'D'];
                        head.extend_from_slice(&length.to_be_bytes());
                        stream.write_all(&head).await?;
                        break;
                    } else if kind == b'X' {
                        return Ok(());
                    }
                }
            }
            let mut buf = [0u8; 4096];
            while stream.read(&mut buf).await? > 0 {}
        }
        Behavior::StartupError { code, message } => {
            stream.write_all(&error_response(&code, &message)).await?;
        }
        Behavior::PasswordRequest => {
            stream
                .write_all(&message(b'R', &3u32.to_be_bytes()))
                .await?;
            if let Ok((b'p', _)) = read_message(&mut stream).await {
                passwords.fetch_add(1, Ordering::Relaxed);
                stream
                    .write_all(&error_response("28P01", "password authentication failed"))
                    .await?;
            }
        }
        Behavior::Tables(tables) => {
            stream.write_all(&authenticated()).await?;
            loop {
                let (kind, body) = read_message(&mut stream).await?;
                match kind {
                    b'X' => return Ok(()),
                    b'Q' if body.first() == Some(&0) => {
                        stream.write_all(&message(b'I', b"")).await?;
                        stream.write_all(&message(b'Z', b"I")).await?;
                    }
                    b'Q' => {
                        let sql = String::from_utf8_lossy(&body);
                        if let Some(t) = tables.iter().find(|t| sql.contains(&t.when)) {
                            answer_table(&mut stream, t).await?;
                        }
                        stream.write_all(&message(b'C', b"SELECT\x00")).await?;
                        stream.write_all(&message(b'Z', b"I")).await?;
                    }
                    _ => {}
                }
            }
        }
        Behavior::Rows { values, rows } => {
            stream.write_all(&authenticated()).await?;
            loop {
                let (kind, body) = read_message(&mut stream).await?;
                match kind {
                    b'X' => return Ok(()),
                    b'Q' if body.first() == Some(&0) => {
                        stream.write_all(&message(b'I', b"")).await?;
                        stream.write_all(&message(b'Z', b"I")).await?;
                    }
                    b'Q' => {
                        let n = values.len() as u16;
                        let mut desc = n.to_be_bytes().to_vec();
                        for i in 0..n {
                            desc.extend_from_slice(format!("c{i}\0").as_bytes());
                            desc.extend_from_slice(&[0; 6]);
                            desc.extend_from_slice(&25u32.to_be_bytes());
                            desc.extend_from_slice(&(-1i16).to_be_bytes());
                            desc.extend_from_slice(&(-1i32).to_be_bytes());
                            desc.extend_from_slice(&0u16.to_be_bytes());
                        }
                        stream.write_all(&message(b'T', &desc)).await?;
                        let mut row = n.to_be_bytes().to_vec();
                        for v in &values {
                            match v {
                                Some(v) => {
                                    row.extend_from_slice(&(v.len() as u32).to_be_bytes());
                                    row.extend_from_slice(v);
                                }
                                None => row.extend_from_slice(&(-1i32).to_be_bytes()),
                            }
                        }
                        let row = message(b'D', &row);
                        for _ in 0..rows {
                            stream.write_all(&row).await?;
                        }
                        stream
                            .write_all(&message(b'C', format!("SELECT {rows}\0").as_bytes()))
                            .await?;
                        stream.write_all(&message(b'Z', b"I")).await?;
                    }
                    _ => {}
                }
            }
        }
        Behavior::Flood {
            message: what,
            at_startup,
        } => {
            if at_startup {
                stream
                    .write_all(&message(b'R', &0u32.to_be_bytes()))
                    .await?;
            } else {
                stream.write_all(&authenticated()).await?;
            }
            let mut i = 0u64;
            loop {
                let mut batch = Vec::new();
                for _ in 0..64 {
                    i += 1;
                    batch.extend(match what {
                        Flood::Notices => {
                            let mut body = Vec::new();
                            for (field, value) in [
                                (b'S', "NOTICE".to_owned()),
                                (b'V', "NOTICE".to_owned()),
                                (b'C', "00000".to_owned()),
                                (b'M', format!("notice {i} {}", "x".repeat(1000))),
                            ] {
                                body.push(field);
                                body.extend_from_slice(value.as_bytes());
                                body.push(0);
                            }
                            body.push(0);
                            message(b'N', &body)
                        }
                        Flood::Parameters => {
                            message(b'S', format!("p{i}\0{}\0", "x".repeat(1000)).as_bytes())
                        }
                    });
                }
                stream.write_all(&batch).await?;
            }
        }
        Behavior::Scram(fault) => {
            stream
                .write_all(&message(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0"))
                .await?;
            // SASLInitialResponse: mechanism, length, "n,,n=,r=NONCE".
            let (_, body) = read_message(&mut stream).await?;
            let text = String::from_utf8_lossy(&body).into_owned();
            let nonce = text
                .split_once("n=,r=")
                .map(|(_, n)| n.to_owned())
                .unwrap_or_default();
            let first = match fault {
                ScramFault::BadNonce => "r=someoneelse,s=c2FsdA==,i=4096".to_owned(),
                ScramFault::MalformedFirst => "this is not scram".to_owned(),
                ScramFault::ZeroIterations => format!("r={nonce}srv,s=c2FsdA==,i=0"),
                ScramFault::TooManyIterations => format!("r={nonce}srv,s=c2FsdA==,i=4294967295"),
                _ => format!("r={nonce}srv,s=c2FsdA==,i=4096"),
            };
            let mut cont = 11u32.to_be_bytes().to_vec();
            cont.extend_from_slice(first.as_bytes());
            stream.write_all(&message(b'R', &cont)).await?;
            if read_message(&mut stream).await?.0 == b'p' {
                let last: &[u8] = match fault {
                    ScramFault::InvalidProof => b"e=invalid-proof",
                    // 32 zero bytes: well-formed, wrong.
                    _ => b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                };
                let mut fin = 12u32.to_be_bytes().to_vec();
                fin.extend_from_slice(last);
                stream.write_all(&message(b'R', &fin)).await?;
                stream
                    .write_all(&message(b'R', &0u32.to_be_bytes()))
                    .await?;
                stream.write_all(&authenticated()[9..]).await?;
            }
            let mut buf = [0u8; 4096];
            while stream.read(&mut buf).await? > 0 {}
        }
        Behavior::Http | Behavior::ForkFailure | Behavior::Silent => {
            unreachable!("handled above")
        }
        // Resolved per connection in `start`; nested, it serves nothing.
        Behavior::Sequence(_) => {}
    }
    stream.shutdown().await
}
