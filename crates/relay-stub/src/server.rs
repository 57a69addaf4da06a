//! The stub's HTTP server, its steerable behaviour and its call counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::answers::{chat_answer, completion_text, embeddings};

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
struct StubState {
    behavior: Mutex<Behavior>,
    failures_sent: AtomicU64,
    calls: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    last_headers: Mutex<Option<HeaderMap>>,
    authorizations: Mutex<Vec<String>>,
    last_body: Mutex<Option<Bytes>>,
    /// Body bytes of the last answer, exactly as sent (streams: every frame so far).
    last_sent: Mutex<Vec<u8>>,
    gate: Notify,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
async fn intake(state: &StubState, request: Request) -> Result<(Behavior, Value), Response> {
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

/// A JSON answer whose exact bytes are remembered for byte-exactness checks.
fn json_answer(state: &StubState, value: &Value) -> Response {
    let bytes = value.to_string().into_bytes();
    *lock(&state.last_sent) = bytes.clone();
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (behavior, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let n = state.total.load(Ordering::SeqCst);
    let id = format!("chatcmpl-stub-{n}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("stub")
        .to_owned();
    let answer = chat_answer(&body);
    let usage = json!({
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    });
    let finish = match &behavior.finish_reason {
        Some(reason) => reason.as_str(),
        None if answer.tool_call.is_some() => "tool_calls",
        None => "stop",
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
        let chunk = |delta: Value, finish: Option<&str>| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": now_secs(), "model": model,
                "system_fingerprint": "fp_stub",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            c
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        if let Some(reasoning) = &answer.reasoning {
            for piece in split_pieces(reasoning) {
                events.push(chunk(json!({"reasoning_content": piece}), None));
            }
        }
        if let Some(content) = &answer.content {
            for piece in split_pieces(content) {
                events.push(chunk(json!({"content": piece}), None));
            }
        }
        if let Some((call_id, name, arguments)) = &answer.tool_call {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in split_pieces(arguments) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
        if !behavior.drop_finish_chunk {
            events.push(chunk(json!({}), Some(finish)));
        }
        if behavior.empty_choices {
            events.clear();
        }
        if include_usage && !behavior.no_usage {
            events.push(json!({
                "id": id, "object": "chat.completion.chunk", "created": now_secs(), "model": model,
                "system_fingerprint": "fp_stub", "choices": [], "usage": usage,
            }));
        }
        return sse(state, behavior, events);
    }
    let mut message = json!({"role": "assistant", "content": answer.content, "refusal": null});
    if let Some(reasoning) = answer.reasoning {
        message["reasoning_content"] = json!(reasoning);
    }
    if let Some((call_id, name, arguments)) = answer.tool_call {
        message["tool_calls"] = json!([{"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}]);
    }
    let mut answer = json!({
        "id": id, "object": "chat.completion", "created": now_secs(), "model": model,
        "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
    });
    if behavior.empty_choices {
        answer["choices"] = json!([]);
    }
    if behavior.no_usage
        && let Value::Object(fields) = &mut answer
    {
        fields.remove("usage");
    }
    let mut response = json_answer(&state, &answer);
    if let Some(content_type) = behavior
        .content_type
        .as_deref()
        .and_then(|t| axum::http::HeaderValue::from_str(t).ok())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

async fn completions(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (behavior, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let n = state.total.load(Ordering::SeqCst);
    let id = format!("cmpl-stub-{n}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("stub")
        .to_owned();
    let (text, prompt_tokens) = completion_text(&body);
    let completion_tokens = text.split_whitespace().count() as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
        let chunk = |text: &str, finish: Option<&str>| {
            json!({"id": id, "object": "text_completion", "created": now_secs(), "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]})
        };
        let mut events: Vec<Value> = split_pieces(&text).iter().map(|p| chunk(p, None)).collect();
        events.push(chunk("", Some("stop")));
        if include_usage {
            events.push(
                json!({"id": id, "object": "text_completion", "created": now_secs(),
                "model": model, "choices": [], "usage": usage}),
            );
        }
        return sse(state, behavior, events);
    }
    json_answer(
        &state,
        &json!({
            "id": id, "object": "text_completion", "created": now_secs(), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        }),
    )
    .into_response()
}

async fn embed(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (_, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("stub");
    json_answer(&state, &embeddings(&body, model))
}

async fn models(State(state): State<Arc<StubState>>, request: Request) -> Response {
    if let Err(r) = intake(&state, request).await {
        return r;
    }
    json_answer(
        &state,
        &json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "stub"},
            {"id": "text-embedding-3-small", "object": "model", "created": 0, "owned_by": "stub"},
        ]}),
    )
}

/// Any other `/v1/*` path: describes the request it received, so pass-through tests can
/// check method, path, query and body arrived intact.
async fn echo(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    if let Err(r) = intake(&state, request).await {
        return r;
    }
    let body = lock(&state.last_body).clone().unwrap_or_default();
    json_answer(
        &state,
        &json!({
            "method": method,
            "uri": uri,
            "body": String::from_utf8_lossy(&body),
        }),
    )
}

/// Splits text into a few pieces (about two words each) for streaming.
fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        current.push_str(word);
        if i % 2 == 1 {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn sse(state: Arc<StubState>, behavior: Behavior, events: Vec<Value>) -> Response {
    let total = events.len();
    lock(&state.last_sent).clear();
    if total == 0 {
        *lock(&state.last_sent) = b"data: [DONE]\n\n".to_vec();
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from("data: [DONE]\n\n"))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let stream =
        futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, event)| {
            let state = state.clone();
            let behavior = behavior.clone();
            async move {
                if i > 0 {
                    if behavior.gate && i == 1 {
                        state.gate.notified().await;
                    }
                    if behavior.chunk_delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(behavior.chunk_delay_ms)).await;
                    }
                }
                if behavior.break_stream_after.is_some_and(|n| i >= n) {
                    return Err(std::io::Error::other("stub broke the stream"));
                }
                let mut frame = format!("data: {event}\n\n");
                if i + 1 == total {
                    frame.push_str("data: [DONE]\n\n");
                }
                lock(&state.last_sent).extend_from_slice(frame.as_bytes());
                Ok(Bytes::from(frame))
            }
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
