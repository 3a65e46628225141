//! One connection as the pool keeps it, and what every statement on it goes through: the
//! lost-connection mark and, in pooler-safe mode, the parameter types learned without leaving
//! a named statement behind.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{RwLock, RwLockReadGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::Reason;
use crate::config::TargetSessionAttrs;
use crate::connect::{CloseReason, ConnectionMonitor};

use super::mode::Mode;
use super::spread::Spread;

/// A connection as the pool keeps it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) monitor: ConnectionMonitor,
    /// Retire after this instant (`max_lifetime` minus a random part of it, so connections
    /// opened together do not expire together).
    pub(crate) expires: Option<Instant>,
    /// Statements prepared on this connection, by SQL text (`statement_cache=on`).
    pub(crate) statements: Mutex<HashMap<Box<str>, Statement>>,
    /// The pool's statement mode, and its parameter types for unnamed statements.
    pub(crate) mode: Arc<Mode>,
    /// Opened while the pool named its statements: retired once it no longer does (its
    /// named statements are then dropped with its client, which sends no Close for them).
    born_named: bool,
    /// In pooler-safe mode, held exclusively while the parameter types of a statement are
    /// learned (a named statement exists on the server for that while) and shared by every
    /// other statement: a statement sent by a concurrent call on the same connection could
    /// end the transaction (or fail and abort it) between the Parse and the Close, and the
    /// Close would then reach whatever server connection the pooler hands out next.
    describing: RwLock<()>,
    /// Not to be handed out again, though it works: tokio-postgres cached a type look-up
    /// statement in its client that pgsteady had to deallocate on the server.
    retire: AtomicBool,
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
        mode: Arc<Mode>,
    ) -> Self {
        Conn {
            client,
            monitor,
            expires,
            statements: Mutex::new(HashMap::new()),
            born_named: !mode.unnamed(),
            mode,
            describing: RwLock::new(()),
            retire: AtomicBool::new(false),
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

    /// Works, but must not be handed out again (see `retire`).
    pub(crate) fn is_retired(&self) -> bool {
        self.retire.load(Ordering::Relaxed) || (self.born_named && self.mode.unnamed())
    }

    /// Whether statements run unnamed on it now.
    pub(crate) fn unnamed(&self) -> bool {
        self.mode.unnamed()
    }

    /// Why the server or the network closed it, once it has.
    pub(crate) fn close_reason(&self) -> Option<Reason> {
        self.monitor
            .close_reason()
            .as_ref()
            .and_then(CloseReason::reason)
    }
    /// Marks the connection lost when `result` says it is gone (by SQLSTATE, I/O error kind
    /// or `is_closed()`, never by message text), and its server the wrong one on 25006.
    pub(crate) fn note<R>(
        &self,
        result: Result<R, tokio_postgres::Error>,
    ) -> Result<R, tokio_postgres::Error> {
        if let Err(e) = &result {
            let reason = crate::classify::reason_of(e);
            if reason == Reason::ReadOnlyTransaction {
                self.mark_wrong_server();
            }
            if reason.is_connection_lost()
                && !self.lost.swap(true, Ordering::Relaxed)
                && reason.is_incident()
            {
                self.spread.server_closed();
            }
        }
        result
    }

    /// [`Conn::note`] for a statement pgsteady named (or had tokio-postgres name): with
    /// `statement_cache=auto`, a sign of a transaction pooler in `result` switches the pool
    /// to unnamed statements.
    pub(crate) fn note_named<R>(
        &self,
        result: Result<R, tokio_postgres::Error>,
    ) -> Result<R, tokio_postgres::Error> {
        if let Err(e) = &result {
            self.mode.saw(e);
        }
        self.note(result)
    }

    /// In pooler-safe mode, a share of the lock that keeps statements out of a type
    /// look-up's transaction (see `describing`); `None` (no lock at all) with named
    /// statements.
    pub(crate) async fn statement_guard(&self) -> Option<RwLockReadGuard<'_, ()>> {
        if self.mode.unnamed() {
            Some(self.describing.read().await)
        } else {
            None
        }
    }

    /// The parameter types of `sql` (pooler-safe mode), given the types of its first
    /// parameters (`typed`, usually none): from the pool's cache when `typed` is empty, else
    /// learned by preparing it inside a transaction (behind a transaction pooler the server
    /// connection is the client's only until the transaction ends) that closes the statement
    /// before it ends. Inside a transaction already (a `SAVEPOINT` succeeds) it is prepared
    /// there; outside one (25P01) inside its own.
    ///
    /// Nothing named outlives that transaction:
    /// - no other statement of this connection is sent meanwhile (`describing`);
    /// - the `Statement` is dropped before the statement that ends the transaction is sent,
    ///   and tokio-postgres sends its Close on drop, ahead of anything sent after;
    /// - a prepare that fails after its Parse may have left the statement named with no
    ///   `Statement` to close it, and a caller that drops the call midway leaves the
    ///   transaction open: either way the connection is marked lost, so it is closed and a
    ///   pooler drops the server connection that held the transaction;
    /// - a type that is not built in makes tokio-postgres prepare a type look-up statement of
    ///   its own and keep it in the client: `DEALLOCATE ALL` drops it on the server before
    ///   the transaction ends, and the connection is retired, so its client never uses the
    ///   deallocated statement.
    pub(crate) async fn describe(
        &self,
        sql: &str,
        typed: &[Type],
    ) -> Result<Arc<[Type]>, tokio_postgres::Error> {
        let cache = &self.mode.types;
        if typed.is_empty()
            && let Some(types) = cache.get(sql)
        {
            return Ok(types);
        }
        let _exclusive = self.describing.write().await;
        let client = &self.client;
        let in_transaction = match self.note(client.batch_execute(SAVEPOINT).await) {
            Ok(()) => true,
            Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => false,
            Err(e) => return Err(e),
        };
        if !in_transaction {
            self.note(client.batch_execute("BEGIN").await)?;
        }
        let mut unfinished = Unfinished {
            lost: &self.lost,
            done: false,
        };
        let mut prepared = self.note(client.prepare_typed(sql, typed).await);
        if let Err(e) = &prepared
            && e.code() == Some(&SqlState::DUPLICATE_PSTATEMENT)
        {
            // Another client of this server connection (behind a transaction pooler) left a
            // statement of the name tokio-postgres chose; names are numbered per process, so
            // more may follow. Those leftovers are of no use to anyone (their clients reach
            // other server connections): drop them, and this connection with them, since
            // `DEALLOCATE ALL` also drops any type look-up statement its client keeps.
            self.retire.store(true, Ordering::Relaxed);
            let undo = if in_transaction {
                ROLLBACK_TO_KEEP
            } else {
                "ROLLBACK; BEGIN"
            };
            self.note(client.batch_execute(undo).await)?;
            self.note(client.batch_execute("DEALLOCATE ALL").await)?;
            prepared = self.note(client.prepare_typed(sql, typed).await);
        }
        if let Err(e) = &prepared
            && e.as_db_error().is_none()
        {
            // Not the server refusing the Parse: the statement may exist, unclosable.
            self.lost.store(true, Ordering::Relaxed);
        }
        let looked_up = prepared.as_ref().is_ok_and(|stmt| {
            stmt.params()
                .iter()
                .chain(stmt.columns().iter().map(|c| c.type_()))
                .any(|t| Type::from_oid(t.oid()).is_none())
        });
        // Dropping the statement sends its Close now, ahead of what follows.
        let types: Result<Arc<[Type]>, _> = prepared.map(|stmt| stmt.params().into());
        if looked_up {
            self.retire.store(true, Ordering::Relaxed);
            self.note(client.batch_execute("DEALLOCATE ALL").await)?;
        }
        let end = match (&types, in_transaction) {
            (Ok(_), true) => RELEASE,
            (Err(_), true) => ROLLBACK_TO,
            (Ok(_), false) => "COMMIT",
            (Err(_), false) => "ROLLBACK",
        };
        let ended = self.note(client.batch_execute(end).await);
        unfinished.done = true;
        let types = types?;
        ended?;
        if typed.is_empty() {
            cache.insert(sql, types.clone());
        }
        Ok(types)
    }
}

/// Marks the connection lost unless `done`: a describe dropped midway (its caller's
/// timeout) or failing before its transaction ended leaves that transaction open, perhaps
/// with a statement named in it.
struct Unfinished<'a> {
    lost: &'a AtomicBool,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.lost.store(true, Ordering::Relaxed);
        }
    }
}

const SAVEPOINT: &str = "SAVEPOINT pgsteady_describe";
const RELEASE: &str = "RELEASE SAVEPOINT pgsteady_describe";
const ROLLBACK_TO_KEEP: &str = "ROLLBACK TO SAVEPOINT pgsteady_describe";
const ROLLBACK_TO: &str =
    "ROLLBACK TO SAVEPOINT pgsteady_describe; RELEASE SAVEPOINT pgsteady_describe";
