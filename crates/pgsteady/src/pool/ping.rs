//! The idle ping: when no round trip has succeeded for [`PoolConfig::idle_ping`], the
//! maintenance task checks one idle connection with an empty query. It is what keeps
//! readiness fresh while the application is quiet; it runs in the existing maintenance loop,
//! not a loop of its own, and it never opens a connection (while the server is down the
//! `min_idle` refill and the single-flight healer do that, with their back-off).
//!
//! [`PoolConfig::idle_ping`]: super::PoolConfig::idle_ping

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::metrics::EvictReason;

use super::{Pool, PoolInner};

/// Starts a ping if one is due and none is running.
pub(super) fn maybe_spawn(inner: &Arc<PoolInner>) {
    let Some(every) = inner.config.idle_ping else {
        return;
    };
    let pool = Pool {
        inner: inner.clone(),
    };
    if pool.since_ok().is_none_or(|age| age < every) {
        return;
    }
    let status = inner.deadpool.status();
    let in_use = status.size.saturating_sub(status.available);
    // Only an idle connection is pinged (a checkout here must not open one or queue), and a
    // quiet pool above its warm minimum is left alone: deadpool hands out idle connections
    // oldest first, so pinging would keep every extra one from reaching `idle_timeout`.
    let quiet_above_min = in_use == 0 && status.size > inner.config.min_idle;
    if status.available == 0 || status.waiting > 0 || quiet_above_min {
        return;
    }
    if inner.pinging.swap(true, Ordering::Relaxed) {
        return;
    }
    tokio::spawn(async move {
        ping(&pool).await;
        pool.inner.pinging.store(false, Ordering::Relaxed);
    });
}

async fn ping(pool: &Pool) {
    let inner = &pool.inner;
    let timeout = inner.config.validation_timeout;
    // Bounded like the ping: an idle connection is there, so this does not wait for one.
    let Ok(conn) = pool.get_timeout(timeout).await else {
        return;
    };
    match tokio::time::timeout(timeout, conn.simple_query("")).await {
        Ok(Ok(_)) => pool.record_ok(),
        Ok(Err(_)) => {
            inner
                .metrics
                .evicted(EvictReason::Validation, conn.close_reason());
            conn.discard();
            inner.events.notify_one();
        }
        Err(_) => {
            inner.metrics.evicted(EvictReason::Timeout, None);
            conn.discard();
            inner.events.notify_one();
        }
    }
}
