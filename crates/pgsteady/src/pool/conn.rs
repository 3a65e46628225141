//! One pooled connection and the handle callers get.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Instant;

use tokio_postgres::{Client, Statement};

use crate::connect::{CloseReason, ConnectionMonitor};
use crate::{Error, Reason};

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
    ) -> Self {
        Conn {
            client,
            monitor,
            expires,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// Known dead: the connection task ended, or the client saw it close.
    pub(crate) fn is_closed(&self) -> bool {
        self.monitor.is_closed() || self.client.is_closed()
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
        let stmt = self.obj.client.prepare(sql).await?;
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
