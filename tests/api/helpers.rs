#![allow(dead_code)] // shared by every test module; not each uses every helper

//! Test harness: every test gets its own gateway (port 0), its own relay stub and its
//! own temp dir. Nothing sleeps to wait: `eventually` polls with a deadline.

use std::net::SocketAddr;
use std::process::Command;

use edge_gateway::config::{Config, Secret};
use edge_gateway::{App, AppState};
use relay_stub::RelayStub;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub use testkit::redis::{RedisCluster, RedisServer, cli};
pub use testkit::{DEADLINE, GatewayProcess, closed_port, eventually};

/// The real `edge-gateway` binary, started with `env` on a free port.
pub fn spawn_gateway(env: &[(&str, String)]) -> GatewayProcess {
    GatewayProcess::spawn(env!("CARGO_BIN_EXE_edge-gateway"), env, None)
}

/// Waits (off the runtime) for a gateway told to stop, asserts it exited with success
/// (drained and flushed), and gives it back for its files.
pub async fn exits_cleanly(mut gateway: GatewayProcess) -> GatewayProcess {
    tokio::task::spawn_blocking(move || {
        let status = gateway.wait_exit();
        assert!(status.success(), "exit status {status:?}");
        gateway
    })
    .await
    .expect("the wait does not panic")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub stub: RelayStub,
    pub client: reqwest::Client,
    pub state: AppState,
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        edge_gateway::testing::telemetry::init("debug");
    }
}

/// A config for tests: loopback, port 0, relay = `stub`, files in `dir`.
pub fn test_config(stub: &RelayStub, dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.server.bind = [127, 0, 0, 1].into();
    config.server.port = 0;
    config.server.shutdown_grace_secs = 5;
    config.relay.url = stub.url();
    config.relay.connect_timeout_ms = 1_000;
    config.relay.first_byte_timeout_ms = 5_000;
    config.relay.idle_timeout_ms = 5_000;
    config.sqlite.path = dir.path().join("gateway.db");
    config.edge_region = "test".into();
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let stub = RelayStub::start().await.expect("stub starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&stub, &dir);
    tweak(&mut config);
    spawn_with_config(stub, dir, config).await
}

pub async fn spawn_with_config(stub: RelayStub, dir: TempDir, config: Config) -> TestApp {
    config.validate().expect("test config is valid");
    let app = App::build(config).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        stub,
        client: client_with_key(),
        state,
        dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// The key test clients present unless a request sets its own credential.
pub const CLIENT_KEY: &str = "sk-client-test";

/// A client that sends `Authorization: Bearer CLIENT_KEY` by default (a request's own
/// `authorization` replaces it): the gateway answers 401 to requests without one.
pub fn client_with_key() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer sk-client-test"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client builds")
}

/// Managed mode with one tenant per `(tenant, key)`.
pub fn managed(config: &mut Config, relay_key: &str, tenants: &[(&str, &str)]) {
    config.relay.api_key = Some(Secret::new(relay_key));
    for (tenant, key) in tenants {
        config
            .auth
            .gateway_api_keys
            .insert((*tenant).into(), Secret::new(*key));
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `POST /admin/cache/purge{query}` with `Authorization: Bearer {token}`.
    pub async fn purge(&self, query: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/admin/cache/purge{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the gateway")
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post_json("/v1/chat/completions", body).await
    }

    /// A chat completion sent with `Authorization: Bearer {key}`.
    pub async fn chat_as(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .expect("request reaches the gateway")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the gateway")
    }

    /// `GET {path}` with `Authorization: Bearer {token}`.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request reaches the gateway")
    }

    /// Stops the server the way SIGTERM does and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(DEADLINE, server).await;
        }
    }
}

pub fn chat_body(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
}

pub fn stream_body(prompt: &str) -> Value {
    let mut body = chat_body(prompt);
    body["stream"] = json!(true);
    body
}

pub async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Asserts an OpenAI-shaped error body and returns its `code`.
pub async fn error_code(response: reqwest::Response) -> String {
    let body = json_of(response).await;
    let error = body.get("error").expect("an `error` object");
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    error["code"].as_str().expect("a string code").to_owned()
}

/// Runs the binary with `args` and `env` to completion: (exit code, stdout, stderr).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The cache key the gateway computes for `body` from the test client's key.
pub fn key_for(body: &Value) -> edge_gateway::testing::keying::CacheKey {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"sk-client-test");
    let namespace = format!("key-{}", hex::encode(&digest[..8]));
    let Value::Object(map) = body.clone() else {
        panic!("object body")
    };
    edge_gateway::testing::keying::cache_key(
        edge_gateway::testing::endpoint::Endpoint::ChatCompletions,
        &namespace,
        &map,
        Default::default(),
    )
}

/// A response header's value, or "" when absent.
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map_or(String::new(), |v| v.to_str().unwrap_or("").to_owned())
}

/// A relay region at `stub`.
pub fn region(
    name: &str,
    stub: &relay_stub::RelayStub,
    weight: u32,
    backup: bool,
) -> edge_gateway::config::RegionConfig {
    edge_gateway::config::RegionConfig {
        name: name.into(),
        url: stub.url(),
        weight,
        backup,
        api_key_env: None,
        keys: Vec::new(),
    }
}
