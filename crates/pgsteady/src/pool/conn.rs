//! One pooled connection and the handle callers get.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement, ToStatement};

use crate::config::TargetSessionAttrs;
use crate::connect::{CloseReason, ConnectionMonitor};
use crate::{Error, Reason};

use super::gate::Spread;
use super::manager::Manager;

/// A connection as the pool keeps it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) monitor: ConnectionMonitor,
    /// Retire after this instant (`max_lifetime` minus a random part of it, so connections
    /// opened together do not expire together).
    pub(crate) expires: Option<Instant>,
    /// Statements prepared on this connection, by SQL text.
    statements: Mutex<HashMap<Box<str>, Statement>>,
    /// A statement on it failed because the connection is gone. Its task may not have seen
    /// the socket close yet: a worker that returns it and checks out again at once would get
    /// it back.
    lost: AtomicBool,
    /// The pool's spread of the first reconnection, told when a statement finds the
    /// connection gone (the caller may ask for a new one before the watcher has run).
    spread: Arc<Spread>,
    /// Shared by the pool's connections to the same server opened since it last proved to
    /// be what the configuration asks for: set when one of them learns that it no longer
    /// is (25006, or a reported `in_hot_standby` / read-only), after which none of them is
    /// handed out again. `None` when any server will do (`target_session_attrs` neither
    /// read-write nor primary).
    wrong_server: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("monitor", &self.monitor)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) fn new(
        client: Client,
        monitor: ConnectionMonitor,
        expires: Option<Instant>,
        spread: Arc<Spread>,
        wrong_server: Option<Arc<AtomicBool>>,
    ) -> Self {
        Conn {
            client,
            monitor,
            expires,
            statements: Mutex::new(HashMap::new()),
            lost: AtomicBool::new(false),
            spread,
            wrong_server,
        }
    }

    /// Whether this connection must not be handed out for `want`: its server was marked the
    /// wrong one, or the server reported (`in_hot_standby`, `default_transaction_read_only`)
    /// that it no longer is what `want` asks for, in which case the mark is set for every
    /// connection to it. Two atomic loads; only with a mark (read-write or primary).
    pub(crate) fn serves_wrong_server(&self, want: TargetSessionAttrs) -> bool {
        let Some(flag) = &self.wrong_server else {
            return false;
        };
        if flag.load(Ordering::Relaxed) {
            return true;
        }
        if self.monitor.session_state().satisfies(want) == Some(false) {
            flag.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Marks this connection's server as the wrong one: neither this connection nor any
    /// other to the same server opened before now is handed out again.
    pub(crate) fn mark_wrong_server(&self) {
        if let Some(flag) = &self.wrong_server {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Known dead: the connection task ended, the client saw it close, or a statement on it
    /// failed because the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.lost.load(Ordering::Relaxed) || self.monitor.is_closed() || self.client.is_closed()
    }

    /// Why the server or the network closed it, once it has.
    pub(crate) fn close_reason(&self) -> Option<Reason> {
        self.monitor
            .close_reason()
            .as_ref()
            .and_then(CloseReason::reason)
    }
}

/// A connection checked out of a [`crate::Pool`]. Derefs to a tokio-postgres
/// [`Client`]; returns to the pool when dropped.
///
/// Its statement methods (`query`, `query_one`, `query_opt`, `execute`, `prepare`,
/// `prepare_typed`, `simple_query`, `batch_execute`) have the [`Client`]'s signatures and
/// shadow them: when one fails because the connection is gone (closed, reset, 57P01, 57P02,
/// class 08...), the pool never hands this connection out again, even before its background
/// task has seen the socket close.
///
/// Prefer [`crate::Pool::run`] / [`crate::Pool::transaction`], which retry what is safe to
/// retry. With a plain checkout, an error from a query is yours to handle.
pub struct PooledConnection {
    pub(crate) obj: deadpool::managed::Object<Manager>,
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("closed", &self.obj.is_closed())
            .finish_non_exhaustive()
    }
}

impl PooledConnection {
    /// Prepares `sql` once per connection and reuses the statement afterwards.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady::Error> {
    /// let conn = pool.get().await?;
    /// let stmt = conn.prepare_cached("SELECT $1::int4 + 1").await?;
    /// let two: i32 = conn.query_one(&stmt, &[&1i32]).await?.get(0);
    /// # Ok(()) }
    /// ```
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, Error> {
        if let Some(stmt) = self.cached(sql) {
            return Ok(stmt);
        }
        let stmt = self.prepare(sql).await?;
        self.obj
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.into(), stmt.clone());
        Ok(stmt)
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.obj
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }

    /// Whether the connection is known to be closed: the server ended the session or the
    /// socket died. Such a connection is never handed out, but one can die while checked out.
    pub fn is_closed(&self) -> bool {
        self.obj.is_closed()
    }

    /// Why the server or the network closed the connection, if it has (e.g.
    /// [`Reason::AdminShutdown`] for 57P01).
    pub fn close_reason(&self) -> Option<Reason> {
        self.obj.close_reason()
    }

    /// [`Client::prepare`], noting a lost connection.
    pub async fn prepare(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        self.note(self.obj.client.prepare(query).await)
    }

    /// [`Client::prepare_typed`], noting a lost connection.
    pub async fn prepare_typed(
        &self,
        query: &str,
        parameter_types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        self.note(self.obj.client.prepare_typed(query, parameter_types).await)
    }

    /// [`Client::query`], noting a lost connection.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement,
    {
        self.note(self.obj.client.query(statement, params).await)
    }

    /// [`Client::query_one`], noting a lost connection.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement,
    {
        self.note(self.obj.client.query_one(statement, params).await)
    }

    /// [`Client::query_opt`], noting a lost connection.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement,
    {
        self.note(self.obj.client.query_opt(statement, params).await)
    }

    /// [`Client::execute`], noting a lost connection.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement,
    {
        self.note(self.obj.client.execute(statement, params).await)
    }

    /// [`Client::simple_query`], noting a lost connection.
    pub async fn simple_query(
        &self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        self.note(self.obj.client.simple_query(query).await)
    }

    /// [`Client::batch_execute`], noting a lost connection.
    pub async fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
        self.note(self.obj.client.batch_execute(query).await)
    }

    /// Marks the connection lost when `result` says it is gone (by SQLSTATE, I/O error kind
    /// or `is_closed()`, never by message text), and its server the wrong one on 25006.
    fn note<R>(
        &self,
        result: Result<R, tokio_postgres::Error>,
    ) -> Result<R, tokio_postgres::Error> {
        if let Err(e) = &result {
            let reason = crate::classify::reason_of(e);
            if reason == Reason::ReadOnlyTransaction {
                self.obj.mark_wrong_server();
            }
            if reason.is_connection_lost()
                && !self.obj.lost.swap(true, Ordering::Relaxed)
                && reason.is_incident()
            {
                self.obj.spread.server_closed();
            }
        }
        result
    }

    /// Takes the connection out of the pool for good; the pool opens another when needed.
    pub(crate) fn discard(self) {
        let _ = deadpool::managed::Object::take(self.obj);
    }
}

impl Deref for PooledConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.obj.client
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.obj.client
    }
}
