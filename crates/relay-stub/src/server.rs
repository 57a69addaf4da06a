//! The stub's HTTP server, its steerable behaviour and its call counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::routes::{chat, completions, echo, embed, json_answer, models, responses};

/// How the stub answers the next requests. The default answers normally at once.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Behavior {
    /// Answer this status with an OpenAI-shaped error body instead of a result.
    pub status: Option<u16>,
    /// With `status`: a `retry-after` header in seconds.
    pub retry_after: Option<u64>,
    /// With `status`: fail only this many requests, then answer normally again.
    pub fail_times: Option<u64>,
    /// Wait this long before sending response headers.
    pub delay_ms: u64,
    /// Never answer (the connection stays open).
    pub hang: bool,
    /// Pause between SSE events.
    pub chunk_delay_ms: u64,
    /// Close an SSE stream after this many events, before `[DONE]`.
    pub break_stream_after: Option<usize>,
    /// After the first SSE event, wait until [`RelayStub::release`] is called.
    pub gate: bool,
    /// Answer 200 with a body that is not JSON.
    pub garbage: bool,
    /// Before answering, wait until [`RelayStub::release`] is called.
    pub hold: bool,
    /// Answer 401 to requests whose `authorization` is `Bearer <one of these>`.
    pub reject_keys: Vec<String>,
    /// With `status`: fail only requests whose body contains this text (a prompt or a
    /// model the relay always rejects), answer the others normally.
    pub fail_when_body_contains: Option<String>,
    /// Headers added to every answer (cookies, organization headers, ...).
    pub response_headers: Vec<(String, String)>,
    /// Chat answers finish with this reason (`length`, `content_filter`, ...).
    pub finish_reason: Option<String>,
    /// Chat answers have `choices: []`.
    pub empty_choices: bool,
    /// Plain chat answers carry this `content-type` instead of `application/json`.
    pub content_type: Option<String>,
    /// Streamed chat answers leave out the chunk that carries `finish_reason` (and still
    /// end with `[DONE]`).
    pub drop_finish_chunk: bool,
    /// Answers carry no `usage` (plain) and no usage chunk (streams), as some relays do.
    pub no_usage: bool,
}

#[derive(Default)]
pub(super) struct StubState {
    pub(super) behavior: Mutex<Behavior>,
    pub(super) failures_sent: AtomicU64,
    pub(super) calls: Mutex<HashMap<String, u64>>,
    pub(super) total: AtomicU64,
    pub(super) last_headers: Mutex<Option<HeaderMap>>,
    pub(super) authorizations: Mutex<Vec<String>>,
    pub(super) last_body: Mutex<Option<Bytes>>,
    /// Body bytes of the last answer, exactly as sent (streams: every frame so far).
    pub(super) last_sent: Mutex<Vec<u8>>,
    pub(super) gate: Notify,
}

/// A running stub bound to a loopback port; stops when dropped.
pub struct RelayStub {
    addr: SocketAddr,
    state: Arc<StubState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RelayStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RelayStub {
    /// Starts on `127.0.0.1` and a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(StubState::default());
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL including `/v1`, as `RELAY_URL` wants it.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, behavior: Behavior) {
        set_behavior(&self.state, behavior);
    }

    /// Calls received on `path` (for example `/v1/chat/completions`).
    pub fn calls(&self, path: &str) -> u64 {
        lock(&self.state.calls).get(path).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    pub fn last_headers(&self) -> Option<HeaderMap> {
        lock(&self.state.last_headers).clone()
    }

    /// Every `authorization` header received, in order.
    pub fn authorizations(&self) -> Vec<String> {
        lock(&self.state.authorizations).clone()
    }

    pub fn last_body(&self) -> Option<Bytes> {
        lock(&self.state.last_body).clone()
    }

    /// The body bytes of the last answer exactly as the stub sent them.
    pub fn last_sent(&self) -> Bytes {
        Bytes::from(lock(&self.state.last_sent).clone())
    }

    /// Lets every stream paused at the gate go on.
    pub fn release(&self) {
        self.state.gate.notify_waiters();
        self.state.gate.notify_one();
    }

    /// Stops the server; the port refuses connections afterwards.
    pub async fn stop(self) {
        self.server.abort();
        let _ = (&mut { self }.server).await;
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set_behavior(state: &StubState, behavior: Behavior) {
    *lock(&state.behavior) = behavior;
    state.failures_sent.store(0, Ordering::SeqCst);
}

fn router(state: Arc<StubState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embed))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/v1/{*rest}", any(echo))
        .route(
            "/_stub/behavior",
            post(|State(s): State<Arc<StubState>>, body: Bytes| async move {
                match serde_json::from_slice::<Behavior>(&body) {
                    Ok(b) => {
                        set_behavior(&s, b);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                }
            }),
        )
        .route(
            "/_stub/stats",
            get(|State(s): State<Arc<StubState>>| async move {
                axum::Json(json!({
                    "total": s.total.load(Ordering::SeqCst),
                    "calls": *lock(&s.calls),
                }))
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            add_response_headers,
        ))
        .with_state(state)
}

async fn add_response_headers(
    State(state): State<Arc<StubState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let extra = lock(&state.behavior).response_headers.clone();
    let mut response = next.run(request).await;
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Records the call and applies the failure behaviours shared by every route.
/// Returns the behaviour to answer with, or the failure response to send.
pub(super) async fn intake(
    state: &StubState,
    request: Request,
) -> Result<(Behavior, Value), Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    state.total.fetch_add(1, Ordering::SeqCst);
    *lock(&state.calls)
        .entry(parts.uri.path().to_owned())
        .or_default() += 1;
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    lock(&state.authorizations).push(authorization.clone());
    *lock(&state.last_headers) = Some(parts.headers);
    *lock(&state.last_body) = Some(body.clone());
    let behavior = lock(&state.behavior).clone();
    if behavior.hang {
        std::future::pending::<()>().await;
    }
    if behavior.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behavior.delay_ms)).await;
    }
    if behavior.hold {
        state.gate.notified().await;
    }
    if let Some(key) = authorization.strip_prefix("Bearer ")
        && behavior.reject_keys.iter().any(|k| k == key)
    {
        let mut response = json_answer(
            state,
            &json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                    "param": null, "code": "invalid_api_key"}}),
        );
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Err(response);
    }
    let targeted = behavior
        .fail_when_body_contains
        .as_ref()
        .is_none_or(|needle| String::from_utf8_lossy(&body).contains(needle.as_str()));
    if let Some(status) = behavior.status.filter(|_| targeted) {
        let sent = state.failures_sent.fetch_add(1, Ordering::SeqCst);
        if behavior.fail_times.is_none_or(|n| sent < n) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = json_answer(
                state,
                &json!({"error": {
                    "message": format!("stub failure {}", status.as_u16()),
                    "type": "stub_error", "param": null, "code": "stub"
                }}),
            );
            *response.status_mut() = status;
            if let Some(secs) = behavior.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            return Err(response);
        }
    }
    if behavior.garbage {
        *lock(&state.last_sent) = b"this is not json".to_vec();
        return Err((StatusCode::OK, "this is not json").into_response());
    }
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((behavior, value))
}
