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
use crate::app::AppState;
use crate::auth::Caller;
use crate::cache::{
    BufferedAnswer, CachedAnswer, FlightGuard, FlightOutcome, Join, KnownRequest, RawRequest,
    StreamRecorder, Tier, Usage, wait,
};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::cache_control::CacheControls;
use crate::http::request_log::RequestLog;
use crate::http::{X_CACHE, X_CACHE_KEY, X_CACHE_TIER, X_RELAY_REGION};
use crate::keying::{CacheKey, cache_key};
use crate::relay::{
    RelayBody, RelayResponse, request_headers_for_relay, response_headers_for_client,
};
use crate::request::CacheableRequest;

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
    /// Managed mode: the relay's account headers stay here.
    managed: bool,
    relay_headers: HeaderMap,
    raw: Bytes,
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
    let raw = state.read_body(&parts.headers, body).await?;
    if state.config.privacy.log_payloads {
        tracing::info!(target: "edge_gateway::payload", namespace = %caller.namespace, body = %String::from_utf8_lossy(&raw[..raw.len().min(4096)]), "request payload (privacy.log_payloads)");
    }
    let controls = CacheControls::from_headers(&parts.headers, &state.config.cache)?;
    let namespace = controls.namespace(
        &caller.namespace,
        state.config.cache.shared_namespace.as_deref(),
    );
    log.namespace = namespace.clone();
    let raw_request = RawRequest {
        endpoint,
        namespace: namespace.clone(),
        body: raw.clone(),
    };
    // Fast path: these exact bytes were parsed and keyed before.
    if !controls.bypasses_lookup()
        && let Some(known) = state.fast_path.get(&raw_request)
        && let Some((answer, tier)) = state.cache.get(&namespace, &known.key).await
    {
        log.model = known.model.clone();
        log.key = Some(known.key);
        let shape = (known.stream, known.include_usage);
        return Ok(serve_hit(
            &state, endpoint, log, &answer, tier, shape, known.key,
        ));
    }
    let request = CacheableRequest::parse(endpoint, &raw)?;
    log.model = Arc::from(request.model.as_str());
    let key = cache_key(endpoint, &namespace, &request.body, state.key_options);
    log.key = Some(key);
    state.fast_path.remember(
        raw_request,
        KnownRequest {
            key,
            model: log.model.clone(),
            stream: request.stream,
            include_usage: request.include_usage,
        },
    );

    let miss = |state: AppState| Miss {
        state,
        caller: caller.namespace.clone(),
        endpoint,
        key,
        namespace: namespace.clone(),
        ttl: controls.ttl,
        stream: request.stream,
        managed: caller.managed,
        relay_headers: request_headers_for_relay(&parts.headers, caller.managed, true),
        raw: raw.clone(),
    };

    if controls.bypasses_lookup() {
        state.count(endpoint, "bypass");
        log.tier = Outcome::Bypass;
        return miss(state.clone())
            .call_relay(!controls.no_store, None, BYPASS, log)
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
            miss(state.clone())
                .call_relay(true, Some(guard), MISS, log)
                .await
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
                miss(state.clone()).call_relay(true, None, MISS, log).await
            }
        },
    }
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
    async fn call_relay(
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
        let relay = match self
            .state
            .send_to_relay(
                Method::POST,
                self.endpoint.relay_suffix(),
                self.relay_headers.clone(),
                self.raw.clone(),
                true,
            )
            .await
        {
            Ok(relay) => relay,
            Err(error) => {
                settle(guard, FlightOutcome::Failed(error.clone()));
                return Err(error);
            }
        };
        log.relay_region = Some(relay.region.clone());
        if relay.status != StatusCode::OK {
            // Errors are passed through as sent, never cached; followers get the same.
            let body = match collect(relay.body).await {
                Ok(body) => body,
                Err(error) => {
                    settle(guard, FlightOutcome::Failed(error.clone()));
                    return Err(error);
                }
            };
            let answer = Arc::new(BufferedAnswer {
                status: relay.status,
                headers: relay.headers,
                body,
                region: relay.region,
            });
            settle(guard, FlightOutcome::Relayed(answer.clone()));
            let mut response = buffered_response(&answer, self.key, self.managed);
            response.headers_mut().insert(X_CACHE, x_cache);
            return Ok(response);
        }
        if self.stream && is_event_stream(&relay.headers) {
            log.deferred = true;
            return Ok(self.stream_through(relay, store, guard, x_cache, log.clone()));
        }
        let RelayResponse {
            status,
            headers,
            body,
            region,
        } = relay;
        let body = match collect(body).await {
            Ok(body) => body,
            Err(error) => {
                settle(guard, FlightOutcome::Failed(error.clone()));
                return Err(error);
            }
        };
        let value = match CachedAnswer::validate(self.endpoint, &body) {
            Ok(value) => value,
            Err(why) => {
                let error = ApiError::RelayBadResponse(why.0.into());
                settle(guard, FlightOutcome::Failed(error.clone()));
                return Err(error);
            }
        };
        let answer = Arc::new(CachedAnswer::new(
            self.endpoint,
            self.namespace.clone(),
            body.clone(),
            &value,
            self.ttl,
        ));
        log.spent(&self.state, answer.usage);
        if self.state.config.privacy.log_payloads {
            tracing::info!(target: "edge_gateway::payload", key = %self.key, answer = %String::from_utf8_lossy(&body[..body.len().min(4096)]), "relay answer (privacy.log_payloads)");
        }
        if store {
            self.state.cache.put(self.key, answer.clone()).await;
        }
        settle(guard, FlightOutcome::Answer(answer));
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = response_headers_for_client(&headers, self.managed);
        mark_relayed(response.headers_mut(), x_cache, self.key, &region);
        Ok(response)
    }

    /// Forwards a streamed answer chunk by chunk while recording it. The relay is read
    /// by its own task, so a client that disconnects mid-stream does not waste the
    /// tokens already paid for: the answer is still completed, stored and handed to
    /// any followers.
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
        tokio::spawn(async move {
            let mut recorder = StreamRecorder::new(self.endpoint);
            let mut client_gone = false;
            let mut failure = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        recorder.feed(&bytes);
                        if !client_gone && tx.send(Ok(bytes)).await.is_err() {
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
            drop(tx);
            let outcome = match (failure, recorder.finish()) {
                (Some(error), _) => FlightOutcome::Failed(error),
                (None, None) => FlightOutcome::Failed(ApiError::RelayBadResponse(
                    "the relay's stream ended without [DONE]".into(),
                )),
                (None, Some(value)) => {
                    log.spent(&self.state, Usage::from_json(value.get("usage")));
                    let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
                    let answer = Arc::new(CachedAnswer::new(
                        self.endpoint,
                        self.namespace.clone(),
                        body,
                        &value,
                        self.ttl,
                    ));
                    if store {
                        self.state.cache.put(self.key, answer.clone()).await;
                    }
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
