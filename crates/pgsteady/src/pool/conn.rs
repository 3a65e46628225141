//! One pooled connection and the handle callers get.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

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
    /// Statements prepared on this connection, by SQL text (`statement_cache=on`).
    statements: Mutex<HashMap<Box<str>, Statement>>,
    /// With `statement_cache=off`: the pool's parameter types by SQL text; statements run
    /// unnamed.
    unnamed: Option<Arc<TypeCache>>,
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
        unnamed: Option<Arc<TypeCache>>,
    ) -> Self {
        Conn {
            client,
            monitor,
            expires,
            statements: Mutex::new(HashMap::new()),
            unnamed,
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
/// `prepare_typed`, `simple_query`, `batch_execute`) have the [`Client`]'s signatures (the
/// statement is any [`Query`]: SQL text, a [`Statement`] or a [`CachedStatement`]) and shadow
/// them. With `statement_cache=off` the query methods run statements unnamed, so that they
/// work behind PgBouncer in transaction pooling (`docs/pgbouncer.md`). When one fails when one fails because the connection is gone (closed, reset, 57P01, 57P02,
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
    /// Prepares `sql` once and reuses it afterwards: with `statement_cache=on` (the default)
    /// a named statement kept on this connection; with `statement_cache=off` (pooler-safe)
    /// only its parameter types, learned once per pool, and every call runs it unnamed.
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
    pub async fn prepare_cached(&self, sql: &str) -> Result<CachedStatement, Error> {
        if self.obj.unnamed.is_some() {
            let params = self.describe(sql).await?;
            return Ok(CachedStatement {
                sql: sql.into(),
                params,
                named: None,
            });
        }
        let named = match self.cached(sql) {
            Some(stmt) => stmt,
            None => {
                let stmt = self.prepare(sql).await?;
                self.obj
                    .statements
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(sql.into(), stmt.clone());
                stmt
            }
        };
        Ok(CachedStatement {
            sql: sql.into(),
            params: named.params().into(),
            named: Some(named),
        })
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.obj
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }

    /// Whether statements run unnamed on this connection (`statement_cache=off`).
    pub fn is_pooler_safe(&self) -> bool {
        self.obj.unnamed.is_some()
    }

    /// The parameter types of `sql` (pooler-safe mode): from the pool's cache, else learned
    /// by preparing it inside a transaction that closes the statement before it ends, so the
    /// named statement never outlives it (behind a transaction pooler the server connection
    /// is the client's only until the transaction ends). Inside a transaction already (a
    /// `SAVEPOINT` succeeds) it is prepared there; outside one (25P01) inside its own.
    async fn describe(&self, sql: &str) -> Result<Arc<[Type]>, tokio_postgres::Error> {
        let cache = self.obj.unnamed.as_ref().expect("pooler-safe mode");
        if let Some(types) = cache.get(sql) {
            return Ok(types);
        }
        let client = &self.obj.client;
        let in_transaction = match self.note(client.batch_execute(SAVEPOINT).await) {
            Ok(()) => true,
            Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => false,
            Err(e) => return Err(e),
        };
        if !in_transaction {
            self.note(client.batch_execute("BEGIN").await)?;
        }
        let prepared = self.note(client.prepare(sql).await);
        let types: Result<Arc<[Type]>, _> = prepared.map(|stmt| stmt.params().into());
        // The statement was dropped above: its Close is queued before the next message.
        let end = match (&types, in_transaction) {
            (Ok(_), true) => RELEASE,
            (Err(_), true) => ROLLBACK_TO,
            (Ok(_), false) => "COMMIT",
            (Err(_), false) => "ROLLBACK",
        };
        let ended = self.note(client.batch_execute(end).await);
        let types = types?;
        ended?;
        cache.insert(sql, types.clone());
        Ok(types)
    }

    /// What to run for `query`: a named statement, or SQL text with parameter types to run
    /// unnamed.
    async fn resolve<'q, T>(&self, query: &'q T) -> Result<Resolved<'q>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        Ok(match query.as_query() {
            QueryRef::Statement(stmt) => Resolved::Named(Cow::Borrowed(stmt)),
            QueryRef::Cached(c) => match &c.named {
                Some(stmt) => Resolved::Named(Cow::Borrowed(stmt)),
                None => Resolved::Unnamed(&c.sql, c.params.clone()),
            },
            QueryRef::Sql(sql) if self.obj.unnamed.is_some() => {
                Resolved::Unnamed(sql, self.describe(sql).await?)
            }
            QueryRef::Sql(sql) => Resolved::Sql(sql),
        })
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

    /// [`Client::prepare`], noting a lost connection. The statement is named: with
    /// `statement_cache=off` use it only inside a transaction, or use
    /// [`PooledConnection::prepare_cached`].
    pub async fn prepare(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        self.note(self.obj.client.prepare(query).await)
    }

    /// [`Client::prepare_typed`], noting a lost connection. Named, as
    /// [`PooledConnection::prepare`].
    pub async fn prepare_typed(
        &self,
        query: &str,
        parameter_types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        self.note(self.obj.client.prepare_typed(query, parameter_types).await)
    }

    /// [`Client::query`], noting a lost connection; unnamed with `statement_cache=off`.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let client = &self.obj.client;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(Resolved::Named(stmt)) => client.query(&*stmt, params).await,
            Ok(Resolved::Sql(sql)) => client.query(sql, params).await,
            Ok(Resolved::Unnamed(sql, types)) => match typed(params, &types) {
                Ok(typed) => client.query_typed(sql, &typed).await,
                Err(wrong) => Err(wrong.error(client).await),
            },
        };
        self.note(result)
    }

    /// [`Client::query_one`], noting a lost connection; unnamed with `statement_cache=off`.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let client = &self.obj.client;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(Resolved::Named(stmt)) => client.query_one(&*stmt, params).await,
            Ok(Resolved::Sql(sql)) => client.query_one(sql, params).await,
            Ok(Resolved::Unnamed(sql, types)) => match typed(params, &types) {
                Ok(typed) => client.query_typed_one(sql, &typed).await,
                Err(wrong) => Err(wrong.error(client).await),
            },
        };
        self.note(result)
    }

    /// [`Client::query_opt`], noting a lost connection; unnamed with `statement_cache=off`.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let client = &self.obj.client;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(Resolved::Named(stmt)) => client.query_opt(&*stmt, params).await,
            Ok(Resolved::Sql(sql)) => client.query_opt(sql, params).await,
            Ok(Resolved::Unnamed(sql, types)) => match typed(params, &types) {
                Ok(typed) => client.query_typed_opt(sql, &typed).await,
                Err(wrong) => Err(wrong.error(client).await),
            },
        };
        self.note(result)
    }

    /// [`Client::execute`], noting a lost connection; unnamed with `statement_cache=off`.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let client = &self.obj.client;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(Resolved::Named(stmt)) => client.execute(&*stmt, params).await,
            Ok(Resolved::Sql(sql)) => client.execute(sql, params).await,
            Ok(Resolved::Unnamed(sql, types)) => match typed(params, &types) {
                Ok(typed) => client.execute_typed(sql, &typed).await,
                Err(wrong) => Err(wrong.error(client).await),
            },
        };
        self.note(result)
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

    /// Takes the connection out of the pool for good, closing its socket (its state is
    /// unknown: a statement timed out, or it was lost); the pool opens another when needed.
    pub(crate) fn discard(self) {
        let conn = deadpool::managed::Object::take(self.obj);
        conn.monitor.close();
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

const SAVEPOINT: &str = "SAVEPOINT pgsteady_describe";
const RELEASE: &str = "RELEASE SAVEPOINT pgsteady_describe";
const ROLLBACK_TO: &str =
    "ROLLBACK TO SAVEPOINT pgsteady_describe; RELEASE SAVEPOINT pgsteady_describe";

/// The most SQL texts whose parameter types a pool keeps (`statement_cache=off`); past it
/// the cache starts over (a program has far fewer distinct statements; a program that builds
/// SQL text with values in it would otherwise grow it without bound).
const TYPE_CACHE_CAP: usize = 1024;

/// Parameter types by SQL text, shared by a pool's connections (`statement_cache=off`).
#[derive(Debug, Default)]
pub(crate) struct TypeCache {
    types: Mutex<HashMap<Box<str>, Arc<[Type]>>>,
}

impl TypeCache {
    fn get(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }

    fn insert(&self, sql: &str, types: Arc<[Type]>) {
        let mut map = self.types.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TYPE_CACHE_CAP {
            map.clear();
        }
        map.insert(sql.into(), types);
    }
}

/// A statement from [`PooledConnection::prepare_cached`]: its SQL text and parameter types,
/// and with `statement_cache=on` the named statement prepared on the connection. Pass it to
/// the query methods of the [`PooledConnection`] (or [`crate::Transaction`]) it came from.
#[derive(Debug, Clone)]
pub struct CachedStatement {
    sql: Arc<str>,
    params: Arc<[Type]>,
    named: Option<Statement>,
}

impl CachedStatement {
    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The parameter types the server inferred.
    pub fn params(&self) -> &[Type] {
        &self.params
    }

    /// The named statement on the connection (`statement_cache=on`), `None` in pooler-safe
    /// mode.
    pub fn statement(&self) -> Option<&Statement> {
        self.named.as_ref()
    }
}

/// A statement to run: SQL text (`&str`, `String`), a tokio-postgres [`Statement`], or a
/// [`CachedStatement`]. Sealed: the [`PooledConnection`] query methods take any of these.
pub trait Query: Sync + sealed::Sealed {
    #[doc(hidden)]
    fn as_query(&self) -> QueryRef<'_>;
}

/// What a [`Query`] is; an implementation detail of the sealed trait.
#[doc(hidden)]
#[derive(Debug)]
pub enum QueryRef<'a> {
    Sql(&'a str),
    Statement(&'a Statement),
    Cached(&'a CachedStatement),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for tokio_postgres::Statement {}
    impl Sealed for super::CachedStatement {}
}

impl Query for str {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Sql(self)
    }
}

impl Query for String {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Sql(self)
    }
}

impl Query for Statement {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Statement(self)
    }
}

impl Query for CachedStatement {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Cached(self)
    }
}

enum Resolved<'q> {
    Named(Cow<'q, Statement>),
    Sql(&'q str),
    Unnamed(&'q str, Arc<[Type]>),
}

/// The parameters paired with their types for `query_typed`, or the count mismatch.
#[allow(clippy::type_complexity)]
fn typed<'p>(
    params: &[&'p (dyn ToSql + Sync)],
    types: &[Type],
) -> Result<Vec<(&'p (dyn ToSql + Sync), Type)>, WrongCount> {
    if params.len() != types.len() {
        return Err(WrongCount {
            expected: types.len(),
            got: params.len(),
        });
    }
    Ok(params.iter().copied().zip(types.iter().cloned()).collect())
}

/// A parameter count that does not match the statement's. Sent unnamed, the server would
/// answer 08P01 (protocol violation), which reads as a lost connection; tokio-postgres checks
/// the count for named statements on the client side, and so do we.
#[derive(Debug)]
struct WrongCount {
    expected: usize,
    got: usize,
}

impl WrongCount {
    /// A tokio-postgres error for it, made on the client side without sending anything:
    /// tokio-postgres errors cannot be constructed outside it, but a parameter that fails to
    /// encode yields one (kind `ToSql`) before the message leaves the client.
    async fn error(self, client: &Client) -> tokio_postgres::Error {
        let param: &(dyn ToSql + Sync) = &self;
        match client.query_typed("", &[(param, Type::INT4)]).await {
            Err(e) => e,
            Ok(_) => unreachable!("WrongCount never encodes"),
        }
    }
}

impl fmt::Display for WrongCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected {} parameters but got {}",
            self.expected, self.got
        )
    }
}

impl std::error::Error for WrongCount {}

impl ToSql for WrongCount {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Err(Box::new(WrongCount {
            expected: self.expected,
            got: self.got,
        }))
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
