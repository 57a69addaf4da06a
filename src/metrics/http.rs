//! What the HTTP layer counts: requests by route and status, time to headers, cacheable
//! requests by outcome, and what the server refused (shed, rate-limited, connections).

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::{Registrar, Resolved};

pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    /// Refused with 503 at `max_in_flight`.
    pub shed: IntCounter,
    pub rate_limited: IntCounter,
    pub connections: ConnMetrics,
    /// The cacheable routes' handles, resolved once (the hit path's counters).
    pub resolved: Resolved,
}

impl HttpMetrics {
    pub fn register(r: &Registrar<'_>) -> Self {
        let requests = r.counter_vec(
            "http_requests_total",
            "HTTP requests by route and status",
            &["route", "status"],
        );
        let latency = r.seconds(
            "http_request_duration_seconds",
            "Time to response headers, by route",
            &["route"],
        );
        let cache_requests = r.counter_vec(
            "cache_requests_total",
            "Cacheable requests by endpoint and outcome tier (l1, redis, sqlite, coalesced, miss, bypass)",
            &["endpoint", "tier"],
        );
        Self {
            resolved: Resolved::new(requests.clone(), latency.clone(), cache_requests),
            requests,
            latency,
            shed: r.counter(
                "requests_shed_total",
                "Requests refused with 503 because max_in_flight was reached",
            ),
            rate_limited: r.counter(
                "rate_limited_total",
                "Requests refused with 429 by the per-client rate limit",
            ),
            connections: ConnMetrics {
                open: r.gauge("connections_open", "Client connections open now"),
                shed: r.counter(
                    "connections_shed_total",
                    "Client connections closed or refused at server.max_connections (idlest first)",
                ),
            },
        }
    }
}

/// Connection metrics (the accept loop's).
#[derive(Clone)]
pub struct ConnMetrics {
    pub open: IntGauge,
    /// Idle connections closed to make room, and new ones refused at the cap.
    pub shed: IntCounter,
}
