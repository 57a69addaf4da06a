//! Metric handles of the cacheable routes, resolved once per label set instead of per
//! request. `with_label_values` hashes the labels and takes a read lock on every call;
//! a cache hit made three such calls. Each handle is resolved on first use, so
//! `/metrics` shows exactly the series it showed before (none until a request counts).

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::endpoint::Endpoint;

/// The outcomes `cache_requests_total` counts, in their label spelling.
pub const TIERS: [&str; 7] = [
    "l1",
    "redis",
    "sqlite",
    "semantic",
    "coalesced",
    "miss",
    "bypass",
];

/// Handles for one cacheable route.
#[derive(Default)]
struct Route {
    ok: OnceLock<IntCounter>,
    latency: OnceLock<Histogram>,
    tiers: [OnceLock<IntCounter>; TIERS.len()],
}

/// Handles for the four cacheable routes, in front of the label-indexed families.
pub struct Resolved {
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    cache_requests: IntCounterVec,
    routes: [Route; Endpoint::ALL.len()],
}

impl Resolved {
    pub fn new(
        http_requests: IntCounterVec,
        http_latency: HistogramVec,
        cache_requests: IntCounterVec,
    ) -> Self {
        Self {
            http_requests,
            http_latency,
            cache_requests,
            routes: Default::default(),
        }
    }

    /// Counts one request to `endpoint`'s route answered with `status`.
    pub fn http_request(&self, endpoint: Endpoint, status: u16) {
        if status == 200 {
            let route = &self.routes[endpoint.index()];
            route
                .ok
                .get_or_init(|| {
                    self.http_requests
                        .with_label_values(&[endpoint.path(), "200"])
                })
                .inc();
        } else {
            let status = axum::http::StatusCode::from_u16(status)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| status.to_string());
            self.http_requests
                .with_label_values(&[endpoint.path(), status.as_str()])
                .inc();
        }
    }

    /// Observes the time to response headers of one request to `endpoint`'s route.
    pub fn http_latency(&self, endpoint: Endpoint, seconds: f64) {
        self.routes[endpoint.index()]
            .latency
            .get_or_init(|| self.http_latency.with_label_values(&[endpoint.path()]))
            .observe(seconds);
    }

    /// Counts one cacheable request by how it was answered (`tier`, one of [`TIERS`]).
    pub fn cache_request(&self, endpoint: Endpoint, tier: &str) {
        match TIERS.iter().position(|t| *t == tier) {
            Some(i) => self.routes[endpoint.index()].tiers[i]
                .get_or_init(|| {
                    self.cache_requests
                        .with_label_values(&[endpoint.as_str(), TIERS[i]])
                })
                .inc(),
            None => self
                .cache_requests
                .with_label_values(&[endpoint.as_str(), tier])
                .inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_handles_count_into_the_same_series_as_labels() {
        let registry = super::super::registry();
        let metrics = super::super::HttpMetrics::register(&super::super::Registrar(&registry));
        let resolved = &metrics.resolved;
        resolved.http_request(Endpoint::Embeddings, 200);
        resolved.http_request(Endpoint::Embeddings, 200);
        resolved.http_request(Endpoint::Embeddings, 429);
        resolved.http_latency(Endpoint::Embeddings, 0.002);
        for tier in TIERS {
            resolved.cache_request(Endpoint::Responses, tier);
        }
        resolved.cache_request(Endpoint::Responses, "l1");
        let get = |status: &str| {
            metrics
                .requests
                .with_label_values(&["/v1/embeddings", status])
                .get()
        };
        assert_eq!((get("200"), get("429")), (2, 1));
        assert_eq!(
            metrics
                .latency
                .with_label_values(&["/v1/embeddings"])
                .get_sample_count(),
            1
        );
        let text = super::super::render(&registry);
        let tier = |t: &str| {
            let series = format!(
                "edge_gateway_cache_requests_total{{endpoint=\"responses\",tier=\"{t}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert_eq!(tier("l1"), 2);
        assert!(TIERS[1..].iter().all(|t| tier(t) == 1));

        assert!(
            !text.contains("endpoint=\"chat.completions\""),
            "no series before its first request"
        );
    }
}
