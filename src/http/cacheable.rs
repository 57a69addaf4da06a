//! The cacheable routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.
//!
//! A request's life here, in order:
//! 1. authenticate (namespace + which key the relay sees);
//! 2. read the body under `MAX_BODY_BYTES` and validate it (a bad one never reaches the relay);
//! 3. read the cache headers, compute the key;
//! 4. unless `no-cache`/`no-store`: look up the tiers → hit, rendered as JSON or SSE;
//! 5. on a miss, join the single-flight for the key: the leader calls the relay, the
//!    followers wait and are served the leader's answer (`coalesced`);
//! 6. the leader forwards the relay's answer as it arrives (streams chunk by chunk) and
//!    stores it only when complete (a plain 200 that parses, a stream past `[DONE]`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::analytics::Outcome;
use crate::auth::Caller;
use crate::cache::{
    BufferedAnswer, CachedAnswer, FlightGuard, FlightOutcome, Join, KnownRequest, NotCacheable,
    StreamRecorder, Tier, Usage, wait,
};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::cache_control::CacheControls;
use crate::http::request_log::RequestLog;
use crate::http::usage_strip::UsageStrip;
use crate::http::{X_CACHE, X_CACHE_KEY, X_CACHE_TIER, X_RELAY_REGION};
use crate::keying::{CacheKey, cache_key};
use crate::relay::{
    RelayBody, RelayResponse, request_headers_for_relay, response_headers_for_client,
};
use crate::request::CacheableRequest;
use crate::state::AppState;

pub async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    handle(state, Endpoint::ChatCompletions, request).await
}

pub async fn completions(State(state): State<AppState>, request: Request) -> Response {
    handle(state, Endpoint::Completions, request).await
}

pub async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    handle(state, Endpoint::Embeddings, request).await
}

async fn handle(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let mut log = RequestLog::new(endpoint);
    let response = handle_inner(state.clone(), endpoint, request, &mut log)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if !log.deferred {
        let latency = log.elapsed_ms();
        log.record(&state, response.status().as_u16(), latency);
    }
    response
}

fn outcome_of(tier: Tier) -> Outcome {
    match tier {
        Tier::L1 => Outcome::L1,
        Tier::Redis => Outcome::Redis,
        Tier::Sqlite => Outcome::Sqlite,
    }
}

/// Everything a miss needs to call the relay and store the answer.
struct Miss {
    state: AppState,
    /// Rate-limit bucket of the caller (their namespace before partitioning).
    caller: Arc<str>,
    endpoint: Endpoint,
    key: CacheKey,
    namespace: Arc<str>,
    ttl: Duration,
    stream: bool,
    /// The client asked for a usage chunk; if not, the one the gateway asked the relay
    /// for is stripped from what it sees.
    include_usage: bool,
    /// Managed mode: the relay's account headers stay here.
    managed: bool,
    relay_headers: HeaderMap,
    /// What the relay gets: the client's bytes, or on a stream that did not ask for
    /// usage, the body with `stream_options.include_usage` set.
    relay_body: Bytes,
    /// The parsed request, to estimate usage when the relay reports none.
    request_body: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// The body re-serialized with `stream_options.include_usage = true`.
fn with_usage_requested(body: &serde_json::Map<String, serde_json::Value>) -> Bytes {
    let mut body = body.clone();
    let options = body
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if !options.is_object() {
        *options = serde_json::json!({});
    }
    options["include_usage"] = serde_json::Value::Bool(true);
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().to_ascii_lowercase();
            v.starts_with("application/json")
                || v.split(';').next().is_some_and(|t| t.ends_with("+json"))
        })
}

const HIT: HeaderValue = HeaderValue::from_static("hit");
const MISS: HeaderValue = HeaderValue::from_static("miss");
const BYPASS: HeaderValue = HeaderValue::from_static("bypass");

async fn handle_inner(
    state: AppState,
    endpoint: Endpoint,
    request: Request,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller: Caller = state.auth.authenticate(&parts.headers)?;
    log.namespace = caller.namespace.clone();
    if !state.limits.exempt_cache_hits {
        state.rate_limit(&caller.namespace)?;
    }
    let raw = crate::http::body::read_request_body(&state, &parts.headers, body).await?;
    if state.config.privacy.log_payloads {
        tracing::info!(target: "edge_gateway::payload", namespace = %caller.namespace, body = %String::from_utf8_lossy(&raw[..raw.len().min(4096)]), "request payload (privacy.log_payloads)");
    }
    let controls = CacheControls::from_headers(&parts.headers, &state.config.cache)?;
    let namespace = controls.namespace(
        &caller.namespace,
        state.config.cache.shared_namespace.as_deref(),
    );
    log.namespace = namespace.clone();
    let fingerprint = state.fast_path.fingerprint(endpoint, &namespace, &raw);
    // Fast path: these exact bytes were parsed and keyed before.
    if !controls.bypasses_lookup()
        && let Some(known) = fingerprint.as_ref().and_then(|f| state.fast_path.get(f))
        && let Some((answer, tier)) = state.cache.get(&namespace, &known.key).await
    {
        log.model = known.model.clone();
        log.key = Some(known.key);
        let shape = (known.stream, known.include_usage);
        return Ok(serve_hit(
            &state, endpoint, log, &answer, tier, shape, known.key,
        ));
    }
    let (mut request, key) = parse_and_key(&state, endpoint, &namespace, &raw).await?;
    log.model = Arc::from(request.model.as_str());
    log.key = Some(key);
    if let Some(fingerprint) = fingerprint {
        state.fast_path.remember(
            fingerprint,
            KnownRequest {
                key,
                model: log.model.clone(),
                stream: request.stream,
                include_usage: request.include_usage,
            },
        );
    }

    // For a usage estimate, should the relay report none (misses only).
    let request_body = Arc::new(std::mem::take(&mut request.body));
    let miss = |state: AppState| Miss {
        state,
        caller: caller.namespace.clone(),
        endpoint,
        key,
        namespace: namespace.clone(),
        ttl: controls.ttl,
        stream: request.stream,
        include_usage: request.include_usage,
        managed: caller.managed,
        relay_headers: request_headers_for_relay(&parts.headers, caller.managed, true),
        relay_body: if request.stream && !request.include_usage {
            with_usage_requested(&request_body)
        } else {
            raw.clone()
        },
        request_body: request_body.clone(),
    };

    if controls.bypasses_lookup() {
        state.count(endpoint, "bypass");
        log.tier = Outcome::Bypass;
        return miss(state.clone())
            .run(!controls.no_store, None, BYPASS, log)
            .await;
    }
    let shape = (request.stream, request.include_usage);
    if let Some((answer, tier)) = state.cache.get(&namespace, &key).await {
        return Ok(serve_hit(&state, endpoint, log, &answer, tier, shape, key));
    }
    log.tier = Outcome::Miss;
    match state.flights.join(key) {
        Join::Leader(guard) => {
            // A flight for this key may have finished between the lookup and the join.
            if let Some((answer, tier)) = state.cache.get(&namespace, &key).await {
                guard.complete(FlightOutcome::Answer(answer.clone()));
                return Ok(serve_hit(&state, endpoint, log, &answer, tier, shape, key));
            }
            state.count(endpoint, "miss");
            miss(state.clone()).run(true, Some(guard), MISS, log).await
        }
        Join::Follower(slot) => match wait(slot).await {
            Some(FlightOutcome::Answer(answer)) => {
                state.count(endpoint, "coalesced");
                log.hit(&state, Outcome::Coalesced, answer.usage);
                Ok(hit(
                    &answer,
                    "coalesced",
                    request.stream,
                    request.include_usage,
                    key,
                ))
            }
            Some(FlightOutcome::Relayed(answer)) => {
                state.count(endpoint, "coalesced");
                log.tier = Outcome::Coalesced;
                Ok(buffered_response(&answer, key, caller.managed))
            }
            Some(FlightOutcome::Failed(error)) => {
                log.tier = Outcome::Coalesced;
                Err(error)
            }
            // The leader gave up without an outcome: call the relay alone.
            None => {
                state.count(endpoint, "miss");
                miss(state.clone()).run(true, None, MISS, log).await
            }
        },
    }
}

/// Bodies above this are parsed and keyed on the blocking pool: parsing and normalizing a
/// 4 MB body takes ~100 ms of CPU, which on an async worker would stall every request
/// queued behind it (cache hits included).
const PARSE_INLINE_MAX: usize = 128 * 1024;

/// Validates the body and computes its cache key, off the async workers when large.
async fn parse_and_key(
    state: &AppState,
    endpoint: Endpoint,
    namespace: &Arc<str>,
    raw: &Bytes,
) -> Result<(CacheableRequest, CacheKey), ApiError> {
    let options = state.key_options;
    let work = {
        let (raw, namespace) = (raw.clone(), namespace.clone());
        move || {
            let request = CacheableRequest::parse(endpoint, &raw)?;
            let key = cache_key(endpoint, &namespace, &request.body, options);
            Ok((request, key))
        }
    };
    if raw.len() <= PARSE_INLINE_MAX {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("request parsing failed: {e}")))?
}

/// A hit from a cache tier: counted, logged for analytics, rendered in the request's
/// shape (`stream`, `include_usage`).
fn serve_hit(
    state: &AppState,
    endpoint: Endpoint,
    log: &mut RequestLog,
    answer: &CachedAnswer,
    tier: Tier,
    (stream, include_usage): (bool, bool),
    key: CacheKey,
) -> Response {
    state.count(endpoint, tier.as_str());
    log.hit(state, outcome_of(tier), answer.usage);
    hit(answer, tier.as_str(), stream, include_usage, key)
}

/// A cached answer in the shape this request asked for.
fn hit(
    answer: &CachedAnswer,
    tier: &'static str,
    stream: bool,
    include_usage: bool,
    key: CacheKey,
) -> Response {
    let (body, content_type) = if stream {
        (answer.sse(include_usage), "text/event-stream")
    } else {
        (answer.body.clone(), "application/json")
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if stream {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    headers.insert(X_CACHE, HIT);
    headers.insert(X_CACHE_TIER, HeaderValue::from_static(tier));
    headers.insert(X_CACHE_KEY, key.header_value());
    response
}

fn buffered_response(answer: &BufferedAnswer, key: CacheKey, managed: bool) -> Response {
    let mut response = Response::new(Body::from(answer.body.clone()));
    *response.status_mut() = answer.status;
    *response.headers_mut() = response_headers_for_client(&answer.headers, managed);
    mark_relayed(response.headers_mut(), MISS, key, &answer.region);
    response
}

fn mark_relayed(headers: &mut HeaderMap, x_cache: HeaderValue, key: CacheKey, region: &str) {
    headers.insert(X_CACHE, x_cache);
    headers.insert(X_CACHE_KEY, key.header_value());
    if let Ok(region) = HeaderValue::from_str(region) {
        headers.insert(X_RELAY_REGION, region);
    }
}

pub(super) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

async fn collect(mut body: RelayBody) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

fn settle(guard: Option<FlightGuard>, outcome: FlightOutcome) {
    if let Some(guard) = guard {
        guard.complete(outcome);
    }
}

impl Miss {
    /// Calls the relay in a task of its own: the call belongs to the flight, not to the
    /// client's connection. A client that goes away before the answer does not cancel
    /// it; the answer is still completed, stored, counted and handed to every follower
    /// (it is paid for either way). The task records the request's row; shutdown waits
    /// for it within the grace period, and at the end of the grace the row is still
    /// written.
    async fn run(
        self,
        store: bool,
        guard: Option<FlightGuard>,
        x_cache: HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response, ApiError> {
        if self.state.limits.exempt_cache_hits
            && let Err(limited) = self.state.rate_limit(&self.caller)
        {
            settle(guard, FlightOutcome::Failed(limited.clone()));
            return Err(limited);
        }
        let mut task_log = log.clone();
        log.deferred = true; // the task records the row
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = self.state.clone();
        state.work.spawn(async move {
            let state = self.state.clone();
            let result = tokio::select! {
                result = self.call(store, guard, x_cache, &mut task_log) => result,
                () = state.cut.cancelled() => Err(ApiError::RelayTimeout(
                    "the gateway shut down before the relay answered",
                )),
            };
            if !task_log.deferred {
                let status = match &result {
                    Ok(response) => response.status(),
                    Err(error) => error.status(),
                };
                let latency = task_log.elapsed_ms();
                task_log.record(&state, status.as_u16(), latency);
            }
            let _ = tx.send(result); // the client may be gone: nothing is lost
        });
        rx.await
            .unwrap_or_else(|_| Err(ApiError::Internal("the relay task ended early".into())))
    }

    /// One relay call for the flight: the answer goes to the client, to the cache when
    /// storable, and (once, at the end) to every follower.
    async fn call(
        self,
        store: bool,
        guard: Option<FlightGuard>,
        x_cache: HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response, ApiError> {
        let sent = self
            .state
            .send_to_relay(
                Method::POST,
                self.endpoint.relay_suffix(),
                self.relay_headers.clone(),
                self.relay_body.clone(),
                true,
            )
            .await;
        let relay = match sent {
            Ok(relay) => relay,
            Err(error) => {
                settle(guard, FlightOutcome::Failed(error.clone()));
                return Err(error);
            }
        };
        log.relay_region = Some(relay.region.clone());
        if relay.status == StatusCode::OK && self.stream && is_event_stream(&relay.headers) {
            log.deferred = true; // the stream's task records the row, with its usage
            return Ok(self.stream_through(relay, store, guard, x_cache, log.clone()));
        }
        let RelayResponse {
            status,
            headers,
            body,
            region,
        } = relay;
        let concluded = match collect(body).await {
            Ok(body) => {
                self.conclude(status, headers, body, region, store, x_cache, log)
                    .await
            }
            Err(error) => Err(error),
        };
        match concluded {
            Ok((outcome, response)) => {
                settle(guard, outcome);
                Ok(response)
            }
            Err(error) => {
                settle(guard, FlightOutcome::Failed(error.clone()));
                Err(error)
            }
        }
    }

    /// A whole (not streamed) relay answer: what the client gets and what followers
    /// get. Error statuses and 200s that are not complete answers are passed on as
    /// sent and never stored; a 200 that is not JSON at all is a broken response.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        region: Arc<str>,
        store: bool,
        x_cache: HeaderValue,
        log: &mut RequestLog,
    ) -> Result<(FlightOutcome, Response), ApiError> {
        if status != StatusCode::OK {
            let answer = Arc::new(BufferedAnswer {
                status,
                headers,
                body,
                region,
            });
            let mut response = buffered_response(&answer, self.key, self.managed);
            response.headers_mut().insert(X_CACHE, x_cache);
            return Ok((FlightOutcome::Relayed(answer), response));
        }
        let value = CachedAnswer::validate(self.endpoint, &body)
            .map_err(|why| ApiError::RelayBadResponse(why.0.into()))?;
        let mut value = value;
        let estimate = self.estimate_usage(&mut value).await;
        // The stored answer carries the estimate, so its hits return usage too.
        let stored_body = match estimate {
            None => body.clone(),
            Some(_) => Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
        };
        let answer = Arc::new(self.answer(stored_body, &value, estimate));
        log.spent(&self.state, answer.usage);
        if self.state.config.privacy.log_payloads {
            tracing::info!(target: "edge_gateway::payload", key = %self.key, answer = %String::from_utf8_lossy(&body[..body.len().min(4096)]), "relay answer (privacy.log_payloads)");
        }
        let storable = if is_json(&headers) {
            CachedAnswer::storable(self.endpoint, &value)
        } else {
            Err(NotCacheable("the answer is not labelled JSON"))
        };
        self.store(store, storable, &answer).await;
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = response_headers_for_client(&headers, self.managed);
        mark_relayed(response.headers_mut(), x_cache, self.key, &region);
        Ok((FlightOutcome::Answer(answer), response))
    }

    /// Adds an estimate to an answer whose relay reported no usage (see
    /// [`crate::tokens`]) and returns it; `None` when the relay reported usage.
    async fn estimate_usage(&self, value: &mut serde_json::Value) -> Option<Usage> {
        if crate::tokens::reported(value) {
            return None;
        }
        let (endpoint, request, answer) = (self.endpoint, self.request_body.clone(), value.clone());
        let usage = tokio::task::spawn_blocking(move || {
            crate::tokens::estimate(endpoint, &request, &answer)
        })
        .await
        .ok()?;
        if let serde_json::Value::Object(fields) = value {
            fields.insert(
                "usage".into(),
                serde_json::json!({
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                }),
            );
        }
        Some(usage)
    }

    /// A cached answer built from a complete relay answer, with the estimate (if any).
    fn answer(
        &self,
        body: Bytes,
        value: &serde_json::Value,
        estimate: Option<Usage>,
    ) -> CachedAnswer {
        let mut answer =
            CachedAnswer::new(self.endpoint, self.namespace.clone(), body, value, self.ttl);
        if let Some(usage) = estimate {
            answer.usage = usage;
        }
        answer
    }

    /// Stores a complete answer when the request allows it and the answer may be stored.
    async fn store(
        &self,
        store: bool,
        storable: Result<(), NotCacheable>,
        answer: &Arc<CachedAnswer>,
    ) {
        match storable {
            Ok(()) if store => self.state.cache.put(self.key, answer.clone()).await,
            Ok(()) => {}
            Err(why) => {
                self.state
                    .metrics
                    .answers_not_stored
                    .with_label_values(&[why.0])
                    .inc();
                tracing::debug!(key = %self.key, reason = why.0, "answer passed on, not stored");
            }
        }
    }

    /// Forwards a streamed answer chunk by chunk while recording it. The relay is read
    /// by its own task, so a client that disconnects mid-stream does not waste the
    /// tokens already paid for: the answer is still completed, stored and handed to
    /// any followers. A stream that breaks ends with an SSE error event.
    fn stream_through(
        self,
        relay: RelayResponse,
        store: bool,
        guard: Option<FlightGuard>,
        x_cache: HeaderValue,
        mut log: RequestLog,
    ) -> Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ApiError>>(32);
        let mut response = Response::new(Body::from_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )));
        *response.status_mut() = relay.status;
        *response.headers_mut() = response_headers_for_client(&relay.headers, self.managed);
        mark_relayed(response.headers_mut(), x_cache, self.key, &relay.region);
        let mut body = relay.body;
        // The row's latency is time to response headers, like every other row's.
        let latency_ms = log.elapsed_ms();
        let work = self.state.work.clone();
        work.spawn(async move {
            let cut = self.state.cut.clone();
            let mut recorder = StreamRecorder::new(self.endpoint);
            let mut strip = (!self.include_usage).then(UsageStrip::default);
            let mut client_gone = false;
            let mut failure = None;
            loop {
                let next = tokio::select! {
                    next = body.next() => next,
                    () = cut.cancelled() => Some(Err(ApiError::RelayTimeout(
                        "the gateway shut down mid-stream",
                    ))),
                };
                let Some(chunk) = next else { break };
                match chunk {
                    Ok(bytes) => {
                        recorder.feed(&bytes);
                        let out = match &mut strip {
                            Some(strip) => strip.feed(&bytes),
                            None => bytes,
                        };
                        if !client_gone && !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                            client_gone = true;
                        }
                    }
                    Err(error) => {
                        // The 200 is sent: the client learns of the failure from a
                        // last SSE event, as its SDK expects, not a cut connection.
                        if !client_gone {
                            let _ = tx.send(Ok(error.sse_event())).await;
                        }
                        failure = Some(error);
                        break;
                    }
                }
            }
            if let (Some(strip), None) = (strip, &failure) {
                let rest = strip.finish();
                if !client_gone && !rest.is_empty() {
                    let _ = tx.send(Ok(rest)).await;
                }
            }
            drop(tx);
            let outcome = match (failure, recorder.finish()) {
                (Some(error), _) => FlightOutcome::Failed(error),
                (None, None) => FlightOutcome::Failed(ApiError::RelayBadResponse(
                    "the relay's stream ended without [DONE]".into(),
                )),
                (None, Some(mut value)) => {
                    let estimate = self.estimate_usage(&mut value).await;
                    let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
                    let answer = Arc::new(self.answer(body, &value, estimate));
                    log.spent(&self.state, answer.usage);
                    let storable = CachedAnswer::storable(self.endpoint, &value);
                    self.store(store, storable, &answer).await;
                    FlightOutcome::Answer(answer)
                }
            };
            // A stream that broke after its headers still reached the client as a 200.
            log.record(&self.state, StatusCode::OK.as_u16(), latency_ms);
            settle(guard, outcome);
        });
        response
    }
}
