//! Prometheus metrics, one registry per app (so tests running several apps in one
//! process never mix figures). Label values are low-cardinality by construction: route
//! templates, status codes, tier and region names; never keys, tenants or prompts.

mod resolved;
mod semantic;

pub use resolved::{Resolved, TIERS};
pub use semantic::SemanticMetrics;

use prometheus::{
    Counter, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub cache_requests: IntCounterVec,
    pub relay_requests: IntCounterVec,
    pub relay_latency: HistogramVec,
    pub tier_state: IntGaugeVec,
    pub tier_enabled: IntGaugeVec,
    pub redis_slots_down: IntGauge,
    pub redis_calls: IntCounterVec,
    pub tokens_saved: IntCounter,
    pub usd_saved: Counter,
    pub relay_cost_usd: Counter,
    pub unknown_model_prices: IntCounter,
    pub analytics_queue_depth: IntGauge,
    pub analytics_written: IntCounter,
    pub analytics_dropped: IntCounter,
    pub relay_breaker_state: IntGaugeVec,
    pub relay_keys_revoked: IntCounterVec,
    pub relay_keys_usable: IntGaugeVec,
    pub relay_retries: IntCounterVec,
    pub relay_panics: IntCounterVec,
    pub shed: IntCounter,
    pub connections_open: IntGauge,
    pub answers_not_stored: IntCounterVec,
    pub cache_rejected: IntCounterVec,
    pub connections_shed: IntCounter,
    pub rate_limited: IntCounter,
    /// Purges made by other instances applied to this one's L1 and SQLite.
    pub purge_generations_seen: IntCounter,
    /// Cross-instance single flight, by `outcome`: leader (took the lease), coalesced
    /// (served another instance's answer), wait_timeout, leader_gone.
    pub remote_flights: IntCounterVec,
    /// Requests waiting now for another instance's answer.
    pub remote_waiting: IntGauge,
    pub semantic: SemanticMetrics,
    /// The cacheable routes' handles, resolved once (the hit path's counters).
    pub resolved: Resolved,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("edge_gateway".into()), None)
            .expect("static registry prefix is valid");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to response headers, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Cacheable requests by endpoint and outcome tier (l1, redis, sqlite, coalesced, miss, bypass)",
            ),
            &["endpoint", "tier"],
        )
        .expect("valid metric");
        let relay_requests = IntCounterVec::new(
            Opts::new(
                "relay_requests_total",
                "Relay calls by region and outcome (status code, or timeout/unreachable/bad_response)",
            ),
            &["region", "outcome"],
        )
        .expect("valid metric");
        let relay_latency = HistogramVec::new(
            HistogramOpts::new(
                "relay_response_seconds",
                "Time until the relay's response headers arrived, by region",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["region"],
        )
        .expect("valid metric");
        let tier_state = IntGaugeVec::new(
            Opts::new(
                "cache_tier_up",
                "1 when a configured cache tier is up, 0 when down (absent when not configured)",
            ),
            &["tier"],
        )
        .expect("valid metric");
        let tier_enabled = IntGaugeVec::new(
            Opts::new(
                "cache_tier_enabled",
                "1 when a cache tier is configured, 0 when it is not (Redis without REDIS_URL)",
            ),
            &["tier"],
        )
        .expect("valid metric");
        let redis_slots_down = IntGauge::new(
            "redis_slots_down",
            "Redis Cluster hash slots skipped now because their master does not answer",
        )
        .expect("valid metric");
        let redis_calls = IntCounterVec::new(
            Opts::new(
                "redis_calls_total",
                "Redis calls by operation (get, set) and outcome (ok, error, timeout, skipped_down)",
            ),
            &["op", "outcome"],
        )
        .expect("valid metric");
        let tokens_saved = IntCounter::new(
            "tokens_saved_total",
            "Prompt + completion tokens answered from the cache",
        )
        .expect("valid metric");
        let usd_saved = Counter::new(
            "usd_saved_total",
            "Dollars the relay would have charged for answers served from the cache",
        )
        .expect("valid metric");
        let relay_cost_usd = Counter::new(
            "relay_cost_usd_total",
            "Dollars spent at the relay (priced usage)",
        )
        .expect("valid metric");
        let unknown_model_prices = IntCounter::new(
            "pricing_unknown_model_total",
            "Requests whose model has no price (counted at cost 0)",
        )
        .expect("valid metric");
        let analytics_queue_depth = IntGauge::new(
            "analytics_queue_depth",
            "Analytics events queued and not yet committed",
        )
        .expect("valid metric");
        let analytics_written = IntCounter::new(
            "analytics_written_total",
            "Analytics events handled by the writer",
        )
        .expect("valid metric");
        let analytics_dropped = IntCounter::new(
            "analytics_dropped_total",
            "Analytics events lost (queue full or insert failed)",
        )
        .expect("valid metric");
        let relay_breaker_state = IntGaugeVec::new(
            Opts::new(
                "relay_breaker_state",
                "Relay region breaker: 0 closed, 1 half-open, 2 open",
            ),
            &["region"],
        )
        .expect("valid metric");
        let relay_keys_usable = IntGaugeVec::new(
            Opts::new(
                "relay_keys_usable",
                "Managed mode: relay keys of a region neither revoked nor resting",
            ),
            &["region"],
        )
        .expect("valid metric");
        let relay_keys_revoked = IntCounterVec::new(
            Opts::new(
                "relay_keys_revoked_total",
                "Relay keys taken out of a region's pool after a 401/403",
            ),
            &["region"],
        )
        .expect("valid metric");
        let relay_retries = IntCounterVec::new(
            Opts::new(
                "relay_retries_total",
                "Relay attempts retried after a failure, by the region that failed",
            ),
            &["region"],
        )
        .expect("valid metric");
        let relay_panics = IntCounterVec::new(
            Opts::new(
                "relay_panic_total",
                "Requests sent to a region while no region was available (breakers open)",
            ),
            &["region"],
        )
        .expect("valid metric");
        let shed = IntCounter::new(
            "requests_shed_total",
            "Requests refused with 503 because max_in_flight was reached",
        )
        .expect("valid metric");
        let cache_rejected = IntCounterVec::new(
            Opts::new(
                "cache_rejected_total",
                "Entries neither stored nor served: oversized, or a stored value that failed its checks",
            ),
            &["tier", "reason"],
        )
        .expect("valid metric");
        let answers_not_stored = IntCounterVec::new(
            Opts::new(
                "answers_not_stored_total",
                "Relay answers passed on but not stored (incomplete or not cacheable), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let connections_open =
            IntGauge::new("connections_open", "Client connections open now").expect("valid metric");
        let connections_shed = IntCounter::new(
            "connections_shed_total",
            "Client connections closed or refused at server.max_connections (idlest first)",
        )
        .expect("valid metric");
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused with 429 by the per-client rate limit",
        )
        .expect("valid metric");
        for metric in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_latency.clone()),
            Box::new(cache_requests.clone()),
            Box::new(relay_requests.clone()),
            Box::new(relay_latency.clone()),
            Box::new(tier_state.clone()),
            Box::new(tier_enabled.clone()),
            Box::new(redis_slots_down.clone()),
            Box::new(redis_calls.clone()),
            Box::new(tokens_saved.clone()),
            Box::new(usd_saved.clone()),
            Box::new(relay_cost_usd.clone()),
            Box::new(unknown_model_prices.clone()),
            Box::new(analytics_queue_depth.clone()),
            Box::new(analytics_written.clone()),
            Box::new(analytics_dropped.clone()),
            Box::new(relay_breaker_state.clone()),
            Box::new(relay_keys_revoked.clone()),
            Box::new(relay_keys_usable.clone()),
            Box::new(relay_retries.clone()),
            Box::new(relay_panics.clone()),
            Box::new(shed.clone()),
            Box::new(connections_open.clone()),
            Box::new(answers_not_stored.clone()),
            Box::new(cache_rejected.clone()),
            Box::new(connections_shed.clone()),
            Box::new(rate_limited.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        let semantic = SemanticMetrics::register(&registry);
        let purge_generations_seen = IntCounter::new(
            "purge_generations_seen_total",
            "Purges made by other instances (new purge generations) applied to this instance's L1 and SQLite",
        )
        .expect("valid metric");
        registry
            .register(Box::new(purge_generations_seen.clone()))
            .expect("metric names are unique");
        let remote_flights = IntCounterVec::new(
            Opts::new(
                "remote_flights_total",
                "Misses coordinated with other instances through a Redis lease, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let remote_waiting = IntGauge::new(
            "remote_flight_waiting",
            "Requests waiting for another instance's answer",
        )
        .expect("valid metric");
        registry
            .register(Box::new(remote_flights.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(remote_waiting.clone()))
            .expect("metric names are unique");
        Self {
            purge_generations_seen,
            remote_flights,
            remote_waiting,
            semantic,
            registry,
            resolved: Resolved::new(
                http_requests.clone(),
                http_latency.clone(),
                cache_requests.clone(),
            ),
            http_requests,
            http_latency,
            cache_requests,
            relay_requests,
            relay_latency,
            tier_state,
            tier_enabled,
            redis_slots_down,
            redis_calls,
            tokens_saved,
            usd_saved,
            relay_cost_usd,
            unknown_model_prices,
            analytics_queue_depth,
            analytics_written,
            analytics_dropped,
            relay_breaker_state,
            relay_keys_revoked,
            relay_keys_usable,
            relay_retries,
            relay_panics,
            shed,
            connections_open,
            connections_shed,
            answers_not_stored,
            cache_rejected,
            rate_limited,
        }
    }

    pub fn connections(&self) -> ConnMetrics {
        ConnMetrics {
            open: self.connections_open.clone(),
            shed: self.connections_shed.clone(),
        }
    }

    pub fn relay(&self) -> RelayMetrics {
        RelayMetrics {
            requests: self.relay_requests.clone(),
            latency: self.relay_latency.clone(),
            breaker_state: self.relay_breaker_state.clone(),
            keys_revoked: self.relay_keys_revoked.clone(),
            retries: self.relay_retries.clone(),
            panics: self.relay_panics.clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Prometheus handles the relay reports to.
#[derive(Clone)]
pub struct RelayMetrics {
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub breaker_state: IntGaugeVec,
    pub keys_revoked: IntCounterVec,
    pub retries: IntCounterVec,
    /// Requests sent to a region although no region was available (panic mode).
    pub panics: IntCounterVec,
}

/// Connection metrics.
#[derive(Clone)]
pub struct ConnMetrics {
    pub open: IntGauge,
    /// Idle connections closed to make room, and new ones refused at the cap.
    pub shed: IntCounter,
}
