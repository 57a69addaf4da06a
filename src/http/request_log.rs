//! What one request on a cacheable route contributes to analytics, filled in as the
//! request proceeds and recorded once at the end. A streamed miss records from its
//! relay-reading task, when the stream's usage is known.

use std::sync::Arc;
use std::time::Instant;

use crate::analytics::{CacheEvent, Outcome};
use crate::cache::{Usage, now_ms};
use crate::endpoint::Endpoint;
use crate::keying::CacheKey;
use crate::state::AppState;

#[derive(Clone)]
pub struct RequestLog {
    pub started: Instant,
    pub endpoint: Endpoint,
    pub namespace: Arc<str>,
    pub model: Arc<str>,
    pub key: Option<CacheKey>,
    /// Requests that fail before the cache is consulted count as `bypass`.
    pub tier: Outcome,
    pub usage: Usage,
    pub relay_region: Option<Arc<str>>,
    pub cost_usd: f64,
    pub saved_usd: f64,
    /// Set when another task records this request (a streamed miss).
    pub deferred: bool,
}

impl RequestLog {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            started: Instant::now(),
            endpoint,
            namespace: Arc::from(""),
            model: Arc::from(""),
            key: None,
            tier: Outcome::Bypass,
            usage: Usage::default(),
            relay_region: None,
            cost_usd: 0.0,
            saved_usd: 0.0,
            deferred: false,
        }
    }

    /// A hit: the usage it did not pay for is the saving.
    pub fn hit(&mut self, state: &AppState, tier: Outcome, usage: Usage) {
        self.tier = tier;
        self.usage = usage;
        self.saved_usd = state.price(&self.model, usage);
    }

    /// A relay answer: its usage is what was spent.
    pub fn spent(&mut self, state: &AppState, usage: Usage) {
        self.usage = usage;
        self.cost_usd = state.price(&self.model, usage);
    }

    pub fn record(self, state: &AppState, status: u16, latency_ms: f64) {
        state.analytics.record(
            &state.metrics,
            CacheEvent {
                ts_ms: now_ms(),
                endpoint: self.endpoint,
                namespace: self.namespace,
                model: self.model,
                tier: self.tier,
                status,
                key: self.key,
                prompt_tokens: self.usage.prompt_tokens,
                completion_tokens: self.usage.completion_tokens,
                usage_estimated: self.usage.estimated,
                latency_ms,
                relay_region: self.relay_region,
                cost_usd: self.cost_usd,
                saved_usd: self.saved_usd,
            },
        );
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }
}
