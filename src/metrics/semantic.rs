//! The semantic tier's metrics, registered by the tier's own struct.

use prometheus::{Counter, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::LATENCY_BUCKETS;

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
    pub(super) fn register(registry: &Registry) -> Self {
        let metrics = Self {
            lookups: IntCounterVec::new(
                Opts::new("semantic_lookups_total", "Semantic lookups by outcome"),
                &["outcome"],
            )
            .expect("valid metric"),
            rejections: IntCounterVec::new(
                Opts::new(
                    "semantic_rejections_total",
                    "Semantic candidates above the threshold refused by the verifier, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            embedding_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "semantic_embedding_seconds",
                    "Time to embed a question, by embedder and whether it was cached",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["embedder", "cached"],
            )
            .expect("valid metric"),
            embedding_cost_usd: Counter::new(
                "semantic_embedding_cost_usd_total",
                "USD spent at the relay on question embeddings",
            )
            .expect("valid metric"),
            entries: IntGauge::new("semantic_entries", "Entries in the semantic index")
                .expect("valid metric"),
            shadow: IntCounterVec::new(
                Opts::new(
                    "semantic_shadow_total",
                    "Shadow mode: would-be semantic hits by how they compared with the fresh answer",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            shared: IntCounterVec::new(
                Opts::new(
                    "semantic_shared_total",
                    "Semantic entries and purges published to or received from other instances",
                ),
                &["direction"],
            )
            .expect("valid metric"),
        };
        for metric in [
            Box::new(metrics.lookups.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.rejections.clone()),
            Box::new(metrics.embedding_seconds.clone()),
            Box::new(metrics.embedding_cost_usd.clone()),
            Box::new(metrics.entries.clone()),
            Box::new(metrics.shared.clone()),
            Box::new(metrics.shadow.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        metrics
    }
}
