//! Cache analytics: one `cache_events` row per request on a cacheable route, written off
//! the request path; dollars spent and saved from [`Pricing`]; per-hour Redis counters for
//! the cross-region view; the reports behind `edge-gateway analytics` and
//! `GET /admin/analytics`.

pub mod cli;
mod event;
mod global;
mod metrics;
mod pricing;
pub mod query;
pub mod shadow;
mod writer;

pub use event::{CacheEvent, Outcome};
pub use global::GlobalCounters;
pub use metrics::AnalyticsMetrics;
pub use pricing::{Known, Pricing};
pub use shadow::{Agreement, ShadowRow};
pub use writer::AnalyticsWriter;

/// What the request path talks to: price, then record.
pub struct Analytics {
    pub enabled: bool,
    pub writer: AnalyticsWriter,
    pub global: Option<GlobalCounters>,
    pub pricing: Pricing,
    pub metrics: AnalyticsMetrics,
}

impl Analytics {
    /// USD for `usage` of `model`; an unknown model costs 0, counted and logged once.
    pub fn price(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        let (usd, known) = self.pricing.cost(model, prompt_tokens, completion_tokens);
        match known {
            Known::Yes => {}
            Known::FirstUnknown => {
                self.metrics.unknown_model_prices.inc();
                // A bounded sample: the first names seen, each cut to 64 characters.
                let shown: String = model.chars().take(64).collect();
                tracing::warn!(
                    model = %shown,
                    "no price for this model: cost and savings count as 0 (add it under [pricing])"
                );
            }
            Known::Unknown => self.metrics.unknown_model_prices.inc(),
        }
        usd
    }

    pub fn record(&self, event: CacheEvent) {
        let metrics = &self.metrics;
        if !self.enabled {
            return;
        }
        if event.tier.is_hit() {
            metrics
                .tokens_saved
                .inc_by(event.prompt_tokens + event.completion_tokens);
            metrics.usd_saved.inc_by(event.saved_usd);
        }
        metrics.relay_cost_usd.inc_by(event.cost_usd);
        if let Some(global) = &self.global {
            global.record(&event);
        }
        self.writer.record(event);
    }

    /// Copies the writer's counters into the metrics just before a scrape.
    pub fn refresh_metrics(&self) {
        let metrics = &self.metrics;
        metrics.queue_depth.set(self.writer.depth() as i64);
        let sync = |counter: &prometheus::IntCounter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        sync(&metrics.written, self.writer.written());
        sync(&metrics.dropped, self.writer.dropped());
    }
}
