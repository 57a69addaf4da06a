//! Responses of the cacheable routes: a hit in the shape the request asked for (JSON or
//! SSE replay), a relayed answer passed on, and the `x-cache*` headers they carry.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::analytics::Outcome;
use crate::cache::{BufferedAnswer, CachedAnswer, Tier};
use crate::endpoint::Endpoint;
use crate::http::request_log::RequestLog;
use crate::http::{X_CACHE, X_CACHE_KEY, X_CACHE_TIER, X_RELAY_REGION};
use crate::keying::CacheKey;
use crate::relay::response_headers_for_client;
use crate::state::AppState;

pub(super) fn outcome_of(tier: Tier) -> Outcome {
    match tier {
        Tier::L1 => Outcome::L1,
        Tier::Redis => Outcome::Redis,
        Tier::Sqlite => Outcome::Sqlite,
    }
}

pub(super) const HIT: HeaderValue = HeaderValue::from_static("hit");
pub(super) const MISS: HeaderValue = HeaderValue::from_static("miss");
pub(super) const BYPASS: HeaderValue = HeaderValue::from_static("bypass");

/// A hit from a cache tier: counted, logged for analytics, rendered in the request's
/// shape (`stream`, `include_usage`).
pub(super) fn serve_hit(
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
pub(super) fn hit(
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

pub(super) fn buffered_response(answer: &BufferedAnswer, key: CacheKey, managed: bool) -> Response {
    let mut response = Response::new(Body::from(answer.body.clone()));
    *response.status_mut() = answer.status;
    *response.headers_mut() = response_headers_for_client(&answer.headers, managed);
    mark_relayed(response.headers_mut(), MISS, key, &answer.region);
    response
}

pub(super) fn mark_relayed(
    headers: &mut HeaderMap,
    x_cache: HeaderValue,
    key: CacheKey,
    region: &str,
) {
    headers.insert(X_CACHE, x_cache);
    headers.insert(X_CACHE_KEY, key.header_value());
    if let Ok(region) = HeaderValue::from_str(region) {
        headers.insert(X_RELAY_REGION, region);
    }
}

pub(in crate::http) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}
