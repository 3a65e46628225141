//! Small HTTP helpers for tests of health endpoints (`/livez`, `/readyz`, `/metrics`), shared
//! by the library's, the CLI's and the example service's test suites. Behind the `http`
//! feature (reqwest), so that `pgsteady drill`, which uses the kit, does not carry it.

use std::time::{Duration, Instant};

/// A plain HTTP client: no proxy from the environment, requests bounded by 10 s, no pooled
/// connections (so that a refused connection shows at once).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain reqwest client builds")
}

/// The status `url` answers now (`None`: no answer).
pub async fn status(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url).send().await.ok().map(|r| r.status().as_u16())
}

/// The body `url` answers now.
///
/// # Panics
///
/// When the request fails.
pub async fn text(http: &reqwest::Client, url: &str) -> String {
    let response = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

/// Polls `url` every 10 ms until it answers `want`; returns when it did.
///
/// # Panics
///
/// When it did not within `within`.
pub async fn poll_status(
    http: &reqwest::Client,
    url: &str,
    want: u16,
    within: Duration,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if status(http, url).await == Some(want) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
