//! The analytics metrics: what the cache saved and the relay cost, and the writer's
//! queue (registered by analytics itself).

use prometheus::{Counter, IntCounter, IntGauge};

use crate::metrics::Registrar;

#[derive(Clone)]
pub struct AnalyticsMetrics {
    pub tokens_saved: IntCounter,
    pub usd_saved: Counter,
    pub relay_cost_usd: Counter,
    pub unknown_model_prices: IntCounter,
    pub queue_depth: IntGauge,
    pub written: IntCounter,
    pub dropped: IntCounter,
}

impl AnalyticsMetrics {
    pub fn register(r: &Registrar<'_>) -> Self {
        Self {
            tokens_saved: r.counter(
                "tokens_saved_total",
                "Prompt + completion tokens answered from the cache",
            ),
            usd_saved: r.dollars(
                "usd_saved_total",
                "Dollars the relay would have charged for answers served from the cache",
            ),
            relay_cost_usd: r.dollars(
                "relay_cost_usd_total",
                "Dollars spent at the relay (priced usage)",
            ),
            unknown_model_prices: r.counter(
                "pricing_unknown_model_total",
                "Requests whose model has no price (counted at cost 0)",
            ),
            queue_depth: r.gauge(
                "analytics_queue_depth",
                "Analytics events queued and not yet committed",
            ),
            written: r.counter(
                "analytics_written_total",
                "Analytics events handled by the writer",
            ),
            dropped: r.counter(
                "analytics_dropped_total",
                "Analytics events lost (queue full or insert failed)",
            ),
        }
    }
}
