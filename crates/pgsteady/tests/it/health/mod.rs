//! Readiness, the HTTP endpoints and graceful shutdown against real servers and real HTTP,
//! one module per concern.

mod drain;
mod metrics;
mod probes;
mod timeline;

use std::net::SocketAddr;
use std::time::Duration;

use pgsteady::readiness::http::{ShutdownReport, router, serve};
use pgsteady::{Readiness, ShutdownConfig};
use tokio::task::JoinHandle;

/// A running HTTP server for `readiness` (plus `app`'s routes).
pub struct Server {
    pub addr: SocketAddr,
    pub handle: JoinHandle<std::io::Result<ShutdownReport>>,
}

impl Server {
    pub async fn start(readiness: &Readiness, app: axum::Router, config: ShutdownConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app.merge(router(readiness));
        let readiness = readiness.clone();
        let handle = tokio::spawn(async move { serve(listener, app, &readiness, config).await });
        Server { addr, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A plain HTTP/1 client (no proxy from the environment, bounded requests).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `url` until it answers `status`, for at most `within`.
pub async fn wait_status(client: &reqwest::Client, url: &str, status: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() == status
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not answer {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
