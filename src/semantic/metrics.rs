//! The semantic tier's metrics, registered by the tier itself.

use prometheus::{Counter, HistogramVec, IntCounterVec, IntGauge};

use crate::metrics::Registrar;

/// The semantic tier's figures: how lookups ended, why candidates were refused, what
/// embeddings cost in time and money, and how many entries the index holds.
#[derive(Clone)]
pub struct SemanticMetrics {
    /// `outcome`: hit, miss (no candidate passed), error (no embedding), skipped (not
    /// comparable: no last user message, too long, `x-cache-semantic: off`), shadow
    /// (a would-be hit in shadow mode).
    pub lookups: IntCounterVec,
    /// Candidates above the threshold the verifier refused, by `reason`.
    pub rejections: IntCounterVec,
    /// Time to a question's vector, by `embedder` (relay, local) and `cached` (yes/no).
    pub embedding_seconds: HistogramVec,
    pub embedding_cost_usd: Counter,
    pub entries: IntGauge,
    /// Entries and purges sent to / taken from other regions (`direction`).
    pub shared: IntCounterVec,
    /// Shadow mode: would-be hits judged against the fresh answer (`outcome`: agree,
    /// disagree, refused by the verifier).
    pub shadow: IntCounterVec,
}

impl SemanticMetrics {
    pub fn register(r: &Registrar<'_>) -> Self {
        Self {
            lookups: r.counter_vec(
                "semantic_lookups_total",
                "Semantic lookups by outcome",
                &["outcome"],
            ),
            rejections: r.counter_vec(
                "semantic_rejections_total",
                "Semantic candidates above the threshold refused by the verifier, by reason",
                &["reason"],
            ),
            embedding_seconds: r.seconds(
                "semantic_embedding_seconds",
                "Time to embed a question, by embedder and whether it was cached",
                &["embedder", "cached"],
            ),
            embedding_cost_usd: r.dollars(
                "semantic_embedding_cost_usd_total",
                "USD spent at the relay on question embeddings",
            ),
            entries: r.gauge("semantic_entries", "Entries in the semantic index"),
            shadow: r.counter_vec(
                "semantic_shadow_total",
                "Shadow mode: would-be semantic hits by how they compared with the fresh answer",
                &["outcome"],
            ),
            shared: r.counter_vec(
                "semantic_shared_total",
                "Semantic entries and purges published to or received from other instances",
                &["direction"],
            ),
        }
    }
}
