//! [`GenericClient`]: the statement methods of a pooled connection and of a transaction, one
//! sealed trait in the manner of deadpool-postgres' `GenericClient`, so that code can take
//! either; and what they take and return.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio_postgres::types::{BorrowToSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

use super::conn::Conn;
use crate::Error;

/// The statement methods of a pooled connection ([`crate::PooledConnection`]) and of a
/// transaction ([`crate::Transaction`]): generic code takes `&impl GenericClient`.
///
/// Every method honours the pool's `statement_cache` (with `off`, nothing named is left on
/// the server connection, so it works behind PgBouncer in transaction pooling: see
/// `docs/pgbouncer.md`) and the lost-connection mark: when a statement fails because the
/// connection is gone (closed, reset, 57P01, 57P02, class 08...), the pool never hands the
/// connection out again, even before its background task has seen the socket close.
///
/// The methods have the signatures of tokio-postgres' [`Client`]'s, except that a statement
/// is any [`Query`] (SQL text, a [`Statement`] or a [`CachedStatement`]) and that `prepare`
/// and `prepare_typed` return a [`CachedStatement`], named only when statements are.
/// Sealed: pgsteady's guarantees hold only for its own implementations. A raw [`Client`]
/// bypasses them; see [`crate::PooledConnection::raw_client_unguarded`].
pub trait GenericClient: Sync + sealed::Sealed {
    /// Prepares `sql` once and reuses it afterwards: with named statements one kept on the
    /// connection; with `statement_cache=off` only its parameter types, learned once per
    /// pool, and every call runs it unnamed.
    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<CachedStatement, Error>> + Send;

    /// Prepares `sql` (not cached); named only when statements are.
    fn prepare(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<CachedStatement, tokio_postgres::Error>> + Send;

    /// Prepares `sql` with the types of its first parameters given; named only when
    /// statements are.
    fn prepare_typed(
        &self,
        sql: &str,
        parameter_types: &[Type],
    ) -> impl Future<Output = Result<CachedStatement, tokio_postgres::Error>> + Send;

    /// [`Client::query`].
    fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send
    where
        T: ?Sized + Query;

    /// [`Client::query_one`].
    fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send
    where
        T: ?Sized + Query;

    /// [`Client::query_opt`].
    fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send
    where
        T: ?Sized + Query;

    /// [`Client::query_raw`]: the rows as a stream, which notes a lost connection too.
    fn query_raw<T, P, I>(
        &self,
        statement: &T,
        params: I,
    ) -> impl Future<Output = Result<RowStream<'_>, tokio_postgres::Error>> + Send
    where
        T: ?Sized + Query,
        P: BorrowToSql + Send,
        I: IntoIterator<Item = P> + Send,
        I::IntoIter: ExactSizeIterator + Send;

    /// [`Client::query_typed`]: unnamed whatever the mode.
    fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send;

    /// [`Client::execute`].
    fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send
    where
        T: ?Sized + Query;

    /// [`Client::simple_query`].
    fn simple_query(
        &self,
        query: &str,
    ) -> impl Future<Output = Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>> + Send;

    /// [`Client::batch_execute`].
    fn batch_execute(
        &self,
        query: &str,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;

    /// Whether the connection is known to be closed.
    fn is_closed(&self) -> bool;
}

/// The rows of [`GenericClient::query_raw`], as tokio-postgres' `RowStream`; an error read
/// from it marks the connection lost when it says the connection is gone.
pub struct RowStream<'a> {
    pub(crate) rows: Pin<Box<tokio_postgres::RowStream>>,
    pub(crate) conn: &'a Conn,
}

impl fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream").finish_non_exhaustive()
    }
}

impl RowStream<'_> {
    /// The number of rows the statement affected, once the stream is exhausted.
    pub fn rows_affected(&self) -> Option<u64> {
        self.rows.rows_affected()
    }
}

impl Stream for RowStream<'_> {
    type Item = Result<Row, tokio_postgres::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.rows.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(this.conn.note(Err(e)))),
            other => other,
        }
    }
}

/// A statement from [`GenericClient::prepare_cached`] (or `prepare`, `prepare_typed`): its SQL
/// text and parameter types, and with named statements the statement prepared on the
/// connection. Pass it to the query methods of the connection (or transaction) it came from.
#[derive(Debug, Clone)]
pub struct CachedStatement {
    pub(crate) sql: Arc<str>,
    pub(crate) params: Arc<[Type]>,
    pub(crate) named: Option<Statement>,
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
/// [`CachedStatement`]. Sealed: the [`GenericClient`] query methods take any of these.
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

pub(crate) mod sealed {
    /// Seals [`super::Query`] and [`super::GenericClient`]: pgsteady's guarantees hold only
    /// for its own implementations.
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

/// What to run for a [`Query`]: a named statement, SQL text (which tokio-postgres prepares),
/// or SQL text with parameter types to run unnamed.
pub(crate) enum Resolved<'q> {
    Named(&'q Statement),
    Sql(&'q str),
    Unnamed(&'q str, Arc<[Type]>),
}

/// The parameters paired with their types for `query_typed`, or the count mismatch.
#[allow(clippy::type_complexity)]
pub(crate) fn typed<'p>(
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
pub(crate) struct WrongCount {
    pub(crate) expected: usize,
    pub(crate) got: usize,
}

impl WrongCount {
    /// A tokio-postgres error for it, made on the client side without sending anything:
    /// tokio-postgres errors cannot be constructed outside it, but a parameter that fails to
    /// encode yields one (kind `ToSql`) before the message leaves the client.
    pub(crate) async fn error(self, client: &Client) -> tokio_postgres::Error {
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
