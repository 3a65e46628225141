//! Pool internals that need no server.

use std::time::Duration;

use crate::{Config, Pool};

fn pool() -> Pool {
    // Nothing listens there; the pool opens connections only on demand.
    let config = Config::parse("postgresql://u@127.0.0.1:1/db").unwrap();
    Pool::builder(config).build().unwrap()
}

/// Every checkout's future is created, moved and polled on each call: when it held the
/// connect future inline (9 KB), a checkout at 64 waiting workers cost 1-2 µs more CPU
/// than deadpool-postgres'. Cold paths must stay boxed.
#[tokio::test]
async fn checkout_futures_stay_small() {
    let pool = pool();
    let get = std::mem::size_of_val(&pool.get());
    assert!(get <= 3072, "Pool::get()'s future is {get} bytes");
    let run = std::mem::size_of_val(&pool.run(async move |conn| {
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }));
    assert!(run <= 4096, "Pool::run()'s future is {run} bytes");
}

#[tokio::test]
async fn a_checkout_that_cannot_connect_fails_at_its_timeout() {
    let pool = pool();
    let started = std::time::Instant::now();
    let err = pool
        .get_timeout(Duration::from_millis(200))
        .await
        .expect_err("nothing listens on port 1");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
        "{waited:?}: {err}"
    );
    assert_eq!(pool.metrics().checkout_failures, 1);
    assert_eq!(pool.metrics().checkouts, 0);
}
