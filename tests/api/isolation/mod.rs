//! One client never harms another: relay health, key pools, tenants, the relay's path,
//! connections, retries (issue 12). Each test names the harm it rules out.

mod connections;
mod key_pools;
mod paths;
mod relay_health;
mod retries;
mod small_ones;
mod tenants;

use std::time::{Duration, Instant};

use edge_gateway::config::Config;
use relay_stub::{Behavior, RelayStub};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

pub(super) fn no_probes(c: &mut Config) {
    c.relay.health.probe_interval_ms = 0;
    c.relay.retry.backoff_base_ms = 1;
}

/// A client with no credential at all.
pub(super) fn bare_client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends `head` (request line and headers, no final blank line) on a fresh connection
/// and returns the whole answer. For paths an HTTP client would normalize.
pub(super) async fn raw_http(app: &TestApp, head: &str) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!("{head}\r\nHost: gw\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the gateway answers")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

pub(super) async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}
