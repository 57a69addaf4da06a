//! The cacheable routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/responses`.
//!
//! A request's life here is `handle_inner`, one phase a function:
//! 1. `authenticate` (namespace + which key the relay sees);
//! 2. `read` the body under `MAX_BODY_BYTES` and the cache headers;
//! 3. `fast_path`: bytes seen before are a hit without parsing;
//! 4. `key`: validate (a bad body never reaches the relay) and compute the cache key;
//! 5. unless `no-cache`/`no-store`: look up the tiers → hit, rendered as JSON or SSE;
//! 6. `flight`: on a miss, the leader calls the relay (`miss`, `stream`), the followers
//!    wait and are served the leader's answer (`coalesced`). The answer is forwarded as
//!    it arrives and stored only when complete.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tracing::Instrument;

use crate::analytics::Outcome;
use crate::auth::{Caller, ConnAuth};
use crate::cache::{Fingerprint, FlightOutcome, Join, KnownRequest, wait};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::cache_control::CacheControls;
use crate::http::request_log::RequestLog;
use crate::keying::{CacheKey, cache_key};
use crate::relay::request_headers_for_relay;
use crate::request::CacheableRequest;

mod miss;
mod remote;
mod respond;
mod semantic;
mod stream;

use crate::state::AppState;
use miss::{Miss, with_usage_requested};
pub(in crate::http) use respond::is_event_stream;
use respond::{BYPASS, MISS, buffered_response, hit, mark_relayed, serve_hit};

pub async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    routed(state, Endpoint::ChatCompletions, request).await
}

pub async fn completions(State(state): State<AppState>, request: Request) -> Response {
    routed(state, Endpoint::Completions, request).await
}

pub async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    routed(state, Endpoint::Embeddings, request).await
}

pub async fn responses(State(state): State<AppState>, request: Request) -> Response {
    routed(state, Endpoint::Responses, request).await
}

/// A request the router matched (the dispatch serves these routes itself, without a
/// connection's remembered caller).
async fn routed(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let (response, _) = handle(
        state,
        endpoint,
        request,
        Instant::now(),
        &ConnAuth::default(),
    )
    .await;
    response
}

/// Serves one request that arrived at `started` on a connection whose last caller `conn`
/// remembers; with the response, its latency as its analytics row has it (ms), so the
/// latency histogram need not read the clock again.
pub(in crate::http) async fn handle(
    state: AppState,
    endpoint: Endpoint,
    request: Request,
    started: Instant,
    conn: &ConnAuth,
) -> (Response, f64) {
    let span = crate::telemetry::request_span("POST", endpoint.path(), request.headers());
    let mut log = RequestLog::new(&state, endpoint, started);
    let response = handle_inner(state, endpoint, request, conn, &mut log)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let latency_ms = log.answered(response.status().as_u16());
    if !span.is_none() {
        span.record("cache.tier", log.tier.as_str());
        span.record("namespace", &*log.namespace);
        span.record("http.response.status_code", response.status().as_u16());
        if let Some(key) = log.key {
            span.record("cache.key_prefix", &key.to_hex()[..16]);
        }
        if let Some(region) = &log.relay_region {
            span.record("relay.region", &**region);
        }
    }
    (response, latency_ms)
}

/// What a request carries from phase to phase once its caller and body are known.
struct Ctx {
    state: AppState,
    endpoint: Endpoint,
    headers: HeaderMap,
    caller: Caller,
    controls: CacheControls,
    /// The caller's namespace with its `x-cache-namespace` partition.
    namespace: Arc<str>,
    raw: Bytes,
    fingerprint: Option<Fingerprint>,
}

/// The pipeline, one phase a line: authenticate → read → fast path → key → (bypass) →
/// lookup → flight (leader: relay; follower: the leader's answer). The row is recorded
/// once, by whoever holds `log` when the answer is complete.
async fn handle_inner(
    state: AppState,
    endpoint: Endpoint,
    request: Request,
    conn: &ConnAuth,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = authenticate(&state, &parts.headers, conn, log)?;
    let cx = read(state, endpoint, parts.headers, caller, body, log).await?;
    if let Some(hit) = fast_path(&cx, log).await {
        return Ok(hit);
    }
    let (mut request, key) = key(&cx, log).await?;
    let request_body = Arc::new(std::mem::take(&mut request.body));
    if cx.controls.bypasses_lookup() {
        cx.state.count(endpoint, "bypass");
        log.tier = Outcome::Bypass;
        let store = !cx.controls.no_store;
        // Boxed, as the flight below: a relay call's future is large, and kept inline it
        // would be moved with every request's future, hits included.
        return Box::pin(
            cx.miss(&request, request_body, key)
                .run(store, None, BYPASS, log),
        )
        .await;
    }
    let shape = (request.stream, request.include_usage);
    if let Some((answer, tier)) = cx.state.cache.get(&cx.namespace, &key).await {
        return Ok(serve_hit(
            &cx.state, endpoint, log, &answer, tier, shape, key,
        ));
    }
    Box::pin(flight(&cx, &request, request_body, key, log)).await
}

/// Who is calling (namespace, managed or not); rate-limited here unless only relay
/// calls count.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    conn: &ConnAuth,
    log: &mut RequestLog,
) -> Result<Caller, ApiError> {
    let caller = state.auth.authenticate_on(headers, conn)?;
    log.namespace = caller.namespace.clone();
    if !state.limits.exempt_cache_hits {
        state.rate_limit(&caller.namespace)?;
    }
    Ok(caller)
}

/// The body (under the size and time limits) and the cache headers.
async fn read(
    state: AppState,
    endpoint: Endpoint,
    headers: HeaderMap,
    caller: Caller,
    body: Body,
    log: &mut RequestLog,
) -> Result<Ctx, ApiError> {
    let raw = crate::http::body::read_request_body(&state, &headers, body).await?;
    if state.config.privacy.log_payloads {
        tracing::info!(target: "edge_gateway::payload", namespace = %caller.namespace, body = %String::from_utf8_lossy(&raw[..raw.len().min(4096)]), "request payload (privacy.log_payloads)");
    }
    let controls = CacheControls::from_headers(&headers, &state.config.cache)?;
    let namespace = controls.namespace(
        &caller.namespace,
        state.config.cache.shared_namespace.as_deref(),
    );
    log.namespace = namespace.clone();
    let fingerprint = state.fast_path.fingerprint(endpoint, &namespace, &raw);
    Ok(Ctx {
        state,
        endpoint,
        headers,
        caller,
        controls,
        namespace,
        raw,
        fingerprint,
    })
}

/// A hit for bytes parsed and keyed before, without parsing them again.
async fn fast_path(cx: &Ctx, log: &mut RequestLog) -> Option<Response> {
    if cx.controls.bypasses_lookup() {
        return None;
    }
    let known = cx.state.fast_path.get(cx.fingerprint.as_ref()?)?;
    let (answer, tier) = cx.state.cache.get(&cx.namespace, &known.key).await?;
    log.model = known.model.clone();
    log.key = Some(known.key);
    let shape = (known.stream, known.include_usage);
    Some(serve_hit(
        &cx.state,
        cx.endpoint,
        log,
        &answer,
        tier,
        shape,
        known.key,
    ))
}

/// Validation (400s happen here, before the relay) and the cache key; remembered for
/// the fast path.
async fn key(cx: &Ctx, log: &mut RequestLog) -> Result<(CacheableRequest, CacheKey), ApiError> {
    let (request, key) = parse_and_key(&cx.state, cx.endpoint, &cx.namespace, &cx.raw).await?;
    log.model = Arc::from(request.model.as_str());
    log.key = Some(key);
    if let Some(fingerprint) = cx.fingerprint.clone() {
        cx.state.fast_path.remember(
            fingerprint,
            KnownRequest {
                key,
                model: log.model.clone(),
                stream: request.stream,
                include_usage: request.include_usage,
            },
        );
    }
    Ok((request, key))
}

/// A miss joins the single flight for its key: the leader calls the relay; followers
/// get the leader's answer (`coalesced`), or call the relay alone if it vanished.
async fn flight(
    cx: &Ctx,
    request: &CacheableRequest,
    request_body: Arc<serde_json::Map<String, serde_json::Value>>,
    key: CacheKey,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let (state, endpoint) = (&cx.state, cx.endpoint);
    log.tier = Outcome::Miss;
    match state.flights.join(key) {
        Join::Leader(guard) => {
            // A flight for this key may have finished between the lookup and the join.
            if let Some((answer, tier)) = state.cache.get(&cx.namespace, &key).await {
                guard.complete(FlightOutcome::Answer(answer.clone()));
                let shape = (request.stream, request.include_usage);
                return Ok(serve_hit(state, endpoint, log, &answer, tier, shape, key));
            }
            let remember = match semantic::lookup(cx, request, &request_body, log).await {
                semantic::Looked::Hit(answer, response) => {
                    guard.complete(FlightOutcome::Answer(answer));
                    return Ok(response);
                }
                semantic::Looked::Miss(remember) => remember,
            };
            let lease = match cx.remote_flight(key).await {
                remote::Remote::Answer(answer) => {
                    state.count(endpoint, "coalesced");
                    log.hit(state, Outcome::Coalesced, answer.usage);
                    guard.complete(FlightOutcome::Answer(answer.clone()));
                    return Ok(hit(
                        state,
                        &answer,
                        "coalesced",
                        request.stream,
                        request.include_usage,
                        key,
                    ));
                }
                remote::Remote::Leader(lease) => Some(lease),
                remote::Remote::Alone => None,
            };
            state.count(endpoint, "miss");
            let mut miss = cx.miss(request, request_body, key);
            miss.remember = remember;
            miss.lease = lease;
            miss.run(true, Some(guard), MISS, log).await
        }
        Join::Follower(slot) => match wait(slot).await {
            Some(FlightOutcome::Answer(answer)) => {
                state.count(endpoint, "coalesced");
                log.hit(state, Outcome::Coalesced, answer.usage);
                Ok(hit(
                    state,
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
                Ok(buffered_response(&answer, key, cx.caller.managed))
            }
            Some(FlightOutcome::Failed(error)) => {
                log.tier = Outcome::Coalesced;
                Err(error)
            }
            // The leader gave up without an outcome: call the relay alone.
            None => {
                state.count(endpoint, "miss");
                cx.miss(request, request_body, key)
                    .run(true, None, MISS, log)
                    .await
            }
        },
    }
}

impl Ctx {
    /// Everything a relay call for this request needs.
    fn miss(
        &self,
        request: &CacheableRequest,
        request_body: Arc<serde_json::Map<String, serde_json::Value>>,
        key: CacheKey,
    ) -> Miss {
        Miss {
            state: self.state.clone(),
            caller: self.caller.namespace.clone(),
            endpoint: self.endpoint,
            key,
            namespace: self.namespace.clone(),
            ttl: self.controls.ttl,
            stream: request.stream,
            include_usage: request.include_usage,
            managed: self.caller.managed,
            relay_headers: request_headers_for_relay(&self.headers, self.caller.managed, true),
            relay_body: if request.stream
                && !request.include_usage
                && self.endpoint != Endpoint::Responses
                && self.state.config.relay.stream_usage
            {
                with_usage_requested(&request_body)
            } else {
                self.raw.clone()
            },
            request_body,
            remember: None,
            lease: None,
        }
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
