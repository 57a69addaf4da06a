//! What one request on a cacheable route contributes to analytics, filled in as the
//! request proceeds and recorded exactly once: when the [`RequestLog`] that holds the
//! duty to record is dropped. The handler holds it; a miss hands it to its relay task,
//! a streamed miss on to its stream task (which knows the usage once the stream ends).
//! A request whose client went away before an answer still leaves its row (status 499).

use std::sync::Arc;
use std::time::Instant;

use crate::analytics::{CacheEvent, Outcome};
use crate::cache::Usage;
use crate::endpoint::Endpoint;
use crate::keying::CacheKey;
use crate::state::AppState;

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
    pub similarity: Option<f32>,
    pub embedding_cost_usd: f64,
    /// Records the row when this log is dropped; `None` once the duty was handed over.
    recorder: Option<AppState>,
    /// Status sent to the client: 499 (client closed the request) until one is known.
    status: u16,
    /// Time to response headers, once known.
    latency_ms: Option<f64>,
}

/// The namespace and model of a request not yet known: shared, not two allocations a
/// request.
static UNKNOWN: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

/// Nginx's "client closed request": the row of a request whose client left first.
const CLIENT_GONE: u16 = 499;

impl RequestLog {
    /// The log of a request that arrived at `started`.
    pub fn new(state: &AppState, endpoint: Endpoint, started: Instant) -> Self {
        Self {
            started,
            endpoint,
            namespace: UNKNOWN.clone(),
            model: UNKNOWN.clone(),
            key: None,
            tier: Outcome::Bypass,
            usage: Usage::default(),
            relay_region: None,
            cost_usd: 0.0,
            saved_usd: 0.0,
            similarity: None,
            embedding_cost_usd: 0.0,
            recorder: Some(state.clone()),
            status: CLIENT_GONE,
            latency_ms: None,
        }
    }

    /// A log that takes over the duty to record this row (a relay or stream task that
    /// outlives the handler); this one will not record any more.
    pub fn hand_over(&mut self) -> Self {
        Self {
            started: self.started,
            endpoint: self.endpoint,
            namespace: self.namespace.clone(),
            model: self.model.clone(),
            key: self.key,
            tier: self.tier,
            usage: self.usage,
            relay_region: self.relay_region.clone(),
            cost_usd: self.cost_usd,
            saved_usd: self.saved_usd,
            similarity: self.similarity,
            embedding_cost_usd: self.embedding_cost_usd,
            recorder: self.recorder.take(),
            status: self.status,
            latency_ms: self.latency_ms,
        }
    }

    /// The response's status; its latency is now, unless already set. Returns the
    /// latency (ms).
    pub fn answered(&mut self, status: u16) -> f64 {
        self.status = status;
        let latency_ms = self.latency_ms.unwrap_or_else(|| self.elapsed_ms());
        self.latency_ms = Some(latency_ms);
        latency_ms
    }

    /// Fixes the latency at now (a stream: time to its headers, though it ends later).
    pub fn headers_sent(&mut self) {
        self.latency_ms = Some(self.elapsed_ms());
    }

    /// A hit: the usage it did not pay for is the saving.
    pub fn hit(&mut self, state: &AppState, tier: Outcome, usage: Usage) {
        self.tier = tier;
        self.usage = usage;
        self.saved_usd = state.price(&self.model, usage);
    }

    /// A relay answer: its usage is what was spent (with the question's embedding).
    pub fn spent(&mut self, state: &AppState, usage: Usage) {
        self.usage = usage;
        self.cost_usd = self.embedding_cost_usd + state.price(&self.model, usage);
    }

    /// The question was embedded at the relay for the semantic tier, for `usd`.
    pub fn embedded(&mut self, usd: f64) {
        self.embedding_cost_usd += usd;
        self.cost_usd += usd;
    }

    fn record(&self, state: &AppState) {
        let latency_ms = self.latency_ms.unwrap_or_else(|| self.elapsed_ms());
        let status = self.status;
        state.analytics.record(CacheEvent {
            ts_ms: state.clock.now_ms(),
            endpoint: self.endpoint,
            namespace: self.namespace.clone(),
            model: self.model.clone(),
            tier: self.tier,
            status,
            key: self.key,
            prompt_tokens: self.usage.prompt_tokens,
            completion_tokens: self.usage.completion_tokens,
            usage_estimated: self.usage.estimated,
            latency_ms,
            relay_region: self.relay_region.clone(),
            cost_usd: self.cost_usd,
            saved_usd: self.saved_usd,
            similarity: self.similarity,
            embedding_cost_usd: self.embedding_cost_usd,
        });
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if let Some(state) = self.recorder.take() {
            self.record(&state);
        }
    }
}
