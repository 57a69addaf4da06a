//! One analytics row: a small fixed struct built on the request path and moved, never
//! formatted, until the writer thread binds it to an INSERT.

use std::sync::Arc;

use crate::endpoint::Endpoint;
use crate::keying::CacheKey;

/// How a request on a cacheable route was answered (the `tier` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    L1,
    Redis,
    Sqlite,
    /// Served the answer of an earlier question that means the same.
    Semantic,
    Coalesced,
    Miss,
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::Redis => "redis",
            Self::Sqlite => "sqlite",
            Self::Semantic => "semantic",
            Self::Coalesced => "coalesced",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }

    /// Answered without a relay call of its own.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            Self::L1 | Self::Redis | Self::Sqlite | Self::Semantic | Self::Coalesced
        )
    }
}

#[derive(Clone, Debug)]
pub struct CacheEvent {
    pub ts_ms: u64,
    pub endpoint: Endpoint,
    pub namespace: Arc<str>,
    pub model: Arc<str>,
    pub tier: Outcome,
    pub status: u16,
    /// `None` when the request failed before it was keyed (bad body, bad key).
    pub key: Option<CacheKey>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The token counts are the gateway's estimate (the relay reported none).
    pub usage_estimated: bool,
    pub latency_ms: f64,
    pub relay_region: Option<Arc<str>>,
    pub cost_usd: f64,
    pub saved_usd: f64,
    /// Cosine similarity of a semantic hit's question to the one asked.
    pub similarity: Option<f32>,
    /// USD of the question's embedding at the relay (included in `cost_usd`).
    pub embedding_cost_usd: f64,
}
