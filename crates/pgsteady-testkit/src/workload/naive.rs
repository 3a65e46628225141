//! The baseline client: tokio-postgres as most code uses it today.

use tokio_postgres::{Client, Config, NoTls, Statement};

use super::Operation;

/// One tokio-postgres connection per worker, the way most code is written today: connect on
/// first use, keep the connection, and after any error drop it and connect again on the next
/// call, at once (no back-off, no connect timeout unless the config has one). The connection
/// future is spawned and its result ignored.
///
/// As an [`Operation`] it runs its query (default `SELECT 1`), prepared once per connection.
/// Other code (the drill's naive worker) can prepare several statements with
/// [`NaiveClient::with_statements`] and use them through [`NaiveClient::session`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo(cluster: &pgsteady_testkit::Cluster) {
/// use pgsteady_testkit::workload::{NaiveClient, Workload};
///
/// let config = cluster.pg_config();
/// let workload = Workload::start(4, |_| NaiveClient::new(config.clone()));
/// # }
/// ```
#[derive(Debug)]
pub struct NaiveClient {
    config: Config,
    queries: Vec<String>,
    session: Option<(Client, Vec<Statement>)>,
}

impl NaiveClient {
    /// A client for `config` running `SELECT 1`.
    pub fn new(config: Config) -> NaiveClient {
        NaiveClient::with_query(config, "SELECT 1")
    }

    /// A client for `config` running `query` (no parameters).
    pub fn with_query(config: Config, query: impl Into<String>) -> NaiveClient {
        NaiveClient::with_statements(config, [query.into()])
    }

    /// A client for `config` that prepares each of `queries` on every new connection; as an
    /// [`Operation`] it runs the first one.
    ///
    /// # Panics
    ///
    /// When `queries` is empty.
    pub fn with_statements(
        config: Config,
        queries: impl IntoIterator<Item = impl Into<String>>,
    ) -> NaiveClient {
        let queries: Vec<String> = queries.into_iter().map(Into::into).collect();
        assert!(!queries.is_empty(), "a naive client needs a query");
        NaiveClient {
            config,
            queries,
            session: None,
        }
    }

    /// The connection, connecting first if there is none, for other work than the query.
    pub async fn client(&mut self) -> Result<&Client, tokio_postgres::Error> {
        Ok(self.session().await?.0)
    }

    /// Forgets the connection, as the naive code does after an error: the next call connects
    /// again.
    pub fn reset(&mut self) {
        self.session = None;
    }

    /// The connection and its prepared statements (in the order given), connecting and
    /// preparing first if there is no connection.
    pub async fn session(&mut self) -> Result<(&Client, &[Statement]), tokio_postgres::Error> {
        if self.session.is_none() {
            let (client, connection) = self.config.connect(NoTls).await?;
            tokio::spawn(connection);
            let mut statements = Vec::with_capacity(self.queries.len());
            for query in &self.queries {
                statements.push(client.prepare(query).await?);
            }
            self.session = Some((client, statements));
        }
        let (client, statements) = self.session.as_ref().expect("just connected");
        Ok((client, statements))
    }

    async fn run(&mut self) -> Result<(), tokio_postgres::Error> {
        let (client, statements) = self.session().await?;
        client.query(&statements[0], &[]).await?;
        Ok(())
    }
}

impl Operation for NaiveClient {
    type Error = tokio_postgres::Error;

    async fn call(&mut self) -> Result<(), tokio_postgres::Error> {
        let result = self.run().await;
        if result.is_err() {
            self.reset();
        }
        result
    }
}
