//! The handle callers get for a connection checked out of the pool.

use std::fmt;

use tokio_postgres::types::{BorrowToSql, ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use super::client::{
    CachedStatement, GenericClient, Query, QueryRef, Resolved, RowStream, sealed, typed,
};
use super::conn::Conn;
use super::manager::Manager;
use crate::{Error, Reason};

/// A connection checked out of a [`crate::Pool`]; returns to the pool when dropped.
///
/// Its statement methods are those of [`GenericClient`] (also inherent, so no import is
/// needed): they honour `statement_cache` and mark the connection lost when a statement finds
/// it gone. It does not dereference to a tokio-postgres [`Client`], whose methods would skip
/// both; [`PooledConnection::raw_client_unguarded`] is the one explicit way to one.
///
/// ```compile_fail,E0308
/// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady::Error> {
/// let conn = pool.get().await?;
/// // No coercion to a tokio-postgres client: its methods would bypass the pool's guarantees.
/// let client: &tokio_postgres::Client = &conn;
/// # Ok(()) }
/// ```
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
    fn conn(&self) -> &Conn {
        &self.obj
    }

    /// The tokio-postgres client under this connection, **bypassing the pool's guarantees**:
    /// what runs through it ignores `statement_cache` (statements are named, so behind a
    /// transaction pooler they fail or leak to other clients' server connections) and does
    /// not mark the connection lost when the server or the network ends it (the pool may hand
    /// a dead connection out once more). Use it only for what [`GenericClient`] does not
    /// offer (`copy_in`, `copy_out`, `cancel_token`...), and leave the session as you found
    /// it: the connection returns to the pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: &pgsteady::Pool) -> Result<(), pgsteady::Error> {
    /// let conn = pool.get().await?;
    /// let client: &tokio_postgres::Client = conn.raw_client_unguarded();
    /// let _cancel = client.cancel_token();
    /// # Ok(()) }
    /// ```
    pub fn raw_client_unguarded(&self) -> &Client {
        &self.conn().client
    }

    /// [`GenericClient::prepare_cached`].
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
        let conn = self.conn();
        if conn.unnamed() {
            return Ok(self.prepare_typed(sql, &[]).await?);
        }
        let cached = conn
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        let named = match cached {
            Some(stmt) => stmt,
            None => {
                let stmt = conn.note_named(conn.client.prepare(sql).await)?;
                conn.statements
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

    /// [`GenericClient::prepare`].
    pub async fn prepare(&self, sql: &str) -> Result<CachedStatement, tokio_postgres::Error> {
        self.prepare_typed(sql, &[]).await
    }

    /// [`GenericClient::prepare_typed`].
    pub async fn prepare_typed(
        &self,
        sql: &str,
        parameter_types: &[Type],
    ) -> Result<CachedStatement, tokio_postgres::Error> {
        let conn = self.conn();
        if conn.unnamed() {
            return Ok(CachedStatement {
                sql: sql.into(),
                params: conn.describe(sql, parameter_types).await?,
                named: None,
            });
        }
        let stmt = conn.note_named(conn.client.prepare_typed(sql, parameter_types).await)?;
        Ok(CachedStatement {
            sql: sql.into(),
            params: stmt.params().into(),
            named: Some(stmt),
        })
    }

    /// Whether statements run unnamed on this connection (`statement_cache=off`, or `auto`
    /// after it detected a transaction pooler).
    pub fn is_pooler_safe(&self) -> bool {
        self.conn().unnamed()
    }

    /// What to run for `query`.
    async fn resolve<'q, T>(&self, query: &'q T) -> Result<Resolved<'q>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        Ok(match query.as_query() {
            QueryRef::Statement(stmt) => Resolved::Named(stmt),
            QueryRef::Cached(c) => match &c.named {
                Some(stmt) => Resolved::Named(stmt),
                None => Resolved::Unnamed(&c.sql, c.params.clone()),
            },
            QueryRef::Sql(sql) if self.conn().unnamed() => {
                Resolved::Unnamed(sql, self.conn().describe(sql, &[]).await?)
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

    /// [`GenericClient::query`].
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let conn = self.conn();
        let client = &conn.client;
        let mut named = false;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(resolved) => {
                named = !matches!(resolved, Resolved::Unnamed(..));
                let _shared = conn.statement_guard().await;
                match resolved {
                    Resolved::Named(stmt) => client.query(stmt, params).await,
                    Resolved::Sql(sql) => client.query(sql, params).await,
                    Resolved::Unnamed(sql, types) => match typed(params, &types) {
                        Ok(typed) => client.query_typed(sql, &typed).await,
                        Err(wrong) => Err(wrong.error(client).await),
                    },
                }
            }
        };
        match named {
            true => conn.note_named(result),
            false => conn.note(result),
        }
    }

    /// [`GenericClient::query_one`].
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let conn = self.conn();
        let client = &conn.client;
        let mut named = false;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(resolved) => {
                named = !matches!(resolved, Resolved::Unnamed(..));
                let _shared = conn.statement_guard().await;
                match resolved {
                    Resolved::Named(stmt) => client.query_one(stmt, params).await,
                    Resolved::Sql(sql) => client.query_one(sql, params).await,
                    Resolved::Unnamed(sql, types) => match typed(params, &types) {
                        Ok(typed) => client.query_typed_one(sql, &typed).await,
                        Err(wrong) => Err(wrong.error(client).await),
                    },
                }
            }
        };
        match named {
            true => conn.note_named(result),
            false => conn.note(result),
        }
    }

    /// [`GenericClient::query_opt`].
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let conn = self.conn();
        let client = &conn.client;
        let mut named = false;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(resolved) => {
                named = !matches!(resolved, Resolved::Unnamed(..));
                let _shared = conn.statement_guard().await;
                match resolved {
                    Resolved::Named(stmt) => client.query_opt(stmt, params).await,
                    Resolved::Sql(sql) => client.query_opt(sql, params).await,
                    Resolved::Unnamed(sql, types) => match typed(params, &types) {
                        Ok(typed) => client.query_typed_opt(sql, &typed).await,
                        Err(wrong) => Err(wrong.error(client).await),
                    },
                }
            }
        };
        match named {
            true => conn.note_named(result),
            false => conn.note(result),
        }
    }

    /// [`GenericClient::query_raw`].
    pub async fn query_raw<T, P, I>(
        &self,
        statement: &T,
        params: I,
    ) -> Result<RowStream<'_>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let conn = self.conn();
        let client = &conn.client;
        let mut named = false;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(resolved) => {
                named = !matches!(resolved, Resolved::Unnamed(..));
                let _shared = conn.statement_guard().await;
                match resolved {
                    Resolved::Named(stmt) => client.query_raw(stmt, params).await,
                    Resolved::Sql(sql) => client.query_raw(sql, params).await,
                    Resolved::Unnamed(sql, types) => {
                        let params = params.into_iter();
                        if params.len() == types.len() {
                            client
                                .query_typed_raw(sql, params.zip(types.iter().cloned()))
                                .await
                        } else {
                            let wrong = super::client::WrongCount {
                                expected: types.len(),
                                got: params.len(),
                            };
                            Err(wrong.error(client).await)
                        }
                    }
                }
            }
        };
        let result = match named {
            true => conn.note_named(result),
            false => conn.note(result),
        };
        result.map(|rows| RowStream {
            rows: Box::pin(rows),
            conn,
        })
    }

    /// [`GenericClient::query_typed`].
    pub async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let conn = self.conn();
        let _shared = conn.statement_guard().await;
        conn.note(conn.client.query_typed(sql, params).await)
    }

    /// [`GenericClient::execute`].
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        let conn = self.conn();
        let client = &conn.client;
        let mut named = false;
        let result = match self.resolve(statement).await {
            Err(e) => Err(e),
            Ok(resolved) => {
                named = !matches!(resolved, Resolved::Unnamed(..));
                let _shared = conn.statement_guard().await;
                match resolved {
                    Resolved::Named(stmt) => client.execute(stmt, params).await,
                    Resolved::Sql(sql) => client.execute(sql, params).await,
                    Resolved::Unnamed(sql, types) => match typed(params, &types) {
                        Ok(typed) => client.execute_typed(sql, &typed).await,
                        Err(wrong) => Err(wrong.error(client).await),
                    },
                }
            }
        };
        match named {
            true => conn.note_named(result),
            false => conn.note(result),
        }
    }

    /// [`GenericClient::simple_query`].
    pub async fn simple_query(
        &self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        let conn = self.conn();
        let _shared = conn.statement_guard().await;
        conn.note(conn.client.simple_query(query).await)
    }

    /// [`GenericClient::batch_execute`].
    pub async fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
        let conn = self.conn();
        let _shared = conn.statement_guard().await;
        conn.note(conn.client.batch_execute(query).await)
    }

    /// Takes the connection out of the pool for good, closing its socket (its state is
    /// unknown: a statement timed out, or it was lost); the pool opens another when needed.
    pub(crate) fn discard(self) {
        let conn = deadpool::managed::Object::take(self.obj);
        conn.monitor.close();
    }
}

impl sealed::Sealed for PooledConnection {}

impl GenericClient for PooledConnection {
    async fn prepare_cached(&self, sql: &str) -> Result<CachedStatement, Error> {
        PooledConnection::prepare_cached(self, sql).await
    }

    async fn prepare(&self, sql: &str) -> Result<CachedStatement, tokio_postgres::Error> {
        PooledConnection::prepare(self, sql).await
    }

    async fn prepare_typed(
        &self,
        sql: &str,
        parameter_types: &[Type],
    ) -> Result<CachedStatement, tokio_postgres::Error> {
        PooledConnection::prepare_typed(self, sql, parameter_types).await
    }

    async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        PooledConnection::query(self, statement, params).await
    }

    async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        PooledConnection::query_one(self, statement, params).await
    }

    async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        PooledConnection::query_opt(self, statement, params).await
    }

    async fn query_raw<T, P, I>(
        &self,
        statement: &T,
        params: I,
    ) -> Result<RowStream<'_>, tokio_postgres::Error>
    where
        T: ?Sized + Query,
        P: BorrowToSql + Send,
        I: IntoIterator<Item = P> + Send,
        I::IntoIter: ExactSizeIterator + Send,
    {
        PooledConnection::query_raw(self, statement, params).await
    }

    async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        PooledConnection::query_typed(self, sql, params).await
    }

    async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + Query,
    {
        PooledConnection::execute(self, statement, params).await
    }

    async fn simple_query(
        &self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        PooledConnection::simple_query(self, query).await
    }

    async fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
        PooledConnection::batch_execute(self, query).await
    }

    fn is_closed(&self) -> bool {
        PooledConnection::is_closed(self)
    }
}
