//! The relay's metrics, registered by the relay itself.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use crate::metrics::Registrar;

/// What the relay client reports: calls and their latency per region, breakers, key
/// pools, retries and panic mode.
#[derive(Clone)]
pub struct RelayMetrics {
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub breaker_state: IntGaugeVec,
    pub keys_revoked: IntCounterVec,
    pub keys_usable: IntGaugeVec,
    pub retries: IntCounterVec,
    /// Requests sent to a region although no region was available (panic mode).
    pub panics: IntCounterVec,
}

impl RelayMetrics {
    pub fn register(r: &Registrar<'_>) -> Self {
        Self {
            requests: r.counter_vec(
                "relay_requests_total",
                "Relay calls by region and outcome (status code, or timeout/unreachable/bad_response)",
                &["region", "outcome"],
            ),
            latency: r.seconds(
                "relay_response_seconds",
                "Time until the relay's response headers arrived, by region",
                &["region"],
            ),
            breaker_state: r.gauge_vec(
                "relay_breaker_state",
                "Relay region breaker: 0 closed, 1 half-open, 2 open",
                &["region"],
            ),
            keys_usable: r.gauge_vec(
                "relay_keys_usable",
                "Managed mode: relay keys of a region neither revoked nor resting",
                &["region"],
            ),
            keys_revoked: r.counter_vec(
                "relay_keys_revoked_total",
                "Relay keys taken out of a region's pool after a 401/403",
                &["region"],
            ),
            retries: r.counter_vec(
                "relay_retries_total",
                "Relay attempts retried after a failure, by the region that failed",
                &["region"],
            ),
            panics: r.counter_vec(
                "relay_panic_total",
                "Requests sent to a region while no region was available (breakers open)",
                &["region"],
            ),
        }
    }
}
