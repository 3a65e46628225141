//! A pool's statement mode (`statement_cache`): named or unnamed statements, and with `auto`
//! the one-way switch from the first to the second on the first sign of a transaction
//! pooler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::config::StatementCache;
use crate::metrics::StatementMode;

/// The statement mode shared by a pool's connections.
#[derive(Debug)]
pub(crate) struct Mode {
    setting: StatementCache,
    /// `auto` only: a transaction pooler was detected; never reset.
    switched: AtomicBool,
    /// Parameter types by SQL text for unnamed statements.
    pub(crate) types: TypeCache,
}

impl Mode {
    pub(crate) fn new(setting: StatementCache) -> Arc<Self> {
        Arc::new(Mode {
            setting,
            switched: AtomicBool::new(false),
            types: TypeCache::default(),
        })
    }

    /// Whether statements run unnamed now. One atomic load.
    pub(crate) fn unnamed(&self) -> bool {
        match self.setting {
            StatementCache::Off => true,
            StatementCache::Auto => self.switched.load(Ordering::Relaxed),
            _ => false,
        }
    }

    pub(crate) fn state(&self) -> StatementMode {
        match self.setting {
            StatementCache::Off => StatementMode::Unnamed,
            StatementCache::Auto if self.switched.load(Ordering::Relaxed) => {
                StatementMode::UnnamedAfterPoolerDetected
            }
            _ => StatementMode::Named,
        }
    }

    /// After `err` from a statement pgsteady named: switches to unnamed statements for good
    /// when the setting is `auto` and `err` is a sign of a transaction pooler (26000: our
    /// statement is not on the server connection we reached; 42P05: a name we are creating
    /// is already there, left by another client of the same server connection). Returns
    /// whether this call switched; the first one logs it.
    pub(crate) fn saw(&self, err: &tokio_postgres::Error) -> bool {
        if self.setting != StatementCache::Auto || !is_pooler_sign(err) {
            return false;
        }
        let switched = !self.switched.swap(true, Ordering::Relaxed);
        if switched {
            tracing::warn!(
                sqlstate = err.code().map_or("", SqlState::code),
                "transaction pooler detected: a statement pgsteady named was missing or its \
                 name taken on the server connection; the pool runs unnamed statements from \
                 now on (statement_cache=auto)"
            );
        }
        switched
    }

    /// Whether `err` was a sign of a transaction pooler that made an `auto` pool switch
    /// (now or earlier): the statement that failed with it certainly did not run.
    pub(crate) fn replayable(&self, err: &crate::Error) -> bool {
        self.setting == StatementCache::Auto
            && self.switched.load(Ordering::Relaxed)
            && err.code().is_some_and(|c| {
                *c == SqlState::INVALID_SQL_STATEMENT_NAME || *c == SqlState::DUPLICATE_PSTATEMENT
            })
    }
}

fn is_pooler_sign(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|c| {
        *c == SqlState::INVALID_SQL_STATEMENT_NAME || *c == SqlState::DUPLICATE_PSTATEMENT
    })
}

/// The most SQL texts whose parameter types a pool keeps (unnamed statements); past it the
/// cache starts over (a program has far fewer distinct statements; a program that builds
/// SQL text with values in it would otherwise grow it without bound).
const TYPE_CACHE_CAP: usize = 1024;

/// Parameter types by SQL text, shared by a pool's connections (unnamed statements).
#[derive(Debug, Default)]
pub(crate) struct TypeCache {
    types: Mutex<HashMap<Box<str>, Arc<[Type]>>>,
}

impl TypeCache {
    pub(crate) fn get(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }

    pub(crate) fn insert(&self, sql: &str, types: Arc<[Type]>) {
        let mut map = self.types.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TYPE_CACHE_CAP {
            map.clear();
        }
        map.insert(sql.into(), types);
    }
}
