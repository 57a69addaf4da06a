//! Responses of the cacheable routes: a hit in the shape the request asked for (JSON or
//! SSE replay), a relayed answer passed on, and the `x-cache*` headers they carry.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::analytics::Outcome;
use crate::cache::{BufferedAnswer, CachedAnswer, Tier};
use crate::endpoint::Endpoint;
use crate::http::request_log::RequestLog;
use crate::http::{X_CACHE, X_CACHE_KEY, X_CACHE_TIER, X_EDGE_REGION, X_RELAY_REGION};
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
    hit(state, answer, tier.as_str(), stream, include_usage, key)
}

/// A cached answer in the shape this request asked for.
pub(super) fn hit(
    state: &AppState,
    answer: &CachedAnswer,
    tier: &'static str,
    stream: bool,
    include_usage: bool,
    key: CacheKey,
) -> Response {
    let body = if stream {
        answer.sse(include_usage)
    } else {
        answer.body.clone()
    };
    let mut response = Response::new(Body::from(body));
    let region = &state.region_header;
    let mut headers = match HitHeaders::of(region) {
        Some(templates) => templates.get(tier, stream, region),
        None => hit_headers(tier, stream, region),
    };
    headers.insert(X_CACHE_KEY, answer.key_header(key));
    *response.headers_mut() = headers;
    response
}

/// Every tier a hit can come from, as `x-cache-tier` names it.
const HIT_TIERS: [&str; 5] = ["l1", "redis", "sqlite", "coalesced", "semantic"];

/// The headers of a cache hit but its key, one map per tier and shape, made once with the
/// region: a hit clones one and sets its key, instead of inserting five headers into an
/// empty map (callgrind, bench/RESULTS.md).
struct HitHeaders(Vec<HeaderMap>);

impl HitHeaders {
    /// The templates of the process's region: made for the first app's; an app of
    /// another region in the same process (tests) builds its headers each time.
    fn of(region: &HeaderValue) -> Option<&'static Self> {
        static MADE: std::sync::OnceLock<(HeaderValue, HitHeaders)> = std::sync::OnceLock::new();
        let (made_for, templates) = MADE.get_or_init(|| (region.clone(), Self::new(region)));
        (made_for == region).then_some(templates)
    }

    fn new(region: &HeaderValue) -> Self {
        Self(
            HIT_TIERS
                .iter()
                .flat_map(|&tier| [false, true].map(|stream| hit_headers(tier, stream, region)))
                .collect(),
        )
    }

    fn get(&self, tier: &'static str, stream: bool, region: &HeaderValue) -> HeaderMap {
        match HIT_TIERS.iter().position(|t| *t == tier) {
            Some(i) => self.0[2 * i + usize::from(stream)].clone(),
            None => hit_headers(tier, stream, region),
        }
    }
}

/// In the order they are sent. The key's slot is filled by [`hit`]; holding it here
/// keeps the clone from growing when the key goes in.
fn hit_headers(tier: &'static str, stream: bool, region: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(6);
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if stream {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    headers.insert(X_CACHE, HIT);
    headers.insert(X_CACHE_TIER, HeaderValue::from_static(tier));
    headers.insert(X_CACHE_KEY, HeaderValue::from_static(""));
    headers.insert(X_EDGE_REGION, region.clone());
    headers
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hits_headers_name_its_tier_shape_and_region_in_order() {
        let region = HeaderValue::from_static("fra");
        let templates = HitHeaders::new(&region);
        for tier in HIT_TIERS.into_iter().chain(["a-tier-added-later"]) {
            let tier: &'static str = tier;
            for stream in [false, true] {
                let headers = templates.get(tier, stream, &region);
                let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
                let mut expected = vec!["content-type"];
                if stream {
                    expected.push("cache-control");
                }
                expected.extend(["x-cache", "x-cache-tier", "x-cache-key", "x-edge-region"]);
                assert_eq!(names, expected, "{tier} {stream}");
                assert_eq!(headers["x-cache-tier"], tier);
                assert_eq!(headers["x-cache"], "hit");
                assert_eq!(headers["x-edge-region"], "fra");
                let content_type = if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                };
                assert_eq!(headers["content-type"], content_type);
            }
        }
    }

    #[test]
    fn the_templates_are_one_regions_and_another_region_gets_its_own_headers() {
        let (a, b) = (
            HeaderValue::from_static("fra"),
            HeaderValue::from_static("iad"),
        );
        let made = [HitHeaders::of(&a).is_some(), HitHeaders::of(&b).is_some()];
        assert_ne!(made, [true, true], "made for one region only");
        assert_eq!(hit_headers("l1", false, &b)["x-edge-region"], "iad");
    }
}
